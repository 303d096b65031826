"""``guideopt calibrate``: users' own measurements in the supported formats, the overlay it
writes, and one-line errors for malformed files."""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import io
import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import LLAMA2_7B

from guideopt import api
from guideopt.calibration.bench_runs import RunContext, json_cases
from guideopt.calibration.measurements import CSV_COLUMNS
from guideopt.calibration.overlay import read_overlay, with_overlay
from guideopt.calibration.user_data import load_user_files
from guideopt.cli import main
from guideopt.errors import InvalidRequestError

FIXTURES = Path(__file__).parent / "fixtures" / "calibrate"
CTX = RunContext(gpu="h100-sxm", framework="vllm", dtype="fp16")
# The "user's" engine: slower per step than the shipped vLLM fit, as an older build might be.
USER_DECODE_STEP_MS = 6.0
SHAPES = [(1, 128, 128), (4, 512, 128), (8, 256, 256), (16, 1024, 64), (32, 128, 128), (64, 512, 32), (2, 2048, 64)]


def _user_catalog(catalog):
    cal = catalog.calibration
    fw = cal.frameworks["vllm"].model_copy(update={"decode_step_overhead_ms": USER_DECODE_STEP_MS})
    return dataclasses.replace(catalog, calibration=cal.model_copy(update={"frameworks": {**cal.frameworks, "vllm": fw}}))


def _user_csv(catalog, path: Path) -> Path:
    """Static-batch rows 'measured' on the user's engine, in the measured-data CSV format."""
    user = _user_catalog(catalog)
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(CSV_COLUMNS), lineterminator="\n")
    writer.writeheader()
    for batch, inp, outp in SHAPES:
        req = {
            "model": LLAMA2_7B,
            "gpu": "h100-sxm",
            "framework": "vllm",
            "dtype": "fp16",
            "batch": batch,
            "input_len": inp,
            "output_len": outp,
        }
        m = api.predict(req, user).metrics
        for metric, value, unit in (("e2e_latency", m.batch_latency_s, "s"), ("tpot", m.tpot_ms, "ms"), ("ttft", m.ttft_ms, "ms")):
            writer.writerow(
                {
                    "source": "my lab",
                    "framework": "vLLM",
                    "framework_version": "0.5.0",
                    "gpu": "h100-sxm",
                    "num_gpus": 1,
                    "tp": 1,
                    "model": LLAMA2_7B,
                    "dtype": "fp16",
                    "batch_or_concurrency": batch,
                    "input_len": inp,
                    "output_len": outp,
                    "metric": metric,
                    "value": value,
                    "unit": unit,
                    "notes": "static batch",
                }
            )
    path.write_text(out.getvalue())
    return path


def test_vllm_serving_json_becomes_closed_loop_cases():
    cases = json_cases(FIXTURES / "vllm_serving.json", CTX)
    assert {c.metric for c in cases} == {"ttft_ms", "tpot_ms", "output_throughput_tok_s"}
    req = cases[0].request
    assert (req["model"], req["concurrency"], req["input_len"], req["output_len"]) == (LLAMA2_7B, 16, 512, 128)
    assert all(c.workload == "closed_loop" for c in cases)


def test_sglang_bench_serving_json_lines_give_one_run_per_line():
    cases = json_cases(FIXTURES / "sglang_bench_serving.jsonl", RunContext(model=LLAMA2_7B, gpu="h100-sxm", framework="sglang"))
    assert sorted({c.request["concurrency"] for c in cases}) == [8, 32]
    assert sorted({c.line for c in cases}) == [1, 2]


def test_vllm_latency_json_needs_the_batch_from_the_command_line():
    with pytest.raises(InvalidRequestError, match=r"vllm_latency.json: batch is not in the file \(give it with --batch\)"):
        json_cases(FIXTURES / "vllm_latency.json", dataclasses.replace(CTX, model=LLAMA2_7B))
    ctx = dataclasses.replace(CTX, model=LLAMA2_7B, batch=8, input_len=128, output_len=128)
    (case,) = json_cases(FIXTURES / "vllm_latency.json", ctx)
    assert (case.metric, case.measured, case.request["batch"]) == ("batch_latency_s", 2.5, 8)


@pytest.mark.parametrize(
    "name, message",
    [
        ("broken.json", r"broken.json: line 1: not valid JSON"),
        ("bad_value.json", r"bad_value.json: key 'mean_ttft_ms': 'fast' is not a number"),
        ("missing_key.json", r"missing_key.json: key 'total_output_tokens': missing"),
    ],
)
def test_malformed_json_names_file_and_line_or_key(name, message):
    with pytest.raises(InvalidRequestError, match=message):
        json_cases(FIXTURES / name, dataclasses.replace(CTX, model=LLAMA2_7B))


def test_malformed_csv_names_file_and_line(catalog, tmp_path):
    path = _user_csv(catalog, tmp_path / "mine.csv")
    lines = path.read_text().splitlines()
    lines[3] = lines[3].replace(",128,", ",many,", 1)
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(InvalidRequestError, match=r"mine.csv: line 4: .*'many' is not a number"):
        load_user_files([str(path)], CTX, catalog)


def test_unknown_format_is_refused(tmp_path):
    path = tmp_path / "run.txt"
    path.write_text("x")
    with pytest.raises(InvalidRequestError, match=r"run.txt: unknown format '.txt'"):
        load_user_files([str(path)], CTX, None)


def test_calibrate_fits_the_users_engine_and_writes_an_overlay(catalog, tmp_path):
    data = _user_csv(catalog, tmp_path / "mine.csv")
    with data.open("a") as f:  # a row guideopt cannot compare: skipped, and said so
        f.write(f"my lab,,vLLM,0.5.0,abacus-9000,1,1,,{LLAMA2_7B},fp16,,8,128,128,tpot,9.0,ms,static batch\n")
    copy = tmp_path / "copy.csv"
    copy.write_bytes(data.read_bytes())
    out = tmp_path / "overlay.yaml"
    result = CliRunner().invoke(main, ["calibrate", str(data), str(copy), "--out", str(out), "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)  # progress and the skipped rows go to stderr only
    assert set(summary["fitted"]) == {"vllm"}  # only what the rows support
    assert summary["after"]["batch_latency_s"]["median_ape"] < summary["before"]["batch_latency_s"]["median_ape"]
    assert summary["after"]["tpot_ms"]["median_ape"] < 0.05
    assert summary["rows"] == 3 * len(SHAPES) and summary["skipped"]["runs"] == 1 and len(summary["duplicates"]) == 1
    assert f"skipped {data}: line {2 + 3 * len(SHAPES)}: GPU not in catalog: abacus-9000" in result.stderr
    assert f"{copy}: the same content as {data}" in result.stderr and "calibrate: fitting vllm" in result.stderr
    overlay = read_overlay(out)
    assert overlay.frameworks["vllm"].versions == ["0.5.0"]
    # provenance: the user's file (base name and hash), not the shipped data
    digest = hashlib.sha256(data.read_bytes()).hexdigest()
    assert [(f.file, f.sha256, f.rows_fitted) for f in overlay.fitted_on] == [("mine.csv", digest, 3 * len(SHAPES))]
    assert overlay.frameworks["vllm"].fitted_from.startswith("your measurements: mine.csv lines 2-")
    assert "e2e.csv" not in overlay.frameworks["vllm"].fitted_from and overlay.prior.startswith("the shipped calibration")
    assert set(with_overlay(catalog, out).calibration.frameworks) == set(catalog.calibration.frameworks)
    # every command takes the overlay
    args = ["--model", LLAMA2_7B, "--gpu", "h100-sxm", "--batch", "8", "--input-len", "256", "--output-len", "256", "--json"]
    shipped = json.loads(CliRunner().invoke(main, ["predict", *args]).output)
    mine = json.loads(CliRunner().invoke(main, ["predict", *args, "--calibration", str(out)]).output)
    assert mine["metrics"]["tpot_ms"] > shipped["metrics"]["tpot_ms"]
    validated = CliRunner().invoke(main, ["validate", str(data), "--calibration", str(out), "--json"])
    assert validated.exit_code == 0 and json.loads(validated.output)["metrics"]["tpot_ms"]["median_ape"] < 0.05


def test_calibrate_cli_error_is_one_line_exit_1():
    args = ["calibrate", str(FIXTURES / "bad_value.json"), "--model", LLAMA2_7B, "--gpu", "h100-sxm", "--framework", "vllm"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 1
    assert "bad_value.json: key 'mean_ttft_ms'" in result.output and "Traceback" not in result.output


def test_bad_overlay_file_is_a_one_line_error(tmp_path):
    path = tmp_path / "overlay.yaml"
    path.write_text("frameworks:\n  vllm: {decode_step_overhead_ms: -1}\n")
    result = CliRunner().invoke(
        main, ["predict", "--model", LLAMA2_7B, "--gpu", "h100-sxm", "--input-len", "8", "--output-len", "8", "--calibration", str(path)]
    )
    assert result.exit_code == 1 and "--calibration" in result.output and "frameworks.vllm" in result.output
