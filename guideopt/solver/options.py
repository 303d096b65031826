"""Turn a PlanRequest into the option table the CP-SAT model chooses from.

Options that cannot fit in memory are dropped, then options dominated within their
deployment shape — no better in any metric the request uses than another option of the
same shape (hence the same cost) — are pruned before the model is built.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from guideopt.catalog import Catalog
from guideopt.costs.tables import OptionSpace, OptionTable, build_option_table
from guideopt.errors import InvalidRequestError
from guideopt.model.dtype import Dtype
from guideopt.model.gpu import Gpu
from guideopt.model.llm import ModelArch
from guideopt.model.request import DEFAULT_BATCH_CHOICES, ObjectiveTerm, PlanRequest


@dataclass
class PlanOptions:
    arch: ModelArch
    all_options: OptionTable  # every structurally valid option, fitting or not
    table: OptionTable  # fitting, non-dominated options
    inventory: dict[int, int | None]  # gpu index -> max GPUs of that type (None: unlimited)
    prices: list[float]


def resolve_gpus(req: PlanRequest, catalog: Catalog) -> list[Gpu]:
    if req.gpus is None:
        return list(catalog.gpus.values())
    if not req.gpus:
        raise InvalidRequestError("gpus: the list of allowed GPU types is empty (name at least one id, or leave it out)")
    return [catalog.gpu(gpu_id) for gpu_id in req.gpus]


def build_plan_options(req: PlanRequest, catalog: Catalog) -> PlanOptions:
    arch = catalog.model(req.model)
    gpus = resolve_gpus(req, catalog)
    frameworks = [catalog.framework(f) for f in req.framework_ids(list(catalog.frameworks))]
    prices = [req.allowance(g.id).usd_per_hour or g.usd_per_hour for g in gpus]
    batches = [req.workload.batch] if req.workload.batch else list(DEFAULT_BATCH_CHOICES)
    space = OptionSpace(
        gpus=gpus,
        frameworks=frameworks,
        dtypes=list(req.precision),
        tp=req.parallelism.tp,
        pp=req.parallelism.pp,
        batch=batches,
        input_len=req.workload.input_len,
        output_len=req.workload.output_len,
        kv_dtype=req.kv_dtype,
    )
    table = build_option_table(arch, space, catalog.calibration, prices=prices)
    fitting = table.take(np.nonzero(table.fits)[0])
    pruned = fitting.take(non_dominated(fitting, relevant_terms(req)))
    inventory = {i: req.allowance(g.id).max for i, g in enumerate(gpus)}
    return PlanOptions(arch=arch, all_options=table, table=pruned, inventory=inventory, prices=prices)


def relevant_terms(req: PlanRequest) -> set[ObjectiveTerm]:
    """Metrics the request can tell options apart by: its objective terms and its SLOs."""
    terms = set(req.objective)
    slo = req.slo
    for term, limit in (
        (ObjectiveTerm.TTFT, slo.ttft_ms),
        (ObjectiveTerm.TPOT, slo.tpot_ms),
        (ObjectiveTerm.LATENCY, slo.batch_latency_s),
        (ObjectiveTerm.THROUGHPUT, slo.min_output_throughput_tok_s),
    ):
        if limit is not None:
            terms.add(term)
    return terms


def metric_columns(metrics, terms: set[ObjectiveTerm]) -> np.ndarray:
    """Per-row quantities to minimise (throughput negated) for the metric terms in ``terms``."""
    columns = {
        ObjectiveTerm.THROUGHPUT: -metrics.output_throughput_tok_s,
        ObjectiveTerm.LATENCY: metrics.batch_latency_s,
        ObjectiveTerm.TTFT: metrics.ttft_s,
        ObjectiveTerm.TPOT: metrics.tpot_s,
    }
    chosen = [columns[t] for t in ObjectiveTerm if t in terms and t in columns]
    return np.stack(chosen, axis=1) if chosen else np.zeros((metrics.ttft_s.shape[0], 1))


# Mixed-radix slots of the integer shape keys: each field's index must stay below its slot
# size, so the key is unique. Catalog sizes are far below them (a few engines, a handful of
# precisions, TP/PP sizes up to a few hundred); GPU types need no slot (leading digit).
FRAMEWORK_SLOTS = 64
DTYPE_SLOTS = 16
PARALLEL_SIZE_SLOTS = 1024  # TP or PP size (a value, not an index)


def shape_key(table: OptionTable) -> np.ndarray:
    """One integer per deployment shape (GPU type, framework, dtype, TP, PP)."""
    key = table.gpu_idx.astype(np.int64)
    # fp16 and bf16 run at the same speed and size: one shape, not two near-identical plans.
    precision_class = np.array([Dtype.FP16.value if d.is_float16 else d.value for d in table.space.dtypes])
    _, dtype_class = np.unique(precision_class, return_inverse=True)
    for col, size in (
        (table.fw_idx, FRAMEWORK_SLOTS),
        (dtype_class[table.dtype_idx], DTYPE_SLOTS),
        (table.tp, PARALLEL_SIZE_SLOTS),
        (table.pp, PARALLEL_SIZE_SLOTS),
    ):
        key = key * size + col.astype(np.int64)
    return key


def non_dominated(table: OptionTable, terms: set[ObjectiveTerm] | None = None) -> np.ndarray:
    """Indices of options not dominated by another option of the same deployment shape.

    Options of one shape cost the same and use the same GPUs, so one that is no better in
    any metric the request uses (``terms``) can never be chosen. Pruning stays inside a
    shape so that top-k plans, which exclude whole shapes, lose nothing. Ties keep the
    first option in table order, so the result is deterministic.
    """
    if len(table) == 0:
        return np.zeros(0, dtype=int)
    values = metric_columns(table.metrics, terms if terms is not None else set(ObjectiveTerm))
    group = shape_key(table)
    order = np.argsort(group, kind="stable")
    bounds = np.nonzero(np.diff(group[order]))[0] + 1
    keep: list[int] = []
    for idx in np.split(order, bounds):
        v = values[idx]
        le = (v[:, None, :] <= v[None, :, :]).all(axis=2)  # le[a, b]: a no worse than b everywhere
        lt = (v[:, None, :] < v[None, :, :]).any(axis=2)
        dominated = (le & lt).any(axis=0)
        equal = le & le.T
        earlier_equal = np.triu(equal, k=1).any(axis=0)  # an identical option comes earlier
        keep.extend(idx[~dominated & ~earlier_equal].tolist())
    return np.array(sorted(keep), dtype=int)
