"""One CP-SAT model over the option table, solved lexicographically in explicit stages.

A candidate is an (option, replica count) pair. Throughput and cost are the only terms
that depend on the replica count, and both grow with it, so for any objective order the
best count of an option is the most its caps allow (budget, GPU count, inventory) or the
fewest that meets the throughput floor. Each option therefore brings two candidates:

  pick[c] = 1 if candidate c (option o_c deployed as n_c replicas) is the plan

Homogeneous plans pick exactly one candidate. Every user constraint (budget, GPU limits,
inventory, SLOs) is a linear constraint over ``pick`` enforced by a named literal, so an
infeasible problem is traced back to the constraints that conflict
(``sufficient_assumptions_for_infeasibility``). Coefficients are integers: dollars in
milli-dollars, times in microseconds, throughput in tenths of a token per second.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field

import numpy as np
from ortools.sat.python import cp_model

from guideopt.model.request import ObjectiveTerm, PlanRequest
from guideopt.solver.options import PlanOptions
from guideopt.units import DECI_TOK_S_PER_TOK_S, MILLI_USD_PER_USD, ROUNDING_EPS, US_PER_MS, US_PER_S

# Safety cap on replicas of one option when neither budget nor inventory bounds it.
MAX_REPLICAS_PER_OPTION = 4096
SOLVER_SEED = 0
SOLVER_WORKERS = 1  # one worker: the search, and so the plans, are deterministic
STAGE_TIME_LIMIT_S = 10.0

MAXIMISE = {ObjectiveTerm.THROUGHPUT}


@dataclass
class Candidates:
    """Integer-scaled data per candidate (option index, replica count)."""

    option: np.ndarray
    replicas: np.ndarray
    milli_usd_per_hour: np.ndarray  # all replicas
    gpus: np.ndarray  # GPUs for all replicas
    gpu_idx: np.ndarray
    deci_tok_s: np.ndarray  # output tokens/s of all replicas, in tenths
    ttft_us: np.ndarray
    tpot_us: np.ndarray
    latency_us: np.ndarray

    def __len__(self) -> int:
        return int(self.option.shape[0])

    def take(self, idx: np.ndarray) -> Candidates:
        return Candidates(**{f: getattr(self, f)[idx] for f in Candidates.__dataclass_fields__})

    def term_values(self, term: ObjectiveTerm) -> np.ndarray:
        """The objective term per candidate, oriented so that smaller is better."""
        return {
            ObjectiveTerm.THROUGHPUT: -self.deci_tok_s,
            ObjectiveTerm.COST: self.milli_usd_per_hour,
            ObjectiveTerm.LATENCY: self.latency_us,
            ObjectiveTerm.TTFT: self.ttft_us,
            ObjectiveTerm.TPOT: self.tpot_us,
        }[term]


def violations(c: Candidates, req: PlanRequest, opts: PlanOptions, skip: frozenset[str] = frozenset()) -> dict[str, np.ndarray]:
    """Per user constraint, the candidates that break it (the same rules the model enforces)."""
    out: dict[str, np.ndarray] = {"budget.usd_per_hour": c.milli_usd_per_hour > budget_milli_usd(req)}
    if req.parallelism.max_gpus:
        out["parallelism.max_gpus"] = c.gpus > req.parallelism.max_gpus
    for i, limit in opts.inventory.items():
        if limit is not None:
            out[f"gpus.{opts.table.space.gpus[i].id}"] = (c.gpu_idx == i) & (c.gpus > limit)
    slo = req.slo
    for name, bound, values in (
        ("slo.ttft_ms", None if slo.ttft_ms is None else slo.ttft_ms * US_PER_MS, c.ttft_us),
        ("slo.tpot_ms", None if slo.tpot_ms is None else slo.tpot_ms * US_PER_MS, c.tpot_us),
        ("slo.batch_latency_s", None if slo.batch_latency_s is None else slo.batch_latency_s * US_PER_S, c.latency_us),
    ):
        if bound is not None:
            out[name] = values > bound
    if slo.min_output_throughput_tok_s:
        out["slo.min_output_throughput_tok_s"] = c.deci_tok_s < slo.min_output_throughput_tok_s * DECI_TOK_S_PER_TOK_S
    return {k: v for k, v in out.items() if k not in skip}


def pareto_front(values: np.ndarray) -> np.ndarray:
    """Indices of rows of ``values`` (smaller is better in every column) not dominated by another.

    Rows are visited in lexicographic order, so a row can only be dominated by one seen
    before it; identical rows keep the first. The lexicographic optimum of any order of
    the columns lies on this front, so the model loses nothing by seeing only it.
    """
    order = np.lexsort(values.T[::-1])
    if values.shape[1] == 2:  # two columns: one sweep over the sorted rows
        best = np.minimum.accumulate(values[order, 1])
        prior = np.concatenate([[np.inf], best[:-1]])
        return np.sort(order[values[order, 1] < prior])
    if values.shape[1] == 3 and order.size > PARETO_BLOCK:
        return _pareto_front_3d(values)
    if order.size <= PARETO_BLOCK:  # one comparison matrix
        block = values[order]
        no_worse = (block[:, None, :] <= block[None, :, :]).all(axis=2)
        return np.sort(order[~np.triu(no_worse, k=1).any(axis=0)])
    # Blocks of sorted rows: a row is dropped when an earlier row (kept, or earlier in its
    # block) is no worse in every column; by transitivity earlier dominated rows may be used.
    kept_rows: list[np.ndarray] = []
    kept = np.empty((0, values.shape[1]), dtype=values.dtype)
    for start in range(0, order.size, PARETO_BLOCK):
        idx = order[start : start + PARETO_BLOCK]
        block = values[idx]
        if kept.size:
            dominated = np.any(np.all(kept[None, :, :] <= block[:, None, :], axis=2), axis=1)
        else:
            dominated = np.zeros(idx.size, dtype=bool)
        no_worse = (block[:, None, :] <= block[None, :, :]).all(axis=2)
        dominated |= np.triu(no_worse, k=1).any(axis=0)
        kept_rows.append(idx[~dominated])
        kept = np.vstack([kept, block[~dominated]])
    return np.sort(np.concatenate(kept_rows))


def _pareto_front_3d(values: np.ndarray) -> np.ndarray:
    """Three columns: visit rows by (c, a, b) so every earlier row is no worse in c, and keep
    the staircase of kept (a, b) points: a row is dominated when some kept point has a <= its
    a and b <= its b, found by bisection on a (prefix minima of b)."""
    order = np.lexsort((values[:, 1], values[:, 0], values[:, 2]))
    stair_a: list[float] = []  # ascending a
    stair_b: list[float] = []  # strictly decreasing b (prefix minima)
    keep: list[int] = []
    for i in order:
        a, b = float(values[i, 0]), float(values[i, 1])
        pos = bisect.bisect_right(stair_a, a)
        if pos and stair_b[pos - 1] <= b:
            continue
        keep.append(int(i))
        # insert (a, b) and drop points it makes redundant (a' >= a with b' >= b)
        end = pos
        while end < len(stair_a) and stair_b[end] >= b:
            end += 1
        stair_a[pos:end] = [a]
        stair_b[pos:end] = [b]
    return np.array(sorted(keep), dtype=int)


# Rows compared at once in ``pareto_front`` (memory: block² + block·front comparisons).
PARETO_BLOCK = 256


def replica_milli_usd(usd_per_gpu_hour: np.ndarray, gpus: np.ndarray) -> np.ndarray:
    """One replica's price in milli-dollars per hour, rounded up so that no plan the model
    accepts costs more than its budget."""
    return np.maximum(np.ceil(usd_per_gpu_hour * gpus * MILLI_USD_PER_USD - ROUNDING_EPS), 1).astype(np.int64)


# Budgets beyond this many milli-dollars are treated as unbounded (keeps int64 arithmetic safe).
MAX_BUDGET_MILLI_USD = np.iinfo(np.int64).max // MAX_REPLICAS_PER_OPTION // 4  # headroom for sums of a few groups


def budget_milli_usd(req: PlanRequest) -> int:
    return int(min(np.floor(req.budget.usd_per_hour * MILLI_USD_PER_USD + ROUNDING_EPS), MAX_BUDGET_MILLI_USD))


def replica_bounds(opts: PlanOptions, req: PlanRequest, skip: frozenset[str]) -> tuple[np.ndarray, np.ndarray]:
    """Fewest replicas meeting the throughput floor, and most the caps allow, per option."""
    t = opts.table
    gpus = t.gpus_per_replica.astype(np.int64)
    usd = replica_milli_usd(t.usd_per_hour_per_gpu, gpus)
    hi = np.full(len(t), MAX_REPLICAS_PER_OPTION, dtype=np.int64)
    if "budget.usd_per_hour" not in skip:
        hi = np.minimum(hi, budget_milli_usd(req) // usd)
    if req.parallelism.max_gpus and "parallelism.max_gpus" not in skip:
        hi = np.minimum(hi, req.parallelism.max_gpus // gpus)
    for i, limit in opts.inventory.items():
        if limit is not None and f"gpus.{t.space.gpus[i].id}" not in skip:
            sel = t.gpu_idx == i
            hi[sel] = np.minimum(hi[sel], limit // gpus[sel])
    floor_tok_s = req.slo.min_output_throughput_tok_s
    lo = np.ones(len(t), dtype=np.int64)
    if floor_tok_s and "slo.min_output_throughput_tok_s" not in skip:
        lo = np.maximum(lo, np.ceil(floor_tok_s / t.metrics.output_throughput_tok_s - ROUNDING_EPS).astype(np.int64))
    lo = np.minimum(lo, MAX_REPLICAS_PER_OPTION)
    return lo, np.maximum(hi, 1)


def candidates(opts: PlanOptions, req: PlanRequest, skip: frozenset[str] = frozenset()) -> Candidates:
    lo, hi = replica_bounds(opts, req, skip)
    n_opt = len(opts.table)
    option = np.concatenate([np.arange(n_opt), np.arange(n_opt)[lo != hi]])
    replicas = np.concatenate([hi, lo[lo != hi]])
    t = opts.table
    m = t.metrics
    gpus = t.gpus_per_replica.astype(np.int64)[option] * replicas
    per_replica_usd = replica_milli_usd(t.usd_per_hour_per_gpu, t.gpus_per_replica.astype(np.int64))
    return Candidates(
        option=option,
        replicas=replicas,
        milli_usd_per_hour=per_replica_usd[option] * replicas,
        gpus=gpus,
        gpu_idx=t.gpu_idx[option],
        # rounded down, so that a plan the model accepts meets a throughput floor for real
        deci_tok_s=np.floor(m.output_throughput_tok_s[option] * replicas * DECI_TOK_S_PER_TOK_S + ROUNDING_EPS).astype(np.int64),
        ttft_us=np.round(m.ttft_s[option] * US_PER_S).astype(np.int64),
        tpot_us=np.round(m.tpot_s[option] * US_PER_S).astype(np.int64),
        latency_us=np.round(m.batch_latency_s[option] * US_PER_S).astype(np.int64),
    )


@dataclass
class ModelHandle:
    model: cp_model.CpModel
    pick: list[cp_model.IntVar]
    terms: dict[ObjectiveTerm, cp_model.LinearExprT]
    constraint_literals: dict[str, cp_model.IntVar] = field(default_factory=dict)


def _sum(lits: list[cp_model.IntVar], coefs: np.ndarray) -> cp_model.LinearExprT:
    return cp_model.LinearExpr.weighted_sum(lits, coefs.tolist())


def build_model(c: Candidates, excluded_options: set[int] | frozenset[int] = frozenset()) -> ModelHandle:
    model = cp_model.CpModel()
    pick = [model.new_bool_var(f"pick_{i}") for i in range(len(c.option))]
    for i, o in enumerate(c.option):
        if int(o) in excluded_options:
            model.add(pick[i] == 0)
    model.add_exactly_one(pick)  # homogeneous: one replica shape, one replica count
    terms = {
        ObjectiveTerm.THROUGHPUT: _sum(pick, c.deci_tok_s),
        ObjectiveTerm.COST: _sum(pick, c.milli_usd_per_hour),
        ObjectiveTerm.LATENCY: _sum(pick, c.latency_us),
        ObjectiveTerm.TTFT: _sum(pick, c.ttft_us),
        ObjectiveTerm.TPOT: _sum(pick, c.tpot_us),
    }
    return ModelHandle(model=model, pick=pick, terms=terms)


def _literal(h: ModelHandle, name: str) -> cp_model.IntVar:
    lit = h.model.new_bool_var(name)
    h.constraint_literals[name] = lit
    return lit


def _forbid(h: ModelHandle, name: str, violating: np.ndarray) -> None:
    """Enforced by literal ``name``: no candidate in ``violating`` is picked."""
    lit = _literal(h, name)
    picks = [h.pick[i] for i in np.nonzero(violating)[0]]
    if picks:
        h.model.add(sum(picks) == 0).only_enforce_if(lit)


def add_user_constraints(h: ModelHandle, c: Candidates, req: PlanRequest, opts: PlanOptions, skip: frozenset[str] = frozenset()) -> None:
    """Budget, GPU count, inventory and SLOs, each behind a named enforcement literal.

    ``skip`` leaves named constraints out (used to find how far each must be relaxed).
    """
    if "budget.usd_per_hour" not in skip:
        _forbid(h, "budget.usd_per_hour", c.milli_usd_per_hour > budget_milli_usd(req))
    if req.parallelism.max_gpus and "parallelism.max_gpus" not in skip:
        _forbid(h, "parallelism.max_gpus", c.gpus > req.parallelism.max_gpus)
    for i, limit in opts.inventory.items():
        name = f"gpus.{opts.table.space.gpus[i].id}"
        of_type = c.gpu_idx == i
        if limit is not None and name not in skip:
            _forbid(h, name, of_type & (c.gpus > limit))
    slo = req.slo
    for name, bound, values in (
        ("slo.ttft_ms", None if slo.ttft_ms is None else slo.ttft_ms * US_PER_MS, c.ttft_us),
        ("slo.tpot_ms", None if slo.tpot_ms is None else slo.tpot_ms * US_PER_MS, c.tpot_us),
        ("slo.batch_latency_s", None if slo.batch_latency_s is None else slo.batch_latency_s * US_PER_S, c.latency_us),
    ):
        if bound is not None and name not in skip:
            _forbid(h, name, values > bound)
    if slo.min_output_throughput_tok_s and "slo.min_output_throughput_tok_s" not in skip:
        _forbid(h, "slo.min_output_throughput_tok_s", c.deci_tok_s < slo.min_output_throughput_tok_s * DECI_TOK_S_PER_TOK_S)
    h.model.add_assumptions(list(h.constraint_literals.values()))


def new_solver() -> cp_model.CpSolver:
    solver = cp_model.CpSolver()
    solver.parameters.num_workers = SOLVER_WORKERS
    solver.parameters.random_seed = SOLVER_SEED
    solver.parameters.max_time_in_seconds = STAGE_TIME_LIMIT_S
    # A pick-one model needs no presolve; its probing is quadratic in the candidates.
    solver.parameters.cp_model_presolve = False
    return solver


@dataclass
class StageResult:
    status: str  # "optimal" | "feasible" | "infeasible"
    values: list[int]
    picked: int | None
    core: list[str]


def solve_lexicographic(h: ModelHandle, objective: list[ObjectiveTerm]) -> StageResult:
    """Optimise each term in turn, keeping every earlier optimum while solving the next."""
    solver = new_solver()
    values: list[int] = []
    proven = True
    stages: list[ObjectiveTerm | None] = list(objective) or [None]
    for term in stages:
        h.model.clear_objective()
        if term is not None:
            expr = h.terms[term]
            if term in MAXIMISE:
                h.model.maximize(expr)
            else:
                h.model.minimize(expr)
        status = solver.solve(h.model)
        if status == cp_model.INFEASIBLE:
            names = {lit.index: name for name, lit in h.constraint_literals.items()}
            core = [names[i] for i in solver.sufficient_assumptions_for_infeasibility() if i in names]
            return StageResult("infeasible", [], None, core)
        if status not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
            return StageResult("infeasible", [], None, [])
        proven &= status == cp_model.OPTIMAL
        if term is None:
            break
        best = int(round(solver.objective_value))
        values.append(best)
        h.model.add(expr >= best if term in MAXIMISE else expr <= best)
        _hint(h, solver)
    picked = next(i for i, v in enumerate(h.pick) if solver.value(v))
    return StageResult("optimal" if proven else "feasible", values, picked, [])


def _hint(h: ModelHandle, solver: cp_model.CpSolver) -> None:
    h.model.clear_hints()
    for v in h.pick:
        h.model.add_hint(v, solver.value(v))
