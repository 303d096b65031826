"""Turn a PlanRequest into the option table the CP-SAT model chooses from.

Options that cannot fit in memory are dropped, then options dominated within their
deployment shape — no better in any metric the request uses than another option of the
same shape (hence the same cost) — are pruned before the model is built.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from guideopt.catalog import Catalog
from guideopt.costs.intervals import pessimistic_table
from guideopt.costs.layouts import DEFAULT_ATTENTION_DP
from guideopt.costs.pipeline_table import hardware_classes
from guideopt.costs.tables import OptionSpace, OptionTable, lex_ids, option_rows, table_for_rows
from guideopt.errors import InvalidRequestError
from guideopt.model.calibration import Calibration
from guideopt.model.dtype import Dtype
from guideopt.model.gpu import Gpu
from guideopt.model.llm import ModelArch
from guideopt.model.request import DEFAULT_BATCH_CHOICES, ObjectiveTerm, PlanRequest
from guideopt.solver.candidates import MAX_REPLICAS_PER_OPTION, Candidates, fewest_and_most, kinds_from_options
from guideopt.solver.constraints import Bound, replica_range, user_bounds
from guideopt.solver.dominance import non_dominated, shape_key
from guideopt.solver.timing import Phases


@dataclass
class PlanOptions:
    arch: ModelArch
    all_options: OptionTable  # every structurally valid option, fitting or not
    table: OptionTable  # fitting, non-dominated options
    inventory: dict[int, int | None]  # gpu index -> max GPUs of that type (None: unlimited)
    prices: list[float]
    bounds: list[Bound] = field(default_factory=list)  # the request's limits (constraints table)


def resolve_gpus(req: PlanRequest, catalog: Catalog) -> list[Gpu]:
    if req.gpus is None:
        return list(catalog.gpus.values())
    if not req.gpus:
        raise InvalidRequestError("gpus: the list of allowed GPU types is empty (name at least one id, or leave it out)")
    return [catalog.gpu(gpu_id) for gpu_id in req.gpus]


def plan_precisions(req: PlanRequest, arch: ModelArch) -> list[Dtype]:
    """The weight precisions to plan: the request's, or (none given) the precision a quantized
    checkpoint ships in (DeepSeek-R1 FP8, gpt-oss MXFP4, Kimi-K2.5 INT4), else 16-bit."""
    if "precision" not in req.model_fields_set and arch.checkpoint_dtype:
        return [Dtype(arch.checkpoint_dtype)]
    return list(req.precision)


def layout_choices(req: PlanRequest, arch: ModelArch) -> dict:
    """The ``OptionSpace`` layout fields of a request: its allowed attention-DP and EP sizes, or
    for a MoE model (none named) attention DP 1-64 with experts split by TP or one rank per GPU."""
    par = req.parallelism
    if not arch.is_moe:
        for key, sizes in (("ep", par.ep), ("attention_dp", par.attention_dp)):
            if sizes and sizes != [1]:
                raise InvalidRequestError(
                    f"parallelism.{key}: {arch.id} is a dense model, without experts to split or attention ranks to add "
                    "(leave it out: its data parallelism is replicas)"
                )
        return {"attention_dp": [1], "moe_ep": [1]}
    moe = arch.moe
    assert moe is not None
    bad = [e for e in par.ep or () if moe.num_experts % e]
    if bad:
        raise InvalidRequestError(
            f"parallelism.ep: {bad} do not divide {arch.id}'s {moe.num_experts} routed experts (use divisors of {moe.num_experts})"
        )
    return {"attention_dp": par.attention_dp or list(DEFAULT_ATTENTION_DP), "moe_ep": par.ep}


def build_plan_options(req: PlanRequest, catalog: Catalog, phases: Phases | None = None) -> PlanOptions:
    arch = catalog.model(req.model)
    gpus = resolve_gpus(req, catalog)
    frameworks = [catalog.framework(f) for f in req.framework_ids(list(catalog.frameworks))]
    prices = [req.allowance(g.id).usd_per_hour or g.usd_per_hour for g in gpus]
    batches = [req.workload.batch] if req.workload.batch else list(DEFAULT_BATCH_CHOICES)
    space = OptionSpace(
        gpus=gpus,
        frameworks=frameworks,
        dtypes=plan_precisions(req, arch),
        tp=req.parallelism.tp,
        pp=req.parallelism.pp,
        **layout_choices(req, arch),
        batch=batches,
        input_len=int(req.workload.input_len or 0),
        output_len=int(req.workload.output_len or 0),
        kv_dtype=req.kv_dtype,
    )
    table = option_table(arch, space, catalog.calibration, prices)
    table = pessimistic_table(table, catalog.calibration.intervals) if req.robust else table
    if phases is not None:
        phases.lap("table")
    fitting = table.take(np.nonzero(table.fits)[0])
    pruned = fitting.take(non_dominated(fitting, relevant_terms(req)))
    if phases is not None:
        phases.lap("prune")
    inventory = {i: req.allowance(g.id).max for i, g in enumerate(gpus)}
    return PlanOptions(arch=arch, all_options=table, table=pruned, inventory=inventory, prices=prices, bounds=user_bounds(req, gpus))


def option_table(arch: ModelArch, space: OptionSpace, calibration: Calibration, prices: list[float]) -> OptionTable:
    """``build_option_table``, computed once per hardware class (GPU types that differ only
    in name and price) and repeated onto each of its types with the type's price."""
    cls, reps = hardware_classes(list(space.gpus), calibration)
    rows = option_rows(arch, space)
    if len(reps) == len(space.gpus):
        return table_for_rows(arch, space, calibration, rows, prices)
    by_class = {**rows, "gpu": cls[rows["gpu"]]}
    _, first, inverse = np.unique(lex_ids(*by_class.values()), return_index=True, return_inverse=True)
    class_space = replace(space, gpus=[space.gpus[i] for i in reps])
    once = table_for_rows(arch, class_space, calibration, {k: v[first] for k, v in by_class.items()}, [prices[i] for i in reps])
    return replace(
        once.take(inverse.ravel()),
        space=space,
        gpu_idx=rows["gpu"],
        usd_per_hour_per_gpu=np.asarray(prices, dtype=float)[rows["gpu"]],
    )


def relevant_terms(req: PlanRequest) -> set[ObjectiveTerm]:
    """Metrics the request can tell options apart by: its objective terms and the terms of
    the quantities its limits bound."""
    terms = set(req.objective)
    for b in user_bounds(req, []):
        if b.kind.term is not None and b.kind.term is not ObjectiveTerm.COST:
            terms.add(b.kind.term)
    return terms


def candidates(opts: PlanOptions, skip: frozenset[str] = frozenset()) -> Candidates:
    """Every option at its most and fewest replicas under the limits not in ``skip``."""
    kinds = kinds_from_options(opts.table, shape_key(opts.table))
    lo, hi = replica_range(kinds, opts.bounds, skip, MAX_REPLICAS_PER_OPTION)
    return fewest_and_most(kinds, lo, np.maximum(hi, 1))
