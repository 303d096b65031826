"""Issue 25 item 12: text output fits the terminal — at COLUMNS=80 the plan, simulate,
predict and capacity tables were 110–125 columns wide. A table too wide is folded into
parts that repeat its key columns (nothing is left out), prose lines wrap; piped without
COLUMNS nothing changes, so scripts see whole rows."""

from __future__ import annotations

import pytest
from click.testing import CliRunner
from conftest import README_PLAN_ARGS

from guideopt.cli import main
from guideopt.io.render import PLAN_COLUMNS, UNWRAPPED_WIDTH, fit_lines, table, terminal_width

MODEL = "meta-llama/Llama-3.1-8B"
WIDTH = 80
COMMANDS = {
    "plan": README_PLAN_ARGS,
    "simulate": ["simulate", "--model", MODEL, "--gpu", "t4", "--tp", "2", "--rate", "1", "--input-len", "512", "--output-len", "64"]
    + ["--num-requests", "60"],
    "predict": ["predict", "--model", MODEL, "--gpu", "h100-sxm", "--batch", "8", "--input-len", "512", "--output-len", "128"],
    "capacity": ["capacity", "--model", MODEL, "--gpu", "h100-sxm", "--input-len", "512:2048:x2", "--output-len", "128,512"],
}


def _fits(name: str) -> str:
    res = CliRunner().invoke(main, COMMANDS[name], env={"COLUMNS": str(WIDTH)})
    assert res.exit_code == 0, res.output
    wide = [line for line in res.stdout.splitlines() if len(line) > WIDTH]
    assert not wide, wide
    assert "…" not in res.stdout  # no header or value cut short
    return res.stdout


@pytest.mark.parametrize("name", ["plan", "predict", "capacity"])
def test_every_line_fits_80_columns(name: str) -> None:
    _fits(name)


def test_simulate_fits_and_names_both_gpus_of_a_tp2_replica() -> None:
    assert "1 replica(s) x 2 t4 (tp=2" in _fits("simulate")


def test_a_folded_table_keeps_every_column_and_its_key_columns() -> None:
    row = [1, "h100-sxm", *range(len(PLAN_COLUMNS) - 2)]
    text = table(PLAN_COLUMNS, [row], width=WIDTH, key=2)
    parts = text.split("\n\n")
    assert len(parts) == 2 and all(len(line) <= WIDTH for line in text.splitlines())
    assert all(part.startswith("rank") and "h100-sxm" in part for part in parts)  # each part names its rows
    assert all(header in text for header in PLAN_COLUMNS)
    assert table(PLAN_COLUMNS, [row], width=UNWRAPPED_WIDTH).count("\n") == 2  # wide enough: one table


def test_piped_without_columns_nothing_is_folded_or_wrapped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("COLUMNS", raising=False)
    assert terminal_width() == UNWRAPPED_WIDTH  # pytest's stdout is not a terminal
    line = "plan 1: " + "; ".join(["P90 TTFT 165.9 ms analytic / 314.1 simulated"] * 4)
    assert fit_lines(line) == line
    monkeypatch.setenv("COLUMNS", str(WIDTH))
    wrapped = fit_lines(line).splitlines()
    assert all(len(s) <= WIDTH for s in wrapped) and all(s.startswith("  ") for s in wrapped[1:])
    assert " ".join(s.strip() for s in wrapped) == line
