"""Predict the metrics of one configuration (``guideopt predict``)."""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np

from guideopt.catalog import Catalog, load_catalog
from guideopt.costs.capability import moe_layout_reason, request_refusal, runs_on_reason
from guideopt.costs.engine_defaults import token_budget as engine_token_budget
from guideopt.costs.hardware import hardware_arrays
from guideopt.costs.intervals import error_band, interval, regime_engine, regime_keys
from guideopt.costs.layouts import moe_ep_problem
from guideopt.costs.rows import memory_breakdown, scaled_metrics
from guideopt.costs.serving import ServingInputs, serving_cap, serving_metrics, static_wave_cap
from guideopt.costs.tables import OptionSpace, OptionTable, build_option_table, default_kv_dtype, tp_is_valid
from guideopt.errors import InvalidRequestError, NoFeasiblePlanError
from guideopt.model.dtype import Dtype
from guideopt.model.framework import Framework
from guideopt.model.gpu import Gpu
from guideopt.model.llm import ModelArch
from guideopt.model.plan import MemoryBreakdown, Metrics
from guideopt.model.predict_request import PredictRequest
from guideopt.model.validation import check_context, validated
from guideopt.units import BYTES_PER_GB, MS_PER_S


@dataclass(frozen=True)
class Prediction:
    request: PredictRequest
    metrics: Metrics
    memory: MemoryBreakdown
    replicas: int
    batch_per_replica: int
    waves: int
    kv_cache_tokens: int
    max_batch: int
    metrics_low: Metrics | None = None  # 10th percentile of held-out errors in this regime
    metrics_high: Metrics | None = None  # 90th percentile

    def as_dict(self) -> dict:
        return {
            "model": self.request.model,
            "gpu": self.request.gpu,
            "framework": self.request.framework,
            "dtype": self.request.dtype.value,
            "num_gpus": self.replicas * self.request.resolved_tp * self.request.attention_dp * self.request.pp,
            "replicas": self.replicas,
            "tp": self.request.resolved_tp,
            "pp": self.request.pp,
            "attention_dp": self.request.attention_dp,
            "moe_tp": self.request.moe_tp or self.request.resolved_tp * self.request.attention_dp // self.request.moe_ep,
            "moe_ep": self.request.moe_ep,
            "batch": self.request.batch,
            "batch_per_replica": self.batch_per_replica,
            "concurrency": self.request.concurrency,  # closed-loop clients (batch_per_replica: per replica); null for a static batch
            "input_len": self.request.input_len,
            "output_len": self.request.output_len,
            "waves": self.waves,
            "kv_cache_tokens": self.kv_cache_tokens,
            "max_batch": self.max_batch,
            "metrics": self.metrics.model_dump(),
            "metrics_low": (self.metrics_low or self.metrics).model_dump(),
            "metrics_high": (self.metrics_high or self.metrics).model_dump(),
            "memory": self.memory.model_dump(),
        }


def default_split(req: PredictRequest, fw: Framework, gpu: Gpu) -> int:
    """The token budget per pass: the request's, else the engine's own default on this GPU (whole prompts unchunked)."""
    return engine_token_budget(fw, gpu.memory_bytes, requested=req.split, longest_prompt=req.input_len)


def resolve(req: PredictRequest, cat: Catalog) -> tuple[ModelArch, Gpu, Framework]:
    """The request's catalog entries (an unknown id raises CatalogError naming the field)."""
    return cat.model(req.model), cat.gpu(req.gpu), cat.framework(req.framework)


def check_request(req: PredictRequest, cat: Catalog, arch: ModelArch, gpu: Gpu, fw: Framework) -> None:
    """Every refusal that needs no cost model (``predict`` and ``predict --csv`` share it)."""
    check_context(req.model, arch.max_position_embeddings, req.input_len, req.output_len, "input_len")
    check_layout(req, cat, arch, gpu, fw)
    split = default_split(req, fw, gpu)
    if not fw.chunked_prefill and split < req.input_len:
        raise InvalidRequestError(
            f"split: {split} tokens is shorter than the {req.input_len}-token prompt and {fw.id} does not chunk prefill (use split >= input_len)"
        )


def check_layout(req: PredictRequest, cat: Catalog, arch: ModelArch, gpu: Gpu, fw: Framework) -> None:
    """The layout's refusals: what the engine cannot run on the GPU, TP, PP and the expert split."""
    tp = req.resolved_tp
    _refuse_unsupported(req, cat, fw, gpu)
    if not _tp_divides(arch, tp):
        raise InvalidRequestError(
            f"tp: {tp} does not divide {arch.id}'s {arch.tp_problem(tp)} (config.json; try a divisor such as {_divisor_hint(arch)})"
        )
    if req.pp > arch.num_layers:
        raise InvalidRequestError(f"pp: {req.pp} exceeds the model's {arch.num_layers} layers")
    check_moe_layout(arch, req)


def checked_layout(fields: Mapping[str, Any], cat: Catalog) -> PredictRequest:
    """A layout of ``capacity`` or ``simulate`` (predict's request fields) validated and refused as ``predict`` does."""
    req: PredictRequest = validated(PredictRequest, fields)
    arch, gpu, fw = resolve(req, cat)
    check_layout(req, cat, arch, gpu, fw)
    return req


@lru_cache(maxsize=1024)
def _tp_divides(arch: ModelArch, tp: int) -> bool:
    """``tp_is_valid`` for one TP size, remembered (``predict --csv`` asks it for every row)."""
    return bool(tp_is_valid(arch, np.array([tp]))[0])


def check_moe_layout(arch: ModelArch, req: PredictRequest) -> None:
    """Expert parallelism needs experts to split, and each expert's width to split over moe_tp."""
    moe = arch.moe
    if moe is None and (req.moe_ep > 1 or req.moe_tp is not None):
        raise InvalidRequestError(f"moe_ep: {arch.id} has no experts (leave --moe-ep and --moe-tp out)")
    if moe is None and req.attention_dp > 1:
        raise InvalidRequestError(f"attention_dp: {arch.id} has no experts; its data parallelism is replicas (leave --attention-dp out)")
    if moe is None:
        return
    if problem := moe_ep_problem(arch, req.moe_ep, req.resolved_tp * req.attention_dp):
        raise InvalidRequestError(f"{problem[0]}: {problem[1]}")


def per_replica_clients(req: PredictRequest) -> int:
    """Requests (or closed-loop clients) on the busiest replica."""
    clients = req.concurrency if req.concurrency is not None else req.batch
    return -(-clients // (req.replicas * req.attention_dp))  # per attention-DP rank


def predict_one(req: PredictRequest, catalog: Catalog | None = None) -> Prediction:
    cat = catalog or load_catalog()
    with warnings.catch_warnings():  # resolve() warns about the model's caveats once
        warnings.simplefilter("ignore")
        checkpoint = cat.model(req.model).checkpoint_dtype
    if "dtype" not in req.model_fields_set and checkpoint:  # a quantized checkpoint runs in its own precision
        req = req.model_copy(update={"dtype": Dtype(checkpoint)})
    return with_intervals(_predict_one(req, cat), cat)


def is_moe(cat: Catalog, model: str) -> bool:
    """Whether the model routes to experts (MoE rows have error bands of their own)."""
    with warnings.catch_warnings():  # the model's caveats were shown when it was resolved
        warnings.simplefilter("ignore")
        return cat.model(model).is_moe


def metric_intervals(req: PredictRequest, metrics: dict, batch_per_replica: float, cat: Catalog) -> tuple[dict, dict]:
    """The low and high ends of each metric's interval: the held-out error band of its regime
    (GPU family, engine and vendor, batch per replica, TP) applied to the predicted value."""
    gpu = cat.gpu(req.gpu)
    engine = regime_engine(cat.framework(req.framework).calibration_id, gpu.vendor.value)
    moe = is_moe(cat, req.model)
    low, high = {}, {}
    for name, value in metrics.items():
        keys = regime_keys(name, gpu.arch, engine, batch_per_replica, req.resolved_tp, req.concurrency is not None, moe)
        low[name], high[name] = interval(value, error_band(cat.calibration.intervals, keys))
    return low, high


def with_intervals(p: Prediction, cat: Catalog) -> Prediction:
    """Attach the interval of held-out errors in the prediction's regime."""
    low, high = metric_intervals(p.request, p.metrics.model_dump(), p.batch_per_replica, cat)
    return dataclasses.replace(p, metrics_low=Metrics(**low), metrics_high=Metrics(**high))


def _predict_one(req: PredictRequest, cat: Catalog) -> Prediction:
    arch, gpu, fw = resolve(req, cat)
    check_request(req, cat, arch, gpu, fw)
    tp = req.resolved_tp
    replicas = req.replicas
    ranks = replicas * req.attention_dp  # each attention-DP rank serves its own requests
    per_replica = per_replica_clients(req)
    split = default_split(req, fw, gpu)
    space = OptionSpace(
        gpus=[gpu],
        frameworks=[fw],
        dtypes=[req.dtype],
        tp=[tp],
        pp=[req.pp],
        batch=[per_replica],
        input_len=req.input_len,
        output_len=req.output_len,
        kv_dtype=req.kv_dtype,
        split=[split],
        h2o_keep=req.h2o_keep,
        flash_attention=req.flash_attention,
        allow_waves=True,
        allow_multi_node_tp=True,  # a measured multi-node TP run is predicted, over the fallback link
        attention_dp=[req.attention_dp],
        moe_ep=[req.moe_ep],
    )
    table = build_option_table(arch, space, cat.calibration)
    if len(table) == 0:  # every engine and layout check above passed, so this is a layout the table cannot form
        raise InvalidRequestError(f"moe_ep: {req.framework} cannot run tp {tp}, attention_dp {req.attention_dp}, moe_ep {req.moe_ep} here")
    if not bool(table.fits[0]):
        raise NoFeasiblePlanError(_does_not_fit(table))
    if req.concurrency is not None:
        return _serving_prediction(req, table, cat, ranks, per_replica)
    return Prediction(
        # The busiest replica sets the latency; throughputs count only submitted requests.
        request=req,
        metrics=scaled_metrics(table, 0, req.batch / (per_replica * req.attention_dp)),  # table: a whole replica's throughput
        memory=memory_breakdown(table, 0, running=_static_running(req, table, cat, per_replica)),
        replicas=replicas,
        batch_per_replica=per_replica,
        waves=int(table.metrics.waves[0]),
        kv_cache_tokens=int(table.memory.kv_tokens[0]),
        max_batch=int(table.running_cap[0]),
    )


def _static_running(req: PredictRequest, table: OptionTable, cat: Catalog, per_replica: int) -> float:
    """Requests of a static batch in the engine at once: a wave (``static_wave_cap``, as the metrics use)."""
    fw, gpu = table.space.frameworks[0], table.space.gpus[0]
    usage = cat.calibration.admits_current_usage(fw.calibration_id, gpu.vendor.value)
    wave = static_wave_cap(table.running_cap[:1].astype(float), req.input_len, req.output_len, usage)
    return float(min(per_replica, max(float(wave[0]), 1.0)))


@lru_cache(maxsize=256)
def _divisor_hint(arch: ModelArch) -> str:
    good = [t for t in (1, 2, 4, 8) if bool(tp_is_valid(arch, np.array([t]))[0])]
    return ", ".join(str(t) for t in good)


def _does_not_fit(table: OptionTable) -> str:
    mem = table.memory
    need = float(mem.weights_bytes[0] + mem.activation_bytes[0] + mem.overhead_bytes[0])
    one_seq = (table.space.input_len + table.space.output_len) * float(mem.kv_bytes_per_token[0])
    return does_not_fit_reason(
        table.arch.id, table.space.gpus[0].id, int(table.tp[0]), int(table.pp[0]), need, one_seq, float(mem.usable_bytes[0])
    )


def does_not_fit_reason(
    model_id: str, gpu_id: str, tp: int, pp: int, need_bytes: float, kv_per_request_bytes: float, usable_bytes: float
) -> str:
    return (
        f"does not fit: {model_id} needs {need_bytes / BYTES_PER_GB:.1f} GB per GPU for weights, activations and overhead "
        f"plus {kv_per_request_bytes / BYTES_PER_GB:.2f} GB of KV per request, but {gpu_id} at tp={tp}, pp={pp} "
        f"lets the engine use {usable_bytes / BYTES_PER_GB:.1f} GB (use more TP/PP, a larger GPU or a lower precision)"
    )


def _serving_prediction(req: PredictRequest, table: OptionTable, cat: Catalog, replicas: int, per_replica: int) -> Prediction:
    """Closed-loop steady state (``concurrency`` clients) instead of a static batch; ``replicas``
    counts attention-DP ranks, each serving its own clients."""
    hw = hardware_arrays(table.space.gpus, table.space.frameworks[:1], table.space.dtypes, cat.calibration)
    x = serving_inputs(req, table, cat, per_replica)
    m = serving_metrics(table.arch, x, hw)
    rate = float(m.output_throughput_tok_s[0]) / req.output_len * replicas  # requests/s, whole deployment
    metrics = Metrics(
        ttft_ms=float(m.ttft_s[0]) * MS_PER_S,
        tpot_ms=float(m.tpot_s[0]) * MS_PER_S,
        batch_latency_s=float(m.request_latency_s[0]),
        decode_throughput_tok_s=rate * max(req.output_len - 1, 0),
        output_throughput_tok_s=rate * req.output_len,
        total_throughput_tok_s=rate * (req.input_len + req.output_len),
        prefill_throughput_tok_s=rate * req.input_len,
    )
    return Prediction(
        request=req,
        metrics=metrics,
        memory=memory_breakdown(table, 0, running=float(m.running[0])),
        replicas=req.replicas,
        batch_per_replica=per_replica,
        waves=1,
        kv_cache_tokens=int(table.memory.kv_tokens[0]),
        max_batch=int(table.running_cap[0]),
    )


def serving_inputs(req: PredictRequest, table: OptionTable, cat: Catalog, per_replica: int) -> ServingInputs:
    """The closed loop of ``per_replica`` clients on row 0 of ``table`` (``predict --concurrency``;
    ``simulate`` evaluates its closed loop with the same inputs)."""
    fw = table.space.frameworks[0]
    return ServingInputs(
        tp=table.tp[:1].astype(float),
        pp=table.pp[:1].astype(float),
        concurrency=np.array([float(per_replica)]),
        input_len=np.array([float(req.input_len)]),
        output_len=np.array([float(req.output_len)]),
        split=table.split[:1].astype(float),
        chunked=np.array([fw.chunked_prefill]),
        w_bytes=np.array([req.dtype.bytes]),
        kv_bytes=table.kv_dtype_bytes[:1],
        running_cap=np.full(1, serving_running_cap(req, table, cat)),
        kv_keep=np.array([req.h2o_keep]),
        flash=req.flash_attention,
        lockstep_share=cat.calibration.closed_loop.lockstep_share,
        dp=float(req.attention_dp),
        ep=float(req.moe_ep),
    )


def serving_running_cap(req: PredictRequest, table: OptionTable, cat: Catalog) -> float:
    """``serving_cap`` for one request: the engine's (or the request's) sequence cap and its KV admission."""
    fw, gpu = table.space.frameworks[0], table.space.gpus[0]
    usage = cat.calibration.admits_current_usage(fw.calibration_id, gpu.vendor.value)
    seqs = req.max_num_seqs or fw.max_num_seqs
    return float(serving_cap(seqs, table.running_cap[0], req.input_len, req.output_len, usage))


def _refuse_unsupported(req: PredictRequest, cat: Catalog, fw: Framework, gpu: Gpu) -> None:
    """What the engine cannot run on this GPU is refused with the engine's own reason."""
    kv = req.kv_dtype or default_kv_dtype(req.dtype)
    tp, dp, ep = req.resolved_tp, req.attention_dp, req.moe_ep
    refusal = _refusal(fw, gpu, req.dtype, kv, req.pp, tp * dp * req.pp)
    if refusal is not None:
        field, reason = refusal
        hint = f" (use one of {_engines_for(cat, gpu)})" if field == "framework" else ""
        raise InvalidRequestError(f"{field}: {reason}{hint}")
    moe = moe_layout_reason(
        fw, attention_dp=dp, moe_ep=ep, gpus_per_replica=tp * dp * req.pp, gpus_per_node=gpu.gpus_per_node, tp=tp, moe_tp=tp * dp // ep
    )
    if moe is not None:
        raise InvalidRequestError(f"{'moe_ep' if ep > 1 else 'attention_dp'}: {moe}")


_REFUSALS: dict[tuple, tuple[Framework, Gpu, tuple[str, str] | None]] = {}
_REFUSALS_MAX = 4096  # distinct (engine, GPU, precisions, layout) verdicts kept for predict --csv


def _refusal(fw: Framework, gpu: Gpu, weights: Dtype, kv: Dtype, pp: int, per_replica: int) -> tuple[str, str] | None:
    """``request_refusal``, remembered per configuration (``predict --csv`` asks it for every row).
    The entry holds the objects its key names by ``id``, so an id is never reused while cached."""
    key = (id(fw), id(gpu), weights, kv, pp, per_replica)
    hit = _REFUSALS.get(key)
    if hit is None:
        if len(_REFUSALS) >= _REFUSALS_MAX:
            _REFUSALS.clear()
        hit = _REFUSALS[key] = (fw, gpu, request_refusal(fw, gpu, weights=weights, kv=kv, pp=pp, gpus_per_replica=per_replica))
    return hit[2]


def _engines_for(cat: Catalog, gpu: Gpu) -> str:
    return ", ".join(f.id for f in cat.frameworks.values() if runs_on_reason(f, gpu) is None) or "none in the catalog"
