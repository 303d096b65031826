"""``predict --csv`` rows of disaggregated deployments (issue 23 item 1, the contract's columns)."""

from __future__ import annotations

import csv
import io

import numpy as np
import pytest

from guideopt.analyses.disagg_deploy import build_deployment, predict_disagg, transfer_ms
from guideopt.api import predict_csv_text
from guideopt.catalog import load_catalog
from guideopt.costs.disagg_pools import decode_step_s, prefill_service_s
from guideopt.costs.metrics import first_token_path_s
from guideopt.model.disagg_request import DisaggPredictRequest

CONTRACT_INPUTS = ("model", "gpu", "num_gpus", "tp", "pp", "framework", "dtype", "batch", "input_len", "output_len")
CONTRACT_OUTPUTS = (
    "ttft_ms",
    "tpot_ms",
    "batch_latency_s",
    "decode_throughput_tok_s",
    "output_throughput_tok_s",
    "total_throughput_tok_s",
    "prefill_throughput_tok_s",
    "mem_per_gpu_gb",
    "error",
)
DISAGG = ("prefill_workers", "prefill_tp", "prefill_attention_dp", "prefill_moe_ep")
DISAGG += ("decode_workers", "decode_tp", "decode_attention_dp", "decode_moe_ep", "concurrency", "rate_rps")
BASE = {"model": "meta-llama/Llama-3.1-8B", "gpu": "h100-sxm", "framework": "vllm", "dtype": "fp16", "input_len": 2048, "output_len": 256}


@pytest.fixture(scope="module")
def cat():
    return load_catalog()


def _deployment(**kw) -> DisaggPredictRequest:
    fields = {**BASE, "prefill_workers": 1, "decode_workers": 1, "rate_rps": 1e-4, **kw}
    return DisaggPredictRequest(**fields)


def _csv(rows: list[dict]) -> list[dict]:
    header = list(CONTRACT_INPUTS) + list(DISAGG)
    lines = [",".join(header)] + [",".join(str(r.get(c, "")) for c in header) for r in rows]
    return list(csv.DictReader(io.StringIO(predict_csv_text("\n".join(lines) + "\n"))))


def test_low_load_ttft_is_prefill_transfer_and_one_decode_step(cat):
    dep = build_deployment(_deployment(prefill_tp=2, decode_tp=1), cat)
    got = predict_disagg(dep.request, cat).metrics["ttft_ms"]
    inp = dep.lengths.input_len[None, :]
    prefill_ms = float(prefill_service_s(dep.arch, dep.opts.prefill, inp)[0, 0]) * 1e3
    step_ms = float(decode_step_s(dep.arch, dep.opts.decode, 1.0, BASE["input_len"])[0]) * 1e3
    path_ms = float(first_token_path_s(dep.arch, dep.opts.prefill.hw)[0]) * 1e3  # the server's path, once
    expected = prefill_ms + transfer_ms(dep) + step_ms + path_ms
    assert transfer_ms(dep) > 0  # TP 2 → 1: the hand-over and the re-layout are priced
    assert got == pytest.approx(expected, rel=0.02)


def test_more_decode_workers_never_raise_tpot(cat):
    tpot = [predict_disagg(_deployment(decode_workers=y, concurrency=64, rate_rps=None), cat).metrics["tpot_ms"] for y in (1, 2, 4, 8)]
    assert all(b <= a * (1 + 1e-9) for a, b in zip(tpot, tpot[1:])), tpot


def test_closed_loop_rate_meets_littles_law(cat):
    p = predict_disagg(_deployment(prefill_workers=2, decode_workers=2, concurrency=48, rate_rps=None), cat)
    assert p.concurrency == pytest.approx(48, rel=1e-3)
    assert p.metrics["output_throughput_tok_s"] == pytest.approx(p.rate_rps * BASE["output_len"])


def test_bad_rows_keep_their_place_with_an_error():
    good = {**BASE, "prefill_workers": 1, "prefill_tp": 1, "decode_workers": 2, "decode_tp": 1, "concurrency": 16}
    rows = [
        good,
        {**good, "prefill_workers": 0},  # x of zero
        {**good, "framework": "trtllm"},  # this engine version serves no disaggregation
        {**good, "decode_tp": 3},  # TP does not divide the heads
        {**good, "decode_attention_dp": 2},  # attention DP on a dense model
        {**good, "batch": 8},  # an aggregated column in a disaggregated row
        {**BASE, "num_gpus": 1, "tp": 1, "batch": 4},  # a plain row in the same file
        {**good, "model": "deepseek-ai/DeepSeek-V3", "dtype": "fp8"},  # does not fit one H100
    ]
    out = _csv(rows)
    assert [r["model"] for r in out] == [r["model"] for r in rows]
    assert out[0]["error"] == "" and float(out[0]["ttft_ms"]) > 0
    assert out[6]["error"] == "" and float(out[6]["tpot_ms"]) > 0
    for i, word in ((1, "prefill_workers"), (2, "framework"), (3, "tp"), (4, "attention_dp"), (5, "batch"), (7, "fit")):
        assert word in out[i]["error"], (i, out[i]["error"])
        assert out[i]["ttft_ms"] == "" and "\n" not in out[i]["error"]


def test_output_header_is_the_contracts():
    row = {**BASE, "prefill_workers": 1, "decode_workers": 1, "rate_rps": 0.5}
    text = predict_csv_text(
        ",".join(list(CONTRACT_INPUTS) + list(DISAGG))
        + "\n"
        + ",".join(str(row.get(c, "")) for c in list(CONTRACT_INPUTS) + list(DISAGG))
        + "\n"
    )
    header = text.splitlines()[0].split(",")
    assert header == list(CONTRACT_INPUTS) + list(DISAGG) + list(CONTRACT_OUTPUTS)


def test_num_gpus_counts_both_pools(cat):
    req = _deployment(prefill_workers=2, prefill_tp=2, decode_workers=3, decode_tp=1)
    assert req.total_gpus == 7
    with pytest.raises(ValueError, match="num_gpus"):
        _deployment(prefill_workers=2, prefill_tp=2, decode_workers=3, num_gpus=8)
    p = predict_disagg(req, cat)
    assert np.isfinite(p.metrics["mem_per_gpu_gb"]) and 0 < p.metrics["mem_per_gpu_gb"] <= 80
