"""The command line against shared/docs/CONTRACT.md: JSON shapes, CSV rows, exit codes, messages."""

from __future__ import annotations

import csv
import io
import json

import pytest
from click.testing import CliRunner
from conftest import CATALOG_DIR, LLAMA2_7B, LLAMA2_70B, LLAMA31_405B, README_PLAN_ARGS

from guideopt.cli import main

PLAN_KEYS = {"status", "objective", "solve_time_s", "plans"}
PLAN_ENTRY_KEYS = {"rank", "num_gpus", "gpu_counts", "usd_per_hour", "metrics", "groups"}
METRIC_KEYS = {"ttft_ms", "tpot_ms", "batch_latency_s", "decode_throughput_tok_s", "output_throughput_tok_s"}
GROUP_KEYS = {"gpu", "framework", "dtype", "replicas", "tp", "pp", "batch", "split", "metrics", "memory"}
MEMORY_KEYS = {"weights_gb", "kv_cache_gb", "activation_gb", "overhead_gb", "total_per_gpu_gb", "gpu_memory_gb"}
CSV_INPUTS = ["model", "gpu", "num_gpus", "tp", "pp", "framework", "dtype", "batch", "input_len", "output_len"]
CSV_OUTPUTS = [
    "ttft_ms",
    "tpot_ms",
    "batch_latency_s",
    "decode_throughput_tok_s",
    "output_throughput_tok_s",
    "total_throughput_tok_s",
    "prefill_throughput_tok_s",
    "mem_per_gpu_gb",
    "error",
]

EXIT_OK, EXIT_USER, EXIT_USAGE, EXIT_INFEASIBLE = 0, 1, 2, 3
PREDICT_ARGS = ["predict", "--model", LLAMA2_7B, "--gpu", "h100-sxm", "--batch", "4", "--input-len", "512", "--output-len", "128"]


@pytest.fixture(scope="module")
def runner() -> CliRunner:
    return CliRunner()


def invoke(runner: CliRunner, args: list[str], **kw):
    return runner.invoke(main, args, catch_exceptions=False, **kw)


def assert_one_line_error(result, code: int, *words: str) -> str:
    assert result.exit_code == code, (result.exit_code, result.output)
    assert "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    for word in words:
        assert word in lines[0], (word, lines[0])
    return lines[0]


# ---------------------------------------------------------------- plan


@pytest.fixture(scope="module")
def readme_plan(runner) -> dict:
    result = invoke(runner, README_PLAN_ARGS + ["--json"])
    assert result.exit_code == EXIT_OK, result.output
    return json.loads(result.stdout)


def test_plan_json_matches_the_contract(readme_plan):
    data = readme_plan
    assert set(data) >= PLAN_KEYS
    assert data["status"] == "optimal"
    assert data["objective"] == ["throughput", "latency", "cost"]
    assert isinstance(data["solve_time_s"], float) and data["solve_time_s"] >= 0
    assert len(data["plans"]) == 3
    for rank, plan in enumerate(data["plans"], start=1):
        assert set(plan) >= PLAN_ENTRY_KEYS
        assert plan["rank"] == rank
        assert set(plan["metrics"]) >= METRIC_KEYS
        assert plan["usd_per_hour"] <= 12 + 1e-9
        assert plan["num_gpus"] == sum(g["replicas"] * g["tp"] * g["pp"] for g in plan["groups"])
        assert sum(plan["gpu_counts"].values()) == plan["num_gpus"]
        assert plan["groups"]
        for group in plan["groups"]:
            assert set(group) >= GROUP_KEYS
            assert set(group["metrics"]) >= METRIC_KEYS
            assert set(group["memory"]) >= MEMORY_KEYS
            assert group["framework"] == "vllm" and group["dtype"] == "fp16"
            assert group["memory"]["total_per_gpu_gb"] <= group["memory"]["gpu_memory_gb"]


def test_plan_json_throughput_is_non_increasing_by_rank(readme_plan):
    tps = [p["metrics"]["output_throughput_tok_s"] for p in readme_plan["plans"]]
    assert tps == sorted(tps, reverse=True)


def test_plan_text_output(runner):
    result = invoke(runner, README_PLAN_ARGS + ["--gpu", "l4", "--gpu", "h100-sxm", "--top", "2"])
    assert result.exit_code == EXIT_OK
    assert "status: optimal" in result.stdout
    assert "h100-sxm" in result.stdout or "l4" in result.stdout


def test_plan_options_reach_the_request(runner):
    args = README_PLAN_ARGS + [
        "--gpu",
        "l4",
        "--gpu",
        "a100-sxm4-80gb",
        "--max-gpus",
        "2",
        "--tp",
        "1",
        "--pp",
        "1",
        "--dtype",
        "int8",
        "--framework",
        "trtllm",
        "--batch",
        "8",
        "--objective",
        "cost",
        "--top",
        "1",
        "--json",
    ]
    result = invoke(runner, args)
    assert result.exit_code == EXIT_OK, result.output
    data = json.loads(result.stdout)
    assert data["objective"][0] == "cost"
    (plan,) = data["plans"]
    assert plan["num_gpus"] <= 2
    for g in plan["groups"]:
        assert (g["framework"], g["dtype"], g["tp"], g["pp"], g["batch"]) == ("trtllm", "int8", 1, 1, 8)
        assert g["gpu"] in ("l4", "a100-sxm4-80gb")


# ---------------------------------------------------------------- errors and exit codes


def test_unknown_model(runner):
    args = ["plan", "--model", "nobody/no-such-model", "--budget", "12", "--input-len", "512", "--output-len", "256"]
    assert_one_line_error(invoke(runner, args), EXIT_USER, "model", "nobody/no-such-model")


def test_unknown_gpu(runner):
    assert_one_line_error(invoke(runner, README_PLAN_ARGS + ["--gpu", "h100-sx"]), EXIT_USER, "gpu", "did you mean", "h100-sxm")


def test_unknown_gpu_in_predict(runner):
    args = ["predict", "--model", LLAMA2_7B, "--gpu", "a1000", "--input-len", "512", "--output-len", "128"]
    assert_one_line_error(invoke(runner, args), EXIT_USER, "gpu")


def test_negative_budget(runner):
    args = ["plan", "--model", LLAMA2_7B, "--budget", "-1", "--input-len", "512", "--output-len", "256"]
    assert_one_line_error(invoke(runner, args), EXIT_USER, "budget")


def test_zero_input_len(runner):
    args = ["plan", "--model", LLAMA2_7B, "--budget", "12", "--input-len", "0", "--output-len", "256"]
    assert_one_line_error(invoke(runner, args), EXIT_USER, "--input-len")


def test_predict_tp_not_dividing_heads(runner):
    args = [
        "predict",
        "--model",
        LLAMA2_7B,
        "--gpu",
        "h100-sxm",
        "--num-gpus",
        "3",
        "--tp",
        "3",
        "--input-len",
        "512",
        "--output-len",
        "128",
    ]
    assert_one_line_error(invoke(runner, args), EXIT_USER, "tp", "heads")


def test_unknown_objective_term(runner):
    assert_one_line_error(invoke(runner, README_PLAN_ARGS + ["--objective", "speed"]), EXIT_USER, "objective")


def test_infeasible_plan_exit_3(runner):
    args = ["plan", "--model", LLAMA2_7B, "--budget", "0.1", "--input-len", "512", "--output-len", "256"]
    line = assert_one_line_error(invoke(runner, args), EXIT_INFEASIBLE, "budget", "$")
    assert line.startswith("error: no feasible plan")


def test_infeasible_plan_json(runner):
    args = [
        "plan",
        "--model",
        LLAMA31_405B,
        "--budget",
        "100",
        "--input-len",
        "512",
        "--output-len",
        "256",
        "--gpu",
        "a10g",
        "--max-gpus",
        "8",
        "--json",
    ]
    result = invoke(runner, args)
    assert_one_line_error(result, EXIT_INFEASIBLE, "memory")
    data = json.loads(result.stdout)
    assert data["status"] == "infeasible"
    assert data["plans"] == []
    assert "memory" in data["explanation"] and "weights" in data["explanation"]


def test_infeasible_plan_json_keeps_the_objective(runner):
    args = ["plan", "--model", LLAMA2_7B, "--budget", "0.1", "--input-len", "512", "--output-len", "256", "--json"]
    data = json.loads(invoke(runner, args).stdout)
    assert data["objective"] == ["throughput", "latency", "cost"]


def test_missing_required_option(runner):
    result = invoke(runner, ["plan", "--budget", "12", "--input-len", "512", "--output-len", "256"])
    assert result.exit_code == EXIT_USAGE
    assert "Missing option '--model'" in result.stderr
    assert "Traceback" not in result.output


def test_predict_without_model_is_a_usage_error(runner):
    result = invoke(runner, ["predict", "--gpu", "h100-sxm", "--input-len", "512", "--output-len", "128"])
    assert result.exit_code == EXIT_USAGE
    assert "--model" in result.stderr


def test_unknown_catalog_kind_is_a_usage_error(runner):
    assert invoke(runner, ["catalog", "widgets"]).exit_code == EXIT_USAGE


# ---------------------------------------------------------------- predict


def test_predict_json(runner):
    result = invoke(runner, PREDICT_ARGS + ["--json"])
    assert result.exit_code == EXIT_OK, result.output
    data = json.loads(result.stdout)
    assert set(data["metrics"]) >= METRIC_KEYS
    assert set(data["memory"]) >= MEMORY_KEYS
    assert (data["gpu"], data["batch"], data["num_gpus"]) == ("h100-sxm", 4, 1)


def test_predict_text(runner):
    result = invoke(runner, PREDICT_ARGS)
    assert result.exit_code == EXIT_OK
    assert "ttft_ms" in result.stdout and "weights" in result.stdout and "GiB" in result.stdout  # tables: GiB; JSON: *_gb


def test_predict_does_not_fit_exits_3(runner):
    args = ["predict", "--model", LLAMA2_70B, "--gpu", "l4", "--input-len", "512", "--output-len", "128"]
    assert_one_line_error(invoke(runner, args), EXIT_INFEASIBLE, "does not fit")


CSV_ROWS = [
    # model, gpu, num_gpus, tp, pp, framework, dtype, batch, input_len, output_len, expected ok
    (LLAMA2_7B, "h100-sxm", "1", "1", "1", "vllm", "fp16", "8", "512", "128", True),
    (LLAMA2_7B, "no-such-gpu", "1", "1", "1", "vllm", "fp16", "8", "512", "128", False),
    (LLAMA2_70B, "l4", "1", "1", "1", "vllm", "fp16", "1", "512", "128", False),
    (LLAMA2_7B, "h100-sxm", "3", "3", "1", "vllm", "fp16", "1", "512", "128", False),
    (LLAMA2_7B, "a100-sxm4-80gb", "4", "2", "1", "sglang", "bf16", "16", "1024", "256", True),
    ("nobody/no-such-model", "l4", "1", "1", "1", "vllm", "fp16", "1", "512", "128", False),
    (LLAMA2_7B, "l4", "", "", "", "", "", "2", "256", "64", True),  # optional columns left empty
]


def test_predict_csv_keeps_every_row(runner, tmp_path):
    # A shuffled header order: "order free" in the contract.
    header = ["gpu", "model", "batch", "num_gpus", "tp", "pp", "framework", "dtype", "output_len", "input_len"]
    path = tmp_path / "configs.csv"
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=header)
        writer.writeheader()
        for row in CSV_ROWS:
            writer.writerow(dict(zip(CSV_INPUTS, row[:-1])))
    result = invoke(runner, ["predict", "--csv", str(path)])
    assert result.exit_code == EXIT_OK, result.output
    reader = csv.DictReader(io.StringIO(result.stdout))
    assert reader.fieldnames[: len(header)] == header
    assert set(CSV_OUTPUTS) <= set(reader.fieldnames)
    out = list(reader)
    assert len(out) == len(CSV_ROWS)
    for row, got in zip(CSV_ROWS, out):
        assert [got[c] for c in CSV_INPUTS] == list(row[:-1])  # in place, inputs echoed
        metrics = [got[c] for c in CSV_OUTPUTS[:-1]]
        if row[-1]:
            assert got["error"] == ""
            assert all(v != "" for v in metrics)
            assert float(got["ttft_ms"]) > 0 and float(got["mem_per_gpu_gb"]) > 0
        else:
            assert got["error"] != ""
            assert "\n" not in got["error"]
            assert all(v == "" for v in metrics)
    assert "no-such-gpu" in out[1]["error"]
    assert "fit" in out[2]["error"]
    assert "tp" in out[3]["error"]


def test_predict_csv_from_stdin(runner):
    text = ",".join(CSV_INPUTS) + "\n" + ",".join(CSV_ROWS[0][:-1]) + "\n"
    result = invoke(runner, ["predict", "--csv", "-"], input=text)
    assert result.exit_code == EXIT_OK
    (row,) = list(csv.DictReader(io.StringIO(result.stdout)))
    assert row["error"] == "" and float(row["output_throughput_tok_s"]) > 0


def test_predict_csv_missing_column_is_a_user_error(runner, tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("model,gpu,batch\n" + f"{LLAMA2_7B},l4,1\n")
    assert_one_line_error(invoke(runner, ["predict", "--csv", str(path)]), EXIT_USER, "csv", "input_len")


# ---------------------------------------------------------------- catalog


def test_catalog_gpus_json(runner):
    result = invoke(runner, ["catalog", "gpus", "--json"])
    assert result.exit_code == EXIT_OK
    rows = json.loads(result.stdout)
    assert len(rows) == len(list((CATALOG_DIR / "gpus").glob("*.yaml")))
    for row in rows:
        assert {"id", "memory_gb", "usd_per_hour"} <= set(row)
        assert row["memory_gb"] > 0 and row["usd_per_hour"] > 0
    h100 = next(r for r in rows if r["id"] == "h100-sxm")
    assert h100["memory_gb"] == pytest.approx(85.9, abs=0.1)  # 80 GiB


def test_catalog_models_json(runner):
    result = invoke(runner, ["catalog", "models", "--json"])
    assert result.exit_code == EXIT_OK
    rows = json.loads(result.stdout)
    assert len(rows) == len(list((CATALOG_DIR / "models").glob("*.yaml")))
    assert all({"id", "num_params"} <= set(r) for r in rows)
    assert next(r for r in rows if r["id"] == LLAMA2_7B)["num_params"] == 6_738_415_616


def test_catalog_frameworks_json(runner):
    rows = json.loads(invoke(runner, ["catalog", "frameworks", "--json"]).stdout)
    assert {r["id"] for r in rows} >= {"vllm", "fastgen", "trtllm", "sglang"}


@pytest.mark.parametrize("kind", ["gpus", "models", "frameworks"])
def test_catalog_text(runner, kind):
    result = invoke(runner, ["catalog", kind])
    assert result.exit_code == EXIT_OK and result.stdout.startswith("id")


# ---------------------------------------------------------------- help


@pytest.mark.parametrize("name", sorted(main.commands))
def test_every_command_has_help_with_an_example(runner, name):
    result = invoke(runner, [name, "--help"])
    assert result.exit_code == EXIT_OK
    assert "Example" in result.stdout


def test_group_help_lists_the_commands(runner):
    result = invoke(runner, ["--help"])
    assert result.exit_code == EXIT_OK
    for name in ("plan", "predict", "catalog"):
        assert name in result.stdout
