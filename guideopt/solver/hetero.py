"""Heterogeneous plans: several groups of replicas, each on its own GPU type (Mélange-style
mixing, with parallelism and batch chosen per group), under one budget and per-type inventory.

One CP-SAT model (a multiple-choice knapsack) over candidate groups:
  pick[k] = 1 if candidate k — an option deployed as n_k replicas — is a group of the plan
At most one group per GPU type; throughput adds over groups; each group meets the latency
SLOs on its own (options that miss them are dropped first); the plan's latency is the worst
group's (``worst >= Σ latency[k]·pick[k]`` over each type's candidates, exact since a type has at most one pick). Objectives are solved lexicographically
in stages, as for homogeneous plans. Before the model is built, candidates are pruned:
among candidates of one GPU type with the same total GPUs (hence the same cost), one no
better in throughput or any latency term the request uses than another is dropped; likewise
options within one GPU type and GPUs-per-replica.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from ortools.sat.python import cp_model

from guideopt.model.request import ObjectiveTerm, PlanRequest
from guideopt.solver import cpsat
from guideopt.solver.options import (
    DTYPE_SLOTS,
    FRAMEWORK_SLOTS,
    PARALLEL_SIZE_SLOTS,
    PlanOptions,
    metric_columns,
    relevant_terms,
    shape_key,
)
from guideopt.units import DECI_TOK_S_PER_TOK_S, MILLI_USD_PER_USD, ROUNDING_EPS, S_PER_MS, US_PER_S

# Heterogeneous models are multiple-choice knapsacks that one CP-SAT worker proves in tens
# of milliseconds; one worker keeps the search, and so the plans, deterministic.
HETERO_WORKERS = 1
HETERO_TIME_LIMIT_S = 20.0


# Mixed-radix slots of the integer group keys (as in ``options.shape_key``).
GPU_TYPE_SLOTS = 4096  # GPU type index (+1 for "none")
GPUS_PER_REPLICA_SLOTS = 1 << 20  # GPUs of one replica (TP·PP)


def pair_key(gpu_a: np.ndarray, gpu_b: np.ndarray, tp_a: np.ndarray, tp_b: np.ndarray) -> np.ndarray:
    """One integer per (first type, second type, TP of each) of a cross-type pipeline."""
    key = gpu_a.astype(np.int64)
    for col, size in ((gpu_b, GPU_TYPE_SLOTS), (tp_a, PARALLEL_SIZE_SLOTS), (tp_b, PARALLEL_SIZE_SLOTS)):
        key = key * size + col.astype(np.int64)
    return key


@dataclass
class HeteroOptions:
    index: np.ndarray  # rows of opts.table kept (source 0) or of the pipeline table (source 1)
    milli_usd_per_hour: np.ndarray  # one replica
    gpus: np.ndarray
    gpu_idx: np.ndarray
    deci_tok_s: np.ndarray  # one replica, in tenths of a token/s (float; a group's total is rounded down once)
    ttft_us: np.ndarray
    tpot_us: np.ndarray
    latency_us: np.ndarray
    max_replicas: np.ndarray
    shape: np.ndarray | None = None  # deployment shape id (top-k plans differ in shapes)
    gpu_idx2: np.ndarray | None = None  # second GPU type of a cross-type pipeline (−1: none)
    gpus2: np.ndarray | None = None  # GPUs of the second type per replica
    source: np.ndarray | None = None  # 0: uniform option (index into opts.table); 1: pipeline row

    def __post_init__(self) -> None:
        n = len(self.index)
        if self.gpu_idx2 is None:
            self.gpu_idx2 = np.full(n, -1, dtype=np.int64)
        if self.gpus2 is None:
            self.gpus2 = np.zeros(n, dtype=np.int64)
        if self.source is None:
            self.source = np.zeros(n, dtype=np.int64)
        if self.shape is None:
            self.shape = np.zeros(n, dtype=np.int64)


def concat_options(a: HeteroOptions, b: HeteroOptions) -> HeteroOptions:
    return HeteroOptions(**{f: np.concatenate([getattr(a, f), getattr(b, f)]) for f in HeteroOptions.__dataclass_fields__})


def _inventory_limits(opts: PlanOptions) -> np.ndarray:
    big = np.iinfo(np.int64).max
    return np.array(
        [big if opts.inventory.get(i) is None else opts.inventory[i] for i in range(len(opts.table.space.gpus))], dtype=np.int64
    )


def _slo_ok(req: PlanRequest, m) -> np.ndarray:
    ok = np.ones(m.ttft_s.shape, dtype=bool)
    slo = req.slo
    for limit, values in (
        (slo.ttft_ms and slo.ttft_ms * S_PER_MS, m.ttft_s),
        (slo.tpot_ms and slo.tpot_ms * S_PER_MS, m.tpot_s),
        (slo.batch_latency_s, m.batch_latency_s),
    ):
        if limit is not None:
            ok &= values <= limit
    return ok


def pipeline_options(pt, opts: PlanOptions, req: PlanRequest) -> HeteroOptions | None:
    """Cross-type pipeline replicas as heterogeneous groups using two GPU types."""
    if pt is None or len(pt) == 0:
        return None
    m = pt.metrics
    usd = np.maximum(np.ceil(pt.usd_per_replica * MILLI_USD_PER_USD - ROUNDING_EPS), 1).astype(np.int64)
    limits = _inventory_limits(opts)
    hi = np.minimum(cpsat.budget_milli_usd(req) // usd, np.minimum(limits[pt.gpu_a] // pt.tp_a, limits[pt.gpu_b] // pt.tp_b))
    hi = np.minimum(hi, cpsat.MAX_REPLICAS_PER_OPTION)
    if req.parallelism.max_gpus:
        hi = np.minimum(hi, req.parallelism.max_gpus // (pt.tp_a + pt.tp_b))
    ok = _slo_ok(req, m) & (hi >= 1)
    cols = metric_columns(m, relevant_terms(req) | {ObjectiveTerm.THROUGHPUT})
    keep = _prune(np.nonzero(ok)[0], pair_key(pt.gpu_a, pt.gpu_b, pt.tp_a, pt.tp_b), cols)
    if keep.size == 0:
        return None
    return HeteroOptions(
        index=keep,
        milli_usd_per_hour=usd[keep],
        gpus=pt.tp_a[keep].astype(np.int64),
        gpu_idx=pt.gpu_a[keep],
        deci_tok_s=m.output_throughput_tok_s[keep] * DECI_TOK_S_PER_TOK_S,  # per replica, unrounded
        ttft_us=np.round(m.ttft_s[keep] * US_PER_S).astype(np.int64),
        tpot_us=np.round(m.tpot_s[keep] * US_PER_S).astype(np.int64),
        latency_us=np.round(m.batch_latency_s[keep] * US_PER_S).astype(np.int64),
        max_replicas=hi[keep].astype(np.int64),
        gpu_idx2=pt.gpu_b[keep].astype(np.int64),
        gpus2=pt.tp_b[keep].astype(np.int64),
        source=np.ones(keep.size, dtype=np.int64),
        shape=-1 - pipeline_shape_key(pt, keep),
    )


def pipeline_shape_key(pt, rows: np.ndarray) -> np.ndarray:
    """One integer per pipeline shape (GPU types, TPs, engine, dtype), whatever the batch."""
    key = pt.gpu_a[rows].astype(np.int64)
    for col, size in (
        (pt.gpu_b, GPU_TYPE_SLOTS),
        (pt.tp_a, PARALLEL_SIZE_SLOTS),
        (pt.tp_b, PARALLEL_SIZE_SLOTS),
        (pt.fw_idx, FRAMEWORK_SLOTS),
        (pt.dtype_idx, DTYPE_SLOTS),
    ):
        key = key * size + col[rows].astype(np.int64)
    return key


def hetero_options(opts: PlanOptions, req: PlanRequest) -> HeteroOptions:
    t = opts.table
    m = t.metrics
    ok = _slo_ok(req, m)
    _, hi = cpsat.replica_bounds(opts, req, frozenset({"slo.min_output_throughput_tok_s"}))
    gpus_per_replica = t.gpus_per_replica.astype(np.int64)
    ok &= cpsat.replica_milli_usd(t.usd_per_hour_per_gpu, gpus_per_replica) <= cpsat.budget_milli_usd(req)
    if req.parallelism.max_gpus:
        ok &= gpus_per_replica <= req.parallelism.max_gpus
    ok &= gpus_per_replica <= _inventory_limits(opts)[t.gpu_idx]  # one replica must fit in the inventory
    keep = _prune(
        np.nonzero(ok)[0],
        t.gpu_idx.astype(np.int64) * GPUS_PER_REPLICA_SLOTS + t.gpus_per_replica.astype(np.int64),
        metric_columns(m, relevant_terms(req) | {ObjectiveTerm.THROUGHPUT}),
    )
    gpus = t.gpus_per_replica.astype(np.int64)[keep]
    return HeteroOptions(
        index=keep,
        milli_usd_per_hour=cpsat.replica_milli_usd(t.usd_per_hour_per_gpu[keep], gpus),
        gpus=gpus,
        gpu_idx=t.gpu_idx[keep],
        deci_tok_s=m.output_throughput_tok_s[keep] * DECI_TOK_S_PER_TOK_S,  # per replica, unrounded
        ttft_us=np.round(m.ttft_s[keep] * US_PER_S).astype(np.int64),
        tpot_us=np.round(m.tpot_s[keep] * US_PER_S).astype(np.int64),
        latency_us=np.round(m.batch_latency_s[keep] * US_PER_S).astype(np.int64),
        max_replicas=hi[keep],
        shape=shape_key(t)[keep],
    )


# Pipelines tested at once against the single-type candidates (bounds the comparison array).
DOMINANCE_CHUNK = 512


def _dominated_pipelines(gpu_a: np.ndarray, gpu_b: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Pipeline candidates (two GPU types) that a single-type candidate of one of their types
    beats or equals in cost, throughput and every latency term: swapping it in frees a type
    and loses nothing, so such a pipeline is in no optimal plan."""
    out = np.zeros(gpu_a.size, dtype=bool)
    single = gpu_b < 0
    for t in np.unique(gpu_a[single]):
        mine = values[single & (gpu_a == t)]
        for idx in _chunks(np.nonzero(~single & ((gpu_a == t) | (gpu_b == t)))[0]):
            out[idx] |= (mine[None, :, :] <= values[idx][:, None, :]).all(axis=2).any(axis=1)
    return out


def _chunks(idx: np.ndarray) -> list[np.ndarray]:
    return [idx[i : i + DOMINANCE_CHUNK] for i in range(0, idx.size, DOMINANCE_CHUNK)]


def _prune(rows: np.ndarray, group: np.ndarray, values: np.ndarray) -> np.ndarray:
    keep: list[int] = []
    for g in np.unique(group[rows]):
        members = rows[group[rows] == g]
        keep.extend(members[cpsat.pareto_front(values[members])].tolist())
    return np.array(sorted(keep), dtype=int)


@dataclass
class HeteroCandidates:
    """(option, replica count) pairs, one column per quantity, for one model."""

    row: np.ndarray  # index into HeteroOptions
    replicas: np.ndarray
    milli_usd_per_hour: np.ndarray
    gpus: np.ndarray
    gpu_idx: np.ndarray
    deci_tok_s: np.ndarray
    ttft_us: np.ndarray
    tpot_us: np.ndarray
    latency_us: np.ndarray
    gpu_idx2: np.ndarray  # second type of a pipeline group (−1: none)
    gpus2: np.ndarray
    source: np.ndarray  # 0: uniform option, 1: pipeline row
    ref: np.ndarray  # row in opts.table (source 0) or in the pipeline table (source 1)
    shape: np.ndarray  # deployment shape id


def hetero_candidates(h: HeteroOptions, req: PlanRequest, per_shape: bool = False) -> HeteroCandidates:
    """Every (option, n) within its caps, pruned to the Pareto front of cost, throughput and
    the latency terms the request uses (and GPU count when ``max_gpus`` binds across types)
    among pairs of the same GPU type(s) — or of the same deployment shape with ``per_shape``,
    which later top-k ranks need, since they must avoid the shapes of earlier plans."""
    counts = h.max_replicas.astype(np.int64)
    row = np.repeat(np.arange(len(h.index)), counts)
    n = np.arange(row.size) - np.repeat(np.cumsum(counts) - counts, counts) + 1  # 1..count per option
    throughput = np.floor(h.deci_tok_s[row] * n + ROUNDING_EPS).astype(np.int64)  # the group total, rounded down once
    cols = [h.milli_usd_per_hour[row] * n, -throughput]
    if req.parallelism.max_gpus:  # cost alone does not order GPU counts (prices are rounded per replica)
        cols.append((h.gpus[row] + h.gpus2[row]) * n)
    terms = relevant_terms(req)
    for term, values in ((ObjectiveTerm.LATENCY, h.latency_us), (ObjectiveTerm.TTFT, h.ttft_us), (ObjectiveTerm.TPOT, h.tpot_us)):
        if term in terms:
            cols.append(values[row])
    values = np.stack(cols, axis=1)
    # One group per GPU type: a candidate is replaceable by another using the same GPU
    # type(s) that costs no more and is no worse in throughput or latency.
    group = h.gpu_idx[row].astype(np.int64) * GPU_TYPE_SLOTS + (h.gpu_idx2[row] + 1)
    if per_shape:
        _, group = np.unique(np.stack([group, h.shape[row]], axis=1), axis=0, return_inverse=True)
        group = group.ravel()
    keep = _prune(np.arange(row.size), group, values)
    if not per_shape:
        keep = keep[~_dominated_pipelines(h.gpu_idx[row][keep], h.gpu_idx2[row][keep], values[keep])]
    r, k = row[keep], n[keep]
    return HeteroCandidates(
        row=r,
        replicas=k,
        milli_usd_per_hour=h.milli_usd_per_hour[r] * k,
        gpus=h.gpus[r] * k,
        gpu_idx=h.gpu_idx[r],
        deci_tok_s=throughput[keep],
        ttft_us=h.ttft_us[r],
        tpot_us=h.tpot_us[r],
        latency_us=h.latency_us[r],
        gpu_idx2=h.gpu_idx2[r],
        gpus2=h.gpus2[r] * k,
        source=h.source[r],
        ref=h.index[r],
        shape=h.shape[r],
    )


def keep_candidates(c: HeteroCandidates, idx: np.ndarray) -> HeteroCandidates:
    return HeteroCandidates(**{f: getattr(c, f)[idx] for f in HeteroCandidates.__dataclass_fields__})


@dataclass
class HeteroModel:
    model: cp_model.CpModel
    pick: list[cp_model.IntVar]
    terms: dict[ObjectiveTerm, cp_model.LinearExprT]
    budget_milli: int = 0


def build_hetero_model(c: HeteroCandidates, req: PlanRequest, opts: PlanOptions, forbidden: list[tuple[list[int], int]]) -> HeteroModel:
    """pick[k] = 1 if candidate k (an option with its replica count) is a group of the plan."""
    model = cp_model.CpModel()
    pick = [model.new_bool_var(f"pick_{k}") for k in range(len(c.row))]
    model.add(sum(pick) >= 1)
    for i, limit in opts.inventory.items():
        of_type = np.nonzero((c.gpu_idx == i) | (c.gpu_idx2 == i))[0]
        if of_type.size == 0:
            continue
        model.add_at_most_one(pick[k] for k in of_type)  # one group per GPU type
        if limit is not None:  # the type's only group must fit in its inventory
            uses = np.where(c.gpu_idx[of_type] == i, c.gpus[of_type], 0) + np.where(c.gpu_idx2[of_type] == i, c.gpus2[of_type], 0)
            for k in of_type[uses > limit]:
                model.add(pick[k] == 0)
    cost = cp_model.LinearExpr.weighted_sum(pick, c.milli_usd_per_hour.tolist())
    model.add(cost <= cpsat.budget_milli_usd(req))
    if req.parallelism.max_gpus:
        model.add(cp_model.LinearExpr.weighted_sum(pick, (c.gpus + c.gpus2).tolist()) <= req.parallelism.max_gpus)
    throughput = cp_model.LinearExpr.weighted_sum(pick, c.deci_tok_s.tolist())
    if req.slo.min_output_throughput_tok_s:
        model.add(throughput >= int(np.ceil(req.slo.min_output_throughput_tok_s * DECI_TOK_S_PER_TOK_S)))
    for combo, size in forbidden:  # plans already returned: not all of their shapes again
        if combo:
            model.add(sum(pick[k] for k in combo) <= size - 1)
    terms = {ObjectiveTerm.THROUGHPUT: throughput, ObjectiveTerm.COST: cost}
    objective_terms = set(req.objective)
    types = [
        np.nonzero((c.gpu_idx == i) | (c.gpu_idx2 == i))[0] for i in np.unique(np.concatenate([c.gpu_idx, c.gpu_idx2[c.gpu_idx2 >= 0]]))
    ]
    for term, values in ((ObjectiveTerm.LATENCY, c.latency_us), (ObjectiveTerm.TTFT, c.ttft_us), (ObjectiveTerm.TPOT, c.tpot_us)):
        if term not in objective_terms:
            continue
        worst = model.new_int_var(0, int(values.max()), f"worst_{term.value}")
        for members in types:  # at most one pick per type: the sum is that group's latency
            model.add(worst >= cp_model.LinearExpr.weighted_sum([pick[k] for k in members], values[members].tolist()))
        terms[term] = worst
    return HeteroModel(model, pick, terms, cpsat.budget_milli_usd(req))


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


def throughput_upper_bounds(c: HeteroCandidates, budget_milli: int) -> np.ndarray:
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
    bounds = np.zeros(len(c.row))
    for i, m in enumerate(members):
        before, after = prefix[i], suffix[i + 1]
        # best of the other types within budget b: max over splits b1 + b2 = b
        left = np.clip(levels - 1 - cost[m], 0, levels - 1)
        bounds[m] = c.deci_tok_s[m] + _max_plus_at(before, after, left)
    return bounds


def throughput_upper_bound(c: HeteroCandidates, mask: np.ndarray, budget_milli: int) -> float:
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


def throughput_lower_bound(c: HeteroCandidates, budget_milli: int, mask: np.ndarray | None = None) -> float:
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
    solver.parameters.random_seed = cpsat.SOLVER_SEED
    solver.parameters.max_time_in_seconds = HETERO_TIME_LIMIT_S
    return solver


@dataclass
class ThroughputFloor:
    """A throughput the plan must reach (an earlier stage's optimum), with what the DP needs."""

    candidates: HeteroCandidates
    value: float
    budget_milli: int

    def unreachable(self, mask: np.ndarray) -> bool:
        return throughput_upper_bound(self.candidates, mask, self.budget_milli) < self.value


def _min_worst(
    hm: HeteroModel, values: np.ndarray, solver: cp_model.CpSolver, incumbent: int | None, floor: ThroughputFloor | None = None
) -> tuple[int, bool] | None:
    """Smallest L such that a plan exists with every group's value <= L: a binary search over
    the distinct values, each probe a CP-SAT feasibility solve with the picks above L
    forbidden. ``incumbent`` (the worst value of a plan known to satisfy the model) bounds
    the search from above, and every feasible probe tightens it to the plan it found.
    Returns (L, proven)."""
    levels = np.unique(values)
    proven = True
    hm.model.clear_objective()
    if incumbent is None:
        found = _feasible_below(hm, values, int(levels[-1]), solver)
        if found is None:
            return None
        incumbent = found if found is not False else int(levels[-1])
    lo, hi = 0, int(np.searchsorted(levels, incumbent))
    if hi > 0:  # usually the incumbent is already optimal: one probe just below proves it
        below = (
            _feasible_below(hm, values, int(levels[hi - 1]), solver)
            if floor is None or not floor.unreachable(values <= levels[hi - 1])
            else None
        )
        if below is None:
            return int(levels[hi]), proven
        if below is not False:
            hi = int(np.searchsorted(levels, below))
        else:
            proven = False
    while lo < hi:
        mid = (lo + hi) // 2
        if floor is not None and floor.unreachable(values <= levels[mid]):
            lo = mid + 1  # proven by the DP bound: no plan this fast reaches the throughput
            continue
        found = _feasible_below(hm, values, int(levels[mid]), solver)
        if found is None or found is False:
            proven &= found is None  # None: proven infeasible; False: timed out
            lo = mid + 1
        else:
            hi = int(np.searchsorted(levels, found))  # the plan found may be better than asked
    return int(levels[lo]), proven


def _feasible_below(hm: HeteroModel, values: np.ndarray, level: int, solver: cp_model.CpSolver):
    """None: no plan with every value <= level; False: undecided (time limit); else the worst
    value of the plan found."""
    probe = hm.model.clone()
    for k in np.nonzero(values > level)[0]:
        probe.add(probe.get_bool_var_from_proto_index(hm.pick[k].index) == 0)
    status = solver.solve(probe)
    if status == cp_model.INFEASIBLE:
        return None
    if status not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
        return False
    picked = [k for k, v in enumerate(hm.pick) if solver.value(probe.get_bool_var_from_proto_index(v.index))]
    return int(values[picked].max()) if picked else int(values.min())


def solve_hetero_model(
    hm: HeteroModel,
    objective: list[ObjectiveTerm],
    candidates: HeteroCandidates,
    bounds: np.ndarray | None,
    time_limit_s: float | None = None,
) -> tuple[str, list[int], list[int]]:
    """Lexicographic stages: sums (throughput, cost) are optimised by CP-SAT directly; worst-
    group terms (latency, TTFT, TPOT) by a binary search of CP-SAT feasibility probes. Each
    optimum is kept as a constraint for the next stage. Returns (status, values, picks)."""
    solver = _stage_solver()
    if time_limit_s is not None:
        solver.parameters.max_time_in_seconds = time_limit_s
    worst_values = {
        ObjectiveTerm.LATENCY: candidates.latency_us,
        ObjectiveTerm.TTFT: candidates.ttft_us,
        ObjectiveTerm.TPOT: candidates.tpot_us,
    }
    values: list[int] = []
    proven = True
    picked: list[int] | None = None  # the last plan found, all earlier stages kept
    floor: ThroughputFloor | None = None  # throughput optimum fixed by an earlier stage
    for term in objective:
        if term in worst_values:
            incumbent = int(worst_values[term][picked].max()) if picked else None
            found = _min_worst(hm, worst_values[term], solver, incumbent, floor)
            if found is None:
                return "infeasible", [], []
            best, ok = found
            proven &= ok
            for k in np.nonzero(worst_values[term] > best)[0]:
                hm.model.add(hm.pick[k] == 0)
            values.append(best)
            picked = None  # the old plan may break the new limit: no incumbent for the next stage
            continue
        expr = hm.terms[term]
        hm.model.clear_objective()
        (hm.model.maximize if term in cpsat.MAXIMISE else hm.model.minimize)(expr)
        status = solver.solve(hm.model)
        if status not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
            return "infeasible", [], []
        proven &= status == cp_model.OPTIMAL
        best = int(round(solver.objective_value))
        values.append(best)
        picked = [k for k, v in enumerate(hm.pick) if solver.value(v)]
        hm.model.add(expr >= best if term in cpsat.MAXIMISE else expr <= best)
        if term is ObjectiveTerm.THROUGHPUT:
            floor = ThroughputFloor(candidates, float(best), hm.budget_milli)
        if term is ObjectiveTerm.THROUGHPUT and bounds is not None:
            # Exact reduction: a candidate whose best completion cannot reach the optimum
            # is in no optimal plan (bound from the budget-only knapsack relaxation).
            for k in np.nonzero(bounds < best)[0]:
                hm.model.add(hm.pick[k] == 0)
    hm.model.clear_objective()
    status = solver.solve(hm.model)
    if status not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
        return "infeasible", [], []
    return ("optimal" if proven else "feasible"), values, [k for k, v in enumerate(hm.pick) if solver.value(v)]
