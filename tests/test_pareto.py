"""Pareto fronts (``guideopt.analyses.pareto``), their charts and the ``pareto`` command."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from guideopt.analyses.pareto import ParetoResult, pareto_plans
from guideopt.catalog import load_catalog
from guideopt.cli import main
from guideopt.errors import InvalidRequestError, NoFeasiblePlanError
from guideopt.io.plots import plot_pareto
from guideopt.model.request import PlanRequest
from guideopt.solver.constraints import satisfied
from guideopt.solver.options import build_plan_options, candidates
from tests.conftest import DECI_TOK_PER_TOK, LLAMA2_7B, MILLI_USD_PER_USD, US_PER_S, plan_request

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
MIN_CHART_BYTES = 10_000
# Objective orders whose first two terms are the two axes of one front: the solver's
# choice is then non-dominated on that front.
LATENCY_FRONT_ORDERS = (["throughput", "latency", "cost"], ["latency", "throughput", "cost"])
COST_FRONT_ORDERS = (["throughput", "cost", "latency"], ["cost", "throughput", "latency"])
GPU_SETS = ({"l4": {}}, {"h100-sxm": {}}, {"l4": {}, "h100-sxm": {}}, {"a10g": {"max": 4}, "h100-sxm": {"max": 2}})


def _arrays(result: ParetoResult) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return result.usd_per_hour, result.output_throughput_tok_s, result.batch_latency_s


def _dominated(x: np.ndarray, y: np.ndarray, px: float, py: float) -> bool:
    """Is (px ↓, py ↑) strictly dominated by a point of (x, y)?"""
    return bool(np.any((x <= px) & (y >= py) & ((x < px) | (y > py))))


def _covered(front_x: np.ndarray, front_y: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Per point of (x, y): some front point is at least as good in both."""
    return ((front_x[None, :] <= x[:, None]) & (front_y[None, :] >= y[:, None])).any(axis=1)


def _solver_candidates(request: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The solver's own feasible candidates (option × fewest/most replicas), in front units."""
    req = PlanRequest.model_validate(request)
    opts = build_plan_options(req, load_catalog())
    cands = candidates(opts)
    ok = satisfied(cands, opts.bounds)
    return (cands.milli_usd_per_hour[ok] / MILLI_USD_PER_USD, cands.deci_tok_s[ok] / DECI_TOK_PER_TOK, cands.latency_us[ok] / US_PER_S)


@settings(max_examples=20, deadline=None)
@given(
    gpus=st.sampled_from(GPU_SETS),
    budget=st.sampled_from([2.0, 6.0, 15.0, 40.0]),
    input_len=st.sampled_from([128, 512, 2048]),
    output_len=st.sampled_from([32, 256]),
    objective=st.sampled_from(LATENCY_FRONT_ORDERS + COST_FRONT_ORDERS),
    ttft_ms=st.sampled_from([None, 500.0, 3000.0]),
)
def test_fronts_are_exact(gpus: dict, budget: float, input_len: int, output_len: int, objective: list[str], ttft_ms: float | None) -> None:
    request = plan_request(
        budget=budget,
        input_len=input_len,
        output_len=output_len,
        gpus=gpus,
        objective=objective,
        slo={"ttft_ms": ttft_ms} if ttft_ms else {},
    )
    try:
        result = pareto_plans(request)
    except NoFeasiblePlanError:
        assume(False)
        return
    cost, thr, lat = _arrays(result)
    for front, x in ((result.cost_front, cost), (result.latency_front, lat)):
        fx = np.array([p.usd_per_hour if x is cost else p.batch_latency_s for p in front])
        fy = np.array([p.output_throughput_tok_s for p in front])
        assert np.all(np.diff(fx) > 0) and np.all(np.diff(fy) > 0)  # a front: x up, throughput up
        for px, py in zip(fx, fy):
            assert not _dominated(x, thr, px, py)
        assert _covered(fx, fy, x, thr).all()  # every feasible candidate is dominated by or equals a front point
    # The solver's own candidate set is covered too (pruning and replica expansion lose nothing).
    s_cost, s_thr, s_lat = _solver_candidates(request)
    assert _covered(
        np.array([p.usd_per_hour for p in result.cost_front]),
        np.array([p.output_throughput_tok_s for p in result.cost_front]),
        s_cost,
        s_thr,
    ).all()
    assert _covered(
        np.array([p.batch_latency_s for p in result.latency_front]),
        np.array([p.output_throughput_tok_s for p in result.latency_front]),
        s_lat,
        s_thr,
    ).all()
    # The solver's choice lies on the front its objective's first two terms span.
    chosen = result.chosen
    assert chosen is not None and chosen.chosen
    on_latency = objective in LATENCY_FRONT_ORDERS
    front = result.latency_front if on_latency else result.cost_front
    x, cx = (lat, chosen.batch_latency_s) if on_latency else (cost, chosen.usd_per_hour)
    assert not _dominated(x, thr, cx, chosen.output_throughput_tok_s)
    assert [p for p in front if p.chosen] == [chosen]


@pytest.fixture(scope="module")
def small_result() -> ParetoResult:
    return pareto_plans(plan_request(budget=12, output_len=256, gpus={"l4": {}, "h100-sxm": {}}))


def test_chosen_plan_is_the_solvers_rank_one(small_result: ParetoResult) -> None:
    group = small_result.plan.plans[0].groups[0]
    chosen = small_result.chosen
    assert chosen is not None
    assert (chosen.gpu, chosen.tp, chosen.pp, chosen.batch, chosen.split, chosen.replicas) == (
        group.gpu,
        group.tp,
        group.pp,
        group.batch,
        group.split,
        group.replicas,
    )
    assert chosen.output_throughput_tok_s == pytest.approx(group.metrics.output_throughput_tok_s, abs=0.1)
    data = small_result.as_dict()
    assert data["chosen"]["chosen"] is True and data["num_candidates"] == small_result.num_candidates
    assert {
        "gpu",
        "framework",
        "dtype",
        "tp",
        "pp",
        "batch",
        "split",
        "replicas",
        "usd_per_hour",
        "output_throughput_tok_s",
        "batch_latency_s",
        "ttft_ms",
        "tpot_ms",
    } <= set(data["cost_throughput_front"][0])


def test_front_covers_every_replica_count(small_result: ParetoResult) -> None:
    """The cost front climbs in replica steps, not only at the most replicas the budget allows."""
    assert len({p.replicas for p in small_result.cost_front}) > 2


def test_png_chart(small_result: ParetoResult, tmp_path: Path) -> None:
    import matplotlib.image

    path = plot_pareto(small_result, tmp_path / "charts" / "pareto.png")
    data = path.read_bytes()
    assert data.startswith(PNG_SIGNATURE) and len(data) > MIN_CHART_BYTES
    image = matplotlib.image.imread(path)
    assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 2 * image.shape[0] * 0.9  # two panels side by side


def test_svg_chart(small_result: ParetoResult, tmp_path: Path) -> None:
    text = plot_pareto(small_result, tmp_path / "pareto.svg").read_text()
    root = text[text.index("<svg") :]
    assert root.startswith("<svg") and text.rstrip().endswith("</svg>")
    assert "chosen plan" in text  # the legend


def test_bad_chart_suffix(small_result: ParetoResult, tmp_path: Path) -> None:
    with pytest.raises(InvalidRequestError, match=r"\.png or \.svg"):
        plot_pareto(small_result, tmp_path / "pareto.jpg")


def test_infeasible_request_explains() -> None:
    with pytest.raises(NoFeasiblePlanError, match="budget"):
        pareto_plans(plan_request(budget=0.05))


# ----------------------------------------------------------------------------- CLI

PARETO_ARGS = [
    "pareto",
    "--model",
    LLAMA2_7B,
    "--budget",
    "12",
    "--input-len",
    "512",
    "--output-len",
    "256",
    "--gpu",
    "l4",
    "--gpu",
    "h100-sxm",
]


@pytest.fixture(scope="module")
def runner() -> CliRunner:
    return CliRunner()


def test_cli_pareto_tables(runner: CliRunner) -> None:
    result = runner.invoke(main, PARETO_ARGS, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "cost vs throughput front" in result.output and "latency vs throughput front" in result.output
    assert any(line.startswith("*") for line in result.output.splitlines())  # the chosen plan is marked


def test_cli_pareto_json(runner: CliRunner) -> None:
    result = runner.invoke(main, PARETO_ARGS + ["--json"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["chosen"]["chosen"] and data["cost_throughput_front"] and data["latency_throughput_front"]
    assert data["plot"] is None


def test_cli_pareto_plot(runner: CliRunner, tmp_path: Path) -> None:
    chart = tmp_path / "p.png"
    result = runner.invoke(main, PARETO_ARGS + ["--plot", str(chart)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert chart.read_bytes().startswith(PNG_SIGNATURE) and f"wrote {chart}" in result.output


def test_cli_pareto_from_file(runner: CliRunner) -> None:
    example = Path(__file__).resolve().parent.parent / "examples" / "chat-tight-ttft.yaml"
    result = runner.invoke(main, ["pareto", "--file", str(example), "--json"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["model"]


@pytest.mark.parametrize(
    ("args", "code", "word"),
    [
        (["pareto", "--model", "no/such-model", "--budget", "12", "--input-len", "512", "--output-len", "256"], 1, "model"),
        (["pareto", "--model", LLAMA2_7B, "--budget", "0.05", "--input-len", "512", "--output-len", "256"], 3, "budget"),
        (["pareto", "--model", LLAMA2_7B, "--budget", "12", "--input-len", "512", "--output-len", "256", "--plot", "x.bmp"], 1, "plot"),
        (["pareto", "--file", "no-such-file.yaml"], 1, "no-such-file.yaml"),
    ],
)
def test_cli_pareto_errors(runner: CliRunner, args: list[str], code: int, word: str) -> None:
    result = runner.invoke(main, args, catch_exceptions=False)
    assert result.exit_code == code, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and word in lines[0], result.stderr
    assert "Traceback" not in result.output


@pytest.mark.parametrize(
    "args",
    [
        ["pareto", "--budget", "12", "--input-len", "512", "--output-len", "256"],  # no model
        ["pareto", "--file", "x.yaml", "--model", LLAMA2_7B],  # both a file and flags
    ],
)
def test_cli_pareto_usage_errors(runner: CliRunner, args: list[str]) -> None:
    result = runner.invoke(main, args, catch_exceptions=False)
    assert result.exit_code == 2, result.output
