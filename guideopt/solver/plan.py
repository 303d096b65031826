"""Solve a PlanRequest: top-k distinct plans, each optimal under the lexicographic objective."""

from __future__ import annotations

import time
from itertools import product

import numpy as np

from guideopt.catalog import Catalog, load_catalog
from guideopt.costs.pipeline_table import PIPELINE_STAGES, build_pipeline_table
from guideopt.costs.rows import THROUGHPUT_KEYS, memory_breakdown, scaled_metrics
from guideopt.costs.tables import default_kv_dtype
from guideopt.errors import NoFeasiblePlanError
from guideopt.model.plan import Group, MemoryBreakdown, Metrics, Plan, PlanResult
from guideopt.model.request import ObjectiveTerm, PlanRequest
from guideopt.solver import cpsat, hetero, hetero_search
from guideopt.solver.candidates import Candidates
from guideopt.solver.constraints import BUDGET, satisfied, violations
from guideopt.solver.dominance import pareto_front, shape_key
from guideopt.solver.explain import explain_conflict, explain_no_fitting_option
from guideopt.solver.options import PlanOptions, build_plan_options
from guideopt.solver.terms import TERMS, unscale


def solve_request(req: PlanRequest, catalog: Catalog | None = None) -> PlanResult:
    """Plan a deployment; raises NoFeasiblePlanError (with an explanation) when nothing fits."""
    cat = catalog or load_catalog()
    start = time.perf_counter()
    opts = build_plan_options(req, cat)
    objective = [t.value for t in req.objective]
    if len(opts.table) == 0:
        msg, conflicts = explain_no_fitting_option(opts, req)
        raise NoFeasiblePlanError(msg, conflicts)
    if req.heterogeneous:
        return _solve_heterogeneous(req, cat, opts, start)
    cands = cpsat.candidates(opts, req)
    shapes = shape_key(opts.table)
    plans: list[Plan] = []
    excluded: set[int] = set()
    statuses: list[str] = []
    first_values: list[float] = []
    feasible = satisfied(cands, opts.bounds)
    if not feasible.any():
        core = infeasibility_core(cands, req, opts)
        msg, conflicts = explain_conflict(opts, req, core)
        raise NoFeasiblePlanError(msg, conflicts)
    for rank in range(1, req.top + 1):
        allowed = feasible & ~np.isin(cands.option, list(excluded))
        if not allowed.any():
            break
        # Exact reduction: the lexicographic optimum lies on the Pareto front of the
        # objective terms among the candidates that satisfy every constraint.
        pool = np.nonzero(allowed)[0]
        front = pool[pareto_front(np.stack([TERMS[t].oriented(cands) for t in req.objective], axis=1)[pool])]
        sub = cands.take(front)
        handle = cpsat.build_model(sub)
        cpsat.add_user_constraints(handle, sub, opts.bounds)
        result = cpsat.solve_lexicographic(handle, list(req.objective))
        if result.status == "infeasible":
            break
        statuses.append(result.status)
        if rank == 1:
            first_values = [unscale(t, v) for t, v in zip(req.objective, result.values)]
        picked = int(front[result.picked])
        option = int(cands.option[picked])
        excluded.update(np.nonzero(shapes == shapes[option])[0].tolist())
        replicas = [0] * len(opts.table)
        replicas[option] = int(cands.replicas[picked])
        plans.append(extract_plan(opts, replicas, rank))
    status = "optimal" if all(s == "optimal" for s in statuses) else "feasible"
    return PlanResult(
        status=status,
        objective=objective,
        solve_time_s=time.perf_counter() - start,
        plans=plans,
        objective_values=first_values,
    )


def _solve_heterogeneous(req: PlanRequest, cat: Catalog, opts: PlanOptions, start: float) -> PlanResult:
    """Mixed GPU types; each plan is compared with the best single-type plan."""
    pt = _pipeline_table(req, cat, opts)
    h = hetero.hetero_kinds(opts, req, pt)
    coarse = hetero.hetero_candidates(h, req, opts.bounds)
    exact_later: Candidates | None = None
    plans: list[Plan] = []
    statuses: list[str] = []
    first_values: list[float] = []
    shown: list[set[int]] = []  # deployment shapes of the plans returned so far
    for rank in range(1, req.top + 1):
        if rank == 1:
            c = coarse
        else:  # later ranks avoid earlier shapes: they need the candidates pruned only inside each shape
            exact_later = exact_later or hetero.hetero_candidates(h, req, opts.bounds, per_shape=True)
            c = exact_later
        if not len(c):
            break
        floor = None if rank == 1 else _later_rank_floor(c, coarse, req, opts, shown)
        pool, bounds = _hetero_pool(c, req, opts, first_rank=rank == 1, known_throughput=floor)
        sub = hetero.keep_candidates(c, pool)
        hm = hetero.build_hetero_model(sub, req, opts.bounds, _forbidden(sub, shown))
        status, values, sub_picked = hetero_search.solve_hetero_model(hm, list(req.objective), sub, bounds)
        if status == "infeasible":
            break
        statuses.append(status)
        if rank == 1:
            first_values = [unscale(t, v) for t, v in zip(req.objective, values)]
        replicas = [0] * len(opts.table)
        pipelines = []
        for k in sub_picked:
            if sub.source[k] == 1:
                pipelines.append(pipeline_group(pt, int(sub.ref[k]), int(sub.replicas[k])))
            else:
                replicas[int(sub.ref[k])] = int(sub.replicas[k])
        shown.append({int(sub.shape[k]) for k in sub_picked})  # distinct plans: not these shapes again
        plans.append(extract_plan(opts, replicas, rank, extra_groups=pipelines))
    baseline = _homogeneous_baseline(req, cat)
    if not plans:
        if baseline is None:
            solve_request(req.model_copy(update={"heterogeneous": False}), cat)  # raises with the explanation
        raise NoFeasiblePlanError("no heterogeneous plan satisfies the constraints", [])
    status = "optimal" if all(s == "optimal" for s in statuses) else "feasible"
    return PlanResult(
        status=status,
        objective=[t.value for t in req.objective],
        solve_time_s=time.perf_counter() - start,
        plans=plans,
        objective_values=first_values,
        homogeneous_best=_comparison(plans[0], baseline),
    )


def _forbidden(c, shown: list[set[int]]) -> list[tuple[list[int], int]]:
    """For each earlier plan: its shapes may not all be picked again."""
    return [(np.nonzero(np.isin(c.shape, list(shapes)))[0].tolist(), len(shapes)) for shapes in shown]


def _later_rank_floor(c, coarse, req: PlanRequest, opts: PlanOptions, shown: list[set[int]]) -> float | None:
    """A throughput some plan allowed at this rank reaches. Without a cross-type GPU cap, a
    knapsack-DP plan (costs rounded up) that leaves out one shape of every earlier plan is
    such a plan; the best over those choices is used. Otherwise the coarse model's optimum."""
    if req.parallelism.max_gpus:
        return _coarse_throughput(coarse, req, opts, shown)
    best = None
    for dropped in product(*[sorted(shapes) for shapes in shown]):
        mask = ~np.isin(c.shape, list(dropped))
        value = hetero_search.throughput_lower_bound(c, _budget(opts), mask)
        best = value if best is None else max(best, value)
    return best if best else None


def _coarse_throughput(coarse, req: PlanRequest, opts: PlanOptions, shown: list[set[int]]) -> float | None:
    """Throughput of the best plan over the coarse candidates (a subset of the exact ones):
    a plan that exists, so a lower bound on the exact optimum of this rank."""
    if not req.objective or req.objective[0] is not ObjectiveTerm.THROUGHPUT or not len(coarse):
        return None
    hm = hetero.build_hetero_model(coarse, req, opts.bounds, _forbidden(coarse, shown))
    # The coarse optimum: a tight bound prunes most exact candidates (a weaker, time-limited
    # one was measured to make the exact solve slower overall).
    status, values, _ = hetero_search.solve_hetero_model(hm, [ObjectiveTerm.THROUGHPUT], coarse, None)
    return float(values[0]) if status != "infeasible" else None


def _hetero_pool(c, req: PlanRequest, opts: PlanOptions, *, first_rank: bool, known_throughput: float | None = None):
    """Candidates the model needs, and their throughput upper bounds (None without a
    throughput term). With throughput first, a candidate whose best completion (knapsack-DP
    upper bound) falls short of a plan known to exist is in no optimal plan, so it is left
    out before the model is built. The known plan is the DP's own (first rank, no cross-type
    GPU cap) or the coarse model's optimum (``known_throughput``)."""
    everything = np.arange(len(c))
    if ObjectiveTerm.THROUGHPUT not in req.objective:
        return everything, None
    bounds = hetero_search.throughput_upper_bounds(c, _budget(opts))
    if req.objective[0] is not ObjectiveTerm.THROUGHPUT:
        return everything, bounds
    floor = known_throughput
    if floor is None and first_rank and not req.parallelism.max_gpus:
        floor = hetero_search.throughput_lower_bound(c, _budget(opts))
    if floor is None:
        return everything, bounds
    pool = np.nonzero(bounds >= floor)[0]
    return pool, bounds[pool]


def _homogeneous_baseline(req: PlanRequest, cat: Catalog) -> Plan | None:
    try:
        return solve_request(req.model_copy(update={"heterogeneous": False, "top": 1}), cat).plans[0]
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


def infeasibility_core(cands: Candidates, req: PlanRequest, opts: PlanOptions) -> list[str]:
    """A minimal set of user constraints that no candidate satisfies together.

    Candidates with the same pattern of broken constraints are interchangeable for this
    question, so CP-SAT sees one per pattern; its sufficient assumptions are then shrunk
    to a minimal conflict by dropping each constraint that is not needed (deletion filter).
    """
    broken = violations(cands, opts.bounds)
    names = list(broken)
    matrix = np.stack([broken[n] for n in names], axis=1)
    _, first = np.unique(matrix, axis=0, return_index=True)
    sub = cands.take(np.sort(first))
    handle = cpsat.build_model(sub)
    cpsat.add_user_constraints(handle, sub, opts.bounds)
    core = cpsat.solve_lexicographic(handle, []).core or names
    for name in list(core):
        rest = [n for n in core if n != name]
        if rest and not np.any(~matrix[:, [names.index(n) for n in rest]].any(axis=1)):
            core = rest  # still infeasible without it: not part of the conflict
    return core


def _budget(opts: PlanOptions) -> int:
    return next(b for b in opts.bounds if b.kind is BUDGET).int_limit()


def extract_plan(opts: PlanOptions, replicas: list[int], rank: int, extra_groups: list[Group] | None = None) -> Plan:
    t = opts.table
    groups: list[Group] = list(extra_groups or [])
    for o, n in enumerate(replicas):
        if n <= 0:
            continue
        gpu = t.space.gpus[int(t.gpu_idx[o])]
        per_replica = int(t.tp[o] * t.pp[o])
        groups.append(
            Group(
                gpu=gpu.id,
                framework=t.space.frameworks[int(t.fw_idx[o])].id,
                dtype=t.space.dtypes[int(t.dtype_idx[o])].value,
                kv_dtype=t.kv_dtype_names[o],
                replicas=n,
                tp=int(t.tp[o]),
                pp=int(t.pp[o]),
                batch=int(t.batch[o]),
                split=int(t.split[o]),
                metrics=scaled_metrics(t, o, n),
                memory=memory_breakdown(t, o),
                usd_per_hour=round(n * per_replica * float(t.usd_per_hour_per_gpu[o]), 4),
                num_gpus=n * per_replica,
            )
        )
    total = sum(g.metrics.output_throughput_tok_s for g in groups) or 1.0
    groups = [g.model_copy(update={"traffic_share": g.metrics.output_throughput_tok_s / total}) for g in groups]
    return Plan(
        rank=rank,
        num_gpus=sum(g.num_gpus for g in groups),
        gpu_counts=_gpu_counts(groups),
        usd_per_hour=round(sum(g.usd_per_hour for g in groups), 4),
        metrics=plan_metrics(groups),
        groups=groups,
    )


def _gpu_counts(groups: list[Group]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for g in groups:
        parts = [(st["gpu"], st["tp"] * g.replicas) for st in g.stages] if g.stages else [(g.gpu, g.num_gpus)]
        for gpu, n in parts:
            counts[gpu] = counts.get(gpu, 0) + n
    return counts


def _pipeline_table(req: PlanRequest, cat: Catalog, opts: PlanOptions):
    """Cross-type two-stage pipelines, when PP 2 is allowed and there are two GPU types."""
    space = opts.all_options.space
    if PIPELINE_STAGES not in req.parallelism.pp or len(space.gpus) < 2:
        return None
    return build_pipeline_table(opts.arch, space, cat.calibration, cat.network_link, opts.prices)


def pipeline_group(pt, row: int, replicas: int) -> Group:
    """A heterogeneous group whose replicas are pipelines over two GPU types (contract: gpu "mixed")."""
    space = pt.space
    stages = []
    for i, (g, tp, layers) in enumerate(((pt.gpu_a, pt.tp_a, pt.layers_a), (pt.gpu_b, pt.tp_b, pt.layers_b))):
        mem = {k: float(v[row]) for k, v in pt.stage_memory[i].items()}
        stages.append({"gpu": space.gpus[int(g[row])].id, "tp": int(tp[row]), "layers": int(layers[row]), "memory": mem})
    worst = max(range(2), key=lambda i: stages[i]["memory"]["total_per_gpu_gb"] / stages[i]["memory"]["gpu_memory_gb"])
    m = pt.metrics.as_contract_dict(row)
    for key in THROUGHPUT_KEYS:
        m[key] *= replicas
    per_replica = int(pt.tp_a[row] + pt.tp_b[row])
    return Group(
        gpu="mixed",
        framework=space.frameworks[int(pt.fw_idx[row])].id,
        dtype=space.dtypes[int(pt.dtype_idx[row])].value,
        kv_dtype=(space.kv_dtype or default_kv_dtype(space.dtypes[int(pt.dtype_idx[row])])).value,
        replicas=replicas,
        tp=max(int(pt.tp_a[row]), int(pt.tp_b[row])),
        pp=2,
        batch=int(pt.batch[row]),
        split=int(pt.split[row]),
        metrics=Metrics(**m),
        memory=MemoryBreakdown(**stages[worst]["memory"]),
        usd_per_hour=round(replicas * float(pt.usd_per_replica[row]), 4),
        num_gpus=replicas * per_replica,
        stages=stages,
    )


def plan_metrics(groups: list[Group]) -> Metrics:
    """Throughputs add over groups; latencies are the worst group's."""
    merged: dict[str, float] = {}
    for key in Metrics.model_fields:
        values = [getattr(g.metrics, key) for g in groups]
        merged[key] = sum(values) if key in THROUGHPUT_KEYS else max(values)
    return Metrics(**merged)


def plan(req: PlanRequest, catalog: Catalog | None = None) -> PlanResult:
    return solve_request(req, catalog)
