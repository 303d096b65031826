"""Pareto fronts of the feasible deployments: what more money, or more latency, buys.

``pareto_plans`` enumerates the same candidates the solver chooses from (every fitting
option of the request deployed as 1 … max replicas, filtered by the same constraint rules,
``guideopt.solver.constraints``) and keeps the non-dominated ones over

* (cost ↓, throughput ↑): the cheapest way to each throughput level, and
* (batch latency ↓, throughput ↑): the throughput each latency allows.

The comparison uses the solver's own integer scaling (milli-dollars, microseconds, tenths
of a token/s), so the plan ``guideopt.api.plan`` picks compares with the fronts exactly.
Fronts cover single-GPU-type deployments (one option, n replicas), as the solver does.
``guideopt.io.plots.plot_pareto`` draws both fronts with matplotlib.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from guideopt.catalog import Catalog, load_catalog
from guideopt.model.plan import Group, PlanResult
from guideopt.model.request import ObjectiveTerm, PlanRequest
from guideopt.model.validation import validated
from guideopt.solver.candidates import MAX_REPLICAS_PER_OPTION, Candidates, every_count, kinds_from_options
from guideopt.solver.constraints import replica_range, satisfied
from guideopt.solver.dominance import non_dominated, shape_key
from guideopt.solver.options import PlanOptions, build_plan_options, relevant_terms
from guideopt.solver.plan import solve_request
from guideopt.units import DECI_TOK_S_PER_TOK_S, MILLI_USD_PER_USD, MS_PER_S, US_PER_S

# Options of one deployment shape (same GPUs, hence the same cost at the same replica
# count) that are no better in throughput and latency, nor in any metric an SLO bounds,
# can never be on either front.
FRONT_TERMS = {ObjectiveTerm.THROUGHPUT, ObjectiveTerm.LATENCY}


@dataclass(frozen=True)
class ParetoPoint:
    """One deployment: a single option (GPU, engine, dtype, TP, PP, batch, split) × replicas."""

    gpu: str
    framework: str
    dtype: str
    kv_dtype: str
    tp: int
    pp: int
    batch: int
    split: int
    replicas: int
    num_gpus: int
    usd_per_hour: float
    output_throughput_tok_s: float
    batch_latency_s: float  # per replica
    ttft_ms: float
    tpot_ms: float
    chosen: bool = False  # the plan guideopt.api.plan ranks first

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @property
    def label(self) -> str:
        return f"{self.replicas}x(tp{self.tp}·pp{self.pp}) {self.gpu} {self.framework} {self.dtype}"


@dataclass
class ParetoResult:
    model: str
    objective: list[str]
    plan: PlanResult  # the solver's answer (rank 1 only)
    cost_front: list[ParetoPoint]  # ascending cost
    latency_front: list[ParetoPoint]  # ascending batch latency
    chosen: ParetoPoint | None  # rank 1 as a candidate (None for a multi-group plan)
    # every feasible candidate, for plots and checks (same units as ParetoPoint)
    usd_per_hour: np.ndarray = field(repr=False)
    output_throughput_tok_s: np.ndarray = field(repr=False)
    batch_latency_s: np.ndarray = field(repr=False)

    @property
    def num_candidates(self) -> int:
        return int(self.usd_per_hour.shape[0])

    def chosen_values(self) -> tuple[float, float, float] | None:
        """(usd/h, output tok/s, batch latency s) of the chosen plan."""
        if self.chosen is not None:
            return self.chosen.usd_per_hour, self.chosen.output_throughput_tok_s, self.chosen.batch_latency_s
        if not self.plan.plans:
            return None
        best = self.plan.plans[0]
        return best.usd_per_hour, best.metrics.output_throughput_tok_s, best.metrics.batch_latency_s

    def as_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "objective": self.objective,
            "num_candidates": self.num_candidates,
            "chosen": self.chosen.as_dict() if self.chosen else None,
            "cost_throughput_front": [p.as_dict() for p in self.cost_front],
            "latency_throughput_front": [p.as_dict() for p in self.latency_front],
        }


# ----------------------------------------------------------------------------- candidates


def _option_index(opts: PlanOptions, group: Group) -> int | None:
    """The row of ``opts.table`` that is ``group``'s configuration, if any."""
    t = opts.table
    space = t.space
    gpu = np.array([g.id for g in space.gpus])[t.gpu_idx] == group.gpu
    fw = np.array([f.id for f in space.frameworks])[t.fw_idx] == group.framework
    dtype = np.array([d.value for d in space.dtypes])[t.dtype_idx] == group.dtype
    match = gpu & fw & dtype & (t.tp == group.tp) & (t.pp == group.pp) & (t.batch == group.batch) & (t.split == group.split)
    rows = np.nonzero(match)[0]
    return int(rows[0]) if rows.size else None


def front_options(opts: PlanOptions, req: PlanRequest, chosen: Group | None) -> PlanOptions:
    """Every fitting option that can reach a front, plus the solver's choice."""
    table = opts.all_options
    fitting = table.take(np.nonzero(table.fits)[0])
    keep = set(non_dominated(fitting, FRONT_TERMS | relevant_terms(req)).tolist())
    full = dataclasses.replace(opts, table=fitting)
    if chosen is not None:
        index = _option_index(full, chosen)
        if index is not None:
            keep.add(index)
    return dataclasses.replace(opts, table=fitting.take(np.array(sorted(keep), dtype=int)))


def all_replica_counts(opts: PlanOptions, req: PlanRequest) -> Candidates:
    """Every (option, replica count) the caps allow, built as the solver builds its candidates.

    The solver needs only the fewest and the most replicas of an option; a cost front
    needs every count in between, since each is a different price.
    """
    kinds = kinds_from_options(opts.table, shape_key(opts.table))
    lo, hi = replica_range(kinds, opts.bounds, frozenset(), MAX_REPLICAS_PER_OPTION)
    return every_count(kinds, lo, np.maximum(hi, 1))


def feasible_candidates(opts: PlanOptions, req: PlanRequest) -> Candidates:
    cands = all_replica_counts(opts, req)
    return cands.take(np.nonzero(satisfied(cands, opts.bounds))[0])


# ----------------------------------------------------------------------------- fronts


def front_2d(minimise: np.ndarray, maximise: np.ndarray, *tie_breaks: np.ndarray) -> np.ndarray:
    """Indices of the points not dominated in (``minimise`` ↓, ``maximise`` ↑), by ascending
    ``minimise``. Of identical points one is kept: the first by ``tie_breaks`` (smaller first)
    then by index."""
    if minimise.size == 0:
        return np.zeros(0, dtype=int)
    keys = [np.arange(minimise.size)] + [np.asarray(k) for k in reversed(tie_breaks)] + [-maximise, minimise]
    order = np.lexsort(keys)
    best_before = np.concatenate([[-np.inf], np.maximum.accumulate(maximise[order].astype(float))[:-1]])
    return order[maximise[order] > best_before]


def _point(opts: PlanOptions, cands: Candidates, i: int, chosen: bool) -> ParetoPoint:
    t = opts.table
    o = int(cands.option[i])
    space = t.space
    return ParetoPoint(
        gpu=space.gpus[int(t.gpu_idx[o])].id,
        framework=space.frameworks[int(t.fw_idx[o])].id,
        dtype=space.dtypes[int(t.dtype_idx[o])].value,
        kv_dtype=t.kv_dtype_names[o] if t.kv_dtype_names else "",
        tp=int(t.tp[o]),
        pp=int(t.pp[o]),
        batch=int(t.batch[o]),
        split=int(t.split[o]),
        replicas=int(cands.replicas[i]),
        num_gpus=int(cands.gpus[i]),
        usd_per_hour=float(cands.milli_usd_per_hour[i]) / MILLI_USD_PER_USD,
        output_throughput_tok_s=float(cands.deci_tok_s[i]) / DECI_TOK_S_PER_TOK_S,
        batch_latency_s=float(cands.latency_us[i]) / US_PER_S,
        ttft_ms=float(cands.ttft_us[i]) * MS_PER_S / US_PER_S,
        tpot_ms=float(cands.tpot_us[i]) * MS_PER_S / US_PER_S,
        chosen=chosen,
    )


def _chosen_index(opts: PlanOptions, cands: Candidates, group: Group | None) -> int | None:
    if group is None:
        return None
    option = _option_index(opts, group)
    if option is None:
        return None
    hits = np.nonzero((cands.option == option) & (cands.replicas == group.replicas))[0]
    return int(hits[0]) if len(hits) else None


def _single_group(result: PlanResult) -> Group | None:
    if result.plans and len(result.plans[0].groups) == 1:
        return result.plans[0].groups[0]
    return None


def pareto_plans(request: PlanRequest | Mapping[str, Any], catalog: Catalog | None = None) -> ParetoResult:
    """The (cost, throughput) and (latency, throughput) fronts of a request's feasible
    deployments, with the plan ``guideopt.api.plan`` chooses marked.

    Raises NoFeasiblePlanError (with the solver's explanation) when nothing is feasible.
    """
    req: PlanRequest = validated(PlanRequest, request)
    cat = catalog or load_catalog()
    result = solve_request(req.model_copy(update={"top": 1}), cat)
    group = _single_group(result)
    opts = front_options(build_plan_options(req, cat), req, group)
    cands = feasible_candidates(opts, req)
    chosen = _chosen_index(opts, cands, group)
    is_chosen = np.zeros(len(cands), dtype=np.int8)
    if chosen is not None:
        is_chosen[chosen] = -1  # sorts first among identical points
    cost_idx = front_2d(cands.milli_usd_per_hour, cands.deci_tok_s, cands.latency_us, is_chosen)
    latency_idx = front_2d(cands.latency_us, cands.deci_tok_s, cands.milli_usd_per_hour, is_chosen)
    return ParetoResult(
        model=req.model,
        objective=[t.value for t in req.objective],
        plan=result,
        cost_front=[_point(opts, cands, int(i), int(i) == chosen) for i in cost_idx],
        latency_front=[_point(opts, cands, int(i), int(i) == chosen) for i in latency_idx],
        chosen=_point(opts, cands, chosen, True) if chosen is not None else None,
        usd_per_hour=cands.milli_usd_per_hour / MILLI_USD_PER_USD,
        output_throughput_tok_s=cands.deci_tok_s / DECI_TOK_S_PER_TOK_S,
        batch_latency_s=cands.latency_us / US_PER_S,
    )
