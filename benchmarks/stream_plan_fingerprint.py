"""Print the shown plans of bench_stream_plan.py's cases, one line each (a script, not a test).

Run it at two commits and diff the outputs: a speed change to the stream planner should give
the same plans (GPU, engine, dtype, TP/PP, cap, token budget, replicas, TTFT, the sustainable
rate to 6 decimals and the simulator's verdict).

Run: python benchmarks/stream_plan_fingerprint.py > plans.txt
"""

from __future__ import annotations

from bench_stream_plan import CASES  # benchmarks/bench_stream_plan.py

from guideopt.catalog import load_catalog
from guideopt.model.request import PlanRequest
from guideopt.solver.plan import solve_request


def main() -> None:
    cat = load_catalog()
    for name, data in CASES.items():
        result = solve_request(PlanRequest.model_validate(data), cat, {})
        print(name)
        for p in result.plans:
            for g in p.groups:
                stream = g.stream or {}
                print(
                    f"  ${p.usd_per_hour}/h {g.replicas} x {g.gpu} {g.framework} {g.dtype} tp{g.tp} pp{g.pp} cap {g.batch} "
                    f"budget {g.split} ttft {g.metrics.ttft_ms:.3f} ms sustainable {stream.get('sustainable_rate_rps_per_replica', 0):.6f} "
                    f"req/s simulated_meets_slo {(p.stream or {}).get('simulated_meets_slo')}"
                )


if __name__ == "__main__":
    main()
