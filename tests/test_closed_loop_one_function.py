"""Closed loops priced by one function (issue 25): ``simulate``'s analytic column and a
closed-loop plan's operating point are ``predict --concurrency``'s closed loop
(costs/closed_loop.py), and the simulator starts a closed loop's clients spread out unless
told to start them together (simulator/clients.py)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from guideopt import api
from guideopt.analyses.simulate import run_simulation
from guideopt.model.workload import SimulateRequest
from guideopt.simulator.engine import simulate
from guideopt.simulator.sampling import make_stream
from tests.stream_helpers import config

LLAMA8B = "meta-llama/Llama-3.1-8B"
QWEN32B = "Qwen/Qwen3-32B"


def _simulate(catalog, clients: int, num_requests: int, warmup: float = 0.0, **layout):
    req = {"model": LLAMA8B, "gpu": "h100-sxm", **layout}
    req["workload"] = {"concurrency": clients, "lengths": {"input_len": 1024, "output_len": 256}, "num_requests": num_requests}
    return run_simulation(SimulateRequest.model_validate({**req, "warmup_fraction": warmup}), catalog=catalog)


def test_simulate_prices_a_closed_loop_as_predict_does(catalog):
    """Item 2: 1,000 clients of an engine running 256 wait ~33 s for a place. The analytic
    column used to evaluate an open loop at the measured throughput (mean TTFT 72.7 ms);
    it is now predict --concurrency's closed loop, to the last digit."""
    sim = _simulate(catalog, 1000, 300)
    pred = api.predict({"model": LLAMA8B, "gpu": "h100-sxm", "input_len": 1024, "output_len": 256, "concurrency": 1000}, catalog)
    analytic = sim.as_dict()["analytic"]["metrics"]
    assert analytic["ttft_ms"]["mean"] == pytest.approx(pred.metrics.ttft_ms, rel=1e-12)
    assert analytic["tpot_ms"]["mean"] == pytest.approx(pred.metrics.tpot_ms, rel=1e-12)
    assert analytic["e2e_ms"]["mean"] == pytest.approx(pred.metrics.batch_latency_s * 1e3, rel=1e-12)
    assert analytic["ttft_ms"]["mean"] > 30_000.0  # the clients beyond the running cap are counted
    assert analytic["ttft_ms"]["p50"] <= analytic["ttft_ms"]["p90"] <= analytic["ttft_ms"]["p99"]
    assert analytic["queue_ms"]["mean"] > 30_000.0


def test_closed_loop_beyond_the_cap_agrees_with_the_simulator(catalog):
    """Clients beyond the running cap: the analytic wait for a place matches the simulated
    one once the first round is cut (simulated: 3 rounds of 48 clients on an engine of 16)."""
    sim = _simulate(catalog, 48, 192, warmup=0.5, running_cap=16)
    simulated = sim.report.metrics["ttft_ms"].mean
    analytic = float(sim.analytic.ttft_ms.mean[0])
    assert analytic == pytest.approx(simulated, rel=0.1)
    assert float(sim.analytic.queue_ms.mean[0]) > 0.5 * analytic  # most of it is the wait for a place


def _ttft_ms(conf, clients: int, together: bool) -> float:
    n = clients * 6
    stream = make_stream(np.full(n, 2048.0), np.full(n, 256.0), concurrency=clients, together=together)
    res = simulate(stream, conf.engine, conf.step_table)
    keep = slice(2 * clients, None)  # two rounds of warm-up
    return float(np.mean(res.first_token_s[keep] - res.arrival_s[keep]) * 1e3)


def test_clients_started_together_stay_in_step_on_a_prefill_first_engine():
    """Item (b)'s mechanism: a prefill-first engine (TensorRT-LLM, chunked context off) runs
    waiting prompts before any decode, so clients that start together finish together and
    every prompt waits behind its wave, round after round. Spread over one request's time,
    each prompt finds the engine decoding and runs at once."""
    conf = config("70b-h100-trtllm", 2048, 256)
    # Without the server's path: a think time between a client's finish and the engine lets two
    # spread clients land in one prefill step, which a prefill-first engine never splits again.
    conf = dataclasses.replace(conf, step_table=dataclasses.replace(conf.step_table, first_token_s=0.0))
    spread, together = _ttft_ms(conf, 16, False), _ttft_ms(conf, 16, True)
    alone = _ttft_ms(conf, 1, False)
    assert spread < 1.5 * alone
    assert together > 4.0 * spread


def test_spread_clients_start_within_one_request_time():
    conf = config("8b-h100-vllm", 512, 128)
    stream = make_stream(np.full(64, 512.0), np.full(64, 128.0), concurrency=8)
    res = simulate(stream, conf.engine, conf.step_table)
    first = res.arrival_s[:8]
    assert first[0] == 0.0 and np.all(np.diff(first) > 0)
    assert first[-1] < float(np.mean(res.finish_s[:8] - res.arrival_s[:8]))  # within one request's time
    together = simulate(make_stream(np.full(64, 512.0), np.full(64, 128.0), concurrency=8, together=True), conf.engine, conf.step_table)
    assert np.all(together.arrival_s[:8] == 0.0)


def test_closed_loop_plan_answers_and_runs_at_predicts_rate(catalog):
    """Item (b): Qwen3-32B, 4,000/500 tokens, TensorRT-LLM on H200, TTFT ≤ 1 s, TPOT ≤ 50 ms.
    Every plan used to break an SLO in simulation (clients in lockstep waves: P90 TTFT 3.4 s
    on TP2 at 16 clients); now a TP2 replica serves 16 clients, at the rate predict gives."""
    req = {"model": QWEN32B, "budget": {"usd_per_hour": 100}, "gpus": {"h200-sxm": 2}, "framework": "trtllm"}
    req |= {"parallelism": {"tp": [2], "pp": [1]}, "slo": {"ttft_ms": 1000, "tpot_ms": 50}}
    req["workload"] = {"concurrency": 16, "input_len": 4000, "output_len": 500, "num_requests": 200}
    result = api.plan(req, catalog)
    plan = result.plans[0]
    assert plan.stream is not None and plan.stream["simulated_meets_slo"]
    group = plan.groups[0]
    assert (group.replicas, group.tp) == (1, 2)
    pred = api.predict(
        {"model": QWEN32B, "gpu": "h200-sxm", "tp": 2, "framework": "trtllm", "input_len": 4000, "output_len": 500, "concurrency": 16}
        | {"split": group.split},
        catalog,
    )
    assert plan.metrics.output_throughput_tok_s == pytest.approx(pred.metrics.output_throughput_tok_s, rel=1e-9)


def test_closed_loop_plan_prices_its_percentiles_and_clients_as_simulate_does(catalog):
    """One function for a closed loop's analytic figures: a closed-loop plan's percentiles (its
    SLO check and what it prints) and the clients it sustains within the SLOs are those of
    ``simulate`` at the plan's settings, to the last digit (the plan used to evaluate the open-loop
    stream model at the clients' rate: P90 TTFT 305 ms where simulate said 541)."""
    req = {"model": QWEN32B, "budget": {"usd_per_hour": 100}, "gpus": {"h200-sxm": 4}, "framework": "trtllm"}
    req |= {"parallelism": {"tp": [2], "pp": [1]}, "slo": {"ttft_ms": 1000, "tpot_ms": 50}}
    req["workload"] = {"concurrency": 40, "input_len": 4000, "output_len": 500, "num_requests": 200}
    plan = api.plan(req, catalog).plans[0]
    group = plan.groups[0]
    sim = run_simulation(
        SimulateRequest.model_validate(
            {"model": QWEN32B, "gpu": "h200-sxm", "tp": 2, "replicas": group.replicas, "framework": "trtllm"}
            | {
                "running_cap": group.batch,
                "token_budget": group.split,
                "slo": {"ttft_ms": {"targets": {90: 1000}}, "tpot_ms": {"targets": {90: 50}}},
            }
            | {"workload": {"concurrency": 40, "lengths": {"input_len": 4000, "output_len": 500}, "num_requests": 200}}
            | {"warmup_fraction": 0.1}
        ),
        catalog=catalog,
    ).as_dict()
    for metric in ("ttft_ms", "tpot_ms", "e2e_ms"):
        for key in ("mean", "p90"):
            assert group.stream["analytic"][metric][key] == pytest.approx(sim["analytic"]["metrics"][metric][key], rel=1e-9)
    assert plan.metrics.ttft_ms == pytest.approx(sim["analytic"]["metrics"]["ttft_ms"]["p90"], rel=1e-9)
    assert plan.stream["sustainable_load"] == pytest.approx(sim["sustainable_within_slo_clients"], rel=1e-12)
    assert plan.stream["sustainable_load"] >= 40


def test_slo_clients_is_the_most_clients_within_the_slos(catalog):
    """The bisection over whole clients lands on the last count whose closed loop keeps every
    bound (checked one count above and at it, against the same closed-loop function)."""
    from guideopt.costs.lengths import fixed_lengths
    from guideopt.model.workload import PercentileTargets
    from guideopt.solver.stream_rates import closed_loop_at, meets_closed_targets, slo_clients

    conf, lengths = config("70b-h100-trtllm", 2048, 256), fixed_lengths(2048, 256)
    targets = {"ttft_ms": PercentileTargets(targets={90.0: 1500.0}), "tpot_ms": PercentileTargets(targets={90.0: 60.0})}
    share = catalog.calibration.closed_loop.lockstep_share
    n = float(slo_clients(conf.arch, conf.options, lengths, targets, lockstep_share=share)[0])
    assert n >= 1

    def ok(clients: float) -> bool:
        m = closed_loop_at(conf.arch, conf.options, lengths, np.array([clients]), lockstep_share=share)
        return bool(meets_closed_targets(m, targets)[0])

    assert ok(n)
    assert not ok(n + 1) or n == float(conf.engine.running_cap)
