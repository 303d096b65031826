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

from guideopt.costs.closed_loop import closed_loop_metrics, stream_serving_inputs
from guideopt.costs.lengths import LengthTable
from guideopt.costs.stream import StreamMetrics, StreamOptions, option_lengths, running_slots, stream_metrics
from guideopt.costs.stream_bounds import IDLE_SHARE, TINY_RATE_RPS, rate_bounds
from guideopt.costs.stream_search import grid_search, stable_rates
from guideopt.model.llm import ModelArch
from guideopt.model.workload import DEFAULT_NUM_REQUESTS, VERIFY_WARMUP_FRACTION, PercentileTargets

# Points per round of the SLO-rate search: 8⁴ = 2¹² steps of the bracket below the rate bound
# (stable and within every target: four rounds of 7 points).
SLO_RATE_GRID = (8, 8, 8, 8)
RUN_REQUESTS = DEFAULT_NUM_REQUESTS  # one run of ``simulate`` and of the plan's check
RUN_MARGIN_Z = 1.645  # one-sided 95 %: a run at the analytic edge keeps the bound 19 times in 20
SLOT_MARGIN_Z = 2.0  # sd of the running count kept free below the slots (a normal count passes it 2.3 % of the time)
MAX_RUN_LEVEL = 1.0 - 1e-6  # a share of requests the model may be asked to put within a bound


def meets_targets(m: StreamMetrics, targets: dict[str, PercentileTargets], run_requests: int = RUN_REQUESTS) -> np.ndarray:
    """Per option, stable and every percentile bound kept by one run of ``run_requests`` (``run_level``)."""
    ok = np.asarray(m.stable, dtype=bool) & within_targets(m, targets, run_requests)
    return ok & slots_to_spare(m) if targets else ok


def within_targets(m: StreamMetrics, targets: dict[str, PercentileTargets], run_requests: int = RUN_REQUESTS) -> np.ndarray:
    """Per option, every percentile bound kept by one run of ``run_requests`` requests (``run_level``)."""
    ok = np.ones(np.shape(m.running), dtype=bool)
    for metric, t in targets.items():
        dist = m.dist(metric)
        for pct, bound in t.targets.items():
            ok &= dist.within(pct, bound, run_level(pct, m.running, run_requests))
    return ok


def slots_to_spare(m: StreamMetrics) -> np.ndarray:
    """Per option, whether the running requests λ·R and ``SLOT_MARGIN_Z`` standard deviations of
    their count (``StreamMetrics.running_sd``) fit the running slots (cap and KV cache). A run that fills the
    slots queues every arrival behind a full batch, and one that fills the KV cache preempts
    (vLLM recomputes): near that edge a run can fall into a long queue that the steady state does
    not show (issue 25: a 70B replica at 56 of its 72 slots met P90 TTFT 500 ms on nine seeds of
    ten, 1,336 ms on the tenth)."""
    running = np.asarray(m.running, dtype=float)
    sd = np.sqrt(running) if m.running_sd is None else np.asarray(m.running_sd, dtype=float)
    return running + SLOT_MARGIN_Z * sd <= np.asarray(m.steady.slots, dtype=float)


def run_level(pct: float, running: np.ndarray, run_requests: int = RUN_REQUESTS) -> np.ndarray:
    """The share of requests the model must put within a bound for one run's ``pct`` percentile to be.

    A percentile SLO is judged on one run of ``run_requests`` requests (``simulate``'s default and
    the plan's check: ``workload.num_requests``). Requests in one residence window meet the same queue, batch and prompts, so
    a run holds about N = run_requests·(1 − warm-up)/(λ·R) independent windows (λ·R the requests
    in the replica); the share of its requests within the bound spreads binomially, √(p(1−p)/N),
    and the run's percentile stays within the bound with one-sided confidence ``RUN_MARGIN_Z`` when
    the model's share is p + z·√(p(1−p)/N). Without it the cheapest plan sits where half of all runs
    miss (issue 25: the analytic edge of a 70B plan met P90 TPOT 50 ms on 5 of 10 seeds)."""
    p = pct / 100.0
    windows = run_requests * (1.0 - VERIFY_WARMUP_FRACTION) / np.maximum(np.asarray(running, dtype=float), 1.0)
    return np.minimum(p + RUN_MARGIN_Z * np.sqrt(p * (1.0 - p) / windows), MAX_RUN_LEVEL)


def meets_targets_at(
    arch: ModelArch,
    opts: StreamOptions,
    lengths: LengthTable,
    targets: dict[str, PercentileTargets],
    burstiness: float,
    rate: np.ndarray,
    run_requests: int = RUN_REQUESTS,
) -> np.ndarray:
    """Per option, whether it is stable and meets every target at ``rate`` req/s."""
    # no percentile values: each bound is tested with one CDF evaluation (Dist.within)
    m = stream_metrics(arch, opts, lengths, np.maximum(rate, TINY_RATE_RPS), burstiness=burstiness, percentiles=())
    return meets_targets(m, targets, run_requests)


def usable_mask(
    arch: ModelArch,
    opts: StreamOptions,
    lengths: LengthTable,
    targets: dict[str, PercentileTargets],
    burstiness: float,
    bound: np.ndarray,
    run_requests: int = RUN_REQUESTS,
) -> np.ndarray:
    """Per option, whether it meets the targets nearly idle (at ``IDLE_SHARE`` of ``bound``);
    one that does not never meets them."""
    if not targets:
        return np.ones(len(opts), dtype=bool)
    return meets_targets_at(arch, opts, lengths, targets, burstiness, np.minimum(bound * IDLE_SHARE, TINY_RATE_RPS * 1e3), run_requests)


def slo_rates(
    arch: ModelArch,
    opts: StreamOptions,
    lengths: LengthTable,
    targets: dict[str, PercentileTargets],
    burstiness: float,
    bound: np.ndarray | None = None,
    known_usable: bool = False,
    run_requests: int = RUN_REQUESTS,
) -> np.ndarray:
    """Per option, the largest per-replica rate (req/s) at which it is stable and meets every
    target in one run of ``run_requests`` requests: searched below the rate bound (latencies grow
    with the rate), on the options that meet the targets when nearly idle (the rest get 0;
    ``known_usable``: all do, as ``usable_mask`` found)."""
    if len(opts) == 0:
        return np.zeros(0)
    bound = rate_bounds(arch, opts, lengths, None, targets) if bound is None else bound
    if not targets:
        return stable_rates(arch, opts, lengths, bound)[0]

    out = np.zeros(len(opts))
    # an option that misses the SLOs nearly idle never meets them: no search for it
    usable = (
        np.arange(len(opts)) if known_usable else np.nonzero(usable_mask(arch, opts, lengths, targets, burstiness, bound, run_requests))[0]
    )
    if usable.size == 0:
        return out
    sub = opts.take(usable)

    def ok_at(rates: np.ndarray) -> np.ndarray:  # options × rates, flattened for stream_metrics
        per = sub.take(np.repeat(np.arange(len(sub)), rates.shape[1]))
        return meets_targets_at(arch, per, lengths, targets, burstiness, rates.ravel(), run_requests)

    # "stable and within every target" only gets harder as the rate grows: one search below the bound
    lo, _, tested = grid_search(np.zeros(usable.size), np.asarray(bound, dtype=float)[usable], ok_at, SLO_RATE_GRID)
    out[usable] = np.where(tested, lo, 0.0)
    return out


def closed_loop_at(
    arch: ModelArch,
    opts: StreamOptions,
    lengths: LengthTable,
    clients: np.ndarray,
    *,
    lockstep_share: float,
    percentiles: tuple[float, ...] = (),
) -> StreamMetrics:
    """Per option (one attention-DP rank), the closed loop of ``clients`` clients as ``predict
    --concurrency`` and ``simulate`` price it (``costs.closed_loop``)."""
    x = stream_serving_inputs(opts, lengths, clients, lockstep_share=lockstep_share)
    return closed_loop_metrics(arch, opts, lengths, x, percentiles=percentiles)


def meets_closed_targets(m: StreamMetrics, targets: dict[str, PercentileTargets], run_requests: int = RUN_REQUESTS) -> np.ndarray:
    """Per option, every percentile bound of a closed loop kept by one run (``within_targets``;
    a closed loop has no queue that grows without bound, and its clients never outnumber the
    running places it is searched below, so neither stability nor spare slots is tested)."""
    return within_targets(m, targets, run_requests)


def slo_clients(
    arch: ModelArch,
    opts: StreamOptions,
    lengths: LengthTable,
    targets: dict[str, PercentileTargets],
    *,
    lockstep_share: float,
    run_requests: int = RUN_REQUESTS,
) -> np.ndarray:
    """Per option (one rank), the most closed-loop clients, at most its running places, whose
    closed loop (``closed_loop_at``: the function ``predict --concurrency`` and ``simulate``
    use) meets every target in one run: a bisection over whole clients (latencies grow with
    the clients), about log2 of the running places in vectorised rounds. 0: not even one."""
    hi = np.floor(running_slots(opts, option_lengths(opts, lengths))).astype(np.int64)

    def ok(rows: np.ndarray, clients: np.ndarray) -> np.ndarray:
        m = closed_loop_at(arch, opts.take(rows), lengths, clients.astype(float), lockstep_share=lockstep_share)
        return meets_closed_targets(m, targets, run_requests)

    lo = np.zeros_like(hi)  # 0 clients: the sentinel below every tested load
    top = ok(np.arange(len(hi)), hi) if len(hi) else np.zeros(0, dtype=bool)
    lo[top] = hi[top]
    # lo passed (or is 0) and hi failed: bisect the whole clients between them
    open_ = np.nonzero(~top & (hi - lo > 1))[0]
    while open_.size:
        mid = (lo[open_] + hi[open_]) // 2
        good = ok(open_, mid)
        lo[open_[good]] = mid[good]
        hi[open_[~good]] = mid[~good]
        open_ = open_[hi[open_] - lo[open_] > 1]
    return lo.astype(float)
