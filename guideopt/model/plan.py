"""What the planner returns (JSON shape of ``shared/docs/CONTRACT.md``)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator


class _Out(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Metrics(_Out):
    ttft_ms: float
    tpot_ms: float | None = Field(description="mean time per output token after the first; null when output_len is 1")
    batch_latency_s: float
    decode_throughput_tok_s: float
    output_throughput_tok_s: float
    total_throughput_tok_s: float
    prefill_throughput_tok_s: float

    @field_validator("tpot_ms")
    @classmethod
    def _no_token_after_the_first(cls, value: float | None) -> float | None:
        # The cost model's TPOT is (latency - TTFT) / (O - 1) and positive for O > 1; it
        # is exactly 0 only when there is no token after the first (O = 1): undefined.
        return None if value == 0 else value


# The contract's metrics of one prediction, in the order of the CSV columns (and of Metrics' fields).
METRIC_KEYS: tuple[str, ...] = tuple(Metrics.model_fields)


class MemoryBreakdown(_Out):
    weights_gb: float
    kv_cache_gb: float  # KV the batch needs
    activation_gb: float
    overhead_gb: float
    total_per_gpu_gb: float
    gpu_memory_gb: float
    kv_pool_gb: float  # KV the engine sets aside (extension)
    usable_gb: float  # what the engine lets itself use (extension)


class Group(_Out):
    gpu: str
    framework: str
    dtype: str
    kv_dtype: str
    replicas: int
    tp: int
    pp: int
    batch: int
    split: int
    metrics: Metrics
    memory: MemoryBreakdown
    usd_per_hour: float
    num_gpus: int
    # Layout of a replica (CONTRACT "Layouts"): tp × attention_dp × pp GPUs; MoE layers split
    # their experts over moe_ep ranks of moe_tp GPUs each (moe_tp × moe_ep = tp × attention_dp).
    attention_dp: int = 1  # attention data-parallel ranks; ``batch`` is per rank
    moe_tp: int | None = None  # None: tp × attention_dp (dense models, or experts split by TP only)
    moe_ep: int = 1
    layout: str | None = None  # the layout in words ("DEP8: attention DP 8, experts EP 8")
    traffic_share: float = 1.0  # fraction of requests to send to this group (∝ its throughput)
    metrics_low: Metrics | None = None  # 10th percentile of held-out errors in its regime (extension)
    metrics_high: Metrics | None = None  # 90th percentile (extension)
    stages: list[dict] | None = None  # asymmetric pipeline: per stage gpu, tp, layers
    # stream workloads: running_cap, token_budget, rate_rps per replica, and the per-request
    # percentiles of one replica: "analytic" (the solver's model) and "simulated" (the check)
    stream: dict | None = None
    role: str | None = None  # disaggregated plans: "prefill" or "decode"; None: an aggregated group


class Plan(_Out):
    rank: int
    num_gpus: int
    gpu_counts: dict[str, int]
    usd_per_hour: float
    metrics: Metrics
    groups: list[Group]
    metrics_low: Metrics | None = None  # groups' bands combined like the metrics (extension)
    metrics_high: Metrics | None = None
    stream: dict | None = None  # stream workloads: load, sustainable load, percentile, simulated_meets_slo
    kv_transfer: dict | None = None  # disaggregated plans: bytes_per_request, link, ms (mean per request)


class PlanResult(_Out):
    status: str
    objective: list[str]
    solve_time_s: float
    plans: list[Plan] = Field(default_factory=list)
    explanation: str | None = None
    objective_values: list[float] = Field(default_factory=list)
    homogeneous_best: dict | None = None  # heterogeneous plans: best single-type plan and the gain
    disaggregation: dict | None = None  # disaggregation allowed: best aggregated and disaggregated $/h, the gain in words
    # Relative gap between the first plan's leading objective value and the best bound the
    # search proved (0: proven optimal; None: unknown, the search was cut before a bound).
    optimality_gap: float | None = 0.0
    time_limit_reached: bool = False  # the request's time_limit_s cut the search
    verification_rounds: int | None = None  # streams: rank → simulate → cut rounds until the shown plans passed


def infeasible_json(objective: list[str], explanation: str, conflicts: list[str], solve_time_s: float = 0.0) -> dict[str, Any]:
    """The contract's JSON for a request with no feasible plan (one builder for the CLI and the web API)."""
    return {
        "status": "infeasible",
        "objective": objective,
        "solve_time_s": solve_time_s,
        "plans": [],
        "explanation": explanation,
        "conflicts": conflicts,
    }
