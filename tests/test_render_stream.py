"""The plan table of a request stream says the load, the sustainable load and the percentiles (analytic and simulated)."""

from __future__ import annotations

from guideopt import api
from guideopt.io.render import plan_text, stream_lines

REQUEST = {
    "model": "meta-llama/Llama-2-7b-hf",
    "workload": {"input_len": 512, "output_len": 128, "rate_rps": 4.0, "num_requests": 300},
    "budget": {"usd_per_hour": 12},
    "gpus": {"l4": {}, "a100-sxm4-80gb": {}},
    "parallelism": {"tp": [1, 2], "pp": [1]},
    "slo": {"ttft_ms": {"p90": 800}, "tpot_ms": {"p90": 60}},
    "top": 2,
}


def test_stream_plan_text_shows_load_and_both_percentiles():
    result = api.plan(REQUEST)
    lines = stream_lines(result)
    assert len(lines) == len(result.plans) + 1  # one per plan, then the verification rounds
    for line, plan in zip(lines, result.plans):
        group = plan.groups[0].stream
        assert line.startswith(f"plan {plan.rank}: 4 req/s (sustains {plan.stream['sustainable_load']:.1f} req/s)")
        assert f"P90 TTFT {group['analytic']['ttft_ms']['p90']:.1f} ms analytic" in line
        assert f"/ {group['simulated']['tpot_ms']['p90']:.1f} simulated" in line
        assert line.endswith("simulation meets the SLOs: yes")
    assert lines[-1] == f"verification: {result.verification_rounds} round(s) of rank, simulate, cut"
    assert "\n".join(lines) in plan_text(result)


def test_offline_plan_text_has_no_stream_lines():
    offline = {k: v for k, v in REQUEST.items() if k != "slo"}
    offline["workload"] = {"input_len": 512, "output_len": 128}
    result = api.plan(offline)
    assert stream_lines(result) == []
    assert "req/s" not in plan_text(result)
