"""Sweeps: length sweeps for ``guideopt capacity`` (``512``, ``512,1024``, ``128:8192:x2``,
``128:1024:128``), and scenario sweeps, ``guideopt sweep FILE`` (below the first section)."""

from __future__ import annotations

import csv
import os
import sys
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import LLAMA2_7B

import guideopt.io.sweep_rows as sweep_rows
from guideopt.analyses.sweep import MAX_SWEEP_VALUES, parse_lengths
from guideopt.cli import main
from guideopt.errors import InvalidRequestError
from guideopt.io.constraints_parse import ConstraintsFileError
from guideopt.io.sweep_plot import best_points
from guideopt.io.sweep_run import run_sweep
from guideopt.io.sweep_scenarios import load_scenarios
from guideopt.io.sweep_table import journal_path


def test_single_value() -> None:
    assert parse_lengths("512", "input_len") == [512]


def test_list() -> None:
    assert parse_lengths("512,1024,2048", "input_len") == [512, 1024, 2048]


def test_list_tolerates_spaces_and_empty_items() -> None:
    assert parse_lengths(" 512 , 1024,,2048, ", "input_len") == [512, 1024, 2048]


def test_geometric_range_includes_both_ends() -> None:
    assert parse_lengths("128:8192:x2", "input_len") == [128, 256, 512, 1024, 2048, 4096, 8192]


def test_geometric_range_stops_before_overshooting() -> None:
    # 100, 300, 900 -- the next value, 2700, is beyond the stop.
    assert parse_lengths("100:1000:x3", "input_len") == [100, 300, 900]


def test_geometric_range_with_fractional_factor_is_rounded_and_deduplicated() -> None:
    # 1, 1.1, 1.21, ... rounds to 1,1,1,1,1,2,2,2,2,2,3,3: each length once.
    assert parse_lengths("1:3:x1.1", "output_len") == [1, 2, 3]


def test_arithmetic_range() -> None:
    assert parse_lengths("128:1024:128", "input_len") == [128, 256, 384, 512, 640, 768, 896, 1024]


def test_arithmetic_range_does_not_pass_the_stop() -> None:
    assert parse_lengths("100:350:100", "input_len") == [100, 200, 300]


def test_single_point_range() -> None:
    assert parse_lengths("64:64:x2", "input_len") == [64]
    assert parse_lengths("64:64:8", "input_len") == [64]


def test_duplicates_removed_and_sorted() -> None:
    assert parse_lengths("2048,512,1024,512,2048", "input_len") == [512, 1024, 2048]


def test_mixed_lists_and_ranges_merge_sorted_and_unique() -> None:
    got = parse_lengths("4096,128:1024:x2,300,256", "output_len")
    assert got == [128, 256, 300, 512, 1024, 4096]


@pytest.mark.parametrize(
    "text",
    [
        "x",  # not a number
        "0",  # not positive
        "-5",
        "1.5",  # not a whole number
        "10:5:2",  # stops before it starts
        "1:10:x1",  # geometric factor must be > 1
        "1:10:x0.5",
        "1:10:xabc",
        "1:10:0",  # arithmetic step must be > 0
        "1:10",  # not START:STOP:STEP
        "1:2:3:4",
        "0:10:2",  # start must be > 0
        "",  # nothing at all
        ",",
    ],
)
def test_bad_lengths_raise_invalid_request(text: str) -> None:
    with pytest.raises(InvalidRequestError):
        parse_lengths(text, "input_len")


def test_error_names_the_field() -> None:
    with pytest.raises(InvalidRequestError, match="output_len"):
        parse_lengths("x", "output_len")


def test_oversized_range_is_rejected_not_truncated() -> None:
    stop = 2 * MAX_SWEEP_VALUES
    try:
        values = parse_lengths(f"1:{stop}:1", "input_len")
    except InvalidRequestError:
        return  # refusing the sweep is fine
    assert values[-1] == stop  # ...and so is honouring it; cutting it short is not


# ---------------------------------------------------------------- scenario sweeps (`guideopt sweep`)

EXIT_OK, EXIT_BAD_INPUT = 0, 1

# Six cheap offline scenarios: an invalid budget, an infeasible one and a feasible one, on
# two GPU sets (a 7B plan on one or two small GPU types takes ~10 ms).
GRID = f"""
model: {LLAMA2_7B}
workload: {{input_len: 256, output_len: 64}}
top: 2
grid:
  budget: [-1, 0.1, 5]
  gpus: [[l4], [a10g, l4]]
"""


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture
def grid(tmp_path: Path) -> Path:
    return write(tmp_path, "grid.yaml", GRID)


@pytest.fixture
def plan_calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The models of every api.plan call made in this process (1 worker plans in-process)."""
    calls: list[str] = []
    real = sweep_rows.api.plan

    def counting(request, catalog=None):
        calls.append(request["model"])
        return real(request, catalog)

    monkeypatch.setattr(sweep_rows.api, "plan", counting)
    return calls


def test_grid_expands_every_combination_in_order(grid: Path) -> None:
    scenarios = load_scenarios(grid)
    assert scenarios.columns == ["budget", "gpus"]
    assert [s.index for s in scenarios.scenarios] == [1, 2, 3, 4, 5, 6]
    assert [s.labels for s in scenarios.scenarios[:3]] == [
        {"budget": "-1", "gpus": "l4"},
        {"budget": "-1", "gpus": "a10g+l4"},  # the last key varies fastest
        {"budget": "0.1", "gpus": "l4"},
    ]
    last = scenarios.scenarios[-1].request
    assert last["budget"] == {"usd_per_hour": 5} and last["gpus"] == {"a10g": {}, "l4": {}}
    assert last["model"] == LLAMA2_7B and last["top"] == 2
    assert len({s.id for s in scenarios.scenarios}) == 6
    assert [s.id for s in load_scenarios(grid).scenarios] == [s.id for s in scenarios.scenarios]  # stable


def test_a_scenario_has_one_id_however_it_is_written(tmp_path: Path) -> None:
    """Short names and key paths, YAML and CSV, 5 and 5.0: the same request, the same id."""
    yaml_grid = write(
        tmp_path,
        "a.yaml",
        f"model: {LLAMA2_7B}\ngrid:\n  budget.usd_per_hour: [5.0]\n  input_len: [256]\n  output_len: [64]\n  gpus: [l4]\n",
    )
    csv_file = write(tmp_path, "b.csv", f"model,budget,workload.input_len,output_len,gpus,prices\n{LLAMA2_7B},5,256,64,l4,\n")
    (a,), (b,) = load_scenarios(yaml_grid).scenarios, load_scenarios(csv_file).scenarios
    assert a.request == {
        "model": LLAMA2_7B,
        "budget": {"usd_per_hour": 5.0},
        "workload": {"input_len": 256, "output_len": 64},
        "gpus": {"l4": {}},
    }
    assert a.id == b.id


def test_csv_scenarios_one_per_row(tmp_path: Path) -> None:
    text = f"model,input_len,output_len,budget,gpus,prices,heterogeneous\n{LLAMA2_7B},512,128,5,l4+a10g,spot,true\n\n{LLAMA2_7B},512,128,7,,,\n"
    scenarios = load_scenarios(write(tmp_path, "s.csv", text))
    first, second = scenarios.scenarios
    assert first.request["gpus"] == {"l4": {}, "a10g": {}} and first.request["prices"] == "spot" and first.request["heterogeneous"] is True
    assert "gpus" not in second.request and "prices" not in second.request  # an empty cell leaves the default
    assert second.index == 2 and second.labels == {"model": LLAMA2_7B, "input_len": "512", "output_len": "128", "budget": "7"}


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        (
            "g.yaml",
            "model: m\nworkload: {input_len: 1, output_len: 1}\ngrid:\n  budjet: [5]\n",
            "g.yaml:4: grid.budjet: unknown key (did you mean 'budget'?)",
        ),
        (
            "g.yaml",
            "model: m\ngrid:\n  workload.rat_rps: [1]\n",
            "g.yaml:3: grid.workload.rat_rps: unknown key (did you mean 'workload.rate_rps'?)",
        ),
        (
            "g.yaml",
            "model: m\nworkload: {input_len: 1, outptu_len: 1}\ngrid: {budget: [5]}\n",
            "g.yaml:2: workload.outptu_len: unknown key",
        ),
        ("g.yaml", "model: m\nbudget: {usd_per_hour: 5}\n", "g.yaml:1: grid: missing or empty"),
        ("g.yaml", "workload: {input_len: 1, output_len: 1}\ngrid: {budget: [5]}\n", "g.yaml:1: model: missing"),
        (
            "g.yaml",
            "model: m\ngrid:\n  budget: [1]\n  budget.usd_per_hour: [2]\n",
            "g.yaml:4: grid.budget.usd_per_hour: names the same key as budget",
        ),
        ("g.toml", "model = 'm'\n[grid]\nmodle = ['x']\n", "g.toml:3: grid.modle: unknown key (did you mean 'model'?)"),
        ("s.csv", "model,budjet,input_len,output_len\nm,5,1,1\n", "s.csv:1: column 'budjet': unknown key (did you mean 'budget'?)"),
        ("s.csv", "model,input_len,output_len\nm,1,1\n", "s.csv:1: no column for budget.usd_per_hour"),
        ("s.txt", "model\n", "s.txt: unknown file type '.txt'"),
    ],
)
def test_bad_file_keys_are_one_line_naming_the_key(tmp_path: Path, name: str, text: str, message: str) -> None:
    path = write(tmp_path, name, text)
    with pytest.raises(ConstraintsFileError):
        load_scenarios(path)
    result = CliRunner().invoke(main, ["sweep", str(path), "--out", str(tmp_path / "out.csv")])
    assert result.exit_code == EXIT_BAD_INPUT
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert result.stderr.startswith(f"error: {path.parent}/{message}") or result.stderr.startswith(f"error: {tmp_path}/{message}")
    assert not (tmp_path / "out.csv").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--out", "OUT.txt"], "error: --out: unknown file type '.txt'"),
        (["--out", "missing/out.csv"], "error: --out: the folder"),
        (["--out", "OUT.csv", "--plot", "chart.jpg"], "error: --plot: unknown image type '.jpg'"),
    ],
)
def test_bad_options_are_one_line_naming_the_flag(tmp_path: Path, grid: Path, args: list[str], message: str) -> None:
    args = [a.replace("OUT", str(tmp_path / "out")).replace("missing", str(tmp_path / "missing")) for a in args]
    result = CliRunner().invoke(main, ["sweep", str(grid), *args])
    assert result.exit_code == EXIT_BAD_INPUT and result.stderr.startswith(message) and result.stderr.count("\n") == 1


def test_without_ray_the_error_says_how_to_install_it(tmp_path: Path, grid: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` fails, installed or not
    result = CliRunner().invoke(main, ["sweep", str(grid), "--out", str(tmp_path / "out.csv"), "--ray", "auto"])
    assert result.exit_code == EXIT_BAD_INPUT
    assert (
        result.stderr
        == "error: --ray: running on Ray needs Ray (pip install 'guideopt[ray]'), or leave out --ray to run on local processes\n"
    )


def test_an_output_that_is_not_a_sweep_is_not_overwritten(tmp_path: Path, grid: Path) -> None:
    out = write(tmp_path, "out.csv", "a,b\n1,2\n")
    result = CliRunner().invoke(main, ["sweep", str(grid), "--out", str(out)])
    assert result.exit_code == EXIT_BAD_INPUT and "not a sweep's output" in result.stderr
    assert out.read_text() == "a,b\n1,2\n"


def test_each_scenario_gets_its_rows_and_a_bad_one_does_not_stop_the_sweep(tmp_path: Path, grid: Path) -> None:
    out = tmp_path / "out.csv"
    result = CliRunner().invoke(main, ["sweep", str(grid), "--out", str(out), "--workers", "1"])
    assert result.exit_code == EXIT_OK, result.output
    rows = read_csv(out)
    by_scenario: dict[str, list[dict[str, str]]] = {}
    for row in rows:
        by_scenario.setdefault(row["scenario"], []).append(row)
    assert list(by_scenario) == ["1", "2", "3", "4", "5", "6"]  # in scenario order
    assert [r["status"] for r in by_scenario["1"]] == ["invalid"] and "budget" in by_scenario["1"][0]["error"]
    assert [r["status"] for r in by_scenario["3"]] == ["infeasible"] and by_scenario["3"][0]["error"]
    assert [r["rank"] for r in by_scenario["5"]] == ["1", "2"] and {r["status"] for r in by_scenario["5"]} == {"optimal"}
    assert all(float(r["usd_per_hour"]) <= 5 for r in by_scenario["6"])
    assert "solve_time_s" not in rows[0]  # no timing: reruns compare equal
    assert "6 scenarios (6 planned now, 0 already done): 2 infeasible, 2 invalid, 2 optimal" in result.stdout


def test_a_rerun_redoes_nothing_and_leaves_the_file_alone(tmp_path: Path, grid: Path, plan_calls: list[str]) -> None:
    out = tmp_path / "out.csv"
    run_sweep(load_scenarios(grid), out, workers=1)
    assert len(plan_calls) == 6
    before = (out.read_bytes(), os.stat(out).st_mtime_ns)
    report = run_sweep(load_scenarios(grid), out, workers=1)
    assert len(plan_calls) == 6 and report.planned == 0 and report.reused == 6 and not report.written
    assert (out.read_bytes(), os.stat(out).st_mtime_ns) == before


def test_a_rerun_plans_only_the_missing_scenarios(tmp_path: Path, grid: Path, plan_calls: list[str]) -> None:
    out = tmp_path / "out.csv"
    run_sweep(load_scenarios(grid), out, workers=1)
    full = out.read_bytes()
    rows = read_csv(out)
    kept = [r for r in rows if r["scenario"] not in ("5", "6")]
    with out.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(kept)
    plan_calls.clear()
    report = run_sweep(load_scenarios(grid), out, workers=1)
    assert len(plan_calls) == 2 and report.planned == 2 and report.reused == 4
    assert out.read_bytes() == full


def test_an_interrupted_sweep_resumes_from_its_journal(tmp_path: Path, grid: Path, plan_calls: list[str]) -> None:
    out = tmp_path / "out.csv"

    def stop_after_two(done: int, total: int) -> None:
        if done == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_sweep(load_scenarios(grid), out, workers=1, progress=stop_after_two)
    assert not out.exists() and len(journal_path(out).read_text().splitlines()) == 2
    plan_calls.clear()
    run_sweep(load_scenarios(grid), out, workers=1)
    assert len(plan_calls) == 4 and not journal_path(out).exists()
    fresh = tmp_path / "fresh.csv"
    run_sweep(load_scenarios(grid), fresh, workers=1)
    assert out.read_bytes() == fresh.read_bytes()


def test_one_and_two_workers_write_the_same_rows(tmp_path: Path, grid: Path) -> None:
    one, two = tmp_path / "one.csv", tmp_path / "two.csv"
    run_sweep(load_scenarios(grid), one, workers=1)
    run_sweep(load_scenarios(grid), two, workers=2)
    assert one.read_bytes() == two.read_bytes()


def test_parquet_holds_the_same_rows_as_csv(tmp_path: Path, grid: Path) -> None:
    pq = pytest.importorskip("pyarrow.parquet")
    run_sweep(load_scenarios(grid), tmp_path / "out.csv", workers=1)
    run_sweep(load_scenarios(grid), tmp_path / "out.parquet", workers=1)
    table = pq.read_table(tmp_path / "out.parquet")
    assert table.schema.field("usd_per_hour").type == "double" and table.schema.field("scenario").type == "int64"
    as_text = [
        {k: "" if v is None else str(v).lower() if isinstance(v, bool) else str(v) for k, v in row.items()} for row in table.to_pylist()
    ]
    assert as_text == read_csv(tmp_path / "out.csv")


def test_a_price_source_prices_the_scenario(tmp_path: Path) -> None:
    csv_file = write(
        tmp_path,
        "s.csv",
        f"model,input_len,output_len,budget,gpus,prices\n{LLAMA2_7B},256,64,20,h100-sxm,spot\n{LLAMA2_7B},256,64,20,l4,spot\n",
    )
    report = run_sweep(load_scenarios(csv_file), tmp_path / "out.csv", workers=1)
    spot, unsold = report.rows[0], report.rows[-1]
    assert spot["status"] == "optimal" and spot["usd_per_hour"] == pytest.approx(0.8015 * spot["num_gpus"])
    assert unsold["status"] == "invalid" and unsold["error"].startswith("prices: l4 is not sold in price set 'spot'")


def test_the_chart_shows_the_cheapest_plan_per_model_and_load(tmp_path: Path, grid: Path) -> None:
    out, chart = tmp_path / "out.csv", tmp_path / "chart.png"
    result = CliRunner().invoke(main, ["sweep", str(grid), "--out", str(out), "--workers", "1", "--plot", str(chart)])
    assert result.exit_code == EXIT_OK and chart.stat().st_size > 0
    x_column, points = best_points(load_scenarios(grid), read_csv(out))
    cheapest = min(float(r["usd_per_hour"]) for r in read_csv(out) if r["status"] == "optimal")
    assert x_column == "budget" and points["usd_per_hour"] == {"all scenarios": {5.0: cheapest}}


def test_ray_writes_the_same_rows_as_local_workers(tmp_path: Path, grid: Path) -> None:
    ray = pytest.importorskip("ray")
    run_sweep(load_scenarios(grid), tmp_path / "local.csv", workers=1)
    ray.init(num_cpus=1, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
    try:
        run_sweep(load_scenarios(grid), tmp_path / "ray.csv", ray_address="local")
    finally:
        ray.shutdown()
    assert (tmp_path / "ray.csv").read_bytes() == (tmp_path / "local.csv").read_bytes()
