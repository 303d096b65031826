"""Heterogeneous plans: several groups of replicas, each on its own GPU type (Mélange-style
mixing, with parallelism and batch chosen per group), under one budget and per-type inventory.

One CP-SAT model (a multiple-choice knapsack) over candidate groups:
  pick[k] = 1 if candidate k — a replica kind deployed as n_k replicas — is a group of the plan
At most one group per GPU type. The user constraints are the rows of
``constraints.CONSTRAINT_KINDS``: PLAN rows bound a sum over the picks (budget, GPU count,
throughput floor), TYPE rows bound the one group of a type (inventory), GROUP rows drop the
replica kinds that miss them (latency SLOs). The objective terms are the rows of
``terms.TERMS``: SUM terms add over groups; a WORST term is the worst group's
(``worst >= Σ value[k]·pick[k]`` over each type's candidates, exact since a type has at most
one pick). Before the model is built, candidates are pruned: among candidates of one GPU
type with the same total GPUs (hence the same cost), one no better in throughput or any
latency term the request uses than another is dropped; likewise replica kinds within one
GPU type and GPUs-per-replica. The stages are solved in ``hetero_search``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from ortools.sat.python import cp_model

from guideopt.costs.tables import lex_ids
from guideopt.model.request import ObjectiveTerm, PlanRequest
from guideopt.solver.candidates import (
    MAX_REPLICAS_PER_OPTION,
    Candidates,
    ReplicaKinds,
    concat_kinds,
    every_count,
    kinds_from_options,
    kinds_from_pipelines,
)
from guideopt.solver.constraints import BUDGET, THROUGHPUT_FLOOR, Bound, Scope, group_ok, replica_range
from guideopt.solver.dominance import DTYPE_SLOTS, FRAMEWORK_SLOTS, PARALLEL_SIZE_SLOTS, prune_groups, shape_key
from guideopt.solver.options import PlanOptions, relevant_terms
from guideopt.solver.terms import TERMS, Aggregate, metric_columns

# Mixed-radix slots of the integer group keys (as in ``dominance.shape_key``).
GPU_TYPE_SLOTS = 4096  # GPU type index (+1 for "none")
GPUS_PER_REPLICA_SLOTS = 1 << 20  # GPUs of one replica (TP·PP)
# Pipelines tested at once against the single-type candidates (bounds the comparison array).
DOMINANCE_CHUNK = 512


def pair_key(gpu_a: np.ndarray, gpu_b: np.ndarray, tp_a: np.ndarray, tp_b: np.ndarray) -> np.ndarray:
    """One integer per (first type, second type, TP of each) of a cross-type pipeline."""
    key = gpu_a.astype(np.int64)
    for col, size in ((gpu_b, GPU_TYPE_SLOTS), (tp_a, PARALLEL_SIZE_SLOTS), (tp_b, PARALLEL_SIZE_SLOTS)):
        key = key * size + col.astype(np.int64)
    return key


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


@dataclass
class HeteroKinds:
    kinds: ReplicaKinds
    max_replicas: np.ndarray


def _usable(kinds: ReplicaKinds, opts: PlanOptions, group: np.ndarray, metrics, req: PlanRequest) -> HeteroKinds:
    """Kinds that meet every GROUP limit with at least one replica within every cap, pruned
    within ``group`` to the front of the metrics the request uses (and throughput)."""
    _, hi = replica_range(kinds, opts.bounds, frozenset({THROUGHPUT_FLOOR.key}), MAX_REPLICAS_PER_OPTION)
    ok = group_ok(kinds, opts.bounds) & (hi >= 1)
    keep = prune_groups(np.nonzero(ok)[0], group, metric_columns(metrics, relevant_terms(req) | {ObjectiveTerm.THROUGHPUT}))
    return HeteroKinds(kinds.take(keep), hi[keep])


def hetero_kinds(opts: PlanOptions, req: PlanRequest, pt, per_shape: bool = False) -> HeteroKinds:
    """Uniform replica kinds (one GPU type) and, with a pipeline table, cross-type pipelines,
    pruned within (GPU type, GPUs per replica) — or within each deployment shape with
    ``per_shape``, which later top-k ranks need: a kind beaten by one of another shape is
    still needed once a plan with that other shape has been shown."""
    t = opts.table
    shapes = shape_key(t)
    kinds = kinds_from_options(t, shapes)
    gpus = t.gpus_per_replica.astype(np.int64)
    group = shapes if per_shape else t.gpu_idx.astype(np.int64) * GPUS_PER_REPLICA_SLOTS + gpus
    out = _usable(kinds, opts, group, t.metrics, req)
    if pt is None or len(pt) == 0:
        return out
    rows = np.arange(len(pt))
    pipe_shapes = pipeline_shape_key(pt, rows)
    pipe_group = pipe_shapes if per_shape else pair_key(pt.gpu_a, pt.gpu_b, pt.tp_a, pt.tp_b)
    pipes = _usable(kinds_from_pipelines(pt, -1 - pipe_shapes), opts, pipe_group, pt.metrics, req)
    return HeteroKinds(concat_kinds(out.kinds, pipes.kinds), np.concatenate([out.max_replicas, pipes.max_replicas]))


def _dominated_pipelines(gpu_a: np.ndarray, gpu_b: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Pipeline candidates (two GPU types) that a single-type candidate of one of their types
    beats or equals in cost, throughput and every latency term: swapping it in frees a type
    and loses nothing, so such a pipeline is in no optimal plan."""
    out = np.zeros(gpu_a.size, dtype=bool)
    single = gpu_b < 0
    for t in np.unique(gpu_a[single]):
        mine = values[single & (gpu_a == t)]
        idx_all = np.nonzero(~single & ((gpu_a == t) | (gpu_b == t)))[0]
        for start in range(0, idx_all.size, DOMINANCE_CHUNK):
            idx = idx_all[start : start + DOMINANCE_CHUNK]
            out[idx] |= (mine[None, :, :] <= values[idx][:, None, :]).all(axis=2).any(axis=1)
    return out


def _prune_columns(c: Candidates, req: PlanRequest, bounds: list[Bound]) -> np.ndarray:
    """Cost, throughput, every other summed cap the request sets (cost alone does not order
    GPU counts: prices are rounded per replica) and the worst-group terms it uses."""
    cols = [TERMS[ObjectiveTerm.COST].oriented(c), TERMS[ObjectiveTerm.THROUGHPUT].oriented(c)]
    cols += [b.values(c) for b in bounds if b.kind.scope is Scope.PLAN and not b.kind.at_least and b.kind is not BUDGET]
    terms = relevant_terms(req)
    cols += [row.oriented(c) for t, row in TERMS.items() if row.aggregate is Aggregate.WORST and t in terms]
    return np.stack(cols, axis=1)


def hetero_candidates(
    h: HeteroKinds, req: PlanRequest, bounds: list[Bound], per_shape: bool = False, drop_beaten_pipelines: bool = True
) -> Candidates:
    """Every (kind, n) within its caps, pruned to the Pareto front of ``_prune_columns``
    among pairs of the same GPU type(s) — or of the same deployment shape with ``per_shape``,
    which later top-k ranks need, since they must avoid the shapes of earlier plans.
    ``drop_beaten_pipelines``: also drop pipelines a single-type group beats (a smaller
    CP-SAT model; the knapsack DP drops what its slot's front beats by itself)."""
    c = every_count(h.kinds, np.ones(len(h.kinds), dtype=np.int64), h.max_replicas.astype(np.int64))
    values = _prune_columns(c, req, bounds)
    # One group per GPU type: a candidate is replaceable by another using the same GPU
    # type(s) that costs no more and is no worse in throughput or latency.
    group = c.gpu_idx.astype(np.int64) * GPU_TYPE_SLOTS + (c.gpu_idx2 + 1)
    if per_shape:
        group = lex_ids(group, c.shape)  # the (type(s), shape) pairs, numbered
    keep = prune_groups(np.arange(len(c)), group, values)
    if not per_shape and drop_beaten_pipelines:
        keep = keep[~_dominated_pipelines(c.gpu_idx[keep], c.gpu_idx2[keep], values[keep])]
    return c.take(keep)


@dataclass
class HeteroModel:
    model: cp_model.CpModel
    pick: list[cp_model.IntVar]
    terms: dict[ObjectiveTerm, cp_model.LinearExpr]
    budget_milli: int = 0


def _types(c: Candidates) -> list[np.ndarray]:
    used = np.unique(np.concatenate([c.gpu_idx, c.gpu_idx2[c.gpu_idx2 >= 0]]))
    return [np.nonzero((c.gpu_idx == i) | (c.gpu_idx2 == i))[0] for i in used]


def build_hetero_model(c: Candidates, req: PlanRequest, bounds: list[Bound], forbidden: list[tuple[list[int], int]]) -> HeteroModel:
    """pick[k] = 1 if candidate k (a kind with its replica count) is a group of the plan."""
    model = cp_model.CpModel()
    pick = [model.new_bool_var(f"pick_{k}") for k in range(len(c))]
    model.add(sum(pick) >= 1)
    for of_type in _types(c):
        model.add_at_most_one(pick[k] for k in of_type)  # one group per GPU type
    for b in bounds:
        if b.kind.scope is Scope.TYPE:  # the type's only group must fit its limit
            for k in np.nonzero(b.violated(c))[0]:
                model.add(pick[k] == 0)
        elif b.kind.scope is Scope.PLAN:
            total = cp_model.LinearExpr.weighted_sum(pick, b.values(c).tolist())
            model.add(total >= b.int_limit() if b.kind.at_least else total <= b.int_limit())
    for combo, size in forbidden:  # plans already returned: not all of their shapes again
        if combo:
            model.add(sum(pick[k] for k in combo) <= size - 1)
    terms: dict[ObjectiveTerm, cp_model.LinearExpr] = {}
    objective_terms = set(req.objective)
    for term, row in TERMS.items():
        values = row.values(c)
        if row.aggregate is Aggregate.SUM:
            terms[term] = cp_model.LinearExpr.weighted_sum(pick, values.tolist())
        elif row.aggregate is Aggregate.WORST and term in objective_terms:
            worst = model.new_int_var(0, int(values.max(initial=0)), f"worst_{term.value}")
            for members in _types(c):  # at most one pick per type: the sum is that group's value
                model.add(worst >= cp_model.LinearExpr.weighted_sum([pick[k] for k in members], values[members].tolist()))
            terms[term] = worst
        elif row.aggregate is Aggregate.RATIO and term in objective_terms and row.ratio is not None:
            terms[term] = _ratio_term(model, c, pick, row.ratio, int(values.max(initial=0)), term.value)
    budget = next(b for b in bounds if b.kind is BUDGET)
    return HeteroModel(model, pick, terms, budget.int_limit())


def _ratio_term(model: cp_model.CpModel, c: Candidates, pick, ratio, most: int, name: str) -> cp_model.IntVar:
    """r = ceil(scale · Σnum / Σden) over the picked groups, as r·den·q >= num·p (r minimised).
    The ratio of two sums lies between the groups' own ratios, so ``most`` bounds it."""
    num_term, den_term, scale = ratio
    num = cp_model.LinearExpr.weighted_sum(pick, TERMS[num_term].values(c).tolist())
    den_values = TERMS[den_term].values(c)
    den = model.new_int_var(0, int(den_values.sum()), f"den_{name}")
    model.add(den == cp_model.LinearExpr.weighted_sum(pick, den_values.tolist()))
    r = model.new_int_var(0, most, name)
    product = model.new_int_var(0, most * int(den_values.sum()), f"prod_{name}")
    model.add_multiplication_equality(product, [r, den])
    model.add(product * scale.denominator >= num * scale.numerator)
    return r
