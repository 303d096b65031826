"""Issue 25 item 7: inputs that ended in a traceback are one-line errors with exit 1."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from guideopt.cli import main

LLAMA = "meta-llama/Llama-3.1-8B"
SIMULATE = ["simulate", "--model", LLAMA, "--gpu", "h100-sxm", "--rate", "2"]


def one_line(args: list[str], *words: str) -> str:
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 1, res.output
    lines = [x for x in res.stderr.strip().splitlines() if not x.startswith("warning:")]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in res.output, res.output
    for w in words:
        assert w in lines[0], lines[0]
    return lines[0]


def test_a_trace_row_with_more_values_than_its_header(tmp_path: Path) -> None:
    f = tmp_path / "t.csv"
    f.write_text("input_len,output_len\n100,20,5\n")
    one_line([*SIMULATE, "--lengths", str(f)], ":2:", "more values than the header")


def test_a_trace_field_over_the_csv_limit(tmp_path: Path) -> None:
    f = tmp_path / "t.csv"
    f.write_text("input_len,output_len\n" + "1" * 140_000 + ",20\n")
    one_line([*SIMULATE, "--lengths", str(f)], ":2:", "line over 131,072 characters")  # held no longer than that


@pytest.mark.parametrize("cmd", ["simulate", "plan"])
def test_burstiness_is_bounded(cmd: str) -> None:
    args = (
        [*SIMULATE, "--input-len", "100", "--output-len", "20"]
        if cmd == "simulate"
        else ["plan", "--model", LLAMA, "--budget", "10", "--rate", "2", "--input-len", "100", "--output-len", "20"]
    )
    one_line([*args, "--burstiness", "1e300"], "--burstiness", "100")


def test_bucket_weights_are_bounded(tmp_path: Path) -> None:
    f = tmp_path / "c.yaml"
    buckets = "[{input_len: 100, output_len: 20, weight: 1e308}, {input_len: 200, output_len: 20, weight: 1e308}]"
    f.write_text(f"model: {LLAMA}\nworkload: {{rate_rps: 2, lengths: {{buckets: {buckets}}}}}\nbudget: {{usd_per_hour: 10}}\n")
    res = CliRunner().invoke(main, ["solve", str(f)])
    assert res.exit_code == 1 and "weight: must be <= 1,000,000,000" in res.stderr, res.output


def test_a_non_utf8_overlay(tmp_path: Path) -> None:
    f = tmp_path / "o.yaml"
    f.write_bytes(b"frameworks: {}\n\xff\xfe\n")
    one_line(
        ["predict", "--model", LLAMA, "--gpu", "h100-sxm", "--input-len", "100", "--output-len", "20", "--calibration", str(f)], "not UTF-8"
    )


@pytest.mark.parametrize("price", ["0", "-2", "1e12"])
def test_price_file_values_are_bounded(tmp_path: Path, price: str) -> None:
    f = tmp_path / "p.yaml"
    f.write_text(f"h100-sxm: {price}\n")
    one_line(
        ["plan", "--model", LLAMA, "--budget", "10", "--input-len", "100", "--output-len", "20", "--prices", str(f)],
        "--prices",
        "p.yaml: h100-sxm: ",  # named as written: a bare {id: price} mapping has no gpus key
    )


RUN = '{"model_id": "meta-llama/Llama-3.1-8B", "completed": 100, "duration": 10, "mean_ttft_ms": 50, "mean_tpot_ms": 10, "max_concurrency": 8}'


@pytest.mark.parametrize(
    ("extra", "words"),
    [
        (["--tp", "0"], "--tp: must be >= 1"),
        (["--tp", "3", "--model", LLAMA], "--tp: 3 does not divide"),
        (["--dtype", "int3"], "--dtype: 'int3' is not a precision"),
        (["--model", "nope/nope"], "--model: unknown model"),
        (["--framework", "vlm"], "--framework: unknown id 'vlm'"),
        (["--out", "/nonexistent-folder/o.yaml"], "--out: the folder"),
    ],
)
def test_calibrate_checks_its_flags_before_the_fit(tmp_path: Path, extra: list[str], words: str) -> None:
    f = tmp_path / "run.json"
    f.write_text(RUN)
    one_line(["calibrate", str(f), "--gpu", "h100-sxm", "--framework", "vllm", *extra], words)


@pytest.mark.parametrize(("body", "words"), [(b"[" * 100_000 + b"]" * 100_000, "nested too deeply"), (b"\xff\xfe{}", "not UTF-8")])
def test_calibrate_on_unreadable_json(tmp_path: Path, body: bytes, words: str) -> None:
    f = tmp_path / "run.json"
    f.write_bytes(body)
    one_line(["calibrate", str(f), "--gpu", "h100-sxm", "--framework", "vllm"], words)


def test_an_unknown_id_in_a_price_file_names_the_price_file(tmp_path: Path) -> None:
    f = tmp_path / "p.yaml"
    f.write_text("h999: 2\n")
    line = one_line(
        ["plan", "--model", LLAMA, "--budget", "10", "--input-len", "100", "--output-len", "20", "--prices", str(f)], "unknown id 'h999'"
    )
    assert line.startswith("error: --prices:"), line
