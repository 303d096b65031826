"""One wall-clock deadline per request, shared by every solve of it, and per-phase timing."""

from __future__ import annotations

import time

# Below this many seconds left, a CP-SAT call is not started (it could not finish anything).
MIN_SOLVE_S = 1e-3


class Deadline:
    def __init__(self, limit_s: float, start: float | None = None) -> None:
        self.start = time.perf_counter() if start is None else start
        self.limit_s = limit_s
        self.hit = False  # some search was cut by it
        self.work_hit = False  # some search stopped at its work bound (deterministic), not at the clock

    def remaining_s(self) -> float:
        return self.limit_s - (time.perf_counter() - self.start)

    def expired(self) -> bool:
        return self.remaining_s() < MIN_SOLVE_S

    def budget_s(self, cap_s: float) -> float:
        """Seconds one solve may take: what is left, at most ``cap_s``, never below the minimum."""
        return max(min(self.remaining_s(), cap_s), MIN_SOLVE_S)


class Phases:
    """Seconds per phase of one request (catalog, table, prune, candidates, model, solve,
    extract…), added into ``out`` when given (benchmarks read them)."""

    def __init__(self, out: dict[str, float] | None) -> None:
        self.out = out
        self.mark = time.perf_counter()

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        if self.out is not None:
            self.out[name] = self.out.get(name, 0.0) + now - self.mark
        self.mark = now
