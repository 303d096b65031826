"""A static batch larger than the KV cache runs as each engine admits it: TensorRT-LLM reserves
the whole length (waves of KV / (I + O)); vLLM and SGLang admit by the KV held now and preempt
as sequences grow, settling at requests of mean length I + O/2."""

from __future__ import annotations

import math

from conftest import LLAMA2_7B, predict_request, with_engine_terms

from guideopt import api

A100 = "a100-sxm4-80gb"
REQ = predict_request(LLAMA2_7B, A100, framework="vllm", batch=2000, input_len=128, output_len=2048)


def _admission(catalog, rule: str):
    return with_engine_terms(catalog, kv_admission=rule)


def test_current_usage_runs_waves_at_the_mean_length(catalog):
    held = api.predict(REQ, _admission(catalog, "current_usage"))
    reserved = api.predict(REQ, _admission(catalog, "full_length"))
    assert held.max_batch == reserved.max_batch  # what fits at full length is reported either way
    per_wave = math.floor(held.max_batch * (128 + 2048) / (128 + 2048 / 2))
    assert reserved.waves == math.ceil(2000 / reserved.max_batch)
    assert held.waves == math.ceil(2000 / per_wave) < reserved.waves
    assert held.metrics.output_throughput_tok_s > reserved.metrics.output_throughput_tok_s


def test_a_batch_that_fits_is_the_same_under_either_rule(catalog):
    small = {**REQ, "batch": 16}
    a = api.predict(small, _admission(catalog, "current_usage")).metrics
    b = api.predict(small, _admission(catalog, "full_length")).metrics
    assert a == b


def test_csv_rows_follow_the_same_rule(catalog):
    rows = api.predict_rows([{k: str(v) for k, v in REQ.items()}], _admission(catalog, "current_usage"))
    single = api.predict(REQ, _admission(catalog, "current_usage")).metrics
    assert float(rows[0]["output_throughput_tok_s"]) == float(f"{single.output_throughput_tok_s:.6g}")
