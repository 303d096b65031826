"""Outcome of a validation run: one ``Result`` per compared row, collected in a ``Report``."""

from __future__ import annotations

from dataclasses import dataclass, field

from guideopt.calibration.mapping import Case, Skip


@dataclass(frozen=True)
class Result:
    case: Case
    predicted: float
    waves: int = 1  # static batches too large for the KV cache run in waves; per-request latency definitions then differ by source

    @property
    def measured(self) -> float:
        return self.case.measured

    @property
    def ape(self) -> float:
        """Absolute percentage error as a fraction: |predicted − measured| / measured."""
        return abs(self.predicted - self.case.measured) / self.case.measured

    @property
    def ratio(self) -> float:
        """predicted / measured (> 1: guideopt predicts more than was measured)."""
        return self.predicted / self.case.measured


@dataclass
class Report:
    results: list[Result] = field(default_factory=list)
    skipped: list[Skip] = field(default_factory=list)
    distinct_configs: int = 0
    seconds: float = 0.0
