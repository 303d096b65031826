"""Issue 25 item 11: one number per shape. A stream plan's sustainable load, ``simulate``'s
"within the SLOs" rate and ``capacity --rate``'s per-replica rate for the same shape and
SLOs come from one search (``costs/stream_search.py``, ``solver/stream_rates.py``) and agree
exactly; the stability rate without SLOs is one function too."""

from __future__ import annotations

import json

from click.testing import CliRunner

from guideopt.cli import main
from guideopt.solver.stream_plan import SPARE_REPLICAS

MODEL, GPU = "meta-llama/Llama-3.1-8B", "l40s"
WORK = ["--input-len", "1024", "--output-len", "256"]
SLO = ["--ttft-ms", "500", "--tpot-ms", "50"]


def _json(args: list[str]) -> dict:
    res = CliRunner().invoke(main, [*args, "--json"])
    assert res.exit_code == 0, res.output
    return json.loads(res.stdout)


def test_plan_simulate_and_capacity_agree_on_the_sustainable_rate() -> None:
    plan = _json(["plan", "--model", MODEL, "--budget", "10", "--gpu", GPU, "--rate", "8", *WORK, *SLO])
    top = plan["plans"][0]
    g = top["groups"][0]
    per_replica = g["stream"]["sustainable_rate_rps_per_replica"]
    assert top["stream"]["sustainable_load"] == per_replica * g["replicas"]
    shape = [
        "--model",
        MODEL,
        "--gpu",
        GPU,
        "--tp",
        str(g["tp"]),
        "--pp",
        str(g["pp"]),
        "--framework",
        g["framework"],
        "--dtype",
        g["dtype"],
    ]
    sim = _json(
        ["simulate", *shape, "--replicas", "1", "--running-cap", str(g["batch"]), "--token-budget", str(g["split"])]
        + ["--rate", "1", *WORK, *SLO]  # runs of the plan's length (2,000): the SLO rate keeps one run's margin
    )
    assert sim["sustainable_within_slo_rps"] == per_replica
    cap = _json(["capacity", *shape, "--running-cap", str(g["batch"]), "--split", str(g["split"]), "--rate", "8", *WORK, *SLO])
    assert cap["sustainable_rate_rps_per_replica"] == per_replica
    # capacity sizes analytically; the plan adds up to SPARE_REPLICAS where its simulated runs show the fewest fall short
    assert cap["replicas"] <= g["replicas"] <= cap["replicas"] + SPARE_REPLICAS
