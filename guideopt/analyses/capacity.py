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
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from pydantic import Field

from guideopt.catalog import Catalog, load_catalog
from guideopt.costs.capability import request_refusal
from guideopt.costs.engine_defaults import token_budget
from guideopt.costs.memory import tokens_per_sequence
from guideopt.costs.rows import memory_breakdown
from guideopt.costs.tables import OptionSpace, OptionTable, build_option_table, default_kv_dtype, tp_is_valid
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
    running_cap: int | None = Field(default=None, gt=0, description="max running requests; default: the engine's")

    @property
    def resolved_tp(self) -> int:
        return self.tp or max((self.num_gpus or 1) // self.pp, 1)


@dataclass
class Capacity:
    request: CapacityRequest
    fits: bool
    kv_cache_tokens: int
    max_batch: int
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
    reason: str = ""

    def as_dict(self) -> dict:
        out = {
            "model": self.request.model,
            "gpu": self.request.gpu,
            "framework": self.request.framework,
            "tp": self.request.resolved_tp,
            "pp": self.request.pp,
            "input_len": self.request.input_len,
            "output_len": self.request.output_len,
            "fits": self.fits,
            "max_batch": self.max_batch,
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
                    "metrics": self.metrics.model_dump() if self.metrics else None,
                }
            )
        return out


def _table(req: CapacityRequest, cat: Catalog, tp: int, batch: int = 1) -> OptionTable:
    fw, gpu = cat.framework(req.framework), cat.gpu(req.gpu)
    kv = req.kv_dtype or default_kv_dtype(req.dtype)
    refusal = request_refusal(fw, gpu, weights=req.dtype, kv=kv, pp=req.pp, gpus_per_replica=tp * req.pp)
    if refusal:  # what the engine cannot run (catalog capabilities) is refused, not sized
        raise InvalidRequestError(f"{refusal[0]}: {refusal[1]}")
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
    )
    table = build_option_table(cat.model(req.model), space, cat.calibration)
    if len(table.tp) == 0:  # every refusal above has its own message; this is the backstop
        raise InvalidRequestError(
            f"{fw.id} cannot serve this layout on {gpu.id} (`guideopt predict` with the same flags says why)", field="tp"
        )
    return table


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
    tp = req.resolved_tp
    fw = cat.framework(req.framework)
    if not bool(tp_is_valid(arch, np.array([tp]))[0]):
        raise InvalidRequestError(f"{tp} does not divide {arch.id}'s {arch.tp_problem(tp)} (config.json)", field="tp")
    if req.pp > arch.num_layers:
        raise InvalidRequestError(f"{req.pp} exceeds the model's {arch.num_layers} layers", field="pp")
    if not fw.chunked_prefill and req.split is not None and req.split < req.input_len:
        raise InvalidRequestError(
            f"{req.split} tokens is shorter than the {req.input_len}-token prompt and {fw.id} does not chunk prefill (use split >= input_len)",
            field="split",
        )
    table = _table(req, cat, tp)
    mem = table.memory
    fw = table.space.frameworks[0]
    kv_tokens = int(mem.kv_tokens[0])
    seq = req.input_len + req.output_len
    max_batch = int(kv_tokens // float(tokens_per_sequence(seq, fw.kv_block_tokens)))
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
        memory=memory_breakdown(table, 0, running=float(max(max_batch, 0))),
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
        valid = tp <= gpu.gpus_per_node and bool(tp_is_valid(arch, np.array([tp]))[0])
        if valid and int(_table(req, cat, tp).memory.kv_tokens[0]) >= req.input_len + req.output_len:
            return tp
    return None


def _stream_shape(req: CapacityRequest, table: OptionTable, cat: Catalog, cap: int):
    """The shape as one stream option (the planner's model and cap rules) and its SLO rate."""
    from guideopt.costs.lengths import fixed_lengths
    from guideopt.model.workload import PercentileTargets
    from guideopt.solver.stream_options import effective_caps, slo_rates, stream_options

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
    opts, lengths, best_rate = _stream_shape(req, table, cat, cap)
    if best_rate <= 0:
        named = [n for n, v in (("slo.ttft_ms", req.ttft_ms), ("slo.tpot_ms", req.tpot_ms)) if v is not None]
        idle = stream_metrics(table.arch, opts, lengths, np.array([1e-6]), percentiles=(req.percentile,))
        raise NoFeasiblePlanError(
            f"slo: no load level meets the SLOs on this replica shape (P{req.percentile:g} TTFT {float(idle.ttft_ms.percentiles[req.percentile][0]):.1f} ms, "
            f"TPOT {float(idle.tpot_ms.percentiles[req.percentile][0]):.2f} ms when idle)",
            named,
        )
    n = max(1, math.ceil(rate / best_rate - 1e-12))
    if n > MAX_REPLICAS_FOR_RATE:
        raise NoFeasiblePlanError(f"rate: {rate:g} req/s needs more than {MAX_REPLICAS_FOR_RATE} replicas of this shape", ["rate"])
    per_replica = rate / n
    m = stream_metrics(table.arch, opts, lengths, np.array([per_replica]), percentiles=(req.percentile,))
    gpus_per_replica = out.request.resolved_tp * out.request.pp
    price = cat.gpu(req.gpu).usd_per_hour
    out.replicas, out.num_gpus = n, n * gpus_per_replica
    out.usd_per_hour = round(n * gpus_per_replica * price, 4)
    out.concurrency_per_replica = int(min(max(math.ceil(float(m.running[0])), 1), float(opts.running_cap[0])))
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
    """Most requests/s one replica of this shape sustains within the SLOs (for checks)."""
    cat = catalog or load_catalog()
    fw = cat.framework(out.request.framework)
    table = _table(out.request, cat, out.request.resolved_tp)
    return _stream_shape(out.request, table, cat, out.request.running_cap or fw.max_num_seqs)[2]
