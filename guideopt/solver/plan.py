"""Solve a PlanRequest: top-k distinct plans, each optimal under the lexicographic objective.

Single-type requests are ranked in numpy (``single``); mixed-type ones go to CP-SAT
(``hetero_plan``). One deadline (``time_limit_s``) covers the request: when it cuts the
search, the plans found so far come back with status ``feasible``.
"""

from __future__ import annotations

import time

from guideopt.catalog import Catalog, load_catalog
from guideopt.errors import InvalidRequestError, NoFeasiblePlanError
from guideopt.model.plan import Plan, PlanResult
from guideopt.model.request import PlanRequest
from guideopt.solver.constraints import satisfied
from guideopt.solver.explain import explain_conflict, explain_no_fitting_option
from guideopt.solver.extract import extract_plan
from guideopt.solver.options import PlanOptions, build_plan_options, candidates
from guideopt.solver.single import ranked_plans
from guideopt.solver.terms import TERMS, unscale
from guideopt.solver.timing import Deadline, Phases


def solve_request(req: PlanRequest, catalog: Catalog | None = None, phases: dict[str, float] | None = None) -> PlanResult:
    """Plan a deployment; raises NoFeasiblePlanError (with an explanation) when nothing fits.
    ``phases``, when given, receives the seconds spent per phase."""
    clock = Phases(phases)
    cat = catalog or load_catalog()
    clock.lap("catalog")
    deadline = Deadline(req.time_limit_s)
    _check_disaggregation(req)
    if req.workload.is_stream:
        if req.robust:
            raise InvalidRequestError("robust: prediction intervals are static-batch errors; drop --robust for a stream workload")
        if req.heterogeneous:
            raise InvalidRequestError(
                "heterogeneous: mixed GPU types are not planned for stream workloads yet (drop --heterogeneous; each type is still tried)"
            )
        from guideopt.solver.stream_plan import solve_stream

        if req.workload.max_load:
            from guideopt.solver.stream_max import solve_max_load

            return solve_max_load(req, cat, deadline, clock)
        return solve_stream(req, cat, deadline, clock)
    opts = build_plan_options(req, cat, clock)
    if len(opts.table) == 0:
        msg, conflicts = explain_no_fitting_option(opts, req)
        raise NoFeasiblePlanError(msg, conflicts)
    if req.heterogeneous:
        return _solve_heterogeneous(req, cat, opts, deadline, clock)
    return _solve_single(req, opts, deadline, clock)


def _check_disaggregation(req: PlanRequest) -> None:
    """Disaggregated pools are sized for a request stream at a rate."""
    from guideopt.model.request import Disaggregation

    if req.disaggregation is Disaggregation.NEVER:
        return
    wl = req.workload
    if wl.rate_rps is None or wl.max_load:
        given = "a closed loop of clients" if wl.concurrency is not None else "a highest-load search" if wl.max_load else "a static batch"
        raise InvalidRequestError(
            f"disaggregation: prefill and decode pools are sized for a request rate, not {given} "
            "(give workload.rate_rps / --rate R, or drop --disaggregated)"
        )


def _solve_single(req: PlanRequest, opts: PlanOptions, deadline: Deadline, clock: Phases) -> PlanResult:
    cands = candidates(opts)
    feasible = satisfied(cands, opts.bounds)
    clock.lap("candidates")
    if not feasible.any():
        msg, conflicts = explain_conflict(opts, req, cands)
        raise NoFeasiblePlanError(msg, conflicts)
    ranked = ranked_plans(cands, feasible, list(req.objective), cands.shape, req.top)
    clock.lap("solve")
    plans: list[Plan] = []
    for rank, k in enumerate(ranked, start=1):
        if rank > 1 and deadline.expired():
            deadline.hit = True
            break
        replicas = [0] * len(opts.table)
        replicas[int(cands.option[k])] = int(cands.replicas[k])
        plans.append(extract_plan(opts, replicas, rank))
    clock.lap("extract")
    first = int(ranked[0])
    return PlanResult(
        status="feasible" if deadline.hit else "optimal",
        objective=[t.value for t in req.objective],
        solve_time_s=time.perf_counter() - deadline.start,
        plans=plans,
        objective_values=[unscale(t, int(TERMS[t].values(cands)[first])) for t in req.objective],
        time_limit_reached=deadline.hit,
    )


def _solve_heterogeneous(req: PlanRequest, cat: Catalog, opts: PlanOptions, deadline: Deadline, clock: Phases) -> PlanResult:
    """Mixed GPU types; each plan is compared with the best single-type plan."""
    from guideopt.solver.hetero_plan import solve_mixed  # CP-SAT (and OR-Tools) only for mixed types

    found = solve_mixed(req, cat, opts, deadline, clock)
    baseline = _homogeneous_baseline(req, opts)
    clock.lap("baseline")
    plans, values, gap = found.plans, [unscale(t, v) for t, v in zip(req.objective, found.first_values)], found.gap
    if not plans:
        if baseline is None:
            solve_request(req.model_copy(update={"heterogeneous": False}), cat)  # raises with the explanation
        if baseline is None or not (deadline.hit or deadline.work_hit):
            raise NoFeasiblePlanError("no heterogeneous plan satisfies the constraints", [])
        # cut before any mixed plan: the best single-type plan is a mixed plan too
        plans, values, gap = [baseline.model_copy(update={"rank": 1})], [], None
    optimal = not deadline.hit and found.work_note is None and all(s == "optimal" for s in found.statuses)
    return PlanResult(
        status="optimal" if optimal else "feasible",
        objective=[t.value for t in req.objective],
        solve_time_s=time.perf_counter() - deadline.start,
        plans=plans,
        objective_values=values,
        explanation=found.work_note,
        homogeneous_best=_comparison(plans[0], baseline),
        optimality_gap=0.0 if optimal else gap,
        time_limit_reached=deadline.hit,
    )


def _homogeneous_baseline(req: PlanRequest, opts: PlanOptions) -> Plan | None:
    """The best single-type plan, from the same option table (it does not depend on mixing)."""
    single = req.model_copy(update={"heterogeneous": False, "top": 1})
    try:
        return _solve_single(single, opts, Deadline(req.time_limit_s), Phases(None)).plans[0]
    except NoFeasiblePlanError:
        return None


def _comparison(best: Plan, baseline: Plan | None) -> dict | None:
    """The best single-GPU-type plan under the same budget and inventory, and the gain."""
    if baseline is None:
        return {"plan": None, "note": "no single-GPU-type plan satisfies the constraints"}

    def per_usd(p: Plan) -> float:
        return p.metrics.output_throughput_tok_s / p.usd_per_hour

    return {
        "plan": baseline.model_dump(),
        "throughput_gain": best.metrics.output_throughput_tok_s / baseline.metrics.output_throughput_tok_s - 1.0,
        "throughput_per_usd_gain": per_usd(best) / per_usd(baseline) - 1.0,
        "batch_latency_ratio": best.metrics.batch_latency_s / baseline.metrics.batch_latency_s,
    }


def plan(req: PlanRequest, catalog: Catalog | None = None) -> PlanResult:
    return solve_request(req, catalog)
