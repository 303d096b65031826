"""The SLO rates of a stream's options, priced cheapest first.

An empty replica's residence and prompt service bound an option's stable rate, hence its SLO
rate, from above (``costs.stream_bounds``), so ceil(load / bound) × price bounds its cost from
below. Options whose bound exceeds the budget cannot serve the load within it. With cost
leading the objective, the rest are priced best-first (``cheapest_first``): tested at the load
their bound's replica count gives each replica, their bound raised by one replica when they
fail, until the plans that can be shown are known. The options it found keep the rate they
passed at (their fewest replicas are then final) until the solver searches their largest
(``stream_options.refine_rates``: the one search simulate and capacity report) where it needs it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from guideopt.costs.stream_bounds import IDLE_SHARE, TINY_RATE_RPS, idle_rate_bound, rate_bounds
from guideopt.model.request import ObjectiveTerm, PlanRequest
from guideopt.solver.dominance import shape_key
from guideopt.solver.stream_rates import SLO_RATE_GRID, meets_targets_at, slo_rates
from guideopt.units import MILLI_LOAD_PER_LOAD, ROUNDING_EPS

PRUNE_BATCH = 256  # options tested per round of the cheapest-first pricing
COUNTS_PER_TEST = 3  # replica counts an option is tested at per round (n, n + 1, n + 2): fewer rounds where bounds are loose
PRUNE_SLACK_SHAPES = 4  # shapes priced beyond ``top``: room for plans the simulator cuts


def priced_slo_rates(
    req: PlanRequest, arch, table, opts, lengths, targets, *, prune: bool, static_rows=None, known_usd: Sequence[float] = ()
) -> tuple[np.ndarray, np.ndarray | None]:
    """(per option, its SLO rate (one rank's req/s; 0: serves nothing within the SLOs, or not
    priced), per option the rate bound its SLO rate is searched below where that rate is still
    provisional (NaN: final), or None when every rate is final).

    With ``prune`` and cost leading the objective, the options are priced cheapest bound first
    and the pricing stops once the ``top + PRUNE_SLACK_SHAPES``-th cheapest shape found costs
    less than every bound left: no option left can rank among the plans shown (nor replace one
    the simulator cuts, up to that slack)."""
    out = np.zeros(len(opts))
    rate, burst, runs = req.workload.rate_rps, req.workload.burstiness, req.workload.num_requests
    if len(opts) == 0:
        return out, None
    if not prune or rate is None:
        bound = rate_bounds(arch, opts, lengths, static_rows, targets)
        return slo_rates(arch, opts, lengths, targets, burst, bound=bound, run_requests=runs), None
    price = table.usd_per_hour_per_gpu * table.gpus_per_replica
    ranks = table.dp  # the rates are one attention-DP rank's; a replica has dp of them
    budget = req.budget.usd_per_hour * (1 + 1e-9)

    def lower_cost(bound: np.ndarray) -> np.ndarray:
        return np.where(bound > 0, np.ceil(rate / np.maximum(bound * ranks, 1e-12) - 1e-9) * price, np.inf)

    # the one-step bounds first; the idle steady state only for what they leave within the budget
    bound = rate_bounds(arch, opts, lengths, static_rows, targets, idle=False)
    within = np.nonzero(lower_cost(bound) <= budget)[0]
    rows = static_rows[within] if static_rows is not None else None
    bound[within] = np.minimum(bound[within], idle_rate_bound(arch, opts.take(within), lengths, rows))
    alive = np.nonzero(lower_cost(bound) <= budget)[0]
    if req.objective[0] is not ObjectiveTerm.COST:
        out[alive] = slo_rates(arch, opts.take(alive), lengths, targets, burst, bound=bound[alive], run_requests=runs)
        return out, None
    idx, passed_at, ceiling = cheapest_first(req, arch, opts, lengths, targets, alive, bound, shape_key(table), (price, ranks), known_usd)
    out[idx] = passed_at
    pending = np.full(len(opts), np.nan)
    pending[idx] = ceiling
    return out, pending


def _tested(arch, opts, lengths, targets, burst, runs, n, bound, ranks, fresh, rate) -> tuple[np.ndarray, np.ndarray]:
    """(per option, whether it meets the targets at the share of the load of each of n … n +
    ``COUNTS_PER_TEST`` − 1 replicas, whether it meets them nearly idle (tested where ``fresh``,
    else True)), in one steady state over options × points. A count's share is rounded up to the
    milli-load the candidates count (so that that many replicas hold it) and tested at the first
    point of the SLO-rate search's grid at or above it: that search (``slo_rates``, what
    simulate and capacity report) then finds at least that share exactly when the test passes,
    so the fewest replicas found here are the ones its rate gives."""
    counts = n[:, None] + np.arange(COUNTS_PER_TEST)
    point = grid_point_above(rank_share(rate, counts, ranks[:, None]), bound[:, None])
    fresh = fresh & bool(targets)  # without targets every option is usable (``usable_mask``)
    idle = np.minimum(bound * IDLE_SHARE, TINY_RATE_RPS * 1e3)[fresh]
    rows = np.concatenate([np.repeat(np.arange(len(opts)), COUNTS_PER_TEST), np.nonzero(fresh)[0]])
    rates = np.concatenate([np.minimum(point, bound[:, None]).ravel(), idle])
    met = meets_targets_at(arch, opts.take(rows), lengths, targets, burst, rates, runs)
    ok = met[: point.size].reshape(point.shape) & (point < bound[:, None])
    idle_ok = np.ones(len(opts), dtype=bool)
    idle_ok[fresh] = met[point.size :]
    return ok, idle_ok


def rank_share(rate: float, replicas: np.ndarray, ranks: np.ndarray) -> np.ndarray:
    """Req/s one attention-DP rank must serve when ``replicas`` share ``rate``: each replica's
    share rounded up to the milli-load the candidates count (so that that many replicas hold
    it), split over its ``ranks``."""
    milli = np.ceil(rate * MILLI_LOAD_PER_LOAD / replicas - ROUNDING_EPS)
    return milli / MILLI_LOAD_PER_LOAD / ranks * (1 + ROUNDING_EPS)


def grid_point_above(rate: np.ndarray, bound: np.ndarray) -> np.ndarray:
    """The first point of the SLO-rate search's grid (``SLO_RATE_GRID``: bound × j / Π g) at or above ``rate``."""
    steps = float(np.prod(SLO_RATE_GRID))
    return np.ceil(rate / np.maximum(bound, 1e-300) * steps - ROUNDING_EPS) * bound / steps


def cheapest_first(
    req: PlanRequest, arch, opts, lengths, targets, alive, bound, shapes, priced_as, known_usd: Sequence[float] = ()
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(options found, a rate each meets the SLOs at, each one's rate bound): best-first over
    the options ``alive``, bounds tightened by one test each.

    An option's cost is its fewest replicas × its price, and n replicas serve the load when one
    meets the targets at load / n. So the options of lowest cost bound are tested at the share
    of the load of their bound's replica count n and the next few (``_tested``, one steady state
    for them all): one that passes at none needs more (its bound rises and it waits its turn
    again), one that passes costs exactly the first count that passes. Options are also tested
    nearly idle once (one that misses the SLOs idle never meets them). ``priced_as``: per
    option, the replica's $/h and its attention-DP ranks."""
    price, ranks = priced_as
    rate, burst, budget = float(req.workload.rate_rps or 0), req.workload.burstiness, req.budget.usd_per_hour * (1 + 1e-9)
    runs = req.workload.num_requests
    best: dict[int, float] = {-1 - i: float(c) for i, c in enumerate(known_usd)}  # other shapes' plans (negative keys)
    want = req.top + PRUNE_SLACK_SHAPES
    n = np.ceil(rate / np.maximum(bound * ranks, 1e-12) - 1e-9)  # replicas not yet ruled out, per option
    waiting = np.zeros(len(opts), dtype=bool)
    waiting[alive] = True
    screened = np.zeros(len(opts), dtype=bool)
    found: list[tuple[np.ndarray, np.ndarray]] = []
    while True:
        cost = np.where(waiting, n * price, np.inf)
        live = np.nonzero(cost <= budget)[0]
        if live.size == 0:
            break
        live = live[np.lexsort((live, cost[live]))]
        if len(best) >= want and cost[live[0]] > sorted(best.values())[want - 1]:
            break
        batch = live[:PRUNE_BATCH]
        fresh = ~screened[batch]
        screened[batch] = True
        ok, idle_ok = _tested(arch, opts.take(batch), lengths, targets, burst, runs, n[batch], bound[batch], ranks[batch], fresh, rate)
        waiting[batch[~idle_ok]] = False  # misses the SLOs nearly idle: never meets them
        first = np.argmax(ok, axis=1)  # the first count tested that passes
        hit = ok.any(axis=1) & idle_ok
        n[batch] += np.where(hit, first, COUNTS_PER_TEST)
        batch, ok = batch[idle_ok], hit[idle_ok]
        at = rank_share(rate, n[batch], ranks[batch])
        passed = batch[ok]
        waiting[passed] = False
        found.append((passed, at[ok]))
        for i in passed:
            if n[i] * price[i] <= budget:
                best[int(shapes[i])] = min(best.get(int(shapes[i]), np.inf), float(n[i] * price[i]))
    if not found:
        return np.zeros(0, dtype=np.int64), np.zeros(0), np.zeros(0)
    idx = np.concatenate([f[0] for f in found])
    return idx, np.concatenate([f[1] for f in found]), np.asarray(bound, dtype=float)[idx]
