"""A measured row mapped for comparison: a ``Case`` guideopt can predict, or a ``Skip`` saying why not."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Case:
    """A row guideopt can predict: the request, the metric and the measured value in guideopt units."""

    request: dict[str, Any]  # PredictRequest-compatible
    metric: str  # a guideopt metric name (``Metrics`` field)
    measured: float
    source: str
    source_locator: str
    line: int
    framework_label: str  # the engine as the source named it
    proxy_of: str | None = None  # engine this framework profile stands in for (None: the engine itself)
    assumptions: tuple[str, ...] = ()  # what the row did not say and we assumed
    framework_version: str = ""  # the engine version as the source printed it
    workload: str = "static"  # a ``Workload`` value: static, closed_loop or max_load

    @property
    def framework_proxy(self) -> bool:
        return self.proxy_of is not None

    @property
    def config_key(self) -> tuple:
        return tuple(sorted(self.request.items()))


@dataclass(frozen=True)
class Skip:
    """A row that is not compared, with a grouping ``reason`` and a row-specific ``detail``."""

    reason: str
    detail: str = ""
    line: int = 0
    source: str = ""
    metric: str = ""

    def __str__(self) -> str:
        return f"{self.reason}: {self.detail}" if self.detail else self.reason


CaseOrSkip = Case | Skip
