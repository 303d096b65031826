"""Plans from the picked candidates: groups with their metrics, memory, price and traffic share."""

from __future__ import annotations

from guideopt.costs.rows import THROUGHPUT_KEYS, layout_fields, memory_breakdown, scaled_metrics
from guideopt.costs.tables import default_kv_dtype
from guideopt.model.plan import Group, MemoryBreakdown, Metrics, Plan
from guideopt.solver.options import PlanOptions


def extract_plan(opts: PlanOptions, replicas: list[int], rank: int, extra_groups: list[Group] | None = None) -> Plan:
    t = opts.table
    groups: list[Group] = list(extra_groups or [])
    for o, n in enumerate(replicas):
        if n <= 0:
            continue
        gpu = t.space.gpus[int(t.gpu_idx[o])]
        per_replica = int(t.gpus_per_replica[o])
        groups.append(
            Group(
                gpu=gpu.id,
                framework=t.space.frameworks[int(t.fw_idx[o])].id,
                dtype=t.space.dtypes[int(t.dtype_idx[o])].value,
                kv_dtype=t.kv_dtype_names[o],
                replicas=n,
                **layout_fields(t, o),
                batch=int(t.batch[o]),
                split=int(t.split[o]),
                metrics=scaled_metrics(t, o, n),
                memory=memory_breakdown(t, o),
                usd_per_hour=round(n * per_replica * float(t.usd_per_hour_per_gpu[o]), 4),
                num_gpus=n * per_replica,
            )
        )
    total = sum(g.metrics.output_throughput_tok_s for g in groups) or 1.0
    groups = [g.model_copy(update={"traffic_share": g.metrics.output_throughput_tok_s / total}) for g in groups]
    return Plan(
        rank=rank,
        num_gpus=sum(g.num_gpus for g in groups),
        gpu_counts=_gpu_counts(groups),
        usd_per_hour=round(sum(g.usd_per_hour for g in groups), 4),
        metrics=plan_metrics(groups),
        groups=groups,
    )


def _gpu_counts(groups: list[Group]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for g in groups:
        parts = [(st["gpu"], st["tp"] * g.replicas) for st in g.stages] if g.stages else [(g.gpu, g.num_gpus)]
        for gpu, n in parts:
            counts[gpu] = counts.get(gpu, 0) + n
    return counts


def pipeline_group(pt, row: int, replicas: int) -> Group:
    """A heterogeneous group whose replicas are pipelines over two GPU types (contract: gpu "mixed")."""
    space = pt.space
    stages = []
    for i, (g, tp, layers) in enumerate(((pt.gpu_a, pt.tp_a, pt.layers_a), (pt.gpu_b, pt.tp_b, pt.layers_b))):
        mem = {k: float(v[row]) for k, v in pt.stage_memory[i].items()}
        stages.append({"gpu": space.gpus[int(g[row])].id, "tp": int(tp[row]), "layers": int(layers[row]), "memory": mem})
    worst = max(range(2), key=lambda i: stages[i]["memory"]["total_per_gpu_gb"] / stages[i]["memory"]["gpu_memory_gb"])
    m = pt.metrics.as_contract_dict(row)
    for key in THROUGHPUT_KEYS:
        m[key] *= replicas
    per_replica = int(pt.tp_a[row] + pt.tp_b[row])
    return Group(
        gpu="mixed",
        framework=space.frameworks[int(pt.fw_idx[row])].id,
        dtype=space.dtypes[int(pt.dtype_idx[row])].value,
        kv_dtype=(space.kv_dtype or default_kv_dtype(space.dtypes[int(pt.dtype_idx[row])])).value,
        replicas=replicas,
        tp=max(int(pt.tp_a[row]), int(pt.tp_b[row])),
        pp=2,
        batch=int(pt.batch[row]),
        split=int(pt.split[row]),
        metrics=Metrics(**m),
        memory=MemoryBreakdown(**stages[worst]["memory"]),
        usd_per_hour=round(replicas * float(pt.usd_per_replica[row]), 4),
        num_gpus=replicas * per_replica,
        stages=stages,
    )


def plan_metrics(groups: list[Group]) -> Metrics:
    """Throughputs add over groups; latencies are the worst group's."""
    merged: dict[str, float | None] = {}
    for key in Metrics.model_fields:
        values = [v for v in (getattr(g.metrics, key) for g in groups) if v is not None]  # tpot_ms: None when output_len is 1
        merged[key] = (sum(values) if key in THROUGHPUT_KEYS else max(values)) if values else None
    return Metrics(**merged)
