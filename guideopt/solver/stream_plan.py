"""Plans for a request stream: rank with the analytic model, check with the simulator, cut, re-rank.

Candidates are (option, replica count) groups as for the static batch, with up to
``SPARE_REPLICAS`` counts above the fewest (``candidates.fewest_spares_and_most`` under the
limits); a group's percentiles are those of one replica at its share of the load. The objective and constraint rows of ``terms`` and
``constraints`` rank and filter them (``STREAM_LOAD``: the replicas must serve the load
within the SLOs; ``STREAM_SLO``: every percentile bound). The top plans are then simulated
(``stream_verify``: several seeded runs, ``simulator.runs``); a plan not shown to keep its
SLOs has its shape cut at that replica count and the ranking is redone, until the shown plans
all pass or the deadline or the round limit hits. Mixed GPU types are not planned for streams (refused in ``plan``).
Aggregated plans compute each candidate's operating point, and the largest SLO rate of its
option, only where the ranking reads them (``stream_lazy``): cheapest first, most never.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import partial

import numpy as np

from guideopt.catalog import Catalog
from guideopt.errors import NoFeasiblePlanError
from guideopt.model.plan import Plan, PlanResult
from guideopt.model.request import Disaggregation, ObjectiveTerm, PlanRequest
from guideopt.solver.candidates import (
    MAX_REPLICAS_PER_OPTION,
    Candidates,
    concat_candidates,
    deci_tok_s,
    fewest_spares_and_most,
    kinds_from_options,
    micro_seconds,
)
from guideopt.solver.constraints import STREAM_LOAD, STREAM_SLO, replica_range, satisfied, stream_slo_bounds, user_bounds, violations
from guideopt.solver.disagg_compare import DISAGG_SOURCE, compare_roles, only_disagg
from guideopt.solver.dominance import shape_key
from guideopt.solver.explain import explain_no_fitting_option
from guideopt.solver.options import build_plan_options, resolve_gpus
from guideopt.solver.stream_extract import operating_metrics, stream_plan_of
from guideopt.solver.stream_lazy import LATENCY_COLUMNS, LATENCY_FREE, LazyLatencies
from guideopt.solver.stream_options import StreamSpace, build_stream_space, per_rank_rate, priced_space, refine_rates
from guideopt.solver.stream_verify import verify_plan, verify_plans
from guideopt.solver.terms import TERMS, unscale
from guideopt.solver.timing import Deadline, Phases
from guideopt.units import MILLI_LOAD_PER_LOAD, MS_PER_S

# Rounds of simulate → cut → re-rank before the plans found so far are returned.
MAX_VERIFICATION_ROUNDS = 8
# Replica counts above an option's fewest that stay candidates: where the simulator finds the
# fewest too few (the analytic edge of a shape), one or two more are tried before other shapes.
SPARE_REPLICAS = 2
UNSTABLE_US = np.iinfo(np.int64).max // 4  # latency of a group whose queue never drains: never within an SLO


def stream_candidates(req: PlanRequest, space: StreamSpace, bounds, *, latencies: bool = True) -> Candidates:
    """Every option at its fewest and most replicas, with its percentiles at its share of the
    load (``latencies`` False: 0 until ``stream_lazy`` computes them)."""
    kinds = kinds_from_options(space.table, shape_key(space.table))
    kinds.milli_load, kinds.tok_s = _milli_load(space, slice(None)), space.slo_rate_rps * space.lengths.mean_output
    kinds = kinds.take(np.nonzero(kinds.milli_load > 0)[0])  # an option serving nothing within the SLOs is no group
    lo, hi = replica_range(kinds, bounds, frozenset(), MAX_REPLICAS_PER_OPTION)
    cands = fewest_spares_and_most(kinds, np.minimum(lo, MAX_REPLICAS_PER_OPTION), np.maximum(hi, 1), SPARE_REPLICAS)
    if latencies:
        return with_operating_point(req, space, cands)
    zero = np.zeros(len(cands), dtype=np.int64)
    cands.ttft_us, cands.tpot_us, cands.latency_us = zero, zero.copy(), zero.copy()
    cands.slo_us = np.zeros((len(cands), len(stream_slo_bounds(req))), dtype=np.int64)
    return cands


def _milli_load(space: StreamSpace, rows) -> np.ndarray:
    """Per option of ``rows``, thousandths of the load one replica serves within the SLOs."""
    return np.floor(space.slo_load[rows] * MILLI_LOAD_PER_LOAD).astype(np.int64)


def _refreshed_loads(space: StreamSpace, c: Candidates, at: np.ndarray) -> None:
    """Candidates ``at``: their load and throughput columns from the options' SLO rates now
    (as ``stream_candidates`` and ``candidates.expand`` set them), in place."""
    ref, n = c.ref[at], c.replicas[at]
    c.milli_load[at] = _milli_load(space, ref) * n
    c.deci_tok_s[at] = deci_tok_s(space.slo_rate_rps[ref] * space.lengths.mean_output, n)


def lazy_stream_candidates(req: PlanRequest, space: StreamSpace, bounds) -> LazyLatencies:
    """The candidates with their operating points, and the SLO rates the cheapest-first pricing
    left provisional, computed as the ranking reads them (``stream_lazy``)."""
    cands = stream_candidates(req, space, bounds, latencies=False)

    def compute(idx: np.ndarray) -> None:
        part = with_operating_point(req, space, cands.take(idx))
        for name in LATENCY_COLUMNS:
            getattr(cands, name)[idx] = getattr(part, name)

    return lazy_ranking(req, space, cands, compute)


def lazy_ranking(req: PlanRequest, space: StreamSpace, cands: Candidates, compute=None) -> LazyLatencies:
    """The ranking of ``cands`` that computes their operating points with ``compute`` (None:
    they are computed already) and makes their options' provisional SLO rates final where it
    reads them. Candidates of other sources (disaggregated groups) are final as they are."""
    aggregated = cands.source != DISAGG_SOURCE

    def refine(idx: np.ndarray) -> bool:
        rows = refine_rates(req, space, cands.ref[idx[aggregated[idx]]])
        if rows.size:  # the load every candidate of those options serves, now searched
            _refreshed_loads(space, cands, np.nonzero(np.isin(cands.ref, rows) & aggregated)[0])
        return bool(rows.size)

    pending = space.rate_ceiling is not None and bool(np.isfinite(space.rate_ceiling).any())
    known = frozenset({ObjectiveTerm.COST}) if pending else LATENCY_FREE
    lazy = LazyLatencies(cands, list(req.objective), compute or (lambda idx: None), known, refine if pending else None)
    if compute is None:
        lazy.done[:] = True
        lazy.pos = lazy.order.size
    return lazy


def with_operating_point(req: PlanRequest, space: StreamSpace, c: Candidates) -> Candidates:
    """Latency columns at each group's share of the load (percentile ``slo.percentile``)."""
    if len(c) == 0:
        c.slo_us = np.zeros((0, len(stream_slo_bounds(req))), dtype=np.int64)
        return c
    wl = req.workload
    total = float(wl.rate_rps if wl.rate_rps is not None else wl.concurrency or 0)
    rate = per_rank_rate(space, c.ref, total, c.replicas, wl.burstiness)
    bounds = stream_slo_bounds(req)
    pct = req.slo.percentile
    # per metric only the percentiles used: the ranking's and that metric's bounds
    pcts = {
        metric: tuple(sorted({pct} | {p for m, p, _ in bounds if m == metric}))
        for metric in {"ttft_ms", "tpot_ms", "e2e_ms"} | {m for m, _, _ in bounds}
    }
    m = operating_metrics(req, space, c.ref, c.replicas, rate, tuple(sorted({p for ps in pcts.values() for p in ps})))
    unstable = ~np.asarray(m.stable, dtype=bool)

    def us(metric: str, p: float) -> np.ndarray:
        ms = m.dist(metric).percentiles[p]
        bad = unstable | ~np.isfinite(ms)
        return np.where(bad, UNSTABLE_US, micro_seconds(np.where(bad, 0.0, ms) / MS_PER_S))

    c.ttft_us, c.tpot_us, c.latency_us = us("ttft_ms", pct), us("tpot_ms", pct), us("e2e_ms", pct)
    cols = [us(metric, p) for metric, p, _ in bounds]
    c.slo_us = np.stack(cols, axis=1) if cols else np.zeros((len(c), 0), dtype=np.int64)
    return c


def solve_stream(req: PlanRequest, cat: Catalog, deadline: Deadline, clock: Phases) -> PlanResult:
    gpus = resolve_gpus(req, cat)
    prices = [req.allowance(g.id).usd_per_hour or g.usd_per_hour for g in gpus]
    only = req.disaggregation is Disaggregation.ONLY
    bounds = user_bounds(req, gpus)
    dt = None
    refine_later = not req.slo.min_output_throughput_tok_s  # rates searched where the ranking reads them (below)
    if req.disaggregation is Disaggregation.NEVER:
        space = build_stream_space(req, cat, gpus, prices, refine_later=refine_later)
    else:  # the disaggregated groups first: their costs cut the aggregated pricing short (only: no aggregated loads)
        from guideopt.solver.disagg_plan import best_per_shape, disagg_table

        space = build_stream_space(req, cat, gpus, prices, priced=False)
        dt = disagg_table(req, space, cat)
        clock.lap("disaggregated groups")
        if not only:
            space = priced_space(req, space, known_usd=best_per_shape(req, space, dt, bounds), refine_later=refine_later)
    clock.lap("stream options")
    if len(space.table) == 0:
        static = build_plan_options(req, cat)
        if len(static.all_options) == 0:  # no engine, precision or layout at all: say which, not "memory"
            raise NoFeasiblePlanError(*explain_no_fitting_option(static, req))
        raise NoFeasiblePlanError(
            f"memory: no allowed GPU, TP and PP holds {space.arch.id} with room for one request of up to {space.lengths.max_total} tokens "
            "(allow larger TP/PP, bigger GPUs or a lower precision)",
            ["memory"],
        )
    if dt is None:  # the operating points computed where the ranking reads them (``stream_lazy``)
        lazy = lazy_stream_candidates(req, space, bounds)
        n_agg = len(lazy.cands)
    else:  # every operating point computed; the SLO rates where the ranking reads them
        from guideopt.solver.disagg_plan import disagg_candidates

        agg = stream_candidates(req, space, bounds)
        n_agg = len(agg)
        lazy = lazy_ranking(req, space, concat_candidates(agg, disagg_candidates(req, space, dt, int(agg.shape.max(initial=-1)) + 1)))
    cands = lazy.cands
    allowed = np.ones(len(cands), dtype=bool)
    allowed[:n_agg] = not only

    def feasible_of() -> np.ndarray:  # read again as operating points come in
        return satisfied(cands, bounds) & allowed

    lazy.ranked(feasible_of, cands.shape, req.top)  # settled: nothing left uncomputed can be feasible where it finds none
    feasible = feasible_of()
    if only and not feasible.any():  # say why, and what aggregated plans give
        full = build_stream_space(req, cat, gpus, prices)
        agg = stream_candidates(req, full, bounds)
        able = any(fw.capabilities.disaggregation for fw in space.table.space.frameworks)
        only_disagg(
            req,
            concat_candidates(agg, cands.take(np.arange(n_agg, len(cands)))),
            satisfied(agg, bounds),
            len(agg),
            able,
            space.lengths.mean_input < space.lengths.mean_output,
        )
    clock.lap("candidates")
    if not feasible.any():  # explain from every option, none skipped by the cheapest-first pricing
        full = build_stream_space(req, cat, gpus, prices, prune=False)
        _explain(req, stream_candidates(req, full, bounds), bounds)
    plans, ranked, rounds, settled, kept = _ranked_and_verified(req, space, lazy, feasible_of, deadline, dt)
    clock.lap("verify")
    first = int(ranked[0])
    return PlanResult(
        status="optimal" if settled and not deadline.hit else "feasible",
        objective=[t.value for t in req.objective],
        solve_time_s=time.perf_counter() - deadline.start,
        plans=plans,
        objective_values=[unscale(t, int(TERMS[t].values(cands)[first])) for t in req.objective],
        time_limit_reached=deadline.hit,
        verification_rounds=rounds,
        disaggregation=compare_roles(req, cands, kept, n_agg) if dt is not None and not only else None,  # what the simulator did not cut
    )


def _ranked_and_verified(
    req: PlanRequest, space: StreamSpace, lazy: LazyLatencies, feasible_of: Callable[[], np.ndarray], deadline: Deadline, dt=None
):
    """Rank, simulate the shown plans, cut the options that fail, re-rank (bounded rounds).
    ``lazy``: the candidates, computed as the ranking reads them; ``feasible_of``: which of
    them meet every limit (read again as they are computed)."""
    cands = lazy.cands
    # a failing aggregated group cuts its shape at that replica count (every knob of it: the
    # analytic model misjudges the shape there), leaving more replicas of it; a failing
    # disaggregated group cuts its shape (its pools were sized as a whole)
    counts = np.where(cands.source == DISAGG_SOURCE, 0, cands.replicas).astype(np.int64)
    shapes = cands.shape.astype(np.int64) * (MAX_REPLICAS_PER_OPTION + 1) + counts
    cut: set[int] = set()  # deployment shapes at a replica count
    checked: dict[tuple[int, int, int], Plan] = {}
    engines: dict = {}  # option row → its scheduler settings and step table, once per solve
    rounds = 0
    while True:
        kept_shapes = ~np.isin(shapes, list(cut))
        ranked = lazy.ranked(partial(_and, feasible_of, kept_shapes), cands.shape, req.top)
        pool = feasible_of() & kept_shapes
        if not pool.any():
            raise NoFeasiblePlanError(
                "slo: every plan the analytic model accepts breaks an SLO in simulation (loosen the SLOs or raise the budget)",
                [b for b, _ in _slo_names(req)],
            )
        rounds += 1
        failed = False
        plans: list[Plan] = []
        keys = [(int(cands.source[k]), int(cands.ref[k]), int(cands.replicas[k])) for k in ranked]
        fresh = [key for key in keys if key not in checked and (dt is None or key[0] != DISAGG_SOURCE)]
        if fresh and not deadline.expired():  # the aggregated ones together (``verify_plans``)
            got = verify_plans(req, space, np.array([key[1] for key in fresh]), np.array([key[2] for key in fresh]), engines)
            checked.update(zip(fresh, got))
        for rank, (k, key) in enumerate(zip(ranked, keys), start=1):
            if key not in checked:
                if deadline.expired():
                    deadline.hit = True
                    break
                checked[key] = _verified(req, space, key, dt)
            plan = checked[key]
            if plan.stream is not None and plan.stream.get("simulated_meets_slo") is False:
                cut.add(int(shapes[k]))  # the analytic model misjudges this shape at this count: drop its other knobs too
                failed = True
                continue
            plans.append(plan.model_copy(update={"rank": rank}))
        if not failed or rounds >= MAX_VERIFICATION_ROUNDS or deadline.hit:
            kept = list(plans)
            if not kept:  # out of rounds with every shown plan failing: the analytic best, flagged as failing
                k = int(ranked[0])
                key = (int(cands.source[k]), int(cands.ref[k]), int(cands.replicas[k]))
                kept = [checked.get(key) or _analytic(req, space, key, dt)]
            # settled: the last ranking's shown plans all passed the simulator
            shown = [p.model_copy(update={"rank": i}) for i, p in enumerate(kept, start=1)]
            return shown, ranked, rounds, not failed, pool & ~np.isin(shapes, list(cut))


def _and(feasible_of: Callable[[], np.ndarray], mask: np.ndarray) -> np.ndarray:
    return feasible_of() & mask


def _verified(req: PlanRequest, space: StreamSpace, key: tuple[int, int, int], dt) -> Plan:
    """The simulator's check of candidate ``key`` (source, ref, replicas)."""
    source, ref, replicas = key
    if dt is not None and source == DISAGG_SOURCE:
        from guideopt.solver.disagg_verify import verify_disagg

        return verify_disagg(req, space, dt, ref)
    return verify_plan(req, space, ref, replicas)


def _analytic(req: PlanRequest, space: StreamSpace, key: tuple[int, int, int], dt) -> Plan:
    """Candidate ``key``'s plan from the analytic model alone (not simulated)."""
    source, ref, replicas = key
    if dt is not None and source == DISAGG_SOURCE:
        from guideopt.solver.disagg_plan import disagg_plan_of

        return disagg_plan_of(req, space, dt, ref, rank=1)
    return stream_plan_of(req, space, ref, replicas, rank=1)


def _slo_names(req: PlanRequest) -> list[tuple[str, float]]:
    return [(f"slo.{m}.p{p:g}", b) for m, p, b in stream_slo_bounds(req)]


def _explain(req: PlanRequest, cands: Candidates, bounds) -> None:
    """No plan: the first limit that stops every candidate; for the load, the most the rest allows."""
    if len(cands) == 0:
        raise NoFeasiblePlanError(
            "slo: no allowed replica meets the stream SLOs at any rate (loosen slo.ttft_ms / slo.tpot_ms or allow faster GPUs)",
            [n for n, _ in _slo_names(req)],
        )
    load = [b for b in bounds if b.kind is STREAM_LOAD]
    # the load a group serves already keeps the SLOs: leave both out to find the most it serves
    others = frozenset(b.name for b in bounds if b.kind in (STREAM_LOAD, STREAM_SLO))
    rest = satisfied(cands, bounds, others)
    if load and rest.any():
        b = load[0]
        best = float(cands.milli_load[rest].max())
        raise NoFeasiblePlanError(b.kind.describe(req, b, best), [b.name, "budget.usd_per_hour"])
    bad = violations(cands, bounds, others)
    names = [name for name, mask in bad.items() if mask.all()] or list(bad)
    raise NoFeasiblePlanError(f"{', '.join(names)}: no plan meets these limits together (relax one of them)", names)
