"""One row of an option table as the contract's metrics and memory breakdown (pydantic models)."""

from __future__ import annotations

from typing import Any

from guideopt.costs.tables import OptionTable
from guideopt.model.layout_names import layout_words
from guideopt.model.plan import MemoryBreakdown, Metrics
from guideopt.units import BYTES_PER_GB

THROUGHPUT_KEYS = ("decode_throughput_tok_s", "output_throughput_tok_s", "total_throughput_tok_s", "prefill_throughput_tok_s")


def memory_breakdown(table: OptionTable, i: int, running: float | None = None, seq_tokens: int | None = None) -> MemoryBreakdown:
    """Row ``i``'s memory per GPU; ``seq_tokens``: the row's request length where rows have
    their own (``table_for_rows``), else the space's."""
    mem = table.memory
    per_seq = seq_tokens if seq_tokens is not None else table.space.input_len + table.space.output_len
    if running is None:
        running = min(float(table.batch[i]), max(float(table.running_cap[i]), 1.0))
    # What the running requests hold at full length, but never more than the pool: an engine that
    # admits by current usage (vLLM, SGLang) fills it and preempts rather than outgrow it.
    kv_needed = min(running * per_seq * float(mem.kv_bytes_per_token[i]), max(float(mem.kv_pool_bytes[i]), 0.0))
    total = float(mem.weights_bytes[i] + mem.activation_bytes[i] + mem.overhead_bytes[i]) + kv_needed
    gpu = table.space.gpus[int(table.gpu_idx[i])]
    return MemoryBreakdown(
        weights_gb=float(mem.weights_bytes[i]) / BYTES_PER_GB,
        kv_cache_gb=kv_needed / BYTES_PER_GB,
        activation_gb=float(mem.activation_bytes[i]) / BYTES_PER_GB,
        overhead_gb=float(mem.overhead_bytes[i]) / BYTES_PER_GB,
        total_per_gpu_gb=total / BYTES_PER_GB,
        gpu_memory_gb=gpu.memory_bytes / BYTES_PER_GB,
        kv_pool_gb=max(float(mem.kv_pool_bytes[i]), 0.0) / BYTES_PER_GB,
        usable_gb=float(mem.usable_bytes[i]) / BYTES_PER_GB,
    )


def scaled_metrics(table: OptionTable, i: int, replicas: float) -> Metrics:
    """Per-replica latencies, whole-deployment throughputs (``replicas`` full replicas' worth)."""
    m = table.metrics.as_contract_dict(i)
    for key in THROUGHPUT_KEYS:
        m[key] *= replicas
    return Metrics(**m)


def layout_fields(table: OptionTable, i: int) -> dict[str, Any]:
    """A row's layout as the plan's group fields (CONTRACT "Layouts"): tp, pp, attention_dp,
    moe_tp, moe_ep and the layout in words; GPUs per replica = tp × attention_dp × pp."""
    tp, pp, dp, ep = (int(a[i]) for a in (table.tp, table.pp, table.dp, table.ep))
    return {
        "tp": tp,
        "pp": pp,
        "attention_dp": dp,
        "moe_tp": tp * dp // ep if table.arch.is_moe else None,
        "moe_ep": ep,
        "layout": layout_words(tp, pp, dp, ep) if table.arch.is_moe else None,
    }
