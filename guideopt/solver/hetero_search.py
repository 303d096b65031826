"""Mixed-type search: knapsack-DP throughput bounds and the lexicographic CP-SAT stages.

Sums (throughput, cost) are optimised by CP-SAT directly; worst-group terms (latency,
TTFT, TPOT) by a binary search of CP-SAT feasibility probes. The knapsack DP over the
budget gives each candidate an upper bound on the throughput of any plan containing it
(costs rounded down) and a plan known to exist (costs rounded up).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from ortools.sat.python import cp_model

from guideopt.model.request import ObjectiveTerm
from guideopt.solver.candidates import Candidates
from guideopt.solver.cpsat import SOLVER_SEED
from guideopt.solver.hetero import HeteroModel
from guideopt.solver.terms import TERMS, Aggregate
from guideopt.solver.timing import Deadline

# Heterogeneous models are multiple-choice knapsacks that one CP-SAT worker proves in tens
# of milliseconds; one worker keeps the search, and so the plans, deterministic.
HETERO_WORKERS = 1
HETERO_TIME_LIMIT_S = 20.0  # wall-clock safety net of one call
# Work bound of one CP-SAT call, in CP-SAT's deterministic time units (about a second of one
# core's work each, whatever the machine's load): the same call stops at the same point.
HETERO_DETERMINISTIC_TIME = 10.0


# Budget grid of the upper-bound DP: costs are rounded *down* to budget / DP_LEVELS, so the
# DP over-estimates what fits and its bounds stay valid (only coarser).
DP_LEVELS = 2048


def _best_per_budget(base: np.ndarray, cost: np.ndarray, value: np.ndarray) -> np.ndarray:
    """Max-plus step of the knapsack DP: base[b] best value within budget b without this
    type; result[b] adds at most one of this type's items (cost in grid units)."""
    out = base.copy()
    fits = cost < base.size
    if not fits.any():
        return out
    # only the best item at each cost matters
    order = np.lexsort((-value[fits], cost[fits]))
    c_sorted, v_sorted = cost[fits][order], value[fits][order]
    first = np.concatenate([[True], c_sorted[1:] != c_sorted[:-1]])
    for c, v in zip(c_sorted[first], v_sorted[first]):
        out[c:] = np.maximum(out[c:], base[: base.size - c] + v)
    return out


def throughput_upper_bounds(c: Candidates, budget_milli: int) -> np.ndarray:
    """Per candidate k (type t): thr_k + the most throughput the other types can add within
    the budget left, from a knapsack DP that ignores every other constraint (a relaxation)."""
    unit = max(budget_milli / DP_LEVELS, 1.0)
    levels = int(budget_milli // unit) + 1
    cost = np.floor(c.milli_usd_per_hour / unit).astype(np.int64)
    types = list(np.unique(c.gpu_idx))
    members = [np.nonzero(c.gpu_idx == t)[0] for t in types]
    prefix = [np.zeros(levels)]
    for m in members:
        prefix.append(_best_per_budget(prefix[-1], cost[m], c.deci_tok_s[m].astype(float)))
    suffix = [np.zeros(levels)]
    for m in reversed(members):
        suffix.append(_best_per_budget(suffix[-1], cost[m], c.deci_tok_s[m].astype(float)))
    suffix.reverse()
    bounds = np.zeros(len(c))
    for i, m in enumerate(members):
        before, after = prefix[i], suffix[i + 1]
        # best of the other types within budget b: max over splits b1 + b2 = b
        left = np.clip(levels - 1 - cost[m], 0, levels - 1)
        bounds[m] = c.deci_tok_s[m] + _max_plus_at(before, after, left)
    return bounds


def throughput_upper_bound(c: Candidates, mask: np.ndarray, budget_milli: int) -> float:
    """Most throughput any plan of the ``mask`` candidates can reach within the budget, from
    the knapsack DP with costs rounded down (a relaxation: ignores every other constraint,
    and counts a pipeline under its first GPU type only)."""
    unit = max(budget_milli / DP_LEVELS, 1.0)
    levels = int(budget_milli // unit) + 1
    cost = np.floor(c.milli_usd_per_hour / unit).astype(np.int64)
    best = np.zeros(levels)
    for t in np.unique(c.gpu_idx[mask]):
        m = np.nonzero(mask & (c.gpu_idx == t))[0]
        best = _best_per_budget(best, cost[m], c.deci_tok_s[m].astype(float))
    return float(best[-1])


def throughput_lower_bound(c: Candidates, budget_milli: int, mask: np.ndarray | None = None) -> float:
    """Throughput of a plan known to fit the budget: the knapsack DP with costs rounded *up*
    to the grid (so any DP solution truly fits). Valid as a bound when no constraint other
    than budget and per-type inventory (already in the candidates) binds."""
    unit = max(budget_milli / DP_LEVELS, 1.0)
    levels = int(budget_milli // unit) + 1
    cost = np.ceil(c.milli_usd_per_hour / unit).astype(np.int64)
    best = np.zeros(levels)
    single = c.gpu_idx2 < 0  # pipelines span two types: left out, so the DP plan stays valid
    if mask is not None:
        single = single & mask
    for t in np.unique(c.gpu_idx):
        m = np.nonzero((c.gpu_idx == t) & single)[0]
        best = _best_per_budget(best, cost[m], c.deci_tok_s[m].astype(float))
    return float(best[-1])


def _max_plus_at(a: np.ndarray, b: np.ndarray, points: np.ndarray) -> np.ndarray:
    """out[p] = max over i + j <= p of a[i] + b[j] for each p in ``points`` (a, b non-decreasing,
    so i + j = p suffices)."""
    uniq, inverse = np.unique(points, return_inverse=True)
    i = np.arange(a.size)
    j = uniq[:, None] - i[None, :]
    vals = np.where(j >= 0, a[None, :] + b[np.clip(j, 0, b.size - 1)], -np.inf)
    return vals.max(axis=1)[inverse]


def _stage_solver() -> cp_model.CpSolver:
    solver = cp_model.CpSolver()
    solver.parameters.num_workers = HETERO_WORKERS
    solver.parameters.random_seed = SOLVER_SEED
    solver.parameters.max_time_in_seconds = HETERO_TIME_LIMIT_S
    solver.parameters.max_deterministic_time = HETERO_DETERMINISTIC_TIME
    return solver


def _run(solver: cp_model.CpSolver, model: cp_model.CpModel, deadline: Deadline) -> cp_model.CpSolverStatus:
    """One CP-SAT call within what is left of the deadline (UNKNOWN when nothing is left)."""
    if deadline.expired():
        deadline.hit = True
        return cp_model.UNKNOWN
    solver.parameters.max_time_in_seconds = deadline.budget_s(HETERO_TIME_LIMIT_S)
    status = solver.solve(model)
    if status in (cp_model.UNKNOWN, cp_model.FEASIBLE):  # a limit stopped the search before a proof
        if solver.wall_time >= solver.parameters.max_time_in_seconds or deadline.expired():
            deadline.hit = True
        else:
            deadline.work_hit = True
    return status


@dataclass
class ThroughputFloor:
    """A throughput the plan must reach (an earlier stage's optimum), with what the DP needs."""

    candidates: Candidates
    value: float
    budget_milli: int

    def unreachable(self, mask: np.ndarray) -> bool:
        return throughput_upper_bound(self.candidates, mask, self.budget_milli) < self.value


@dataclass
class Probe:
    """A plan found by a feasibility probe."""

    worst: int
    picks: list[int]


def _min_worst(
    hm: HeteroModel,
    values: np.ndarray,
    solver: cp_model.CpSolver,
    deadline: Deadline,
    incumbent: list[int] | None,
    floor: ThroughputFloor | None = None,
) -> tuple[int, bool, list[int] | None] | None:
    """Smallest L such that a plan exists with every group's value <= L: a binary search over
    the distinct values, each probe a CP-SAT feasibility solve with the picks above L
    forbidden. ``incumbent`` (a plan known to satisfy the model) bounds the search from
    above, and every feasible probe tightens it to the plan it found.
    Returns (L, proven, a plan whose worst value is L or None when the search was cut)."""
    levels = np.unique(values)
    proven = True
    hm.model.clear_objective()
    best: list[int] | None = incumbent
    if incumbent is None:
        found = _feasible_below(hm, values, int(levels[-1]), solver, deadline)
        if found is None:
            return None
        best = found.picks if found is not False else None
    top = int(values[best].max()) if best else int(levels[-1])
    lo, hi = 0, int(np.searchsorted(levels, top))
    if hi > 0:  # usually the incumbent is already optimal: one probe just below proves it
        below = (
            _feasible_below(hm, values, int(levels[hi - 1]), solver, deadline)
            if floor is None or not floor.unreachable(values <= levels[hi - 1])
            else None
        )
        if below is None:
            return int(levels[hi]), proven, best
        if below is not False:
            hi, best = int(np.searchsorted(levels, below.worst)), below.picks
        else:
            proven = False
    while lo < hi:
        mid = (lo + hi) // 2
        if floor is not None and floor.unreachable(values <= levels[mid]):
            lo = mid + 1  # proven by the DP bound: no plan this fast reaches the throughput
            continue
        found = _feasible_below(hm, values, int(levels[mid]), solver, deadline)
        if found is None or found is False:
            proven &= found is None  # None: proven infeasible; False: timed out
            lo = mid + 1
        else:
            hi, best = int(np.searchsorted(levels, found.worst)), found.picks  # may be better than asked
    return int(levels[lo]), proven, best if best and int(values[best].max()) <= levels[lo] else None


def _feasible_below(hm: HeteroModel, values: np.ndarray, level: int, solver: cp_model.CpSolver, deadline: Deadline):
    """None: no plan with every value <= level; False: undecided (time limit); else the
    plan found."""
    probe = hm.model.clone()
    for k in np.nonzero(values > level)[0]:
        probe.add(probe.get_bool_var_from_proto_index(hm.pick[k].index) == 0)
    status = _run(solver, probe, deadline)
    if status == cp_model.INFEASIBLE:
        return None
    if status not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
        return False
    picked = [k for k, v in enumerate(hm.pick) if solver.value(probe.get_bool_var_from_proto_index(v.index))]
    return Probe(int(values[picked].max()) if picked else int(values.min()), picked)


@dataclass
class Outcome:
    status: str  # "optimal" | "feasible" (cut by the deadline) | "infeasible" | "unknown" (cut, no plan)
    values: list[int] = field(default_factory=list)
    picks: list[int] = field(default_factory=list)
    gap: float | None = 0.0  # relative gap of the first stage (None: unknown)


def solve_hetero_model(
    hm: HeteroModel,
    objective: list[ObjectiveTerm],
    candidates: Candidates,
    bounds: np.ndarray | None,
    deadline: Deadline,
) -> Outcome:
    """Lexicographic stages: sums (throughput, cost) and ratios are optimised by CP-SAT
    directly; worst-group terms (latency, TTFT, TPOT) by a binary search of CP-SAT
    feasibility probes. Each optimum is kept as a constraint for the next stage. When the
    deadline cuts a stage, the last plan that meets every earlier stage is returned."""
    solver = _stage_solver()
    worst_values = {t: row.values(candidates) for t, row in TERMS.items() if row.aggregate is Aggregate.WORST}
    out = Outcome("optimal")
    picked: list[int] | None = None  # the last plan found, every constraint so far kept
    floor: ThroughputFloor | None = None  # throughput optimum fixed by an earlier stage
    last_was_sum = False
    for stage, term in enumerate(objective):
        last_was_sum = term not in worst_values
        if term in worst_values:
            found = _min_worst(hm, worst_values[term], solver, deadline, picked, floor)
            if found is None:
                return Outcome("infeasible")
            best, ok, picked = found
            if not ok:
                out.status = "feasible"
                out.gap = None if stage == 0 else out.gap
            for k in np.nonzero(worst_values[term] > best)[0]:
                hm.model.add(hm.pick[k] == 0)
            out.values.append(best)
            continue
        expr = hm.terms[term]
        hm.model.clear_objective()
        (hm.model.maximize if TERMS[term].maximise else hm.model.minimize)(expr)
        status = _run(solver, hm.model, deadline)
        if status == cp_model.INFEASIBLE:
            return Outcome("infeasible")
        if status not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
            return _cut(out, picked)
        best = int(round(solver.objective_value))
        if status != cp_model.OPTIMAL:
            out.status = "feasible"
            if stage == 0:
                out.gap = abs(solver.best_objective_bound - best) / max(abs(best), 1)
        out.values.append(best)
        picked = [k for k, v in enumerate(hm.pick) if solver.value(v)]
        hm.model.add(expr >= best if TERMS[term].maximise else expr <= best)
        if term is ObjectiveTerm.THROUGHPUT:
            floor = ThroughputFloor(candidates, float(best), hm.budget_milli)
        if term is ObjectiveTerm.THROUGHPUT and bounds is not None:
            # Exact reduction: a candidate whose best completion cannot reach the optimum
            # is in no optimal plan (bound from the budget-only knapsack relaxation).
            for k in np.nonzero(bounds < best)[0]:
                hm.model.add(hm.pick[k] == 0)
    if picked and last_was_sum:  # the last stage's plan already meets every stage
        out.picks = picked
        return out
    hm.model.clear_objective()
    status = _run(solver, hm.model, deadline)
    if status not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
        return _cut(out, picked) if status != cp_model.INFEASIBLE else Outcome("infeasible")
    out.picks = [k for k, v in enumerate(hm.pick) if solver.value(v)]
    return out


def _cut(out: Outcome, picked: list[int] | None) -> Outcome:
    """The deadline stopped a stage: the last plan that meets every earlier stage, if any."""
    if not picked:
        return Outcome("unknown", gap=None)
    out.status, out.picks = "feasible", picked
    return out
