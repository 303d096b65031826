"""``guideopt simulate``: output, JSON, chart, progress and one-line errors."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from guideopt.cli import main

BASE = ["simulate", "--model", "meta-llama/Llama-3.1-8B", "--gpu", "h100-sxm", "--num-requests", "300"]


def run(args: list[str]):
    return CliRunner().invoke(main, args, catch_exceptions=False)


def test_text_output_has_both_models_and_the_slo_line(tmp_path):
    res = run([*BASE, "--rate", "5", "--input-len", "512", "--output-len", "64", "--ttft-ms", "500", "--tpot-ms", "50"])
    assert res.exit_code == 0, res.output
    for word in ("simulated", "analytic", "ttft_ms", "p99", "sustainable rate", "goodput", "preemptions"):
        assert word in res.output


def test_json_for_a_mix_and_percentile_slos():
    res = run([*BASE, "--rate", "4", "--lengths", "sharegpt", "--ttft-ms", "800", "--percentile", "99", "--json"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.output)
    sim = data["simulated"]
    assert sim["requests"] == 300 and sim["metrics"]["ttft_ms"]["p99"] >= sim["metrics"]["ttft_ms"]["p50"] > 0
    assert set(data["analytic"]["metrics"]) == {"ttft_ms", "tpot_ms", "e2e_ms", "queue_ms"}
    assert 0 <= sim["slo_attainment"] <= 1 and sim["goodput_rps"] <= sim["request_throughput_rps"] + 1e-9
    assert data["kv_policy"] == "recompute" and data["sustainable_rate_rps"] > 4


def test_trace_replay_and_chart(tmp_path):
    trace = tmp_path / "trace.csv"
    trace.write_text("input_len,output_len,arrival_s\n" + "".join(f"{100 + i},{20 + i % 7},{i * 0.05:.2f}\n" for i in range(80)))
    chart = tmp_path / "out" / "series.png"
    res = run([*BASE, "--lengths", str(trace), "--plot", str(chart), "--json"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.output)
    assert data["simulated"]["requests"] == 80 and data["rate_rps"] is None
    assert chart.stat().st_size > 10_000


def test_closed_loop_and_a_prefill_first_engine():
    res = run([*BASE, "--framework", "trtllm", "--concurrency", "8", "--input-len", "256", "--output-len", "32", "--json"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.output)
    assert data["kv_policy"] == "reserve" and data["simulated"]["preemptions"] == 0


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--rate", "0", "--input-len", "5", "--output-len", "5"], "--rate: must be > 0"),
        (["--rate", "-2", "--input-len", "5", "--output-len", "5"], "--rate: must be > 0"),
        (["--rate", "1", "--input-len", "5", "--output-len", "5", "--percentile", "0"], "--percentile: percentile 0.0 is outside (0, 100)"),
        (["--rate", "1", "--input-len", "5", "--output-len", "5", "--percentile", "100"], "outside (0, 100)"),
        (["--rate", "1", "--input-len", "200000", "--output-len", "5"], "lengths: input_len+output_len = 200005 exceeds"),
        (["--rate", "1", "--lengths", "nosuchmix"], "lengths: unknown length mix or file 'nosuchmix'"),
        (["--input-len", "5", "--output-len", "5"], "--rate: give --rate R or --concurrency C"),
        (["--rate", "1"], "--lengths: give a trace file or mix name"),
        (["--rate", "1", "--concurrency", "2", "--input-len", "5", "--output-len", "5"], "not both"),
        (["--rate", "1", "--input-len", "5", "--output-len", "5", "--tp", "3"], "tp: 3 does not divide"),
        (["--rate", "1", "--input-len", "5", "--output-len", "5", "--dtype", "fp5"], "dtype: unknown precision 'fp5'"),
        (
            ["--rate", "1", "--input-len", "4096", "--output-len", "5", "--framework", "trtllm", "--token-budget", "1024"],
            "token_budget: 1024 tokens is shorter",
        ),
    ],
)
def test_bad_input_is_one_line_exit_1(extra, message):
    res = CliRunner().invoke(main, [*BASE, *extra])
    assert res.exit_code == 1, res.output
    assert message in res.output
    assert len(res.output.strip().splitlines()) == 1 and "Traceback" not in res.output


def test_malformed_trace_names_the_line(tmp_path):
    trace = tmp_path / "t.jsonl"
    trace.write_text('{"input_len": 10, "output_len": 5}\nnot json\n')
    res = CliRunner().invoke(main, [*BASE, "--rate", "1", "--lengths", str(trace)])
    assert res.exit_code == 1 and "t.jsonl:2: not valid JSON" in res.output


def test_a_model_that_does_not_fit_is_exit_3():
    res = CliRunner().invoke(
        main, ["simulate", "--model", "meta-llama/Llama-2-70b-hf", "--gpu", "l4", "--rate", "1", "--input-len", "10", "--output-len", "5"]
    )
    assert res.exit_code == 3 and "does not fit" in res.output
