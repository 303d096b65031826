"""Say why nothing is feasible, and by how much each conflicting constraint must move."""

from __future__ import annotations

import numpy as np

from guideopt.costs.capability import kv_reason, layout_reason, runs_on_reason, weights_reason
from guideopt.costs.tables import kv_dtype_for, tp_is_valid
from guideopt.model.request import PlanRequest
from guideopt.solver import cpsat
from guideopt.solver.constraints import Scope, satisfied
from guideopt.solver.options import PlanOptions
from guideopt.units import BYTES_PER_GB


def explain_no_fitting_option(opts: PlanOptions, req: PlanRequest) -> tuple[str, list[str]]:
    """Nothing fits in memory (or no TP/PP layout is valid): say what is needed."""
    table = opts.all_options
    arch = opts.arch
    if len(table) == 0 and min(req.parallelism.pp) > arch.num_layers:
        return (
            f"parallelism.pp: every allowed PP size {req.parallelism.pp} exceeds {arch.id}'s {arch.num_layers} layers "
            f"(use pp <= {arch.num_layers})",
            ["parallelism.pp"],
        )
    if len(table) == 0 and (refusal := _capability_refusal(opts, req)):
        return refusal
    if len(table) == 0:
        valid = [t for t in (1, 2, 4, 8, 16) if bool(tp_is_valid(arch, np.array([t]))[0])]
        return (
            f"parallelism.tp: none of {req.parallelism.tp} divides {arch.id}'s {arch.num_heads} heads "
            f"({arch.num_kv_heads} KV heads) within one node; valid TP sizes are {valid}",
            ["parallelism.tp"],
        )
    mem = table.memory
    need = mem.weights_bytes + mem.activation_bytes + mem.overhead_bytes
    best = int(np.argmin(need - mem.usable_bytes))
    gpu = table.space.gpus[int(table.gpu_idx[best])]
    weights_total = arch.num_params * min(d.bytes for d in req.precision) / BYTES_PER_GB
    largest = max(g.memory_gb for g in table.space.gpus)
    batch = f"a batch of {req.workload.batch}" if req.workload.batch else "even one request"
    msg = (
        f"memory: no configuration fits: the weights alone need {weights_total:.1f} GB; the largest allowed GPU has "
        f"{largest:.1f} GB, and the closest fit ({gpu.id}, tp={int(table.tp[best])}, pp={int(table.pp[best])}) needs "
        f"{float(need[best]) / BYTES_PER_GB:.1f} GB per GPU before the KV cache of {batch} "
        f"(its engine may use {float(mem.usable_bytes[best]) / BYTES_PER_GB:.1f} GB). "
        f"Allow larger TP/PP (parallelism.tp/pp), bigger GPUs, or a lower precision (int8/int4)"
    )
    return msg, ["memory", "parallelism.tp", "parallelism.pp", "precision"]


def _capability_refusal(opts: PlanOptions, req: PlanRequest) -> tuple[str, list[str]] | None:
    """When no allowed engine can run any allowed GPU / precision / layout: the engines' reasons."""
    space = opts.all_options.space
    reasons: dict[str, str] = {}  # reason -> the request field it concerns
    for fw in space.frameworks:
        for gpu in space.gpus:
            for dt in space.dtypes:
                kv = kv_dtype_for(space, dt)
                field, reason = next(
                    (
                        (f, r)
                        for f, r in (
                            ("framework", runs_on_reason(fw, gpu)),
                            ("precision", weights_reason(fw, gpu, dt)),
                            ("kv_dtype", kv_reason(fw, gpu, dt, kv)),
                        )
                        if r
                    ),
                    ("", None),
                )
                if reason is None:
                    layouts = [
                        layout_reason(fw, pp=p, gpus_per_replica=t * p, gpus_per_node=gpu.gpus_per_node) for t in space.tp for p in space.pp
                    ]
                    if any(r is None for r in layouts):
                        return None
                    field, reason = "parallelism.pp", next(r for r in layouts if r)
                reasons.setdefault(reason, field)
    fields = list(dict.fromkeys(reasons.values()))
    return "no allowed engine can run this request: " + "; ".join(f"{f}: {r}" for r, f in reasons.items()), fields


def _relaxed_value(opts: PlanOptions, req: PlanRequest, name: str, core: list[str]) -> float | None:
    """Best value of the quantity ``name`` bounds with the rest of the conflict kept."""
    every = {b.name for b in opts.bounds}
    skip = frozenset(every - set(core) | {name})
    c = cpsat.candidates(opts, req, skip=skip)
    ok = satisfied(c, opts.bounds, skip)
    bound = next(b for b in opts.bounds if b.name == name)
    values = bound.values(c)[ok & (bound.values(c) > 0 if bound.kind.scope is Scope.TYPE else True)]
    if values.size == 0:
        return None
    return float(values.max() if bound.kind.at_least else values.min())


def _describe(name: str, req: PlanRequest, opts: PlanOptions, value: float | None) -> str:
    if value is None:
        return f"{name}: relaxing it alone does not help"
    bound = next(b for b in opts.bounds if b.name == name)
    return bound.kind.describe(req, bound, value)


def explain_conflict(opts: PlanOptions, req: PlanRequest, core: list[str]) -> tuple[str, list[str]]:
    names = core or [b.name for b in opts.bounds]
    parts = [_describe(n, req, opts, _relaxed_value(opts, req, n, names)) for n in names]
    return "no plan satisfies these constraints together: " + "; ".join(parts), names
