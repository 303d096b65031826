"""Issue 25: ``--rate max`` / ``--concurrency max`` (file keys ``rate_rps: max``,
``concurrency: max``): the highest load the budget and inventory serve within the SLOs,
and the plans at it."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from guideopt.catalog import load_catalog
from guideopt.model.request import PlanRequest
from guideopt.solver.plan import solve_request

BASE = {
    "model": "meta-llama/Llama-3.1-8B",
    "workload": {"rate_rps": "max", "input_len": 1024, "output_len": 256},
    "budget": {"usd_per_hour": 10},
    "gpus": {"l40s": 4},
    "slo": {"ttft_ms": 500},
}


def _max_load(budget: float) -> float:
    req = PlanRequest.model_validate({**BASE, "budget": {"usd_per_hour": budget}})
    result = solve_request(req, load_catalog())
    assert result.plans and result.plans[0].stream and result.plans[0].stream["max_load"]
    return float(result.plans[0].stream["rate_rps"])


def test_the_highest_load_is_served_and_a_little_more_is_not() -> None:
    best = _max_load(10)
    assert best > 0
    more = PlanRequest.model_validate({**BASE, "workload": {**BASE["workload"], "rate_rps": round(best * 1.02, 3)}})
    with pytest.raises(Exception, match="more than any plan"):
        solve_request(more, load_catalog())


def test_more_budget_never_lowers_the_highest_load() -> None:
    loads = [_max_load(b) for b in (4, 10, 25)]
    assert loads == sorted(loads), loads


def test_rate_max_from_the_command_line_and_concurrency_max() -> None:
    from guideopt.cli import main

    args = ["plan", "--model", "meta-llama/Llama-3.1-8B", "--budget", "10", "--gpu", "l40s", "--input-len", "1024", "--output-len", "256"]
    res = CliRunner().invoke(main, [*args, "--rate", "max", "--ttft-ms", "500", "--json"])
    assert res.exit_code == 0, res.output
    stream = json.loads(res.stdout)["plans"][0]["stream"]
    assert stream["max_load"] and stream["rate_rps"] > 0
    closed = CliRunner().invoke(main, [*args, "--concurrency", "max", "--ttft-ms", "1000", "--tpot-ms", "50"])
    assert closed.exit_code == 0 and "highest load the budget and limits serve within the SLOs:" in closed.stdout, closed.output
    bad = CliRunner().invoke(main, [*args, "--rate", "maximum"])
    assert bad.exit_code == 2 and "'maximum' is not a number or max" in bad.output
