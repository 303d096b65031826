"""Time DeepSeek-R1 stream plans with expert parallelism and attention DP (a script, not a test).

The issue-21 request (rate 4 req/s, 4000/1000 tokens, P90 TTFT 3 s, TPOT 50 ms, $300/h) on
H200, B200 and GB200, then over every GPU type of the catalog: every layout (TP, TEP, DEP,
attention DP with TP experts, wide EP up to 64 ranks), running caps 8-512, the engine's
token budgets; the top 3 plans are each simulated. Prints the best wall time of
``--repeat``, its phases, the option count and the plans' layouts, and the time of a fixed
numpy probe so that figures from a busy machine can be compared as ratios.

Run: python benchmarks/bench_moe_stream_plan.py [--repeat K]
"""

from __future__ import annotations

import argparse
import platform
import warnings

from plan_timing import best_of, probe_s  # benchmarks/plan_timing.py

from guideopt.catalog import load_catalog
from guideopt.model.request import PlanRequest

DEFAULT_REPEAT = 3
BASE = {
    "model": "deepseek-ai/DeepSeek-R1",
    "workload": {"input_len": 4000, "output_len": 1000, "rate_rps": 4},
    "budget": {"usd_per_hour": 300},
    "slo": {"ttft_ms": 3000, "tpot_ms": 50},
    "time_limit_s": 60,
}
CASES = {
    "DeepSeek-R1 on h200-sxm, b200, gb200": {**BASE, "gpus": {"h200-sxm": {}, "b200": {}, "gb200": {}}},
    "DeepSeek-R1 on every GPU type": BASE,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=DEFAULT_REPEAT)
    args = parser.parse_args()
    warnings.simplefilter("ignore")  # the model's MTP caveat
    cat = load_catalog()
    probe = probe_s()
    print(
        f"{platform.processor() or platform.machine()}, python {platform.python_version()}, {len(cat.gpus)} GPU types, probe {probe:.3f} s"
    )
    for name, data in CASES.items():
        req = PlanRequest.model_validate(data)
        best, best_phases, result = best_of(req, cat, args.repeat)
        shown = ", ".join(f"{k} {v:.2f}" for k, v in best_phases.items())
        print(
            f"{name}: {best:.2f} s wall = {best / probe:.1f} probes ({shown}); status {result.status}, {result.verification_rounds} round(s)"
        )
        for p in result.plans:
            g = p.groups[0]
            print(
                f"  {p.rank}: {g.replicas} x {g.gpu} {g.layout or f'tp{g.tp}·pp{g.pp}'} cap {g.batch} budget {g.split}, ${p.usd_per_hour}/h"
            )


if __name__ == "__main__":
    main()
