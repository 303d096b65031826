"""Cost model: hand-checkable numbers and monotonicity properties.

Numbers are small enough to check by hand (EXAMPLES.md practice 14): Llama-2-7b has
6,738,415,616 parameters, so its fp16 weights are 13.48 GB (decimal) on one GPU.
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import LLAMA2_7B, LLAMA2_13B, LLAMA2_70B, LLAMA3_8B, MIXTRAL_8X7B, QWEN2_7B, predict_request
from hypothesis import assume, given
from hypothesis import strategies as st

from guideopt import api
from guideopt.costs.hardware import hardware_arrays
from guideopt.costs.memory import kv_bytes_per_token_per_gpu, weights_per_gpu_bytes
from guideopt.costs.metrics import StaticBatchInputs, decode_step_s, static_batch_metrics
from guideopt.costs.tables import tp_is_valid
from guideopt.errors import InvalidRequestError, NoFeasiblePlanError
from guideopt.model.dtype import Dtype
from guideopt.units import BYTES_PER_GB

LLAMA2_7B_PARAMS = 6_738_415_616
LLAMA2_7B_FP16_GB = LLAMA2_7B_PARAMS * 2 / BYTES_PER_GB  # 13.4768 GB
LLAMA2_7B_KV_PER_TOKEN = 524_288  # bytes, fp16, whole model
# Per-GPU weights × TP exceed the total only by replicated norms (2h per layer): < 0.1 %.
WEIGHTS_TP_RTOL = 1e-3

MODELS = [LLAMA2_7B, LLAMA2_13B, LLAMA3_8B, QWEN2_7B, "mistralai/Mistral-7B-v0.1", MIXTRAL_8X7B]
GPUS_FOR_PROPS = ["h100-sxm", "a100-sxm4-80gb", "l40s", "mi300x"]
FRAMEWORKS = ["vllm", "sglang", "trtllm", "fastgen"]


# ---------------------------------------------------------------- hand-checked numbers


def test_llama2_7b_fp16_weights_tp1(catalog):
    arch = catalog.model(LLAMA2_7B)
    w = float(weights_per_gpu_bytes(arch, tp=1, pp=1, w_bytes=2.0)) / BYTES_PER_GB
    assert w == pytest.approx(13.48, abs=0.01)
    assert w == pytest.approx(LLAMA2_7B_FP16_GB, rel=WEIGHTS_TP_RTOL)


def test_llama2_7b_fp16_weights_halve_at_tp2(catalog):
    arch = catalog.model(LLAMA2_7B)
    w1 = float(weights_per_gpu_bytes(arch, tp=1, pp=1, w_bytes=2.0))
    w2 = float(weights_per_gpu_bytes(arch, tp=2, pp=1, w_bytes=2.0))
    assert w2 / w1 == pytest.approx(0.5, rel=WEIGHTS_TP_RTOL)
    assert w2 / BYTES_PER_GB == pytest.approx(6.74, abs=0.01)


def test_predict_reports_the_same_weights(catalog):
    pred = api.predict(predict_request(LLAMA2_7B, "h100-sxm"), catalog)
    assert pred.memory.weights_gb == pytest.approx(13.48, abs=0.01)
    pred2 = api.predict(predict_request(LLAMA2_7B, "h100-sxm", num_gpus=2, tp=2), catalog)
    assert pred2.memory.weights_gb == pytest.approx(pred.memory.weights_gb / 2, rel=WEIGHTS_TP_RTOL)


@given(model=st.sampled_from(MODELS + [LLAMA2_70B]), tp=st.sampled_from([1, 2, 4, 8]))
def test_weights_per_gpu_times_tp_is_total(catalog, model, tp):
    arch = catalog.model(model)
    assume(bool(tp_is_valid(arch, np.array([tp]))[0]))
    assume(all(g.attention.num_kv_heads % tp == 0 for g in arch.layer_groups))  # no replicated KV heads
    per_gpu = float(weights_per_gpu_bytes(arch, tp=tp, pp=1, w_bytes=2.0))
    assert per_gpu * tp == pytest.approx(arch.num_params * 2.0, rel=WEIGHTS_TP_RTOL)


@given(model=st.sampled_from(MODELS), tp=st.sampled_from([1, 2, 4, 8]))
def test_weights_with_replicated_kv_heads_are_at_least_total(catalog, model, tp):
    arch = catalog.model(model)
    assume(bool(tp_is_valid(arch, np.array([tp]))[0]))
    per_gpu = float(weights_per_gpu_bytes(arch, tp=tp, pp=1, w_bytes=2.0))
    assert per_gpu * tp >= arch.num_params * 2.0 * (1 - WEIGHTS_TP_RTOL)


def test_kv_bytes_per_token_per_gpu(catalog):
    arch = catalog.model(LLAMA2_7B)
    assert float(kv_bytes_per_token_per_gpu(arch, tp=1, pp=1, kv_bytes=2.0)) == LLAMA2_7B_KV_PER_TOKEN
    assert float(kv_bytes_per_token_per_gpu(arch, tp=2, pp=1, kv_bytes=2.0)) == LLAMA2_7B_KV_PER_TOKEN / 2
    assert float(kv_bytes_per_token_per_gpu(arch, tp=1, pp=2, kv_bytes=2.0)) == LLAMA2_7B_KV_PER_TOKEN / 2
    assert float(kv_bytes_per_token_per_gpu(arch, tp=1, pp=1, kv_bytes=1.0)) == LLAMA2_7B_KV_PER_TOKEN / 2
    # GQA: Llama-3-8B has 8 KV heads of 128 over 32 layers: 2·32·8·128·2 = 131072 bytes.
    arch3 = catalog.model(LLAMA3_8B)
    assert float(kv_bytes_per_token_per_gpu(arch3, tp=1, pp=1, kv_bytes=2.0)) == 131072
    # chatglm3 has 2 KV heads: at TP 4 each GPU keeps a replica of one KV head.
    glm = catalog.model("THUDM/chatglm3-6b")
    assert float(kv_bytes_per_token_per_gpu(glm, tp=4, pp=1, kv_bytes=2.0)) == 2 * 28 * 1 * 128 * 2


def test_kv_cache_of_a_prediction_is_batch_times_seq_times_per_token(catalog):
    pred = api.predict(predict_request(LLAMA2_7B, "h100-sxm", batch=4, input_len=512, output_len=128), catalog)
    expected = 4 * (512 + 128) * LLAMA2_7B_KV_PER_TOKEN / BYTES_PER_GB
    assert pred.memory.kv_cache_gb == pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize("dtype", ["int4", "int8", "fp8"])
def test_quantised_weights_use_less_memory(catalog, dtype):
    fp16 = api.predict(predict_request(LLAMA2_7B, "h100-sxm"), catalog).memory
    low = api.predict(predict_request(LLAMA2_7B, "h100-sxm", dtype=dtype), catalog).memory
    assert low.weights_gb < fp16.weights_gb
    assert low.total_per_gpu_gb < fp16.total_per_gpu_gb


def test_int4_weights_below_fp8_below_fp16(catalog):
    arch = catalog.model(LLAMA2_7B)
    w = {d: float(weights_per_gpu_bytes(arch, tp=1, pp=1, w_bytes=d.bytes)) for d in (Dtype.INT4, Dtype.FP8, Dtype.FP16)}
    assert w[Dtype.INT4] < w[Dtype.FP8] < w[Dtype.FP16]


def test_tp2_lowers_tpot_at_batch1_on_h100(catalog):
    tp1 = api.predict(predict_request(LLAMA2_7B, "h100-sxm", batch=1), catalog).metrics
    tp2 = api.predict(predict_request(LLAMA2_7B, "h100-sxm", batch=1, num_gpus=2, tp=2), catalog).metrics
    assert tp2.tpot_ms < tp1.tpot_ms


def test_tpot_at_batch1_is_near_the_weight_streaming_bound(catalog):
    """Decode at batch 1 streams all weights once per token: TPOT >= weights / HBM bandwidth."""
    gpu = catalog.gpu("h100-sxm")
    pred = api.predict(predict_request(LLAMA2_7B, "h100-sxm", batch=1), catalog)
    bound_ms = LLAMA2_7B_PARAMS * 2 / gpu.hbm_bw_bytes_per_s * 1e3
    assert bound_ms < pred.metrics.tpot_ms < 4 * bound_ms


# ---------------------------------------------------------------- contract identities


@given(
    model=st.sampled_from(MODELS),
    gpu=st.sampled_from(GPUS_FOR_PROPS),
    batch=st.integers(1, 64),
    input_len=st.integers(1, 2048),
    output_len=st.integers(2, 512),
    fw=st.sampled_from(FRAMEWORKS),
)
def test_metrics_follow_the_contract_definitions(catalog, model, gpu, batch, input_len, output_len, fw):
    assume(catalog.gpu(gpu).vendor.value in catalog.framework(fw).vendors)  # e.g. no TRT-LLM on AMD
    try:
        pred = api.predict(predict_request(model, gpu, batch=batch, input_len=input_len, output_len=output_len, framework=fw), catalog)
    except NoFeasiblePlanError:
        assume(False)
    assume(pred.waves == 1)
    m = pred.metrics
    lat, ttft = m.batch_latency_s, m.ttft_ms / 1e3
    assert 0 < ttft < lat
    assert m.output_throughput_tok_s == pytest.approx(batch * output_len / lat, rel=1e-9)
    assert m.total_throughput_tok_s == pytest.approx(batch * (input_len + output_len) / lat, rel=1e-9)
    assert m.decode_throughput_tok_s == pytest.approx(batch * (output_len - 1) / (lat - ttft), rel=1e-6)
    assert m.tpot_ms / 1e3 == pytest.approx((lat - ttft) / (output_len - 1), rel=1e-6)
    assert m.prefill_throughput_tok_s == pytest.approx(batch * input_len / ttft, rel=1e-9)


def test_throughput_counts_only_submitted_requests_when_replicas_do_not_divide_batch(catalog):
    out_len = 128
    pred = api.predict(predict_request(LLAMA2_7B, "h100-sxm", num_gpus=2, tp=1, batch=3, output_len=out_len), catalog)
    m = pred.metrics
    assert m.output_throughput_tok_s * m.batch_latency_s / out_len == pytest.approx(3, rel=1e-9)


# ---------------------------------------------------------------- monotonicity


def _decode_inputs(catalog, model, gpu_id, tp, fw_id="vllm", dtype=Dtype.FP16):
    arch = catalog.model(model)
    gpu, fw = catalog.gpu(gpu_id), catalog.framework(fw_id)
    hw = hardware_arrays([gpu], [fw], [dtype], catalog.calibration)
    one = np.ones(1)
    x = StaticBatchInputs(
        tp=one * tp,
        pp=one,
        batch=one,
        input_len=one * 512,
        output_len=one * 128,
        split=one * fw.max_num_batched_tokens,
        chunked=np.array([fw.chunked_prefill]),
        w_bytes=one * dtype.bytes,
        kv_bytes=one * 2.0,
        running_cap=one * 1e9,
        kv_keep=one,
    )
    return arch, x, hw


@given(
    model=st.sampled_from(MODELS),
    gpu=st.sampled_from(GPUS_FOR_PROPS),
    tp=st.sampled_from([1, 2, 4, 8]),
    batch=st.integers(1, 512),
    extra=st.integers(1, 256),
    context=st.integers(1, 32768),
    more_ctx=st.integers(1, 8192),
    fw=st.sampled_from(FRAMEWORKS),
)
def test_decode_step_time_non_decreasing_in_batch_and_context(catalog, model, gpu, tp, batch, extra, context, more_ctx, fw):
    arch, x, hw = _decode_inputs(catalog, model, gpu, tp, fw)
    assume(bool(tp_is_valid(arch, np.array([tp]))[0]))
    base = float(decode_step_s(arch, x, hw, np.array([float(batch)]), np.array([float(context)]))[0])
    bigger_batch = float(decode_step_s(arch, x, hw, np.array([float(batch + extra)]), np.array([float(context)]))[0])
    longer_ctx = float(decode_step_s(arch, x, hw, np.array([float(batch)]), np.array([float(context + more_ctx)]))[0])
    assert base > 0
    assert bigger_batch >= base * (1 - 1e-12)
    assert longer_ctx >= base * (1 - 1e-12)


@given(
    model=st.sampled_from(MODELS),
    gpu=st.sampled_from(GPUS_FOR_PROPS),
    batch=st.integers(1, 256),
    extra=st.integers(1, 128),
    input_len=st.integers(1, 4096),
    output_len=st.integers(2, 1024),
)
def test_static_batch_metrics_monotone_in_batch(catalog, model, gpu, batch, extra, input_len, output_len):
    """Direct check of ``static_batch_metrics``: no KV cap, so no waves."""
    arch, x, hw = _decode_inputs(catalog, model, gpu, 1)
    x = StaticBatchInputs(**{**x.__dict__, "input_len": np.array([float(input_len)]), "output_len": np.array([float(output_len)])})
    small = static_batch_metrics(arch, StaticBatchInputs(**{**x.__dict__, "batch": np.array([float(batch)])}), hw)
    large = static_batch_metrics(arch, StaticBatchInputs(**{**x.__dict__, "batch": np.array([float(batch + extra)])}), hw)
    assert float(large.batch_latency_s[0]) >= float(small.batch_latency_s[0]) * (1 - 1e-12)
    assert float(large.ttft_s[0]) >= float(small.ttft_s[0]) * (1 - 1e-12)
    assert float(large.tpot_s[0]) >= float(small.tpot_s[0]) * (1 - 1e-9)


def _predict_or_none(catalog, **kw):
    try:
        return api.predict(predict_request(**kw), catalog)
    except (NoFeasiblePlanError, InvalidRequestError):
        return None


@given(
    model=st.sampled_from(MODELS),
    gpu=st.sampled_from(GPUS_FOR_PROPS),
    batch=st.integers(1, 256),
    extra=st.integers(1, 256),
    input_len=st.integers(1, 4096),
    output_len=st.integers(2, 1024),
    fw=st.sampled_from(FRAMEWORKS),
    tp=st.sampled_from([1, 2, 4]),
    pp=st.sampled_from([1, 2]),
)
def test_batch_latency_never_falls_as_batch_grows(catalog, model, gpu, batch, extra, input_len, output_len, fw, tp, pp):
    common = dict(model=model, gpu=gpu, input_len=input_len, output_len=output_len, framework=fw, tp=tp, pp=pp)
    small = _predict_or_none(catalog, batch=batch, **common)
    large = _predict_or_none(catalog, batch=batch + extra, **common)
    assume(small is not None and large is not None)
    assert large.metrics.batch_latency_s >= small.metrics.batch_latency_s * (1 - 1e-12)
    assert large.metrics.tpot_ms >= small.metrics.tpot_ms * (1 - 1e-9) or large.waves > small.waves


@given(
    model=st.sampled_from(MODELS),
    gpu=st.sampled_from(GPUS_FOR_PROPS),
    batch=st.integers(1, 64),
    input_len=st.integers(1, 4096),
    more=st.integers(1, 4096),
    output_len=st.integers(2, 512),
)
def test_tpot_non_decreasing_in_context(catalog, model, gpu, batch, input_len, more, output_len):
    common = dict(model=model, gpu=gpu, batch=batch, output_len=output_len)
    short = _predict_or_none(catalog, input_len=input_len, **common)
    long = _predict_or_none(catalog, input_len=input_len + more, **common)
    assume(short is not None and long is not None and short.waves == 1 and long.waves == 1)
    assert long.metrics.tpot_ms >= short.metrics.tpot_ms * (1 - 1e-9)
    assert long.metrics.batch_latency_s >= short.metrics.batch_latency_s * (1 - 1e-12)


@given(
    model=st.sampled_from(MODELS),
    gpu=st.sampled_from(GPUS_FOR_PROPS),
    batch=st.integers(1, 256),
    extra=st.integers(1, 256),
    input_len=st.integers(1, 4096),
    output_len=st.integers(1, 1024),
    fw=st.sampled_from(FRAMEWORKS),
)
def test_memory_monotone_in_batch(catalog, model, gpu, batch, extra, input_len, output_len, fw):
    common = dict(model=model, gpu=gpu, input_len=input_len, output_len=output_len, framework=fw)
    small = _predict_or_none(catalog, batch=batch, **common)
    large = _predict_or_none(catalog, batch=batch + extra, **common)
    assume(small is not None and large is not None)
    assert large.memory.total_per_gpu_gb >= small.memory.total_per_gpu_gb
    assert large.memory.kv_cache_gb >= small.memory.kv_cache_gb
    assert large.memory.weights_gb == small.memory.weights_gb
    for mem in (small.memory, large.memory):
        assert mem.total_per_gpu_gb <= mem.usable_gb * (1 + 1e-9) <= mem.gpu_memory_gb * (1 + 1e-9)


@given(
    model=st.sampled_from(MODELS),
    gpu=st.sampled_from(GPUS_FOR_PROPS),
    batch=st.integers(1, 64),
    input_len=st.integers(1, 4096),
    output_len=st.integers(1, 1024),
    more_in=st.integers(0, 4096),
    more_out=st.integers(0, 1024),
)
def test_memory_monotone_in_sequence_length(catalog, model, gpu, batch, input_len, output_len, more_in, more_out):
    assume(more_in + more_out > 0)
    common = dict(model=model, gpu=gpu, batch=batch)
    short = _predict_or_none(catalog, input_len=input_len, output_len=output_len, **common)
    long = _predict_or_none(catalog, input_len=input_len + more_in, output_len=output_len + more_out, **common)
    # With waves fewer longer sequences may be resident at once; compare whole batches only.
    assume(short is not None and long is not None and short.waves == 1 and long.waves == 1)
    assert long.memory.total_per_gpu_gb >= short.memory.total_per_gpu_gb * (1 - 1e-12)
    assert long.memory.kv_cache_gb >= short.memory.kv_cache_gb * (1 - 1e-12)
    windowed = any(getattr(g.attention, "window", None) for g in catalog.model(model).layer_groups)
    if short.memory.kv_cache_gb < short.memory.kv_pool_gb and not windowed:  # below the pool, longer sequences hold strictly more
        assert long.memory.kv_cache_gb > short.memory.kv_cache_gb
    assert long.memory.kv_cache_gb <= long.memory.kv_pool_gb * (1 + 1e-9)  # never more than the pool


def test_one_wave_beyond_the_full_length_cap_holds_the_batch_up_to_the_pool(catalog):
    """vLLM admits a static batch by the KV it holds now: 40 requests run as one wave though only
    39 fit at full length, and the KV they hold is theirs up to the pool (the example hypothesis
    found: memory fell when the output grew from 1,024 to 1,062 tokens)."""
    common = dict(model="meta-llama/Llama-2-13b-hf", gpu="h100-sxm", batch=40, input_len=475)
    short = _predict_or_none(catalog, output_len=1024, **common)
    long = _predict_or_none(catalog, output_len=1062, **common)
    assert short.waves == long.waves == 1 and long.max_batch < 40 <= short.max_batch
    assert long.memory.kv_cache_gb > short.memory.kv_cache_gb


@given(model=st.sampled_from(MODELS), batch=st.integers(1, 32), tp=st.sampled_from([1, 2, 4, 8]), pp=st.sampled_from([1, 2, 4]))
def test_memory_per_gpu_never_grows_with_more_parallelism(catalog, model, batch, tp, pp):
    base = _predict_or_none(catalog, model=model, gpu="h100-sxm", batch=batch, tp=1, pp=1)
    split = _predict_or_none(catalog, model=model, gpu="h100-sxm", batch=batch, tp=tp, pp=pp)
    assume(base is not None and split is not None)
    assert split.memory.weights_gb <= base.memory.weights_gb * (1 + 1e-9)
