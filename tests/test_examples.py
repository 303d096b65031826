"""The constraints files in examples/: each one loads, solves, and every plan keeps every constraint of its file."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import REPO_ROOT
from plan_checker import check_result, gpu_price

from guideopt import api
from guideopt.cli import main
from guideopt.io.constraints_file import load_request
from guideopt.model.request import Dtype, ObjectiveTerm

EXAMPLES_DIR = REPO_ROOT / "examples"
EXAMPLE_FILES = sorted(p for p in EXAMPLES_DIR.iterdir() if p.suffix in (".yaml", ".yml", ".json", ".toml"))
REQUIRED = ("chat-tight-ttft.yaml", "offline-batch-throughput.toml", "fixed-fleet.json", "llama70b-small-budget.yaml")


def _ids(paths: list[Path]) -> list[str]:
    return [p.name for p in paths]


@pytest.fixture(scope="module")
def solved(catalog) -> dict[str, tuple]:
    """Each example's request and its plan (solved once per module)."""
    out = {}
    for path in EXAMPLE_FILES:
        request = load_request(path, catalog)
        out[path.name] = (request, api.plan(request, catalog).model_dump())
    return out


def test_the_required_examples_exist():
    names = {p.name for p in EXAMPLE_FILES}
    assert set(REQUIRED) <= names
    assert len(EXAMPLE_FILES) >= 4


@pytest.mark.parametrize("path", EXAMPLE_FILES, ids=_ids(EXAMPLE_FILES))
def test_example_plans_keep_every_constraint(path, solved, catalog):
    request, result = solved[path.name]
    assert result["status"] == "optimal"
    assert result["plans"], f"{path.name} has no plan"
    assert check_result(result, request, catalog) == []


@pytest.mark.parametrize("path", EXAMPLE_FILES, ids=_ids(EXAMPLE_FILES))
def test_example_solves_on_the_command_line(path, solved):
    result = CliRunner().invoke(main, ["solve", str(path), "--json"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    expected = solved[path.name][1]
    for d in (data, expected):
        d.pop("solve_time_s")
    assert data == expected


@pytest.mark.parametrize(
    "path", [p for p in EXAMPLE_FILES if p.suffix != ".json"], ids=_ids([p for p in EXAMPLE_FILES if p.suffix != ".json"])
)
def test_examples_are_commented(path):
    text = path.read_text()
    comments = [line for line in text.splitlines() if line.lstrip().startswith("#")]
    assert len(comments) >= 3, f"{path.name} should explain its situation in comments"
    assert f"guideopt solve examples/{path.name}" in text


def test_readme_lists_every_example_with_its_command():
    readme = (EXAMPLES_DIR / "README.md").read_text()
    for path in EXAMPLE_FILES:
        assert f"guideopt solve examples/{path.name}" in readme, path.name


# ---------------------------------------------------------------- what each example is about


def test_chat_example(solved):
    request, result = solved["chat-tight-ttft.yaml"]
    assert request.model == "meta-llama/Llama-3.1-8B"
    assert request.slo.ttft_ms is not None and request.slo.tpot_ms is not None
    assert request.objective == [ObjectiveTerm.COST, ObjectiveTerm.THROUGHPUT]
    costs = [p["usd_per_hour"] for p in result["plans"]]
    assert costs[0] == min(costs)  # cost first: rank 1 is the cheapest of the distinct plans


def test_offline_example(solved):
    request, result = solved["offline-batch-throughput.toml"]
    assert request.objective[:2] == [ObjectiveTerm.THROUGHPUT, ObjectiveTerm.COST]
    assert request.workload.output_len >= 4 * request.workload.input_len  # long outputs
    tputs = [p["metrics"]["output_throughput_tok_s"] for p in result["plans"]]
    assert tputs[0] == max(tputs)
    assert result["plans"][0]["usd_per_hour"] <= request.budget.usd_per_hour


def test_fixed_fleet_example_uses_the_owned_gpus_at_their_marginal_prices(solved, catalog):
    request, result = solved["fixed-fleet.json"]
    assert request.gpus and all(getattr(v, "max", None) for v in request.gpus.values())
    for plan in result["plans"]:
        for gpu, n in plan["gpu_counts"].items():
            limit = request.gpus[gpu].max
            assert n <= limit
            price = gpu_price(request, catalog, gpu)
            assert price < catalog.gpus[gpu].usd_per_hour  # the override, not the cloud price
            assert plan["usd_per_hour"] == pytest.approx(n * price, abs=1e-3)


def test_llama70b_example_only_quantised_weights(solved):
    request, result = solved["llama70b-small-budget.yaml"]
    assert "70B" in request.model
    assert set(request.precision) == {Dtype.INT4, Dtype.INT8, Dtype.FP8}
    assert 4 in request.parallelism.pp
    for plan in result["plans"]:
        assert all(g["dtype"] in ("int4", "int8", "fp8") for g in plan["groups"])


def test_example_table_output(solved):
    path = EXAMPLES_DIR / "chat-tight-ttft.yaml"
    result = CliRunner().invoke(main, ["solve", str(path)], catch_exceptions=False)
    assert result.exit_code == 0
    assert re.search(r"status: optimal\s+objective: cost > throughput", result.stdout)
    lines = result.stdout.strip().splitlines()
    plans = len(solved[path.name][1]["plans"])
    # status, header, rule, one row per plan; then the intervals: a title, header, rule, one row per plan
    assert len(lines) == 3 + plans + 3 + plans and lines[3 + plans].startswith("prediction intervals")
