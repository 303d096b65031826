"""The timing loop the plan benchmarks share: best wall time of ``repeat`` solves and its phases."""

from __future__ import annotations

import time

import numpy as np

from guideopt.catalog import Catalog
from guideopt.model.plan import PlanResult
from guideopt.model.request import PlanRequest
from guideopt.solver.plan import solve_request


def best_of(req: PlanRequest, cat: Catalog, repeat: int) -> tuple[float, dict[str, float], PlanResult]:
    """(best wall seconds, that run's phases, the result) over ``repeat`` solves."""
    best, best_phases, result = float("inf"), {}, None
    for _ in range(repeat):
        phases: dict[str, float] = {}
        start = time.perf_counter()
        result = solve_request(req, cat, phases)
        wall = time.perf_counter() - start
        if wall < best:
            best, best_phases = wall, phases
    assert result is not None, "repeat must be at least 1"
    return best, best_phases, result


def probe_s() -> float:
    """A fixed numpy workload (best of 3): divide timings by it to compare machines or loads."""
    a = np.random.default_rng(0).random((300, 300))
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        for _ in range(20):
            a = np.tanh(a @ a.T / 300.0)
        best = min(best, time.perf_counter() - start)
    return best
