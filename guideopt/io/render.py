"""Human-readable text tables for plans, predictions and catalogs (no I/O here)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from guideopt.model.plan import PlanResult


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    cells = [[str(h) for h in headers]] + [[_fmt(v) for v in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        if value == 0:
            return "0"
        if abs(value) >= 100:
            return f"{value:,.0f}"
        return f"{value:.3g}" if abs(value) < 10 else f"{value:.1f}"
    return str(value)


def plan_text(result: PlanResult) -> str:
    head = f"status: {result.status}   objective: {' > '.join(result.objective)}   solve time: {result.solve_time_s:.3f} s"
    rows = []
    for p in result.plans:
        for g in p.groups:
            rows.append(
                [
                    p.rank,
                    g.gpu,
                    g.num_gpus,
                    _layout(g),
                    g.framework,
                    g.dtype,
                    g.batch,
                    g.split,
                    p.usd_per_hour,
                    g.metrics.output_throughput_tok_s,
                    g.metrics.ttft_ms,
                    g.metrics.tpot_ms,
                    g.metrics.batch_latency_s,
                    g.memory.total_per_gpu_gb,
                    g.memory.gpu_memory_gb,
                ]
            )
    body = table(
        [
            "rank",
            "gpu",
            "gpus",
            "layout",
            "engine",
            "dtype",
            "batch",
            "split",
            "$/h",
            "out tok/s",
            "ttft ms",
            "tpot ms",
            "batch s",
            "mem GB/gpu",
            "of GB",
        ],
        rows,
    )
    text = f"{head}\n{body}"
    for p in result.plans:
        shares = [f"{g.traffic_share:.0%} to {g.gpu}" for g in p.groups if len(p.groups) > 1]
        if shares:
            text += f"\nplan {p.rank}: send " + ", ".join(shares) + " of the requests (in proportion to throughput)"
    best = result.homogeneous_best
    if best is not None:
        if best.get("plan") is None:
            text += "\nno single-GPU-type plan satisfies these constraints: only a mix does"
        else:
            single = best["plan"]
            text += (
                f"\nbest single-GPU-type plan: {single['metrics']['output_throughput_tok_s']:,.0f} tok/s for "
                f"${single['usd_per_hour']:.2f}/h on {', '.join(single['gpu_counts'])}; plan 1 gives "
                f"{best['throughput_gain']:+.1%} throughput, {best['throughput_per_usd_gain']:+.1%} per dollar"
            )
    return text


def _layout(g) -> str:
    if g.stages:  # a pipeline across GPU types: stage by stage
        stages = " → ".join(f"{st['gpu']} tp{st['tp']} {st['layers']}L" for st in g.stages)
        return f"{g.replicas}x[{stages}]"
    return f"{g.replicas}x(tp{g.tp}·pp{g.pp})"


def prediction_text(pred: dict[str, Any]) -> str:
    m, mem = pred["metrics"], pred["memory"]
    layout = f"{pred['replicas']}x(tp{pred['tp']}·pp{pred['pp']}) on {pred['num_gpus']} x {pred['gpu']}"
    lines = [
        f"{pred['model']} · {pred['framework']} · {pred['dtype']} · {layout}",
        f"batch {pred['batch']} ({pred['batch_per_replica']} per replica, {pred['waves']} wave(s)), input {pred['input_len']}, output {pred['output_len']}",
        "",
        table(["metric", "value"], [[k, v] for k, v in m.items()]),
        "",
        table(["memory per GPU", "GB"], [[k, v] for k, v in mem.items()]),
        f"KV cache holds {pred['kv_cache_tokens']:,} tokens: at most {pred['max_batch']} requests of this length at once per replica",
    ]
    return "\n".join(lines)
