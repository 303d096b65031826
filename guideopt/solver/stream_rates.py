"""Per stream option, the largest rate it sustains and the largest within the SLOs.

Both are searched over a grid refined in rounds: each round tries evenly spaced rates
inside the bracket at once (one steady state over options × rates) and keeps the last rate
before the first that fails. Stability and the SLOs only get worse as the rate grows, so
this lands where a bisection of the same resolution would (2⁻⁸ of the bracket for the
stable rate, 2⁻¹² for the SLO rate), in a few rounds of arrays instead of a dozen rounds of
fixed-point iterations one after another.
"""

from __future__ import annotations

import numpy as np

from guideopt.costs.lengths import LengthTable
from guideopt.costs.stream import StreamMetrics, StreamOptions, stream_metrics
from guideopt.costs.stream_bounds import IDLE_SHARE, TINY_RATE_RPS, rate_bounds
from guideopt.costs.stream_search import grid_search, stable_rates
from guideopt.model.llm import ModelArch
from guideopt.model.workload import PercentileTargets

# Points per round of the SLO-rate search: 8⁴ = 2¹² steps of the bracket below the rate bound
# (stable and within every target: four rounds of 7 points).
SLO_RATE_GRID = (8, 8, 8, 8)


def meets_targets(m: StreamMetrics, targets: dict[str, PercentileTargets]) -> np.ndarray:
    ok = np.asarray(m.stable, dtype=bool).copy()
    for metric, t in targets.items():
        dist = m.dist(metric)
        for pct, bound in t.targets.items():
            ok &= dist.within(pct, bound)
    return ok


def meets_targets_at(
    arch: ModelArch, opts: StreamOptions, lengths: LengthTable, targets: dict[str, PercentileTargets], burstiness: float, rate: np.ndarray
) -> np.ndarray:
    """Per option, whether it is stable and meets every target at ``rate`` req/s."""
    # no percentile values: each bound is tested with one CDF evaluation (Dist.within)
    m = stream_metrics(arch, opts, lengths, np.maximum(rate, TINY_RATE_RPS), burstiness=burstiness, percentiles=())
    return meets_targets(m, targets)


def usable_mask(
    arch: ModelArch, opts: StreamOptions, lengths: LengthTable, targets: dict[str, PercentileTargets], burstiness: float, bound: np.ndarray
) -> np.ndarray:
    """Per option, whether it meets the targets nearly idle (at ``IDLE_SHARE`` of ``bound``);
    one that does not never meets them."""
    if not targets:
        return np.ones(len(opts), dtype=bool)
    return meets_targets_at(arch, opts, lengths, targets, burstiness, np.minimum(bound * IDLE_SHARE, TINY_RATE_RPS * 1e3))


def slo_rates(
    arch: ModelArch,
    opts: StreamOptions,
    lengths: LengthTable,
    targets: dict[str, PercentileTargets],
    burstiness: float,
    bound: np.ndarray | None = None,
    known_usable: bool = False,
) -> np.ndarray:
    """Per option, the largest per-replica rate (req/s) at which it is stable and meets every
    target: searched below the rate bound (latencies grow with the rate), on the options
    that meet the targets when nearly idle (the rest get 0; ``known_usable``: all do, as
    ``usable_mask`` found)."""
    if len(opts) == 0:
        return np.zeros(0)
    bound = rate_bounds(arch, opts, lengths, None, targets) if bound is None else bound
    if not targets:
        return stable_rates(arch, opts, lengths, bound)[0]

    out = np.zeros(len(opts))
    # an option that misses the SLOs nearly idle never meets them: no search for it
    usable = np.arange(len(opts)) if known_usable else np.nonzero(usable_mask(arch, opts, lengths, targets, burstiness, bound))[0]
    if usable.size == 0:
        return out
    sub = opts.take(usable)

    def ok_at(rates: np.ndarray) -> np.ndarray:  # options × rates, flattened for stream_metrics
        return meets_targets_at(arch, sub.take(np.repeat(np.arange(len(sub)), rates.shape[1])), lengths, targets, burstiness, rates.ravel())

    # "stable and within every target" only gets harder as the rate grows: one search below the bound
    lo, _, tested = grid_search(np.zeros(usable.size), np.asarray(bound, dtype=float)[usable], ok_at, SLO_RATE_GRID)
    out[usable] = np.where(tested, lo, 0.0)
    return out
