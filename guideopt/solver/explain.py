"""Say why nothing is feasible, and by how much each conflicting constraint must move."""

from __future__ import annotations

import numpy as np

from guideopt.costs.capability import kv_reason, layout_reason, moe_layout_reason, runs_on_reason, weights_reason
from guideopt.costs.layouts import layout_table
from guideopt.costs.tables import kv_dtype_for, tp_is_valid
from guideopt.model.request import PlanRequest
from guideopt.solver.candidates import Candidates
from guideopt.solver.constraints import Bound, satisfied, violations
from guideopt.solver.options import PlanOptions, candidates, plan_precisions
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
    if len(table) == 0 and (refusal := _capability_refusal(opts, req) or _layout_refusal(opts, req)):
        return refusal
    if len(table) == 0:
        valid = [t for t in (1, 2, 4, 8, 16) if bool(tp_is_valid(arch, np.array([t]))[0])]
        return (
            f"parallelism.tp: none of {req.parallelism.tp} divides {arch.id}'s {arch.tp_problem(max(req.parallelism.tp)) or 'heads'} "
            f"within one node; valid TP sizes are {valid}",
            ["parallelism.tp"],
        )
    mem = table.memory
    need = mem.weights_bytes + mem.activation_bytes + mem.overhead_bytes
    best = int(np.argmin(need - mem.usable_bytes))
    gpu = table.space.gpus[int(table.gpu_idx[best])]
    weights_total = arch.num_params * min(d.bytes for d in plan_precisions(req, arch)) / BYTES_PER_GB
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


def _layout_refusal(opts: PlanOptions, req: PlanRequest) -> tuple[str, list[str]] | None:
    """A MoE model whose allowed EP / attention-DP layouts no allowed engine runs (or none is
    valid at all): say which, with the engines' reasons."""
    arch, space = opts.arch, opts.all_options.space
    if not arch.is_moe:
        return None
    tps = [t for t in space.tp if bool(tp_is_valid(arch, np.array([t]))[0])]
    lay = layout_table(arch, tps, space.attention_dp, space.moe_ep)
    fields = ["parallelism.ep", "parallelism.attention_dp", "parallelism.tp"]
    if len(lay) == 0:
        return (
            f"parallelism.ep: none of the allowed EP sizes {req.parallelism.ep} splits {arch.id}'s experts over a stage of "
            f"tp {tps} × attention_dp {list(space.attention_dp)} GPUs (an EP size must divide both)",
            fields,
        )
    reasons: dict[str, None] = {}
    for fw in space.frameworks:
        for gpu in space.gpus:
            for t, d, e in zip(lay.tp.tolist(), lay.dp.tolist(), lay.ep.tolist()):
                for p in space.pp:
                    why = moe_layout_reason(
                        fw, attention_dp=d, moe_ep=e, gpus_per_replica=t * d * p, gpus_per_node=gpu.gpus_per_node, tp=t, moe_tp=t * d // e
                    )
                    if why is None:
                        return None
                    reasons.setdefault(why)
    return "no allowed engine runs these layouts: " + "; ".join(reasons), [*fields, "framework"]


def conflict_sets(cands: Candidates, bounds: list[Bound]) -> list[list[str]]:
    """Disjoint minimal conflicts that together explain the infeasibility: a minimal set of
    limits no candidate meets together; then, with those left out, the next one; until the
    rest can be met. Every constraint that must move is in one of them.

    Candidates with the same pattern of broken limits are interchangeable for this question,
    so CP-SAT sees one per pattern; its sufficient assumptions are shrunk to a minimal
    conflict by dropping each limit that is not needed (deletion filter).
    """
    broken = violations(cands, bounds)
    names = list(broken)
    matrix = np.stack([broken[n] for n in names], axis=1)
    out: list[list[str]] = []
    skipped: set[str] = set()
    while True:
        active = [n for n in names if n not in skipped]
        cols = [names.index(n) for n in active]
        if not active or (~matrix[:, cols].any(axis=1)).any():
            return out
        core = _minimal_core(cands, bounds, matrix, names, frozenset(skipped))
        out.append(core)
        skipped.update(core)


def _minimal_core(cands: Candidates, bounds: list[Bound], matrix: np.ndarray, names: list[str], skip: frozenset[str]) -> list[str]:
    from guideopt.solver import cpsat  # OR-Tools is loaded only when a conflict needs explaining

    _, first = np.unique(matrix, axis=0, return_index=True)
    sub = cands.take(np.sort(first))
    handle = cpsat.build_model(sub)
    cpsat.add_user_constraints(handle, sub, bounds, skip)
    active = [n for n in names if n not in skip]
    core = cpsat.solve_lexicographic(handle, []).core or active
    for name in list(core):
        rest = [n for n in core if n != name]
        if rest and not np.any(~matrix[:, [names.index(n) for n in rest]].any(axis=1)):
            core = rest  # still infeasible without it: not part of the conflict
    return [n for n in names if n in core]


def _relaxed_values(opts: PlanOptions, req: PlanRequest, relax: list[str]) -> dict[str, float] | None:
    """With the limits in ``relax`` left out and every other limit kept: the least each of
    them must move (lexicographically, in report order) for some plan to exist; None when
    no plan exists even then."""
    skip = frozenset(relax)
    c = candidates(opts, skip=skip)
    ok = np.nonzero(satisfied(c, opts.bounds, skip))[0]
    chosen = [b for b in opts.bounds if b.name in skip]
    if ok.size == 0:
        return None
    keys = []
    for b in chosen:
        v = b.values(c)[ok]
        keys.append(-v if b.kind.at_least else v)
    best = int(ok[np.lexsort(keys[::-1])[0]])
    return {b.name: float(b.values(c)[best]) for b in chosen}


def relaxations(opts: PlanOptions, req: PlanRequest, conflicts: list[str]) -> tuple[dict[str, float | None], dict[str, float] | None]:
    """Per conflicting limit, the value (as the user writes it) that alone would allow a plan
    with every other limit kept (None: relaxing it alone does not help); and, for several,
    values that together would."""
    alone: dict[str, float | None] = {}
    for name in conflicts:
        found = _relaxed_values(opts, req, [name])
        alone[name] = None if found is None else _bound(opts, name).kind.relaxed(found[name])
    together = None
    if len(conflicts) > 1:
        found = _relaxed_values(opts, req, conflicts)
        together = None if found is None else {n: _bound(opts, n).kind.relaxed(v) for n, v in found.items()}
    return alone, together


def _bound(opts: PlanOptions, name: str) -> Bound:
    return next(b for b in opts.bounds if b.name == name)


def explain_conflict(opts: PlanOptions, req: PlanRequest, cands: Candidates) -> tuple[str, list[str]]:
    """Every conflicting limit, and a relaxation only where it is sufficient."""
    sets = conflict_sets(cands, opts.bounds)
    names = [n for group in sets for n in group] or [b.name for b in opts.bounds]
    alone, together = relaxations(opts, req, names)
    parts = []
    for name in names:
        best = _relaxed_values(opts, req, [name]) if alone[name] is not None else None
        if best is None:
            parts.append(f"{name}: relaxing it alone does not help")
        else:
            parts.append(_bound(opts, name).kind.describe(req, _bound(opts, name), best[name]))
    msg = "no plan satisfies these constraints together: " + "; ".join(parts)
    if together is not None and any(v is None for v in alone.values()):
        joint = ", ".join(f"{n} {_shown(v)}" for n, v in together.items())
        msg += f"; relaxing them together would allow a plan: {joint}"
    return msg, names


def _shown(value: float) -> str:
    return f"{value:g}"
