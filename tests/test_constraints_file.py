"""Constraints files (``guideopt solve FILE``, ``guideopt schema``) against shared/docs/CONTRACT.md.

* the three formats give the same request and the same plans;
* every key of the contract is honoured by the plans (checked by the independent
  ``plan_checker``), and each constraint binds where it should;
* the objective is lexicographic in any order of its terms;
* every kind of user error is one ``FILE:LINE: key.path: ...`` line, exit 1; an
  infeasible file exits 3 with the explanation; random damage never gives a traceback.
"""

from __future__ import annotations

import copy
import itertools
import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner
from conftest import LLAMA2_7B
from hypothesis import given
from hypothesis import strategies as st
from plan_checker import check_result

from guideopt import api
from guideopt.cli import main
from guideopt.errors import InvalidRequestError, NoFeasiblePlanError
from guideopt.io.constraints_file import ConstraintsFileError, json_schema, load, load_request
from guideopt.model.framework import newest_per_engine
from guideopt.model.request import ObjectiveTerm, PlanRequest

EXIT_OK, EXIT_USER, EXIT_INFEASIBLE = 0, 1, 3

# A small, fast problem: two GPU types, a 7B model.
BASE: dict[str, Any] = {
    "model": LLAMA2_7B,
    "workload": {"input_len": 512, "output_len": 128},
    "budget": {"usd_per_hour": 12},
    "gpus": {"l4": {"max": 8, "usd_per_hour": 0.70}, "h100-sxm": 2},
    "parallelism": {"tp": [1, 2, 4], "pp": [1, 2], "max_gpus": 8},
    "framework": ["vllm", "sglang"],
    "precision": ["fp16", "bf16"],
    "slo": {"ttft_ms": 5000, "tpot_ms": 60},
    "objective": ["throughput", "cost"],
    "top": 3,
}

BASE_YAML = """\
model: meta-llama/Llama-2-7b-hf
workload:
  input_len: 512
  output_len: 128
budget:
  usd_per_hour: 12
gpus:
  l4: {max: 8, usd_per_hour: 0.70}
  h100-sxm: 2
parallelism:
  tp: [1, 2, 4]
  pp: [1, 2]
  max_gpus: 8
framework: [vllm, sglang]
precision: [fp16, bf16]
slo:
  ttft_ms: 5000
  tpot_ms: 60
objective: [throughput, cost]
top: 3
"""

BASE_JSON = json.dumps(BASE, indent=2)

BASE_TOML = """\
model = "meta-llama/Llama-2-7b-hf"
framework = ["vllm", "sglang"]
precision = ["fp16", "bf16"]
objective = ["throughput", "cost"]
top = 3

[workload]
input_len = 512
output_len = 128

[budget]
usd_per_hour = 12

[gpus]
l4 = { max = 8, usd_per_hour = 0.70 }
h100-sxm = 2

[parallelism]
tp = [1, 2, 4]
pp = [1, 2]
max_gpus = 8

[slo]
ttft_ms = 5000
tpot_ms = 60
"""


@pytest.fixture(scope="module")
def runner() -> CliRunner:
    return CliRunner()


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(text)
    return path


def solve_cli(runner: CliRunner, path: Path, *extra: str):
    return runner.invoke(main, ["solve", str(path), *extra], catch_exceptions=False)


def request_of(data: dict[str, Any]) -> PlanRequest:
    return PlanRequest.model_validate(data)


def solve_dict(data: dict[str, Any], catalog) -> dict[str, Any]:
    return api.plan(request_of(data), catalog).model_dump()


def without_time(result: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(result)
    out.pop("solve_time_s", None)
    return out


def variant(**changes: Any) -> dict[str, Any]:
    """BASE with top-level keys replaced (None deletes the key)."""
    data = copy.deepcopy(BASE)
    for key, value in changes.items():
        if value is None:
            data.pop(key, None)
        else:
            data[key] = value
    return data


# ---------------------------------------------------------------- formats


def test_base_texts_describe_base():
    assert yaml.safe_load(BASE_YAML) == BASE


def test_same_structure_in_yaml_json_toml_gives_the_same_request_and_plans(tmp_path, catalog):
    paths = [
        write(tmp_path, "p.yaml", BASE_YAML),
        write(tmp_path, "p.json", BASE_JSON),
        write(tmp_path, "p.toml", BASE_TOML),
        write(tmp_path, "p.yml", BASE_YAML),
    ]
    requests = [load_request(p, catalog) for p in paths]
    assert all(r == requests[0] for r in requests)
    assert requests[0] == request_of(BASE)
    dumps = [without_time(api.plan(r, catalog).model_dump()) for r in requests]
    assert all(d == dumps[0] for d in dumps)
    assert check_result(dumps[0], requests[0], catalog) == []


def test_cli_solve_matches_the_library(tmp_path, runner, catalog):
    path = write(tmp_path, "p.yaml", BASE_YAML)
    result = solve_cli(runner, path, "--json")
    assert result.exit_code == EXIT_OK, result.output
    assert without_time(json.loads(result.stdout)) == without_time(solve_dict(BASE, catalog))
    table = solve_cli(runner, path)
    assert table.exit_code == EXIT_OK
    assert table.stdout.startswith("status: optimal   objective: throughput > cost")


def test_model_as_config_json_path_relative_to_the_file(tmp_path, runner, catalog, monkeypatch):
    arch_yaml = yaml.safe_load((Path(__file__).resolve().parents[1] / "catalogs/models/meta-llama--Llama-2-7b-hf.yaml").read_text())
    (tmp_path / "models" / "my-7b").mkdir(parents=True)
    (tmp_path / "models" / "my-7b" / "config.json").write_text(json.dumps(arch_yaml["hf_config"]))
    (tmp_path / "plans").mkdir()
    text = BASE_YAML.replace("model: meta-llama/Llama-2-7b-hf", "model: ../models/my-7b/config.json")
    path = write(tmp_path / "plans", "p.yaml", text)
    monkeypatch.chdir(tmp_path.parent)  # relative to the file, not to the working directory
    request = load_request(path, catalog)
    assert Path(request.model).is_absolute() and Path(request.model).is_file()
    result = solve_cli(runner, path, "--json")
    assert result.exit_code == EXIT_OK, result.output
    # the same architecture as the catalog entry, so the same plans
    assert without_time(json.loads(result.stdout)) == without_time(solve_dict(BASE, catalog))
    dir_path = write(tmp_path / "plans", "d.yaml", text.replace("../models/my-7b/config.json", "../models/my-7b"))
    assert load_request(dir_path, catalog).model == request.model


# ---------------------------------------------------------------- every key is honoured


def test_inventory_caps_each_gpu_type(catalog):
    only_h100 = variant(
        gpus={"h100-sxm": 2}, slo={}, objective=["throughput"], budget={"usd_per_hour": 100}, parallelism={"tp": [1, 2, 4, 8], "pp": [1, 2]}
    )
    capped = solve_dict(only_h100, catalog)
    assert check_result(capped, request_of(only_h100), catalog) == []
    assert all(p["gpu_counts"]["h100-sxm"] <= 2 for p in capped["plans"])
    free = solve_dict(variant(**{**only_h100, "gpus": {"h100-sxm": {}}}), catalog)
    assert free["plans"][0]["num_gpus"] > 2  # the cap binds: without it the plan takes more
    zero = variant(gpus={"h100-sxm": 0, "l4": 4}, slo={})
    result = solve_dict(zero, catalog)
    assert all(set(p["gpu_counts"]) == {"l4"} for p in result["plans"])
    assert check_result(result, request_of(zero), catalog) == []


def test_price_override_sets_the_plans_cost(catalog):
    data = variant(gpus={"l4": {"max": 8, "usd_per_hour": 0.70}}, slo={})
    result = solve_dict(data, catalog)
    assert check_result(result, request_of(data), catalog) == []
    for plan in result["plans"]:
        assert plan["usd_per_hour"] == pytest.approx(plan["num_gpus"] * 0.70, abs=1e-4)
        assert plan["usd_per_hour"] != pytest.approx(plan["num_gpus"] * catalog.gpus["l4"].usd_per_hour, abs=1e-4)


def test_cheaper_override_changes_the_choice(catalog):
    """A GPU made nearly free is the cost-optimal choice."""
    data = variant(gpus={"l4": {}, "h100-sxm": {"usd_per_hour": 0.01}}, slo={}, objective=["cost", "throughput"])
    result = solve_dict(data, catalog)
    assert set(result["plans"][0]["gpu_counts"]) == {"h100-sxm"}
    assert check_result(result, request_of(data), catalog) == []


@pytest.mark.parametrize("tp,pp", [([2], [1]), ([1], [2]), ([4], [2]), ([1, 4], [1])])
def test_allowed_tp_and_pp(tp, pp, catalog):
    data = variant(parallelism={"tp": tp, "pp": pp}, slo={}, gpus={"l4": {}, "h100-sxm": {}})
    result = solve_dict(data, catalog)
    assert result["plans"]
    assert check_result(result, request_of(data), catalog) == []
    for plan in result["plans"]:
        assert all(g["tp"] in tp and g["pp"] in pp for g in plan["groups"])


def test_max_gpus_caps_the_deployment(catalog):
    loose = variant(gpus={"l4": {}}, slo={}, parallelism={"tp": [1, 2], "pp": [1]}, budget={"usd_per_hour": 100})
    assert solve_dict(loose, catalog)["plans"][0]["num_gpus"] > 3
    tight = variant(**{**loose, "parallelism": {"tp": [1, 2], "pp": [1], "max_gpus": 3}})
    result = solve_dict(tight, catalog)
    assert check_result(result, request_of(tight), catalog) == []
    assert all(p["num_gpus"] <= 3 for p in result["plans"])


@pytest.mark.parametrize("framework", ["sglang", ["sglang", "trtllm"], ["fastgen"], "any"])
def test_allowed_frameworks(framework, catalog):
    data = variant(framework=framework, slo={})
    result = solve_dict(data, catalog)
    assert result["plans"]
    assert check_result(result, request_of(data), catalog) == []


def test_framework_any_considers_every_engine(catalog):
    data = variant(framework="any", slo={}, top=12, gpus={"h100-sxm": {}}, parallelism={"tp": [1], "pp": [1]}, precision=["fp16"])
    engines = {g["framework"] for p in solve_dict(data, catalog)["plans"] for g in p["groups"]}
    assert engines == set(newest_per_engine(catalog.frameworks))  # every engine, each in its newest version


@pytest.mark.parametrize("precision", [["int8"], ["int4", "fp8"], ["bf16"]])
def test_allowed_precisions(precision, catalog):
    data = variant(precision=precision, slo={})
    result = solve_dict(data, catalog)
    assert check_result(result, request_of(data), catalog) == []
    assert {g["dtype"] for p in result["plans"] for g in p["groups"]} <= set(precision)


def test_kv_dtype_and_fixed_batch(catalog):
    data = variant(kv_dtype="fp8", workload={"input_len": 512, "output_len": 128, "batch": 24}, slo={})
    result = solve_dict(data, catalog)
    assert check_result(result, request_of(data), catalog) == []
    assert all(g["batch"] == 24 and g["kv_dtype"] == "fp8" for p in result["plans"] for g in p["groups"])


SLO_METRIC = {
    "ttft_ms": ("ttft_ms", "max"),
    "tpot_ms": ("tpot_ms", "max"),
    "batch_latency_s": ("batch_latency_s", "max"),
    "min_output_throughput_tok_s": ("output_throughput_tok_s", "min"),
}


@pytest.mark.parametrize("slo_key", list(SLO_METRIC))
def test_each_slo_binds_and_is_kept(slo_key, catalog):
    """Tighten each SLO past the unconstrained best plan's value: the new plan keeps it."""
    metric, kind = SLO_METRIC[slo_key]
    # cost first makes the unconstrained plan small and slow, so latency SLOs bind;
    # throughput first with a tiny inventory makes the throughput floor bind.
    objective = ["cost", "throughput"] if kind == "max" else ["latency", "cost"]
    base = variant(slo={}, objective=objective)
    free = solve_dict(base, catalog)["plans"][0]["metrics"][metric]
    limit = free * 0.8 if kind == "max" else free * 1.5
    data = variant(slo={slo_key: limit}, objective=objective)
    result = solve_dict(data, catalog)
    assert check_result(result, request_of(data), catalog) == []
    got = result["plans"][0]["metrics"][metric]
    assert (got <= limit) if kind == "max" else (got >= limit)


def test_all_slos_together(catalog):
    data = variant(slo={"ttft_ms": 3000, "tpot_ms": 40, "batch_latency_s": 10, "min_output_throughput_tok_s": 2000})
    result = solve_dict(data, catalog)
    assert check_result(result, request_of(data), catalog) == []


@pytest.mark.parametrize("top", [1, 2, 5])
def test_top(top, catalog):
    data = variant(top=top, slo={})
    result = solve_dict(data, catalog)
    assert len(result["plans"]) == top  # this problem has more than 5 distinct shapes
    assert check_result(result, request_of(data), catalog) == []


# ---------------------------------------------------------------- lexicographic objective

TERM_VALUE = {
    "throughput": lambda p: -p["metrics"]["output_throughput_tok_s"],
    "latency": lambda p: p["metrics"]["batch_latency_s"],
    "ttft": lambda p: p["metrics"]["ttft_ms"],
    "tpot": lambda p: p["metrics"]["tpot_ms"],
    "cost": lambda p: p["usd_per_hour"],
    "usd_per_million_output_tokens": lambda p: p["usd_per_hour"] / (p["metrics"]["output_throughput_tok_s"] * 3600) * 1e6,
}
# One unit of the solver's integer resolution per term (0.1 tok/s, 1 µs, 1 milli-dollar).
TERM_TOL = {"throughput": 0.1, "latency": 1e-6, "ttft": 1e-3, "tpot": 1e-3, "cost": 1e-3, "usd_per_million_output_tokens": 2e-3}
TERMS = [t.value for t in ObjectiveTerm if t is not ObjectiveTerm.RATE]  # rate: streams only
LEX = variant(gpus={"l4": {"max": 8}, "h100-sxm": {"max": 4}}, slo={}, top=1)


@pytest.fixture(scope="module")
def single_term_optima(catalog) -> dict[str, float]:
    return {t: TERM_VALUE[t](solve_dict(variant(**{**LEX, "objective": [t]}), catalog)["plans"][0]) for t in TERMS}


@pytest.mark.parametrize("first,second", list(itertools.permutations(TERMS, 2)))
def test_a_second_term_never_worsens_the_first(first, second, single_term_optima, catalog):
    data = variant(**{**LEX, "objective": [first, second]})
    result = solve_dict(data, catalog)
    assert result["objective"] == [first, second]
    plan = result["plans"][0]
    assert TERM_VALUE[first](plan) == pytest.approx(single_term_optima[first], abs=TERM_TOL[first], rel=1e-6)
    assert check_result(result, request_of(data), catalog) == []


@given(order=st.permutations(TERMS))
def test_any_order_of_all_terms(order, single_term_optima, catalog):
    data = variant(**{**LEX, "objective": list(order), "top": 3})
    result = solve_dict(data, catalog)
    assert result["objective"] == list(order)
    assert check_result(result, request_of(data), catalog) == []
    first = TERM_VALUE[order[0]]
    best = first(result["plans"][0])
    assert best == pytest.approx(single_term_optima[order[0]], abs=TERM_TOL[order[0]], rel=1e-6)
    assert all(best <= first(p) + TERM_TOL[order[0]] for p in result["plans"])  # rank 1 leads on the first term


# ---------------------------------------------------------------- malformed files

# (name, text, line, key path, words in the message); texts are the base with one fault.
# Syntax errors carry the parser's line: for an unclosed YAML bracket, the line where the
# parser gives up (the next key), not the line of the bracket.
MALFORMED = [
    ("syntax.yaml", BASE_YAML.replace("  max_gpus: 8", "  max_gpus: [8"), 14, "syntax error", ["expected"]),
    ("syntax.json", BASE_JSON.replace('"top": 3', '"top": 3,'), BASE_JSON.count("\n") + 1, "syntax error", ["JSON"]),
    ("syntax.toml", BASE_TOML.replace("[slo]", "[slo"), 23, "syntax error", ["TOML"]),
    ("unknown-key.yaml", BASE_YAML.replace("  tpot_ms: 60", "  tpot: 60"), 18, "slo.tpot", ["unknown key", "did you mean 'tpot_ms'?"]),
    ("unknown-key.toml", BASE_TOML.replace("max_gpus = 8", "maxgpus = 8"), 21, "parallelism.maxgpus", ["did you mean 'max_gpus'?"]),
    ("unknown-key.json", BASE_JSON.replace('"output_len"', '"outputlen"'), 5, "workload.outputlen", ["did you mean 'output_len'?"]),
    ("unknown-top-key.yaml", BASE_YAML + "objectives: [cost]\n", 21, "objectives", ["did you mean 'objective'?"]),
    (
        "wrong-type.yaml",
        BASE_YAML.replace("input_len: 512", "input_len: lots"),
        3,
        "workload.input_len",
        ["expected a whole number", "'lots'"],
    ),
    ("wrong-type.toml", BASE_TOML.replace("input_len = 512", 'input_len = "lots"'), 8, "workload.input_len", ["expected a whole number"]),
    (
        "wrong-type-bool.yaml",
        BASE_YAML.replace("usd_per_hour: 12", "usd_per_hour: true"),
        6,
        "budget.usd_per_hour",
        ["expected a number", "true"],
    ),
    (
        "wrong-type-section.yaml",
        BASE_YAML.replace("budget:\n  usd_per_hour: 12", "budget: 12"),
        5,
        "budget",
        ["expected a mapping", "usd_per_hour"],
    ),
    ("wrong-gpu-value.yaml", BASE_YAML.replace("h100-sxm: 2", "h100-sxm: two"), 9, "gpus.h100-sxm", ["GPU count", "'two'"]),
    ("wrong-gpu-allowance.yaml", BASE_YAML.replace("{max: 8,", "{max: -8,"), 8, "gpus.l4.max", [">= 0", "-8"]),
    (
        "unknown-gpu.yaml",
        BASE_YAML.replace("h100-sxm: 2", "h100-sxm5: 2"),
        9,
        "gpus.h100-sxm5",
        ["unknown GPU id", "did you mean 'h100-sxm'?"],
    ),
    ("unknown-gpu.json", BASE_JSON.replace('"l4"', '"L4"'), 11, "gpus.L4", ["unknown GPU id", "did you mean 'l4'?"]),
    (
        "unknown-model.yaml",
        BASE_YAML.replace("Llama-2-7b-hf", "Llama-2-7x-hf"),
        1,
        "model",
        ["unknown model", "did you mean 'meta-llama/Llama-2-7b-hf'?"],
    ),
    ("missing-config.yaml", BASE_YAML.replace("meta-llama/Llama-2-7b-hf", "./nowhere/config.json"), 1, "model", ["does not exist"]),
    ("unknown-framework.toml", BASE_TOML.replace('"sglang"]', '"sglng"]'), 2, "framework[1]", ["did you mean 'sglang'?"]),
    ("unknown-precision.yaml", BASE_YAML.replace("[fp16, bf16]", "[fp16, fp32]"), 15, "precision[1]", ["'fp32' is not a precision"]),
    ("unknown-term.yaml", BASE_YAML.replace("[throughput, cost]", "[thruput, cost]"), 19, "objective[0]", ["did you mean 'throughput'?"]),
    ("negative-budget.yaml", BASE_YAML.replace("usd_per_hour: 12", "usd_per_hour: -5"), 6, "budget.usd_per_hour", ["must be > 0", "-5"]),
    ("negative-budget.json", BASE_JSON.replace('"usd_per_hour": 12', '"usd_per_hour": -5'), 8, "budget.usd_per_hour", ["must be > 0"]),
    ("negative-budget.toml", BASE_TOML.replace("usd_per_hour = 12", "usd_per_hour = -5"), 12, "budget.usd_per_hour", ["must be > 0"]),
    ("top-too-big.yaml", BASE_YAML.replace("top: 3", "top: 500"), 20, "top", ["<= 50"]),
    ("infinite.yaml", BASE_YAML.replace("usd_per_hour: 12", "usd_per_hour: .inf"), 6, "budget.usd_per_hour", ["finite"]),
    ("repeated-term.yaml", BASE_YAML.replace("[throughput, cost]", "[cost, cost]"), 19, "objective", ["must not repeat"]),
    ("empty-tp.yaml", BASE_YAML.replace("tp: [1, 2, 4]", "tp: []"), 11, "parallelism.tp", ["non-empty list"]),
    ("missing-key.yaml", BASE_YAML.replace("  output_len: 128\n", ""), 2, "workload.output_len", ["required key is missing"]),
    ("duplicate-key.yaml", BASE_YAML + "top: 4\n", 21, "top", ["given twice"]),
    ("heterogeneous-type.yaml", BASE_YAML + "heterogeneous: maybe\n", 21, "heterogeneous", ["expected true or false"]),
    ("empty.yaml", "", 1, "(top level)", ["empty"]),
    ("comments-only.yaml", "# nothing here yet\n", 1, "(top level)", ["empty"]),
    ("not-a-mapping.yaml", "- model\n- budget\n", 1, "(top level)", ["expected a mapping"]),
    ("not-a-mapping.json", "[1, 2]", 1, "(top level)", ["expected a mapping"]),
]


@pytest.mark.parametrize("name,text,line,key,words", MALFORMED, ids=[m[0] for m in MALFORMED])
def test_malformed_file_is_one_located_line(name, text, line, key, words, tmp_path, runner):
    path = write(tmp_path, name, text)
    result = solve_cli(runner, path)
    assert result.exit_code == EXIT_USER, result.output
    assert result.stdout == ""
    assert "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"{path}:{line}: {key}: "), lines[0]
    for word in words:
        assert word in lines[0], (word, lines[0])
    assert re.fullmatch(r".+:\d+: [^:]+: .+ \(.+\)", lines[0]), f"not 'FILE:LINE: key: what (fix)': {lines[0]}"
    with pytest.raises(ConstraintsFileError) as info:  # the library raises the same message
        load(path)
    assert isinstance(info.value, InvalidRequestError)
    assert str(info.value) == lines[0]
    assert info.value.line == line


def test_the_earliest_problem_is_reported(tmp_path):
    text = BASE_YAML.replace("h100-sxm: 2", "h100: 2").replace("top: 3", "top: 0")
    with pytest.raises(ConstraintsFileError) as info:
        load(write(tmp_path, "two.yaml", text))
    assert info.value.key == "gpus.h100" and info.value.line == 9


@pytest.mark.parametrize(
    "name,message",
    [
        ("missing.yaml", "cannot read the file"),
        ("plan.txt", "unknown file type '.txt'"),
    ],
)
def test_unreadable_or_unknown_file(name, message, tmp_path, runner):
    path = tmp_path / name
    if name.endswith(".txt"):
        path.write_text(BASE_YAML)
    result = solve_cli(runner, path)
    assert result.exit_code == EXIT_USER
    assert result.stderr.strip().splitlines() == [result.stderr.strip()]
    assert result.stderr.startswith(f"{path}: ") and message in result.stderr


def test_non_utf8_file(tmp_path, runner):
    path = tmp_path / "latin1.yaml"
    path.write_bytes(BASE_YAML.replace("model:", "# caf\xe9\nmodel:").encode("latin-1"))
    result = solve_cli(runner, path)
    assert result.exit_code == EXIT_USER
    assert result.stderr.startswith(f"{path}:1: syntax error: ") and "UTF-8" in result.stderr


# ---------------------------------------------------------------- infeasible files

INFEASIBLE_YAML = BASE_YAML.replace("usd_per_hour: 12", "usd_per_hour: 0.5").replace("  l4: {max: 8, usd_per_hour: 0.70}\n", "")


def test_infeasible_file_exits_3_with_an_explanation(tmp_path, runner):
    path = write(tmp_path, "tight.yaml", INFEASIBLE_YAML)
    with pytest.raises(NoFeasiblePlanError):
        api.plan(load_request(path))
    result = solve_cli(runner, path)
    assert result.exit_code == EXIT_INFEASIBLE
    assert result.stdout == ""
    assert "Traceback" not in result.output
    assert result.stderr.startswith(f"{path}:6: no feasible plan: ")  # line 6: budget.usd_per_hour
    assert "budget.usd_per_hour" in result.stderr


def test_infeasible_file_json(tmp_path, runner):
    path = write(tmp_path, "tight.yaml", INFEASIBLE_YAML)
    result = solve_cli(runner, path, "--json")
    assert result.exit_code == EXIT_INFEASIBLE
    data = json.loads(result.stdout)
    assert data["status"] == "infeasible"
    assert data["plans"] == []
    assert data["objective"] == ["throughput", "cost"]
    assert "budget.usd_per_hour" in data["explanation"]
    assert "budget.usd_per_hour" in data["conflicts"]


def test_infeasible_slo_points_at_its_line(tmp_path, runner):
    path = write(tmp_path, "slo.yaml", BASE_YAML.replace("ttft_ms: 5000", "ttft_ms: 0.01"))
    result = solve_cli(runner, path)
    assert result.exit_code == EXIT_INFEASIBLE
    assert result.stderr.startswith(f"{path}:17: no feasible plan: ") and "slo.ttft_ms" in result.stderr


# ---------------------------------------------------------------- schema and help


def test_schema_command_prints_the_request_schema(runner):
    result = runner.invoke(main, ["schema"], catch_exceptions=False)
    assert result.exit_code == EXIT_OK
    schema = json.loads(result.stdout)
    assert schema["title"] and schema["description"]
    assert set(schema["properties"]) == set(PlanRequest.model_fields)
    assert set(schema["required"]) == {"model", "workload", "budget"}
    assert all(p.get("description") for p in schema["properties"].values())
    assert "h100-sxm" in schema["properties"]["gpus"]["propertyNames"]["enum"]
    assert schema == json_schema()


def test_examples_and_base_validate_against_the_schema():
    jsonschema = pytest.importorskip("jsonschema")
    from test_examples import EXAMPLE_FILES

    schema = json_schema()
    for path in EXAMPLE_FILES:
        data = (
            json.loads(path.read_text())
            if path.suffix == ".json"
            else (yaml.safe_load(path.read_text()) if path.suffix in (".yaml", ".yml") else __import__("tomllib").loads(path.read_text()))
        )
        jsonschema.validate(data, schema)
    jsonschema.validate(BASE, schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**BASE, "budgett": 3}, schema)


@pytest.mark.parametrize("command", ["solve", "schema"])
def test_help_has_an_example(command, runner):
    result = runner.invoke(main, [command, "--help"], catch_exceptions=False)
    assert result.exit_code == EXIT_OK
    assert f"Example: guideopt {command}" in result.stdout


# ---------------------------------------------------------------- random damage never crashes

JUNK_VALUES = [None, "junk", 3.5, -1, 0, 0.001, [], {}, True, [1, "x"], {"a": 1}, 10**6, "1e3", 2**40]


def _paths(node: Any, prefix: tuple = ()) -> list[tuple]:
    out = [prefix] if prefix else []
    if isinstance(node, dict):
        for k, v in node.items():
            out.extend(_paths(v, prefix + (k,)))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out.extend(_paths(v, prefix + (i,)))
    return out


def _parent(data: Any, path: tuple) -> Any:
    for seg in path[:-1]:
        data = data[seg]
    return data


@st.composite
def damaged_yaml(draw) -> str:
    data = yaml.safe_load(BASE_YAML)
    for _ in range(draw(st.integers(0, 3))):  # damage the structure...
        kind = draw(st.sampled_from(["delete", "retype", "junk-key", "slo"]))
        paths = _paths(data) if isinstance(data, (dict, list)) else []
        if kind in ("delete", "retype") and paths:
            path = draw(st.sampled_from(paths))
            parent = _parent(data, path)
            if kind == "delete":
                del parent[path[-1]]
            else:
                parent[path[-1]] = copy.deepcopy(draw(st.sampled_from(JUNK_VALUES)))
        elif kind == "slo":  # a valid but possibly unreachable SLO: exercises the infeasible path
            slo = data.setdefault("slo", {}) if isinstance(data.get("slo"), dict) or "slo" not in data else {}
            slo[draw(st.sampled_from(["ttft_ms", "tpot_ms", "batch_latency_s", "min_output_throughput_tok_s"]))] = draw(
                st.floats(1e-3, 1e6, allow_nan=False, allow_infinity=False)
            )
        elif kind == "junk-key":
            mappings = [p for p in [()] + paths if isinstance(_parent(data, p + ("x",)), dict)]
            where = _parent(data, draw(st.sampled_from(mappings)) + ("x",))
            where[draw(st.text(min_size=1, max_size=8))] = copy.deepcopy(draw(st.sampled_from(JUNK_VALUES)))
    text = yaml.safe_dump(data, sort_keys=False)
    for _ in range(draw(st.integers(0, 2))):  # ...then the text: junk characters, or a truncation
        if draw(st.booleans()):
            at = draw(st.integers(0, len(text)))
            text = text[:at] + draw(st.text(min_size=1, max_size=4)) + text[at:]
        else:
            text = text[: draw(st.integers(0, len(text)))]
    return text


@given(text=damaged_yaml())
def test_damaged_files_never_crash(text, tmp_path_factory):
    path = tmp_path_factory.mktemp("damaged") / "damaged.yaml"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    result = CliRunner().invoke(main, ["solve", str(path)])
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert result.exit_code in (EXIT_OK, EXIT_USER, EXIT_INFEASIBLE), (result.exit_code, result.output)
    assert "Traceback" not in result.output
    if result.exit_code == EXIT_USER:
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"{path}:"), result.stderr
