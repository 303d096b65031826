"""``guideopt simulate`` with MoE layouts: a DEP8 replica (attention DP 8, experts EP 8) of
DeepSeek-R1 on H200 is simulated as one rank at an eighth of the replica's load, and reports
the replica's throughput, 8 times the rank's."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
from click.testing import CliRunner

from guideopt.analyses.simulate import Simulation, configuration, run_simulation
from guideopt.catalog import Catalog
from guideopt.cli import main
from guideopt.costs.lengths import fixed_lengths
from guideopt.costs.stream_search import sustainable_rate
from guideopt.model.workload import SimulateRequest
from guideopt.simulator.engine import simulate
from guideopt.simulator.report import stream_report
from guideopt.simulator.sampling import make_stream

R1 = "deepseek-ai/DeepSeek-R1"
H200 = "h200-sxm"
IN, OUT, N = 512, 128, 300
RATE = 12.0  # requests/s for the whole replica: 1.5 per rank, well below what a rank sustains
DEP8 = {"tp": 1, "attention_dp": 8, "moe_ep": 8}


def request(workload: dict, **layout) -> SimulateRequest:
    lengths = {"input_len": IN, "output_len": OUT}
    return SimulateRequest.model_validate(
        {"model": R1, "gpu": H200, **layout, "workload": {**workload, "lengths": lengths, "num_requests": N, "seed": 0}}
    )


def run(req: SimulateRequest, catalog: Catalog) -> Simulation:
    with warnings.catch_warnings():  # R1's MTP-layer caveat
        warnings.simplefilter("ignore")
        return run_simulation(req, catalog=catalog)


def test_dep8_replica_throughput_is_eight_ranks_at_an_eighth_of_the_load(catalog: Catalog) -> None:
    req = request({"rate_rps": RATE}, **DEP8)
    sim = run(req, catalog).as_dict()
    # One rank simulated on its own at RATE / 8, from the same configuration:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        conf = configuration(req.model_copy(update={"dtype": "fp8"}), fixed_lengths(IN, OUT), IN + OUT, catalog)
    stream = make_stream(np.full(N, IN), np.full(N, OUT), rate_rps=RATE / 8, seed=0)
    rank = stream_report(simulate(stream, conf.engine, conf.step_table))
    assert sim["simulated_rank"]["request_throughput_rps"] == pytest.approx(rank.request_throughput_rps)
    assert sim["simulated"]["request_throughput_rps"] == pytest.approx(8 * rank.request_throughput_rps)
    assert sim["simulated"]["output_throughput_tok_s"] == pytest.approx(8 * rank.output_throughput_tok_s)
    assert sim["simulated"]["request_throughput_rps"] == pytest.approx(RATE, rel=0.2)  # a stable replica serves what it is offered
    assert sim["simulated"]["metrics"]["ttft_ms"]["mean"] == pytest.approx(rank.metrics["ttft_ms"].mean)  # latencies: a rank's
    rank_best = float(sustainable_rate(conf.arch, conf.options, fixed_lengths(IN, OUT))[0])
    assert sim["sustainable_rate_rps"] == pytest.approx(8 * rank_best)
    assert sim["kv_cache_tokens"] == int(conf.table.memory.kv_tokens[0]) and int(conf.table.dp[0]) == 8
    assert (sim["attention_dp"], sim["moe_tp"], sim["moe_ep"]) == (8, 1, 8)


def test_dep8_closed_loop_gives_each_rank_its_share_of_the_clients(catalog: Catalog) -> None:
    sim = run(request({"concurrency": 64}, **DEP8), catalog)
    assert max(sim.result.series.running) == 64 // 8  # the simulated rank never runs more than its 8 clients
    plain = run(request({"concurrency": 64}, tp=8), catalog)  # TP8: one rank takes all 64
    assert max(plain.result.series.running) == 64


def test_cli_dep8_json_and_text() -> None:
    base = ["simulate", "--model", R1, "--gpu", H200, "--tp", "1", "--attention-dp", "8", "--moe-ep", "8"]
    base += ["--rate", str(RATE), "--input-len", str(IN), "--output-len", str(OUT), "--num-requests", str(N)]
    res = CliRunner().invoke(main, [*base, "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["simulated"]["request_throughput_rps"] == pytest.approx(8 * out["simulated_rank"]["request_throughput_rps"])
    text = CliRunner().invoke(main, base)
    assert text.exit_code == 0, text.output
    assert "attention_dp=8, moe_tp=1, moe_ep=8" in text.stdout and "per attention-DP rank" in text.stdout


@pytest.mark.parametrize(
    ("model", "args", "words"),
    [
        (R1, ["--tp", "8", "--moe-ep", "3"], "--moe-ep: "),
        (R1, ["--tp", "8", "--moe-tp", "3", "--moe-ep", "8"], "--moe-tp: moe_tp × moe_ep must equal tp × attention_dp = 8"),
        ("meta-llama/Llama-3.1-8B", ["--attention-dp", "2"], "--attention-dp: meta-llama/Llama-3.1-8B has no experts"),
        (R1, ["--framework", "trtllm-1.2", "--tp", "2", "--attention-dp", "4", "--moe-ep", "8"], "attention DP with one GPU per rank"),
        (R1, ["--moe-ep", "0"], "--moe-ep: must be > 0"),
    ],
    ids=["ep-3", "moe-tp-3", "dense-dp", "engine-dp-tp", "ep-0"],
)
def test_cli_bad_layouts_are_one_line_exit_1(model: str, args: list[str], words: str) -> None:
    cmd = ["simulate", "--model", model, "--gpu", H200, "--rate", "1", "--input-len", "64", "--output-len", "8", *args]
    res = CliRunner().invoke(main, cmd)
    assert res.exit_code == 1, res.output
    errors = [line for line in res.stderr.splitlines() if not line.startswith("warning:")]
    assert len(errors) == 1 and errors[0].startswith("error: ") and words in errors[0], res.stderr
    assert res.stdout == ""
