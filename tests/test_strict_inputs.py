"""Issue 25 item 9: one strictness for every input surface — each was accepted or
misread before (a byte-order mark, JSON true as 1 token, robust: "yes", stream flags
without a stream, an empty --emit, calibrate overwriting its own input)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import README_PLAN_ARGS

from guideopt.cli import main
from guideopt.errors import InvalidRequestError
from guideopt.io.traces import read_trace
from guideopt.web.app import FieldError, parse_request


def test_a_trace_saved_with_a_byte_order_mark_reads(tmp_path: Path) -> None:
    f = tmp_path / "t.csv"
    f.write_bytes("\ufeffinput_len,output_len\n100,20\n300,40\n".encode())
    trace = read_trace(f)
    assert list(trace.input_len) == [100, 300] and list(trace.output_len) == [20, 40]


def test_json_true_is_not_one_token(tmp_path: Path) -> None:
    f = tmp_path / "t.jsonl"
    f.write_text('{"input_len": true, "output_len": 20}\n')
    with pytest.raises(InvalidRequestError, match="input_len: true is not a number"):
        read_trace(f)


@pytest.mark.parametrize("value", ["yes", 1, "true"])
def test_robust_takes_true_or_false_only(value) -> None:
    body = {"model": "meta-llama/Llama-2-7b-hf", "workload": {"input_len": 512, "output_len": 128}, "budget": {"usd_per_hour": 12}}
    with pytest.raises(FieldError) as info:
        parse_request({**body, "robust": value})
    assert info.value.field == "robust"
    assert parse_request({**body, "robust": True}).robust is True


@pytest.mark.parametrize(("flag", "value"), [("--percentile", "99"), ("--burstiness", "2")])
def test_stream_flags_without_a_stream_are_refused(flag: str, value: str) -> None:
    res = CliRunner().invoke(main, [*README_PLAN_ARGS, flag, value])
    assert res.exit_code == 2 and f"{flag} describes a request stream" in res.output, res.output


def test_an_empty_emit_path_is_refused() -> None:
    res = CliRunner().invoke(main, [*README_PLAN_ARGS, "--emit", ""])
    assert res.exit_code == 1 and res.stderr.strip() == "error: --emit: an empty path (give a folder for --emit, a file for --plot)"


def test_calibrate_never_overwrites_its_input(tmp_path: Path) -> None:
    f = tmp_path / "runs.csv"
    f.write_text("model,gpu\n")
    res = CliRunner().invoke(main, ["calibrate", str(f), "--out", str(f)])
    assert res.exit_code == 1 and "--out:" in res.stderr and "one of the input files" in res.stderr, res.output
    assert f.read_text() == "model,gpu\n"


def test_a_stream_plan_names_the_engine_refusal_not_memory() -> None:
    args = ["plan", "--model", "meta-llama/Llama-3.1-8B", "--gpu", "t4", "--dtype", "bf16", "--rate", "1"]
    res = CliRunner().invoke(main, [*args, "--input-len", "100", "--output-len", "20", "--budget", "10"])
    assert res.exit_code == 3 and "t4 (turing) has no bf16 support (use fp16)" in res.stderr and "memory" not in res.stderr, res.output


def test_an_unstable_analytic_row_says_unstable() -> None:
    args = ["simulate", "--model", "meta-llama/Llama-3.1-8B", "--gpu", "l4", "--rate", "50", "--input-len", "1000", "--output-len", "200"]
    res = CliRunner().invoke(main, [*args, "--num-requests", "200"])
    assert res.exit_code == 0, res.output
    analytic = [line for line in res.stdout.splitlines() if line.startswith(" ") and line.split()[:1] == ["analytic"]]
    assert analytic and all("unstable" in line and not any(ch.isdigit() for ch in line) for line in analytic), analytic


def test_plan_md_describes_a_stream_as_a_stream(tmp_path: Path) -> None:
    args = ["plan", "--model", "meta-llama/Llama-3.1-8B", "--budget", "10", "--rate", "2", "--lengths", "sharegpt", "--ttft-ms", "1000"]
    res = CliRunner().invoke(main, [*args, "--emit", str(tmp_path)])
    assert res.exit_code == 0, res.output
    text = (tmp_path / "PLAN.md").read_text()
    assert "request stream of 2 requests/s" in text and "`sharegpt` mix" in text and "ttft_ms p90 1000" in text
    assert "None input" not in text and "static batch" not in text


def test_simulate_takes_the_calibration_overlay_a_plan_used(tmp_path: Path) -> None:
    overlay = tmp_path / "slow.yaml"
    overlay.write_text(
        "frameworks:\n  vllm:\n    decode_step_overhead_ms: 30\n    prefill_step_overhead_ms: 30\n    kernel_efficiency: 0.5\n"
    )
    args = [
        "simulate",
        "--model",
        "meta-llama/Llama-3.1-8B",
        "--gpu",
        "h100-sxm",
        "--rate",
        "2",
        "--input-len",
        "100",
        "--output-len",
        "20",
    ]
    plain = CliRunner().invoke(main, [*args, "--num-requests", "100", "--json"])
    slow = CliRunner().invoke(main, [*args, "--num-requests", "100", "--json", "--calibration", str(overlay)])
    assert plain.exit_code == 0 and slow.exit_code == 0, slow.output
    tpot = [json.loads(r.stdout)["simulated"]["metrics"]["tpot_ms"]["mean"] for r in (plain, slow)]
    assert tpot[1] > tpot[0] + 25  # the overlay's 30 ms per decode step shows


def test_the_most_clients_a_budget_serves_is_a_whole_number() -> None:
    args = ["plan", "--model", "meta-llama/Llama-3.1-8B", "--budget", "3", "--gpu", "l4", "--concurrency", "5000", "--input-len", "1000"]
    res = CliRunner().invoke(main, [*args, "--output-len", "200", "--ttft-ms", "2000"])
    assert res.exit_code == 3, res.output
    most = res.stderr.split("the most is ")[1].split(" clients")[0]
    assert most.isdigit(), res.stderr
    ok = CliRunner().invoke(
        main,
        ["plan", "--model", "meta-llama/Llama-3.1-8B", "--budget", "3", "--concurrency", most, "--input-len", "1000"]
        + ["--output-len", "200", "--ttft-ms", "2000"],
    )
    assert ok.exit_code == 0, ok.output  # the suggested load is really served


@pytest.mark.parametrize(("text", "accepted"), [("512", True), ("512.0", True), ("5e2", False), ("512.5", False)])
def test_a_whole_number_is_read_by_one_rule_on_flags_files_and_traces(tmp_path: Path, text: str, accepted: bool) -> None:
    """512.0 was refused as a flag and accepted in a file; 5e2 was accepted in a trace and
    refused in a file. Now all three surfaces take 512 and 512.0 and refuse the others."""
    base = ["predict", "--model", "meta-llama/Llama-3.1-8B", "--gpu", "h100-sxm", "--output-len", "128"]
    flag = CliRunner().invoke(main, [*base, "--input-len", text])
    assert (flag.exit_code == 0) is accepted, flag.output
    if not accepted:
        assert f"'{text}' is not a whole number" in flag.output
    f = tmp_path / "t.csv"
    f.write_text(f"input_len,output_len\n{text},20\n")
    if accepted:
        assert list(read_trace(f).input_len) == [512]
    else:
        with pytest.raises(InvalidRequestError, match=f"input_len: '{text}' is not a whole number"):
            read_trace(f)
    c = tmp_path / "c.yaml"
    c.write_text(f"model: meta-llama/Llama-3.1-8B\nbudget: {{usd_per_hour: 10}}\nworkload: {{input_len: {text}, output_len: 128}}\n")
    solved = CliRunner().invoke(main, ["solve", str(c), "--json"])
    assert (solved.exit_code == 0) is accepted, solved.output
