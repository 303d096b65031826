"""Batch capacity planning (GUIDE §3.3): what fits, how long a prompt can be, and how many
replicas a load needs.

* Memory capacity: KV-cache tokens left after weights, activation peak at the token
  budget, CUDA-graph/communication buffers and the engine's memory fraction, rounded
  down to whole KV pages; the largest batch of given lengths; the longest sequence at
  batch 1.
* Dynamic batch / sequence-length adjustment (§3.3.1–3.3.2): when a requested batch or
  length does not fit, the largest that does, and how a batch splits into sub-batches of
  that size and a prompt into chunks of the split size.
* Sizing for a load (``rate`` requests/s): the steady-state model of continuous batching
  in ``costs/serving.py`` gives, for c requests in flight on a replica, the request
  throughput X(c) = c / cycle(c) (Little's law). A replica sustains a rate λ when some
  c within its capacity has X(c) ≥ λ; the smallest such c is its operating point, where
  TTFT/TPOT must meet the SLOs. The smallest replica count n with a valid operating point
  at λ = rate / n is the answer. Assumes requests of the given fixed lengths, traffic
  spread evenly over replicas, and arrivals smooth enough that the closed-loop steady
  state stands for them (no burst queueing).
* Layouts (``attention_dp``, ``moe_tp``, ``moe_ep``, as ``predict`` takes them): a replica is
  ``tp × attention_dp × pp`` GPUs, and each attention-DP rank holds its own requests' KV, so
  the option table's KV tokens and caps are a rank's; a replica fits ``attention_dp`` times a
  rank's batch and serves ``attention_dp`` times a rank's rate.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from pydantic import Field

from guideopt.analyses.predict import checked_layout
from guideopt.catalog import Catalog, load_catalog
from guideopt.costs.engine_defaults import token_budget
from guideopt.costs.memory import tokens_per_sequence
from guideopt.costs.rows import memory_breakdown
from guideopt.costs.tables import OptionSpace, OptionTable, build_option_table, tp_is_valid
from guideopt.errors import InvalidRequestError, NoFeasiblePlanError
from guideopt.model.base import StrictModel
from guideopt.model.dtype import Dtype
from guideopt.model.limits import MAX_BATCH, MAX_GPUS, MAX_LISTED_SUB_BATCHES, MAX_PARALLEL_SIZE, MAX_RATE_REQ_S, MAX_SEQUENCE_TOKENS
from guideopt.model.plan import MemoryBreakdown, Metrics
from guideopt.model.workload import DEFAULT_PERCENTILE, POISSON_CV
from guideopt.units import BYTES_PER_GB, MS_PER_S

# Replica counts tried when sizing for a load before giving up.
MAX_REPLICAS_FOR_RATE = 1024
TP_CHOICES_FOR_HINT = (1, 2, 4, 8)


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


def _layout_fields(req: CapacityRequest) -> dict:
    """The request's configuration as ``predict``'s request fields (its checks and refusals apply)."""
    keys = ("model", "gpu", "pp", "framework", "dtype", "kv_dtype", "input_len", "output_len", "attention_dp", "moe_tp", "moe_ep")
    fields = {k: getattr(req, k) for k in keys}
    return {"tp": req.resolved_tp, **{k: v for k, v in fields.items() if v is not None}}


def _table(req: CapacityRequest, cat: Catalog, tp: int, batch: int = 1) -> OptionTable:
    """The request's configuration at ``tp`` (empty where the engine cannot form that layout)."""
    fw, gpu = cat.framework(req.framework), cat.gpu(req.gpu)
    split = token_budget(fw, gpu.memory_bytes, requested=req.split, longest_prompt=req.input_len)
    space = OptionSpace(
        gpus=[gpu],
        frameworks=[fw],
        dtypes=[req.dtype],
        tp=[tp],
        pp=[req.pp],
        batch=[batch],
        input_len=req.input_len,
        output_len=req.output_len,
        kv_dtype=req.kv_dtype,
        split=[split],
        allow_waves=True,
        allow_multi_node_tp=True,  # as predict: TP wider than a node runs over the slower link
        attention_dp=[req.attention_dp],
        moe_ep=[req.moe_ep],
    )
    return build_option_table(cat.model(req.model), space, cat.calibration)


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


def capacity(req: CapacityRequest, catalog: Catalog | None = None) -> Capacity:
    cat = catalog or load_catalog()
    arch = cat.model(req.model)
    if "dtype" not in req.model_fields_set and arch.checkpoint_dtype:  # a quantized checkpoint runs in its own precision
        req = req.model_copy(update={"dtype": Dtype(arch.checkpoint_dtype)})
    tp, dp = req.resolved_tp, req.attention_dp
    fw = cat.framework(req.framework)
    checked_layout(_layout_fields(req), cat)  # engine, TP, PP and expert-split refusals, as predict's
    if not fw.chunked_prefill and req.split is not None and req.split < req.input_len:
        raise InvalidRequestError(
            f"{req.split} tokens is shorter than the {req.input_len}-token prompt and {fw.id} does not chunk prefill (use split >= input_len)",
            field="split",
        )
    table = _table(req, cat, tp)
    if len(table) == 0:  # every refusal above has its own message; this is the backstop
        raise InvalidRequestError(
            f"{fw.id} cannot serve this layout on {req.gpu} (`guideopt predict` with the same flags says why)", field="tp"
        )
    mem = table.memory
    kv_tokens = int(mem.kv_tokens[0])  # a rank's
    seq = req.input_len + req.output_len
    rank_batch = int(kv_tokens // float(tokens_per_sequence(seq, fw.kv_block_tokens)))
    max_batch = dp * rank_batch  # each attention-DP rank holds its own requests' KV
    max_seq = min(kv_tokens, arch.max_position_embeddings)
    reason = ""
    if seq > arch.max_position_embeddings:
        max_batch, reason = 0, f"input+output = {seq} tokens exceeds the model's context of {arch.max_position_embeddings}"
    fits = max_batch >= 1
    split = int(table.split[0])
    out = Capacity(
        request=req,
        fits=fits,
        kv_cache_tokens=kv_tokens,
        max_batch=max_batch,
        max_seq_len=max_seq,
        memory=memory_breakdown(table, 0, running=float(max(rank_batch, 0))),  # per GPU: one rank's requests
        prompt_chunks=math.ceil(req.input_len / split) if fw.chunked_prefill else 1,
        reason=reason,
    )
    if req.batch:
        out.sub_batch_sizes = sub_batch_sizes(req.batch, max_batch)
        if sum(out.sub_batch_sizes.values()) <= MAX_LISTED_SUB_BATCHES:
            out.sub_batches = split_batch(req.batch, max_batch)
    if not fits and not reason:
        need = float(mem.weights_bytes[0] + mem.activation_bytes[0] + mem.overhead_bytes[0]) + seq * float(mem.kv_bytes_per_token[0])
        out.shortfall_gb = (need - float(mem.usable_bytes[0])) / BYTES_PER_GB
        out.fitting_tp = _fitting_tp(req, cat, arch)
        hint = f"; tp={out.fitting_tp} would fit" if out.fitting_tp else "; no TP up to 8 fits on this GPU"
        out.reason = f"short by {out.shortfall_gb:.1f} GB per GPU{hint}"
    if not fits:
        return out
    if req.rate is not None:
        _size_for_rate(out, table, cat, req.running_cap or fw.max_num_seqs)
    return out


def _fitting_tp(req: CapacityRequest, cat: Catalog, arch) -> int | None:
    gpu = cat.gpu(req.gpu)
    for tp in TP_CHOICES_FOR_HINT:
        valid = tp * req.attention_dp <= gpu.gpus_per_node and bool(tp_is_valid(arch, np.array([tp]))[0])
        table = _table(req, cat, tp) if valid else None
        if table is not None and len(table) and int(table.memory.kv_tokens[0]) >= req.input_len + req.output_len:
            return tp
    return None


def _stream_shape(req: CapacityRequest, table: OptionTable, cat: Catalog, cap: int):
    """The shape as one stream option (the planner's model and cap rules) and its SLO rate: an
    attention-DP rank's (a replica serves ``attention_dp`` times it)."""
    from guideopt.costs.lengths import fixed_lengths
    from guideopt.model.workload import PercentileTargets
    from guideopt.solver.stream_options import effective_caps, stream_options
    from guideopt.solver.stream_rates import slo_rates

    lengths = fixed_lengths(req.input_len, req.output_len)
    caps = effective_caps(table, np.array([float(cap)]), lengths)
    opts = stream_options(table, caps, cat.calibration)
    targets = {m: PercentileTargets(targets={req.percentile: v}) for m, v in (("ttft_ms", req.ttft_ms), ("tpot_ms", req.tpot_ms)) if v}
    rate = float(slo_rates(table.arch, opts, lengths, targets, POISSON_CV)[0])
    return opts, lengths, rate


def _size_for_rate(out: Capacity, table: OptionTable, cat: Catalog, cap: int) -> None:
    """Fewest replicas of the shape that share the rate within the SLOs: the same analytic
    stream model and option rules as ``plan --rate`` (so the two agree)."""
    from guideopt.costs.stream import stream_metrics

    req = out.request
    rate = req.rate
    assert rate is not None, "sizing needs a rate"
    dp = req.attention_dp
    opts, lengths, rank_rate = _stream_shape(req, table, cat, cap)
    if rank_rate <= 0:
        named = [n for n, v in (("slo.ttft_ms", req.ttft_ms), ("slo.tpot_ms", req.tpot_ms)) if v is not None]
        idle = stream_metrics(table.arch, opts, lengths, np.array([1e-6]), percentiles=(req.percentile,))
        raise NoFeasiblePlanError(
            f"slo: no load level meets the SLOs on this replica shape (P{req.percentile:g} TTFT {float(idle.ttft_ms.percentiles[req.percentile][0]):.1f} ms, "
            f"TPOT {float(idle.tpot_ms.percentiles[req.percentile][0]):.2f} ms when idle)",
            named,
        )
    n = max(1, math.ceil(rate / (dp * rank_rate) - 1e-12))
    if n > MAX_REPLICAS_FOR_RATE:
        raise NoFeasiblePlanError(f"rate: {rate:g} req/s needs more than {MAX_REPLICAS_FOR_RATE} replicas of this shape", ["rate"])
    per_rank = rate / (n * dp)  # the load spreads evenly over replicas and their ranks
    m = stream_metrics(table.arch, opts, lengths, np.array([per_rank]), percentiles=(req.percentile,))
    gpus_per_replica = req.gpus_per_replica
    price = cat.gpu(req.gpu).usd_per_hour
    out.replicas, out.num_gpus = n, n * gpus_per_replica
    out.sustainable_rate_rps_per_replica = dp * rank_rate
    out.usd_per_hour = round(n * gpus_per_replica * price, 4)
    out.concurrency_per_replica = dp * int(min(max(math.ceil(float(m.running[0])), 1), float(opts.running_cap[0])))
    pct = req.percentile
    out.metrics = Metrics(
        ttft_ms=float(m.ttft_ms.percentiles[pct][0]),
        tpot_ms=float(m.tpot_ms.percentiles[pct][0]),
        batch_latency_s=float(m.e2e_ms.percentiles[pct][0]) / MS_PER_S,
        decode_throughput_tok_s=rate * max(req.output_len - 1, 0),
        output_throughput_tok_s=rate * req.output_len,
        total_throughput_tok_s=rate * (req.input_len + req.output_len),
        prefill_throughput_tok_s=rate * req.input_len,
    )


def replica_throughput_req_s(out: Capacity, catalog: Catalog | None = None) -> float:
    """Most requests/s one replica of this shape sustains within the SLOs (for checks): its
    attention-DP ranks' together."""
    cat = catalog or load_catalog()
    fw = cat.framework(out.request.framework)
    table = _table(out.request, cat, out.request.resolved_tp)
    return out.request.attention_dp * _stream_shape(out.request, table, cat, out.request.running_cap or fw.max_num_seqs)[2]
