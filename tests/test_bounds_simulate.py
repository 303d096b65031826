"""Issue 25 item 5: a simulation too large to run is refused before it starts, naming the flag
to change; a long one shows its progress on stderr only (``--json`` on stdout stays clean)."""

from __future__ import annotations

import io
import json
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from guideopt.analyses import simulate as simulate_analysis
from guideopt.analyses import simulate_bounds
from guideopt.cli import main
from guideopt.commands import progress as progress_module
from guideopt.commands.progress import Progress

SIM = ["simulate", "--model", "meta-llama/Llama-3.1-8B", "--gpu", "h100-sxm", "--rate", "5"]
FIXED = ["--input-len", "1024", "--output-len", "256"]


@pytest.fixture
def no_simulation(monkeypatch: pytest.MonkeyPatch) -> None:
    """The refusals below come before the simulator runs: running it fails the test."""

    def refuse(*_args, **_kwargs):
        raise AssertionError("the simulation ran")

    monkeypatch.setattr(simulate_analysis, "simulate", refuse)


def test_a_one_token_budget_is_refused_before_the_simulation(no_simulation: None) -> None:
    res = CliRunner().invoke(main, [*SIM, *FIXED, "--token-budget", "1"])
    assert res.exit_code == 1, res.output
    assert res.stderr == (
        "error: --token-budget: 2,000 prompts of 2,048,000 tokens in all take at least 2,048,000 steps at a budget of 1 token"
        " per step, over the 500,000 a simulation may run (give 5 or more)\n"
    )


def test_too_many_requests_at_the_engines_budget_names_the_requests(
    no_simulation: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(simulate_bounds, "MAX_SIMULATED_PROMPT_STEPS", 10)
    res = CliRunner().invoke(main, [*SIM, *FIXED, "--num-requests", "100"])
    assert res.exit_code == 1 and res.stderr.startswith("error: --num-requests: 100 prompts of 102,400 tokens")
    assert res.stderr.endswith("(simulate at most 20 requests, or give a larger token budget)\n")
    trace = tmp_path / "t.csv"
    trace.write_text("input_len,output_len\n" + "4000,10\n" * 30)
    res = CliRunner().invoke(main, [*SIM, "--lengths", str(trace)])
    assert res.exit_code == 1 and res.stderr.startswith("error: --lengths: 30 prompts of 120,000 tokens"), res.stderr


def test_a_long_simulation_reports_progress_on_stderr_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(progress_module, "PROGRESS_LINE_EVERY_S", 0.01)  # every run is "long"
    res = CliRunner().invoke(main, [*SIM, *FIXED, "--num-requests", "300", "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["simulated"]["requests"] == 300  # stdout: the answer alone
    lines = res.stderr.splitlines()
    assert lines and all(line.startswith("simulate: ") and " of 300 requests (" in line for line in lines)


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_terminal_sees_one_line_redrawn_then_erased(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(progress_module, "PROGRESS_AFTER_S", 0.0)
    monkeypatch.setattr(progress_module, "DRAW_EVERY_S", 0.005)
    out = _Terminal()
    with Progress("simulate", total=40, unit="requests", stream=out) as progress:
        progress(10)
        time.sleep(0.05)
    text = out.getvalue()
    assert "\rsimulate: 10 of 40 requests (25%), 0 s" in text and "\n" not in text
    assert text.endswith("\r" + " " * len("simulate: 10 of 40 requests (25%), 0 s") + "\r")


def test_a_short_run_shows_nothing() -> None:
    out, term = io.StringIO(), _Terminal()
    for stream in (out, term):
        with Progress("plan", stream=stream) as progress:
            progress(1)
    assert out.getvalue() == term.getvalue() == ""


def test_a_long_plan_says_it_is_running_on_stderr_only(monkeypatch: pytest.MonkeyPatch) -> None:
    from guideopt import api
    from guideopt.commands import plan as plan_command

    monkeypatch.setattr(progress_module, "PROGRESS_LINE_EVERY_S", 0.01)
    real_plan = api.plan

    def slow_plan(*a, **k):  # a plan on warm caches can end before the first line is due
        time.sleep(0.2)
        return real_plan(*a, **k)

    monkeypatch.setattr(plan_command.api, "plan", slow_plan)
    args = ["plan", "--model", "meta-llama/Llama-3.1-8B", "--budget", "5", "--gpu", "l4", *FIXED, "--top", "1", "--json"]
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["plans"]
    assert res.stderr.splitlines() and all(line.startswith("plan: running, ") for line in res.stderr.splitlines())
