"""``capacity``'s request and result (``analyses/capacity.py`` says what they mean), and how
a too-large batch splits into sub-batches (GUIDE §3.3.1)."""

from __future__ import annotations

from dataclasses import dataclass, field

from pydantic import Field

from guideopt.model.base import StrictModel
from guideopt.model.dtype import Dtype
from guideopt.model.limits import MAX_BATCH, MAX_GPUS, MAX_LISTED_SUB_BATCHES, MAX_PARALLEL_SIZE, MAX_RATE_REQ_S, MAX_SEQUENCE_TOKENS
from guideopt.model.plan import MemoryBreakdown, Metrics
from guideopt.model.workload import DEFAULT_PERCENTILE

LENGTH_FIELDS = ("input_len", "output_len")  # what the cases of a sweep differ in (``capacities``)


class CapacityRequest(StrictModel):
    model: str = Field(min_length=1)
    gpu: str = Field(min_length=1)
    tp: int | None = Field(default=None, gt=0, le=MAX_PARALLEL_SIZE)
    pp: int = Field(default=1, gt=0, le=MAX_PARALLEL_SIZE)
    num_gpus: int | None = Field(default=None, gt=0, le=MAX_GPUS)
    framework: str = "vllm"
    dtype: Dtype = Dtype.FP16
    kv_dtype: Dtype | None = None
    input_len: int = Field(gt=0, le=MAX_SEQUENCE_TOKENS)
    output_len: int = Field(gt=0, le=MAX_SEQUENCE_TOKENS)
    batch: int | None = Field(default=None, gt=0, le=MAX_BATCH, description="a requested batch to check and adjust")
    split: int | None = Field(default=None, gt=0, le=MAX_SEQUENCE_TOKENS)
    rate: float | None = Field(default=None, gt=0, le=MAX_RATE_REQ_S, description="requests/s to size for")
    ttft_ms: float | None = Field(default=None, gt=0)
    tpot_ms: float | None = Field(default=None, gt=0)
    percentile: float = Field(default=DEFAULT_PERCENTILE, gt=0, lt=100, description="the percentile ttft_ms/tpot_ms bound")
    running_cap: int | None = Field(default=None, gt=0, description="max running requests per attention-DP rank; default: the engine's")
    attention_dp: int = Field(default=1, gt=0, le=MAX_PARALLEL_SIZE, description="attention data-parallel ranks per replica")
    moe_tp: int | None = Field(default=None, gt=0, le=MAX_PARALLEL_SIZE, description="TP of each expert; default tp·attention_dp/moe_ep")
    moe_ep: int = Field(default=1, gt=0, le=MAX_PARALLEL_SIZE, description="expert-parallel ranks of the MoE layers")

    @property
    def resolved_tp(self) -> int:
        return self.tp or max((self.num_gpus or 1) // (self.pp * self.attention_dp), 1)

    @property
    def gpus_per_replica(self) -> int:
        return self.resolved_tp * self.attention_dp * self.pp

    @property
    def resolved_moe_tp(self) -> int:
        return self.moe_tp or self.resolved_tp * self.attention_dp // self.moe_ep


@dataclass
class Capacity:
    request: CapacityRequest
    fits: bool
    kv_cache_tokens: int  # per attention-DP rank (each holds its own requests' KV)
    max_batch: int  # per replica: attention_dp × a rank's
    max_seq_len: int
    memory: MemoryBreakdown
    sub_batches: list[int] = field(default_factory=list)
    sub_batch_sizes: dict[int, int] = field(default_factory=dict)
    prompt_chunks: int = 1
    shortfall_gb: float = 0.0
    fitting_tp: int | None = None
    replicas: int | None = None
    num_gpus: int | None = None
    usd_per_hour: float | None = None
    metrics: Metrics | None = None
    concurrency_per_replica: int | None = None
    sustainable_rate_rps_per_replica: float | None = None  # within the SLOs: plan's and simulate's figure for the shape
    reason: str = ""

    def as_dict(self) -> dict:
        out = {
            "model": self.request.model,
            "gpu": self.request.gpu,
            "framework": self.request.framework,
            "tp": self.request.resolved_tp,
            "pp": self.request.pp,
            "attention_dp": self.request.attention_dp,
            "moe_tp": self.request.resolved_moe_tp,
            "moe_ep": self.request.moe_ep,
            "gpus_per_replica": self.request.gpus_per_replica,
            "input_len": self.request.input_len,
            "output_len": self.request.output_len,
            "fits": self.fits,
            "max_batch": self.max_batch,
            "max_batch_per_rank": self.max_batch // self.request.attention_dp,
            "kv_cache_tokens": self.kv_cache_tokens,
            "max_seq_len": self.max_seq_len,
            "memory": self.memory.model_dump(),
            "prompt_chunks": self.prompt_chunks,
        }
        if self.request.batch:
            out["requested_batch"] = self.request.batch
            count = sum(self.sub_batch_sizes.values())
            out["sub_batch_count"] = count
            out["sub_batch_sizes"] = {str(k): v for k, v in self.sub_batch_sizes.items()}
            if count <= MAX_LISTED_SUB_BATCHES:
                out["sub_batches"] = self.sub_batches
        if self.reason:
            out["reason"] = self.reason
        if not self.fits:
            out["shortfall_gb"] = self.shortfall_gb
            out["fitting_tp"] = self.fitting_tp
        if self.request.rate is not None:
            out.update(
                {
                    "rate": self.request.rate,
                    "replicas": self.replicas,
                    "num_gpus": self.num_gpus,
                    "usd_per_hour": self.usd_per_hour,
                    "concurrency_per_replica": self.concurrency_per_replica,
                    "sustainable_rate_rps_per_replica": self.sustainable_rate_rps_per_replica,
                    "metrics": self.metrics.model_dump() if self.metrics else None,
                }
            )
        return out


def sub_batch_sizes(batch: int, max_batch: int) -> dict[int, int]:
    """Sub-batches of at most ``max_batch`` requests, as even as possible (GUIDE §3.3.1),
    as {size: how many}: at most two sizes, so a batch of 10^9 costs nothing to describe."""
    if max_batch <= 0 or batch <= 0:
        return {}
    parts = -(-batch // max_batch)
    base, extra = divmod(batch, parts)
    return {size: n for size, n in ((base + 1, extra), (base, parts - extra)) if n > 0}


def split_batch(batch: int, max_batch: int) -> list[int]:
    """The sub-batches listed, largest first (for short lists; long ones: sub_batch_sizes)."""
    return [size for size, n in sub_batch_sizes(batch, max_batch).items() for _ in range(n)]
