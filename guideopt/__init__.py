"""guideopt: plan LLM deployments with a calibrated roofline cost model and CP-SAT.

The library API (``plan``, ``predict``, ``predict_rows``) is loaded on first use
(PEP 562), so that ``import guideopt.<module>`` — the CLI's start, above all — does not
pay for numpy, OR-Tools and the solver until a command needs them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from guideopt.errors import CatalogError, GuideoptError, InvalidRequestError, NoFeasiblePlanError

if TYPE_CHECKING:
    from guideopt.api import plan, predict, predict_rows

_API_NAMES = ("plan", "predict", "predict_rows")

__all__ = ["CatalogError", "GuideoptError", "InvalidRequestError", "NoFeasiblePlanError", "plan", "predict", "predict_rows"]


def __getattr__(name: str) -> Any:
    if name in _API_NAMES:
        from guideopt import api

        return getattr(api, name)
    raise AttributeError(f"module 'guideopt' has no attribute {name!r}")
