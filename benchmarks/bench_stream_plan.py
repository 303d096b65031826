"""Time a whole-catalog stream plan with simulator verification of the top 3 (a script, not a test).

Every GPU type of the catalog, vLLM, fp16, TP 1-8, PP 1-4, running caps 8-512, the engine's
token budgets; the top 3 plans are each simulated (``workload.num_requests`` requests) and
re-ranked until they pass. Prints the wall time (best of ``--repeat``), the phases of the
best run, the option count and the verification rounds.

Run: python benchmarks/bench_stream_plan.py [--repeat K]
"""

from __future__ import annotations

import argparse
import platform

from plan_timing import best_of, probe_s  # benchmarks/plan_timing.py

from guideopt.catalog import load_catalog
from guideopt.model.request import PlanRequest

DEFAULT_REPEAT = 3
CASES = {
    "8B 1024/256 10 req/s, P90 TTFT 500 ms, TPOT 50 ms, $40/h": {
        "model": "meta-llama/Llama-3.1-8B",
        "workload": {"input_len": 1024, "output_len": 256, "rate_rps": 10},
        "budget": {"usd_per_hour": 40},
        "slo": {"ttft_ms": 500, "tpot_ms": 50},
    },
    "70B 1024/256 10 req/s, P90 TTFT 500 ms, TPOT 50 ms, $40/h": {
        "model": "meta-llama/Llama-3.1-70B",
        "workload": {"input_len": 1024, "output_len": 256, "rate_rps": 10},
        "budget": {"usd_per_hour": 40},
        "slo": {"ttft_ms": 500, "tpot_ms": 50},
    },
    "8B sharegpt 20 req/s, P99 TTFT 1 s, P90 TPOT 40 ms, $30/h": {
        "model": "meta-llama/Llama-3.1-8B",
        "workload": {"lengths": "sharegpt", "rate_rps": 20},
        "budget": {"usd_per_hour": 30},
        "slo": {"ttft_ms": {"p99": 1000}, "tpot_ms": {"p90": 40}},
    },
    "70B sharegpt 5 req/s, P99 TTFT 1 s, P90 TPOT 50 ms, $60/h": {
        "model": "meta-llama/Llama-3.1-70B",
        "workload": {"lengths": "sharegpt", "rate_rps": 5},
        "budget": {"usd_per_hour": 60},
        "slo": {"ttft_ms": {"p99": 1000}, "tpot_ms": {"p90": 50}},
    },
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=DEFAULT_REPEAT)
    args = parser.parse_args()
    cat = load_catalog()
    probe = probe_s()
    print(
        f"{platform.processor() or platform.machine()}, python {platform.python_version()}, {len(cat.gpus)} GPU types, probe {probe:.3f} s"
    )
    for name, data in CASES.items():
        req = PlanRequest.model_validate(data)
        best, best_phases, result = best_of(req, cat, args.repeat)
        top = result.plans[0]
        g = top.groups[0]
        shown = ", ".join(f"{k} {v:.2f}" for k, v in best_phases.items())
        print(
            f"{name}: {best:.2f} s wall = {best / probe:.1f} probes ({shown}); {result.verification_rounds} round(s), status {result.status}"
        )
        print(f"  best: {g.replicas} x {g.gpu} tp{g.tp} pp{g.pp} cap {g.batch} budget {g.split}, ${top.usd_per_hour}/h")


if __name__ == "__main__":
    main()
