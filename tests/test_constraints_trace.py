"""``workload.lengths: trace.csv`` in a constraints file: read like ``--lengths``, errors at the key's line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from guideopt.cli import main
from guideopt.io.constraints_file import load_request
from guideopt.io.traces import trace_length_buckets

MODEL = "meta-llama/Llama-3.1-8B"
TRACE = "input_len,output_len\n512,128\n1024,256\n512,128\n"
FILE = """model: {model}
workload:
  rate_rps: 5
  lengths: {lengths}
budget:
  usd_per_hour: 20
gpus:
  l4: {{}}
slo:
  ttft_ms: 2000
top: 1
"""


def _write(folder: Path, lengths: str, trace: str = TRACE, trace_name: str = "t.csv") -> Path:
    (folder / "sub").mkdir(exist_ok=True)
    (folder / "sub" / trace_name).write_text(trace)
    path = folder / "sub" / "c.yaml"
    path.write_text(FILE.format(model=MODEL, lengths=lengths))
    return path


def test_trace_becomes_weighted_buckets(tmp_path: Path) -> None:
    buckets = load_request(_write(tmp_path, "t.csv")).workload.length_spec.buckets  # relative to the file's folder
    assert [(b.input_len, b.output_len, b.weight) for b in buckets] == [(512, 128, 2), (1024, 256, 1)]


def test_dict_form_reads_the_same_trace(tmp_path: Path) -> None:
    short = load_request(_write(tmp_path, "t.csv")).workload.length_spec
    long = load_request(_write(tmp_path, "{file: t.csv}")).workload.length_spec
    assert short == long
    assert short.model_dump(exclude_none=True) == trace_length_buckets(tmp_path / "sub" / "t.csv")


def test_solve_with_trace_matches_plan_lengths(tmp_path: Path) -> None:
    path = _write(tmp_path, "t.csv")
    runner = CliRunner()
    solved = runner.invoke(main, ["solve", str(path), "--json"], catch_exceptions=False)
    flags = ["plan", "--model", MODEL, "--rate", "5", "--lengths", str(tmp_path / "sub" / "t.csv"), "--budget", "20"]
    planned = runner.invoke(main, [*flags, "--gpu", "l4", "--ttft-ms", "2000", "--top", "1", "--json"], catch_exceptions=False)
    assert solved.exit_code == planned.exit_code == 0, solved.output + planned.output
    a, b = json.loads(solved.stdout)["plans"], json.loads(planned.stdout)["plans"]
    assert a and [p["groups"] for p in a] == [p["groups"] for p in b]
    assert [p["usd_per_hour"] for p in a] == [p["usd_per_hour"] for p in b]


@pytest.mark.parametrize(
    ("lengths", "trace", "expected"),
    [
        ("t.csv", "input_len,output_len\n512,x\n", ":4: workload.lengths: {sub}/t.csv:2: output_len: 'x' is not a whole number"),
        ("nope.csv", TRACE, ":4: workload.lengths: file {sub}/nope.csv does not exist"),
        ("{file: t.csv}", "", ":4: workload.lengths.file: {sub}/t.csv is empty"),
        ("t.csv", "input_len\n5\n", ":4: workload.lengths: {sub}/t.csv:1: missing column output_len"),
        ("sharegtp", TRACE, ":4: workload.lengths: unknown length mix or file 'sharegtp' (did you mean 'sharegpt'?"),
        ("{mix: sharegtp}", TRACE, ":4: workload.lengths.mix: unknown length mix or file 'sharegtp'"),
    ],
)
def test_trace_errors_are_one_line_at_the_key(tmp_path: Path, lengths: str, trace: str, expected: str) -> None:
    path = _write(tmp_path, lengths, trace)
    result = CliRunner().invoke(main, ["solve", str(path)], catch_exceptions=False)
    assert result.exit_code == 1
    message = result.stderr.strip()
    assert "\n" not in message and "Traceback" not in message
    assert message.startswith(str(path) + expected.format(sub=tmp_path / "sub")), message
