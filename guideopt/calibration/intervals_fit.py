"""Error bands for prediction intervals from held-out residuals, and their coverage.

``bands`` turns leave-one-source-out results into ``Calibration.intervals`` (percentiles of
log(measured / predicted) per regime and every back-off level of it); ``coverage`` checks
them honestly: each source's rows are scored against bands built without that source.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Iterable

import numpy as np

from guideopt.calibration.results import Result
from guideopt.costs.intervals import error_band, interval, regime_keys
from guideopt.model.calibration import ErrorBand

LOW_Q, HIGH_Q = 0.10, 0.90
ROUND = 4


def result_keys(r: Result, family_of: Callable[[str], str], engine_of: Callable[[str, str], str]) -> list[str]:
    q = r.case.request
    load = q.get("concurrency") or q.get("batch") or 1
    replicas = max(int(q.get("num_gpus", 1)) // (int(q.get("tp", 1)) * int(q.get("pp", 1))), 1)
    return regime_keys(r.case.metric, family_of(q["gpu"]), engine_of(q["framework"], q["gpu"]), load / replicas, q.get("tp", 1))


def bands(results: Iterable[Result], family_of, engine_of) -> dict[str, ErrorBand]:
    logs: dict[str, list[float]] = defaultdict(list)
    for r in results:
        if r.predicted > 0:
            for key in result_keys(r, family_of, engine_of):
                logs[key].append(math.log(r.measured / r.predicted))
    return {
        k: ErrorBand(q10=round(float(np.quantile(v, LOW_Q)), ROUND), q90=round(float(np.quantile(v, HIGH_Q)), ROUND), n=len(v))
        for k, v in sorted(logs.items())
    }


def coverage(results: list[Result], family_of, engine_of) -> dict[str, float]:
    """Fraction of rows inside the 10-90 % interval built without their own source, per metric kind and overall."""
    inside: dict[str, list[bool]] = defaultdict(list)
    for source in sorted({r.case.source for r in results}):
        held = bands((r for r in results if r.case.source != source), family_of, engine_of)
        for r in (r for r in results if r.case.source == source):
            lo, hi = interval(r.predicted, error_band(held, result_keys(r, family_of, engine_of)))
            ok = lo is not None and hi is not None and lo <= r.measured <= hi
            inside[r.case.metric].append(ok)
            inside["all"].append(ok)
    return {k: float(np.mean(v)) for k, v in sorted(inside.items())}
