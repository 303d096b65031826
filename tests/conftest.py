"""Shared fixtures and helpers for the guideopt test suite.

Keep instances small: a two/three-GPU restriction of the bundled catalog solves in a few
tens of milliseconds, so property tests can afford a few dozen examples each.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings

from guideopt.catalog import Catalog, catalog_dir, load_catalog

REPO_ROOT = Path(__file__).resolve().parent.parent
CATALOG_DIR = catalog_dir()

LLAMA2_7B = "meta-llama/Llama-2-7b-hf"
LLAMA2_13B = "meta-llama/Llama-2-13b-hf"
LLAMA2_70B = "meta-llama/Llama-2-70b-hf"
LLAMA3_8B = "meta-llama/Meta-Llama-3-8B"
QWEN2_7B = "Qwen/Qwen2-7B"
MIXTRAL_8X7B = "mistralai/Mixtral-8x7B-v0.1"
LLAMA31_405B = "meta-llama/Llama-3.1-405B"

# A small GPU restriction: one cheap PCIe card, one NVSwitch A100, one NVSwitch H100.
SMALL_GPUS: dict[str, Any] = {"l4": {}, "a100-sxm4-80gb": {}, "h100-sxm": {}}
# The two-GPU restriction of EXAMPLES.md practice 13.
TWO_GPUS: dict[str, Any] = {"l4": {}, "h100-sxm": {}}

# The README's quick-start request.
README_PLAN_ARGS = ["plan", "--model", LLAMA2_7B, "--budget", "12", "--input-len", "512", "--output-len", "256"]

# Property tests: enough examples to find edge cases, few enough for a ~60 s suite on 2 cores.
settings.register_profile(
    "guideopt",
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
# A deeper search for bug hunting: GUIDEOPT_HYPOTHESIS_PROFILE=thorough python -m pytest
settings.register_profile("thorough", parent=settings.get_profile("guideopt"), max_examples=1000)
settings.load_profile(os.environ.get("GUIDEOPT_HYPOTHESIS_PROFILE", "guideopt"))


class _QuietCatalog(Catalog):
    """The bundled catalog with a one-line repr, so hypothesis' falsifying examples stay readable."""

    def __repr__(self) -> str:
        return f"Catalog(<bundled: {len(self.gpus)} GPUs, {len(self.models)} models>)"


@pytest.fixture(scope="session")
def catalog() -> Catalog:
    """The bundled catalog (cached by ``load_catalog``)."""
    cat = load_catalog()
    return _QuietCatalog(**{f: getattr(cat, f) for f in Catalog.__dataclass_fields__})


@pytest.fixture(scope="session")
def small_gpus() -> dict[str, Any]:
    """Request-level ``gpus`` restricting a plan to three GPU types."""
    return copy.deepcopy(SMALL_GPUS)


@pytest.fixture(scope="session")
def two_gpus() -> dict[str, Any]:
    return copy.deepcopy(TWO_GPUS)


def plan_request(
    model: str = LLAMA2_7B,
    *,
    budget: float = 12.0,
    input_len: int = 512,
    output_len: int = 128,
    gpus: dict[str, Any] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """A PlanRequest as a plain dict (the constraints-file structure)."""
    req: dict[str, Any] = {
        "model": model,
        "workload": {"input_len": input_len, "output_len": output_len},
        "budget": {"usd_per_hour": budget},
        "gpus": copy.deepcopy(gpus if gpus is not None else SMALL_GPUS),
    }
    batch = extra.pop("batch", None)
    if batch is not None:
        req["workload"]["batch"] = batch
    req.update(extra)
    return req


def predict_request(model: str = LLAMA2_7B, gpu: str = "h100-sxm", **extra: Any) -> dict[str, Any]:
    req: dict[str, Any] = {"model": model, "gpu": gpu, "batch": 1, "input_len": 512, "output_len": 128}
    req.update(extra)
    return req


def rel_close(a: float, b: float, rtol: float = 1e-6, atol: float = 1e-9) -> bool:
    return abs(a - b) <= atol + rtol * max(abs(a), abs(b))


# ---- shared by the solver tests (homogeneous and heterogeneous)
# The solver's integer scaling (guideopt/units.py), restated so the tests check it.
MILLI_USD_PER_USD = 1000
US_PER_S = 1_000_000
DECI_TOK_PER_TOK = 10
PER_MTOK = "usd_per_million_output_tokens"


def milli_usd_per_million_tok(milli_usd_per_hour, deci_tok_s):
    """Milli-dollars per million output tokens, rounded up, from the integer cost (m$/h) and
    throughput (0.1 tok/s): m$/h ÷ (tok/s · 3600 s/h) · 10^6. Works on ints and int arrays."""
    num = milli_usd_per_hour * DECI_TOK_PER_TOK * 1_000_000
    den = deci_tok_s * 3600
    return -(-num // den)


def close_tuple(a: tuple[int, ...], b: tuple[int, ...], slack: int = 1) -> bool:
    """Equal up to one unit of the integer scaling (float re-rounding of reported metrics)."""
    return len(a) == len(b) and all(abs(x - y) <= slack for x, y in zip(a, b))


def solver_values(result, req) -> tuple[int, ...]:
    """The solver's own objective values, scaled back to integers, oriented smaller-is-better."""
    out = []
    for term, value in zip(req.objective, result.objective_values):
        if term.value == "throughput":
            out.append(-round(value * DECI_TOK_PER_TOK))
        elif term.value in ("cost", PER_MTOK):
            out.append(round(value * MILLI_USD_PER_USD))
        else:
            out.append(round(value * US_PER_S))
    return tuple(out)


def plan_or_none(req, catalog):
    """``guideopt.api.plan`` or None when nothing is feasible."""
    from guideopt import api
    from guideopt.errors import NoFeasiblePlanError

    try:
        return api.plan(req, catalog)
    except NoFeasiblePlanError:
        return None


def model_cases(cat: Catalog, requests: list[dict[str, Any]], metrics: tuple[str, ...] = ("batch_latency_s", "ttft_ms", "tpot_ms")) -> list:
    """Calibration cases whose 'measured' values are the model's own predictions under ``cat``
    (to check that a fit recovers the terms they were generated with)."""
    from guideopt import api
    from guideopt.calibration.mapping import Case

    cases = []
    for i, req in enumerate(requests):
        m = api.predict(req, cat).metrics
        for metric in metrics:
            label = str(req.get("framework", "vllm"))
            cases.append(
                Case(
                    request=req,
                    metric=metric,
                    measured=getattr(m, metric),
                    source="synthetic",
                    source_locator="",
                    line=i,
                    framework_label=label,
                )
            )
    return cases


def with_engine_terms(catalog: Catalog, engine: str = "vllm", **update: Any) -> Catalog:
    """The catalog with one engine's fitted terms changed (and its per-vendor NVIDIA entry, if
    any, dropped so that the change applies)."""
    import dataclasses

    cal = catalog.calibration
    fw = cal.frameworks[engine].model_copy(update=update)
    frameworks = {k: v for k, v in cal.frameworks.items() if k != f"{engine}@nvidia"}
    return dataclasses.replace(catalog, calibration=cal.model_copy(update={"frameworks": {**frameworks, engine: fw}}))
