"""Predict many configurations at once (``predict --csv``): one vectorised call per group.

The cost functions take the model architecture as a scalar and everything else (GPU,
engine, precisions, TP, PP, batch, lengths, split, H2O ratio) as arrays (the memory rule
is applied per engine), so rows are grouped by (model, static batch or closed loop) and
each group is evaluated by one call over arrays, composed as ``build_option_table`` and ``predict_one`` compose them
for a single row. The refusals that need no cost model are ``predict_one``'s own
(``check_request``). A test checks that the two paths agree row for row, error text
included.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from guideopt.analyses.predict import check_request, default_split, does_not_fit_reason, per_replica_clients, predict_one, resolve
from guideopt.catalog import Catalog
from guideopt.costs.hardware import HardwareArrays, hardware_arrays
from guideopt.costs.memory import MemoryArrays, max_batch, memory_arrays
from guideopt.costs.metrics import StaticBatchInputs, static_batch_metrics
from guideopt.costs.serving import ServingInputs, serving_cap, serving_metrics, static_wave_cap
from guideopt.costs.tables import default_kv_dtype
from guideopt.errors import GuideoptError, NoFeasiblePlanError
from guideopt.model.disagg_request import DisaggPredictRequest
from guideopt.model.dtype import Dtype
from guideopt.model.framework import Framework
from guideopt.model.gpu import Gpu
from guideopt.model.llm import ModelArch
from guideopt.model.plan import METRIC_KEYS
from guideopt.model.predict_request import PredictRequest
from guideopt.units import BYTES_PER_GB, MS_PER_S

THROUGHPUT_KEYS = METRIC_KEYS[3:]

# A row's outcome: its metrics (plus ``mem_per_gpu_gb``), or why it cannot be predicted.
Outcome = dict[str, float] | GuideoptError


@dataclass(frozen=True)
class _Rows:
    """One group: the shared model, and each row's request, GPU and engine, and arrays."""

    arch: ModelArch
    reqs: list[PredictRequest]
    gpus: list[Gpu]
    fws: list[Framework]
    tp: np.ndarray
    pp: np.ndarray
    w_bytes: np.ndarray
    kv_bytes: np.ndarray
    kv_keep: np.ndarray
    batch: np.ndarray  # requests submitted to the whole deployment
    per_replica: np.ndarray  # requests (or clients) on the busiest replica
    replicas: np.ndarray
    input_len: np.ndarray
    output_len: np.ndarray
    split: np.ndarray


def predict_many(requests: Sequence[PredictRequest | DisaggPredictRequest | GuideoptError], cat: Catalog) -> list[Outcome]:
    """One outcome per request, in order; an error stays an error; a disaggregated
    deployment is predicted on its own (``disagg_deploy``)."""
    requests = list(requests)  # rows taking the checkpoint's precision are replaced in place
    out: list[Outcome | None] = [r if isinstance(r, GuideoptError) else None for r in requests]
    groups: dict[tuple, list[tuple[int, ModelArch, Gpu, Framework]]] = defaultdict(list)
    entries: dict[tuple[str, str, str], tuple[ModelArch, Gpu, Framework] | GuideoptError] = {}
    for i, req in enumerate(requests):
        if isinstance(req, GuideoptError):
            continue
        if isinstance(req, DisaggPredictRequest):
            out[i] = _disagg(req, cat)
            continue
        parts = _entries(req, cat, entries)
        if isinstance(parts, GuideoptError):
            out[i] = parts
            continue
        if "dtype" not in req.model_fields_set and parts[0].checkpoint_dtype:  # as predict: the checkpoint's precision
            req = requests[i] = req.model_copy(update={"dtype": Dtype(parts[0].checkpoint_dtype)})
        try:
            check_request(req, cat, *parts)
        except GuideoptError as exc:
            out[i] = exc
            continue
        if req.attention_dp > 1 or req.moe_ep > 1 or req.moe_tp is not None:
            out[i] = _one(req, cat)  # expert-parallel and attention-DP layouts: one at a time, as predict
            continue
        groups[(req.model, req.flash_attention, req.concurrency is not None)].append((i, *parts))
    for members in groups.values():
        reqs = [requests[i] for i, *_ in members]
        rows = _rows(reqs, [gpu for _, _, gpu, _ in members], [fw for *_, fw in members], members[0][1])  # type: ignore[arg-type]
        for (i, *_), outcome in zip(members, _predict_group(rows, cat)):
            out[i] = outcome
    return [o for o in out if o is not None]


def _one(req: PredictRequest, cat: Catalog) -> Outcome:
    try:
        p = predict_one(req, cat)
    except GuideoptError as exc:
        return exc
    return {**p.metrics.model_dump(), "mem_per_gpu_gb": p.memory.total_per_gpu_gb}


def _disagg(req: DisaggPredictRequest, cat: Catalog) -> Outcome:
    from guideopt.analyses.disagg_deploy import predict_disagg

    try:
        return predict_disagg(req, cat).metrics
    except GuideoptError as exc:
        return exc


def _entries(req: PredictRequest, cat: Catalog, seen: dict) -> tuple[ModelArch, Gpu, Framework] | GuideoptError:
    """Catalog entries of a request, looked up once per (model, GPU, engine)."""
    key = (req.model, req.gpu, req.framework)
    if key not in seen:
        try:
            seen[key] = resolve(req, cat)
        except GuideoptError as exc:
            seen[key] = exc
    return seen[key]


def _rows(reqs: list[PredictRequest], gpus: list[Gpu], fws: list[Framework], arch: ModelArch) -> _Rows:
    def arr(values: list) -> np.ndarray:
        return np.array(values)

    return _Rows(
        arch=arch,
        reqs=reqs,
        gpus=gpus,
        fws=fws,
        tp=arr([r.resolved_tp for r in reqs]),
        pp=arr([r.pp for r in reqs]),
        w_bytes=arr([r.dtype.bytes for r in reqs]),
        kv_bytes=arr([(r.kv_dtype or default_kv_dtype(r.dtype)).bytes for r in reqs]),
        kv_keep=arr([r.h2o_keep for r in reqs]),
        batch=arr([float(r.batch) for r in reqs]),
        per_replica=arr([per_replica_clients(r) for r in reqs]),
        replicas=arr([r.replicas for r in reqs]),
        input_len=arr([r.input_len for r in reqs]),
        output_len=arr([r.output_len for r in reqs]),
        split=arr([default_split(r, fw, g) for r, fw, g in zip(reqs, fws, gpus)]),
    )


def _hardware(rows: _Rows, cat: Catalog) -> HardwareArrays:
    """Hardware arrays computed once per distinct (GPU, engine, weight dtype) and gathered per row."""
    index: dict[tuple[str, str, Dtype], int] = {}
    firsts: list[int] = []
    at = np.empty(len(rows.reqs), dtype=int)
    for i, (gpu, fw, req) in enumerate(zip(rows.gpus, rows.fws, rows.reqs)):
        at[i] = index.setdefault((gpu.id, fw.id, req.dtype), len(index))
        if at[i] == len(firsts):
            firsts.append(i)
    base = hardware_arrays(
        [rows.gpus[i] for i in firsts], [rows.fws[i] for i in firsts], [rows.reqs[i].dtype for i in firsts], cat.calibration
    )
    return HardwareArrays(**{f: getattr(base, f)[at] for f in HardwareArrays.__dataclass_fields__})


def _predict_group(rows: _Rows, cat: Catalog) -> list[Outcome]:
    n = len(rows.reqs)
    hw = _hardware(rows, cat)
    mem = _memory(rows)
    blocks = np.array([fw.kv_block_tokens for fw in rows.fws])
    running_cap = max_batch(mem.kv_tokens, rows.input_len + rows.output_len, blocks)
    fits = (running_cap >= 1) & (mem.kv_pool_bytes > 0)
    if rows.reqs[0].concurrency is not None:
        metrics, running = _serving(rows, hw, _serving_caps(rows, running_cap, cat), cat.calibration.closed_loop.lockstep_share)
    else:
        metrics, running = _static(rows, running_cap, hw, _usage(rows, cat))
    mem_gb = _mem_per_gpu_gb(mem, rows, running)
    return [
        {**{k: float(metrics[k][i]) for k in METRIC_KEYS}, "mem_per_gpu_gb": float(mem_gb[i])} if fits[i] else _does_not_fit(rows, mem, i)
        for i in range(n)
    ]


def _memory(rows: _Rows) -> MemoryArrays:
    """Memory per GPU by each engine's rule (``memory_arrays`` takes one engine at a time)."""
    gpu_memory_bytes = np.array([g.memory_bytes for g in rows.gpus])
    fw_ids = np.array([fw.id for fw in rows.fws])
    out = {f: np.zeros(len(rows.reqs)) for f in MemoryArrays.__dataclass_fields__}
    for fw in {fw.id: fw for fw in rows.fws}.values():
        sel = fw_ids == fw.id
        part = memory_arrays(
            rows.arch,
            fw,
            gpu_memory_bytes=gpu_memory_bytes[sel],
            tp=rows.tp[sel],
            pp=rows.pp[sel],
            w_bytes=rows.w_bytes[sel],
            kv_bytes=rows.kv_bytes[sel],
            token_budget=rows.split[sel].astype(float),
            kv_keep=rows.kv_keep[sel],
            seq_tokens=(rows.input_len + rows.output_len)[sel],
        )
        for f in out:
            out[f][sel] = getattr(part, f)
    return MemoryArrays(**out)


def _static(rows: _Rows, running_cap: np.ndarray, hw: HardwareArrays, usage: np.ndarray) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Static batches (as ``build_option_table`` then ``scaled_metrics``): latencies per replica, throughputs for all."""
    per_replica = rows.per_replica.astype(float)
    wave_cap = static_wave_cap(running_cap, rows.input_len, rows.output_len, usage)
    inputs = StaticBatchInputs(
        tp=rows.tp.astype(float),
        pp=rows.pp.astype(float),
        batch=per_replica,
        input_len=rows.input_len.astype(float),
        output_len=rows.output_len.astype(float),
        split=rows.split.astype(float),
        chunked=np.array([fw.chunked_prefill for fw in rows.fws]),
        w_bytes=rows.w_bytes,
        kv_bytes=rows.kv_bytes,
        running_cap=np.maximum(wave_cap, 1.0),
        kv_keep=rows.kv_keep,
        flash=rows.reqs[0].flash_attention,
    )
    m = static_batch_metrics(rows.arch, inputs, hw)
    scale = rows.batch / per_replica  # the busiest replica's latency; only submitted requests count
    metrics = {
        "ttft_ms": m.ttft_s * MS_PER_S,
        "tpot_ms": m.tpot_s * MS_PER_S,
        "batch_latency_s": m.batch_latency_s,
        **{k: getattr(m, k) * scale for k in THROUGHPUT_KEYS},
    }
    return metrics, np.minimum(per_replica, np.maximum(wave_cap, 1.0))


def _usage(rows: _Rows, cat: Catalog) -> np.ndarray:
    """Per row, whether its engine admits by the KV a request holds now (``kv_admission``)."""
    return np.array(
        [cat.calibration.admits_current_usage(fw.calibration_id, g.vendor.value) for fw, g in zip(rows.fws, rows.gpus)], dtype=bool
    )


def _serving_caps(rows: _Rows, running_cap: np.ndarray, cat: Catalog) -> np.ndarray:
    """As ``predict_one``: the engine's sequence cap and what its KV holds under its admission rule."""
    seqs = [r.max_num_seqs or fw.max_num_seqs for r, fw in zip(rows.reqs, rows.fws)]
    return serving_cap(np.array(seqs, dtype=float), running_cap, rows.input_len, rows.output_len, _usage(rows, cat))


def _serving(rows: _Rows, hw: HardwareArrays, caps: np.ndarray, lockstep_share: float) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Closed-loop steady state (as ``predict_one``'s serving path), whole-deployment rates."""
    x = ServingInputs(
        tp=rows.tp.astype(float),
        pp=rows.pp.astype(float),
        concurrency=rows.per_replica.astype(float),
        input_len=rows.input_len.astype(float),
        output_len=rows.output_len.astype(float),
        split=rows.split.astype(float),
        chunked=np.array([fw.chunked_prefill for fw in rows.fws]),
        w_bytes=rows.w_bytes,
        kv_bytes=rows.kv_bytes,
        running_cap=caps,
        kv_keep=rows.kv_keep,
        flash=rows.reqs[0].flash_attention,
        lockstep_share=lockstep_share,
    )
    m = serving_metrics(rows.arch, x, hw)
    rate = m.output_throughput_tok_s / rows.output_len * rows.replicas  # requests/s, whole deployment
    metrics = {
        "ttft_ms": m.ttft_s * MS_PER_S,
        "tpot_ms": m.tpot_s * MS_PER_S,
        "batch_latency_s": m.request_latency_s,
        "decode_throughput_tok_s": rate * np.maximum(rows.output_len - 1, 0),
        "output_throughput_tok_s": rate * rows.output_len,
        "total_throughput_tok_s": rate * (rows.input_len + rows.output_len),
        "prefill_throughput_tok_s": rate * rows.input_len,
    }
    return metrics, m.running


def _mem_per_gpu_gb(mem: MemoryArrays, rows: _Rows, running: np.ndarray) -> np.ndarray:
    """``MemoryBreakdown.total_per_gpu_gb``: fixed parts plus the KV the running requests hold."""
    kv_needed = np.minimum(running * (rows.input_len + rows.output_len) * mem.kv_bytes_per_token, np.maximum(mem.kv_pool_bytes, 0.0))
    return (mem.weights_bytes + mem.activation_bytes + mem.overhead_bytes + kv_needed) / BYTES_PER_GB


def _does_not_fit(rows: _Rows, mem: MemoryArrays, i: int) -> NoFeasiblePlanError:
    req = rows.reqs[i]
    need = float(mem.weights_bytes[i] + mem.activation_bytes[i] + mem.overhead_bytes[i])
    one_seq = (req.input_len + req.output_len) * float(mem.kv_bytes_per_token[i])
    reason = does_not_fit_reason(rows.arch.id, rows.gpus[i].id, req.resolved_tp, req.pp, need, one_seq, float(mem.usable_bytes[i]))
    return NoFeasiblePlanError(reason)
