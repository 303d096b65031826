"""Issue 25 item 11: PLAN.md describes a stream plan as a stream in each ranked plan too —
its sections said "TTFT 58 ms, TPOT 27.2 ms, batch latency 6.99 s" with batch and split
columns, the static batch's words, while the terminal said the load and percentiles."""

from __future__ import annotations

from pathlib import Path

from guideopt import api
from guideopt.io.launch import emit
from guideopt.io.render import plan_stream_text
from guideopt.model.request import PlanRequest

STREAM = {
    "model": "meta-llama/Llama-3.1-8B",
    "workload": {"input_len": 512, "output_len": 128, "rate_rps": 2, "num_requests": 300},
    "budget": {"usd_per_hour": 10},
    "gpus": {"l4": {}},
    "parallelism": {"tp": [1], "pp": [1]},
    "slo": {"ttft_ms": {"p90": 1000}, "tpot_ms": {"p90": 80}},
    "top": 1,
}


def test_each_ranked_stream_plan_says_its_load_and_percentiles(tmp_path: Path) -> None:
    request = PlanRequest.model_validate(STREAM)
    result = api.plan(request)
    emit(result, tmp_path, request=request)
    text = (tmp_path / "PLAN.md").read_text()
    section = text.split("## Rank 1")[1].split("## Caveats")[0]
    assert f"Predicted for the request stream: {plan_stream_text(result.plans[0])}." in section
    assert "2 req/s (sustains" in section and "P90 TTFT" in section and "simulation meets the SLOs" in section
    assert "| running cap | token budget |" in section and "| P90 TTFT ms | P90 TPOT ms |" in section
    assert "batch latency" not in section and "batch s" not in section
    header, rule, row = [line for line in section.splitlines() if line.startswith("|")][:3]
    assert header.count("|") == rule.count("|") == row.count("|")  # the row lost the batch-seconds cell with its column
