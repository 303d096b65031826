"""The largest rate a stream option sustains, searched on a grid refined in rounds.

Each round tries evenly spaced rates inside the bracket at once (one steady state over
options × rates) and keeps the last rate before the first that fails. Stability only gets
worse as the rate grows, so this lands where a bisection of the same resolution would, in a
few rounds of arrays instead of a dozen fixed-point solves one after another. One function
for every surface: ``plan`` (its options' stable rates), ``capacity``, ``simulate`` and the
calibration reports all call ``sustainable_rate`` or ``stable_rates``.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from guideopt.costs.lengths import LengthTable
from guideopt.costs.stream import StreamOptions, steady_state
from guideopt.costs.stream_bounds import rate_bounds
from guideopt.model.llm import ModelArch

# Points per round of the stable-rate search: 16³ = 2¹² steps of the bracket below the rate bound.
STABLE_RATE_GRID = (16, 16, 16)


def grid_search(
    lo: np.ndarray, hi: np.ndarray, ok_at: Callable[[np.ndarray], np.ndarray], rounds: tuple[int, ...]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per option, a bracket (lo, hi) narrowed ``rounds`` times: each round tries the points
    lo + (hi − lo)·i/g (i = 1 … g−1) of shape (options, g−1) with ``ok_at`` and keeps the
    last point before the first failing one. Returns (lo, hi, whether lo passed a test)."""
    lo, hi = np.asarray(lo, dtype=float).copy(), np.asarray(hi, dtype=float).copy()
    tested = np.zeros(lo.size, dtype=bool)
    rows = np.arange(lo.size)
    for g in rounds:
        if lo.size == 0:
            break
        points = lo[:, None] + (hi - lo)[:, None] * (np.arange(1, g) / g)
        ok = np.asarray(ok_at(points), dtype=bool).reshape(points.shape)
        passed = np.where(ok.all(axis=1), g - 1, np.argmin(ok, axis=1))  # leading points that pass
        lo_new = np.where(passed > 0, points[rows, np.maximum(passed - 1, 0)], lo)
        hi = np.where(passed < g - 1, points[rows, np.minimum(passed, g - 2)], hi)
        lo, tested = lo_new, tested | (passed > 0)
    return lo, hi, tested


def stable_rates(arch: ModelArch, opts: StreamOptions, lengths: LengthTable, bound: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per option, a bracket (stable, unstable) around the largest stable per-replica rate
    (below ``bound``)."""

    def ok_at(rates: np.ndarray) -> np.ndarray:
        s = steady_state(arch, opts, lengths, rates)
        return s.converged & (rates * s.residence_s < s.slots) & (rates * s.prefill_service_s < 1.0)

    hi = np.asarray(bound, dtype=float)
    lo, hi, _ = grid_search(np.zeros_like(hi), hi, ok_at, STABLE_RATE_GRID)
    return lo, hi


def sustainable_rate(arch: ModelArch, opts: StreamOptions, lengths: LengthTable) -> np.ndarray:
    """Largest requests/s per replica (per attention-DP rank) whose steady state is stable."""
    return stable_rates(arch, opts, lengths, rate_bounds(arch, opts, lengths))[0]
