"""Mixed GPU types: top-k plans, each the exact next-best one.

Most requests (a budget, inventories, SLOs, a throughput floor or a stream load) are solved
by the ranked Pareto-front knapsack of ``hetero_ranks``: every rank exact, bounded by work.
Requests with a cap on GPUs or nodes over the whole plan go to CP-SAT: rank 1 solves the
model over candidates pruned per GPU type. Later ranks must avoid the
shapes of earlier plans, so they use candidates pruned only inside each shape, and every
earlier plan becomes one no-good cut ("not all of its shapes again"). With throughput
first, a rank's model holds only candidates whose best completion (knapsack-DP upper
bound) reaches a plan known to exist at that rank: one DP plan that leaves out one shape of
every earlier plan (one DP per rank, so the work per extra plan stays about constant).
CP-SAT calls are bounded by deterministic time; when that or the wall-clock safety net
stops a stage, the plans found so far are returned with status ``feasible``."""

from __future__ import annotations

import numpy as np

from guideopt.catalog import Catalog
from guideopt.costs.pipeline_table import PIPELINE_STAGES, build_pipeline_table
from guideopt.model.plan import Plan
from guideopt.model.request import ObjectiveTerm, PlanRequest
from guideopt.solver import hetero, hetero_ranks, hetero_search
from guideopt.solver.candidates import Candidates
from guideopt.solver.constraints import BUDGET, Scope
from guideopt.solver.extract import extract_plan, pipeline_group
from guideopt.solver.options import PlanOptions
from guideopt.solver.timing import Deadline, Phases


def pipeline_table(req: PlanRequest, cat: Catalog, opts: PlanOptions):
    """Cross-type two-stage pipelines, when PP 2 is allowed and there are two GPU types."""
    space = opts.all_options.space
    if PIPELINE_STAGES not in req.parallelism.pp or len(space.gpus) < 2:
        return None
    return build_pipeline_table(opts.arch, space, cat.calibration, cat.network_link, opts.prices)


class MixedRanks:
    """The plans found so far, and what later ranks need to avoid them."""

    def __init__(self) -> None:
        self.plans: list[Plan] = []
        self.statuses: list[str] = []
        self.first_values: list[int] = []
        self.gap: float | None = 0.0
        self.shown: list[dict[int, int]] = []  # per earlier plan: shape -> its group's throughput
        self.work_note: str | None = None  # a work bound stopped the search before every rank


def solve_mixed(req: PlanRequest, cat: Catalog, opts: PlanOptions, deadline: Deadline, phases: Phases) -> MixedRanks:
    pt = pipeline_table(req, cat, opts)
    ranked = _solve_ranked_dp(req, opts, pt, deadline, phases)
    if ranked is not None:
        return ranked
    kinds = hetero.hetero_kinds(opts, req, pt)
    coarse = hetero.hetero_candidates(kinds, req, opts.bounds)
    exact: Candidates | None = None
    upper: dict[int, np.ndarray | None] = {}  # per candidate set (rank 1, later ranks): DP upper bounds
    phases.lap("candidates")
    out = MixedRanks()
    for rank in range(1, req.top + 1):
        if rank > 1 and deadline.expired():
            deadline.hit = True
            break
        if rank > 1 and exact is None:
            exact_kinds = hetero.hetero_kinds(opts, req, pt, per_shape=True)
            exact = hetero.hetero_candidates(exact_kinds, req, opts.bounds, per_shape=True)
            phases.lap("candidates")
        c = coarse if rank == 1 else exact
        if c is None or not len(c):
            break
        if min(rank, 2) not in upper:  # the same for every later rank: computed once
            upper[min(rank, 2)] = _upper_bounds(c, req, opts)
        floor = None if rank == 1 else _later_rank_floor(c, coarse, req, opts, out.shown, deadline)
        pool, bounds = _pool(c, req, opts, upper[min(rank, 2)], first_rank=rank == 1, known_throughput=floor)
        sub = c.take(pool)
        hm = hetero.build_hetero_model(sub, req, opts.bounds, _forbidden(sub, out.shown))
        phases.lap("model")
        result = hetero_search.solve_hetero_model(hm, list(req.objective), sub, bounds, deadline)
        phases.lap("solve")
        if result.status == "unknown":  # a limit cut this rank before any plan
            deadline.hit |= not deadline.work_hit
            break
        if result.status == "infeasible":
            break
        _record(out, result, sub, opts, pt, rank)
        phases.lap("extract")
    if deadline.work_hit:
        out.work_note = (
            f"a CP-SAT stage stopped at its work bound ({hetero_search.HETERO_DETERMINISTIC_TIME:g} deterministic "
            "time units) before proving optimality"
        )
    return out


def _solve_ranked_dp(req: PlanRequest, opts: PlanOptions, pt, deadline: Deadline, phases: Phases) -> MixedRanks | None:
    """Every rank exact from the Pareto-front knapsack and a best-first split (``hetero_ranks``);
    None when the request has a summed cap the DP does not model (CP-SAT then)."""
    per_shape = req.top > 1  # later ranks must avoid earlier shapes: keep every shape's front
    kinds = hetero.hetero_kinds(opts, req, pt, per_shape=per_shape)
    c = hetero.hetero_candidates(kinds, req, opts.bounds, per_shape=per_shape, drop_beaten_pipelines=False)
    problem = hetero_ranks.dp_problem(c, req, opts.bounds)
    if problem is None:
        return None
    phases.lap("candidates")
    found = hetero_ranks.RankedSearch(c, problem, hetero_ranks.type_allowed(c, opts.bounds), deadline).run(req.top)
    phases.lap("solve")
    out = MixedRanks()
    for rank, (picks, values) in enumerate(zip(found.picks, found.values), start=1):
        _record(out, hetero_search.Outcome("optimal", values, picks), c, opts, pt, rank)
    if found.work_hit:
        out.work_note = (
            f"the ranked search stopped at its work bound ({found.passes} knapsack passes): "
            f"{len(out.plans)} of the {req.top} plans asked, each exact"
        )
    phases.lap("extract")
    return out


def _record(out: MixedRanks, result, sub: Candidates, opts: PlanOptions, pt, rank: int) -> None:
    out.statuses.append(result.status)
    if rank == 1:
        out.first_values = result.values
        out.gap = result.gap
    replicas = [0] * len(opts.table)
    pipelines = []
    for k in result.picks:
        if sub.source[k] == 1:
            pipelines.append(pipeline_group(pt, int(sub.ref[k]), int(sub.replicas[k])))
        else:
            replicas[int(sub.ref[k])] = int(sub.replicas[k])
    out.shown.append({int(sub.shape[k]): int(sub.deci_tok_s[k]) for k in result.picks})
    out.plans.append(extract_plan(opts, replicas, rank, extra_groups=pipelines))


def _forbidden(c: Candidates, shown: list[dict[int, int]]) -> list[tuple[list[int], int]]:
    """For each earlier plan: its shapes may not all be picked again."""
    return [(np.nonzero(np.isin(c.shape, list(shapes)))[0].tolist(), len(shapes)) for shapes in shown]


def _budget(opts: PlanOptions) -> int:
    return next(b for b in opts.bounds if b.kind is BUDGET).int_limit()


def _only_budget_sums(opts: PlanOptions) -> bool:
    """No summed cap but the budget (and no throughput floor): the knapsack DP's plans obey them all."""
    return all(b.kind is BUDGET for b in opts.bounds if b.kind.scope is Scope.PLAN and not b.kind.at_least)


def _later_rank_floor(c: Candidates, coarse: Candidates, req: PlanRequest, opts: PlanOptions, shown, deadline: Deadline) -> float | None:
    """A throughput some plan allowed at this rank reaches. With the budget the only summed
    cap: the knapsack-DP plan (costs rounded up, single-type groups) that leaves out at least
    one shape of every earlier plan, so it differs from each of them and is allowed; two
    such choices are tried (two DP runs per rank, whatever the rank). Otherwise the coarse
    model's optimum at this rank."""
    if not _only_budget_sums(opts):
        return _coarse_throughput(coarse, req, opts, shown, deadline)
    best = 0.0
    for dropped in (_smallest_groups(shown), _hitting_set(shown)):
        best = max(best, hetero_search.throughput_lower_bound(c, _budget(opts), ~np.isin(c.shape, dropped)))
    return best or None


def _smallest_groups(shown: list[dict[int, int]]) -> list[int]:
    """Of every earlier plan, the shape of its smallest group (the least throughput lost)."""
    return [min(groups, key=lambda s: (groups[s], s)) for groups in shown]


def _hitting_set(shown: list[dict[int, int]]) -> list[int]:
    """Few shapes that together touch every earlier plan (greedy: the shape in the most
    plans not yet touched first), so that few are left out when earlier plans share them."""
    left = list(range(len(shown)))
    dropped: list[int] = []
    while left:
        counts: dict[int, int] = {}
        for i in left:
            for shape in shown[i]:
                counts[shape] = counts.get(shape, 0) + 1
        shape = max(counts, key=lambda s: (counts[s], -s))
        dropped.append(shape)
        left = [i for i in left if shape not in shown[i]]
    return dropped


def _coarse_throughput(coarse: Candidates, req: PlanRequest, opts: PlanOptions, shown, deadline: Deadline) -> float | None:
    """Throughput of the best plan over the coarse candidates (a subset of the exact ones):
    a plan that exists, so a lower bound on the exact optimum of this rank."""
    if not req.objective or req.objective[0] is not ObjectiveTerm.THROUGHPUT or not len(coarse):
        return None
    hm = hetero.build_hetero_model(coarse, req, opts.bounds, _forbidden(coarse, shown))
    result = hetero_search.solve_hetero_model(hm, [ObjectiveTerm.THROUGHPUT], coarse, None, deadline)
    return float(result.values[0]) if result.status in ("optimal", "feasible") else None


def _upper_bounds(c: Candidates, req: PlanRequest, opts: PlanOptions) -> np.ndarray | None:
    """Per candidate, the most throughput a plan containing it can reach (knapsack DP)."""
    if ObjectiveTerm.THROUGHPUT not in req.objective:
        return None
    return hetero_search.throughput_upper_bounds(c, _budget(opts))


def _pool(
    c: Candidates,
    req: PlanRequest,
    opts: PlanOptions,
    bounds: np.ndarray | None,
    *,
    first_rank: bool,
    known_throughput: float | None = None,
):
    """Candidates the model needs, and their throughput upper bounds (None without a
    throughput term). With throughput first, a candidate whose best completion (knapsack-DP
    upper bound) falls short of a plan known to exist is in no optimal plan, so it is left
    out before the model is built."""
    everything = np.arange(len(c))
    if bounds is None:
        return everything, None
    if req.objective[0] is not ObjectiveTerm.THROUGHPUT:
        return everything, bounds
    floor = known_throughput
    if floor is None and first_rank and _only_budget_sums(opts):
        floor = hetero_search.throughput_lower_bound(c, _budget(opts))
    if floor is None:
        return everything, bounds
    pool = np.nonzero(bounds >= floor)[0]
    return pool, bounds[pool]
