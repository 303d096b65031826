"""Time disaggregated stream plans (a script, not a test): the issue's DeepSeek-R1 example on
three GPU types and a dense 70B over the whole catalog, each with never / allow / only.

Prints the wall time (best of ``--repeat``), its phases, the cheapest plan's $/h and roles,
and a fixed numpy probe to divide by when the machine is busy.

Run: python benchmarks/bench_disagg_plan.py [--repeat K]
"""

from __future__ import annotations

import argparse
import warnings

from plan_timing import best_of, probe_s  # benchmarks/plan_timing.py

from guideopt.catalog import load_catalog
from guideopt.model.request import PlanRequest

DEFAULT_REPEAT = 2
CASES = {
    "DeepSeek-R1 8000/1000 8 req/s, b200 + h200-sxm + gb200, $400/h": {
        "model": "deepseek-ai/DeepSeek-R1",
        "workload": {"input_len": 8000, "output_len": 1000, "rate_rps": 8},
        "budget": {"usd_per_hour": 400},
        "slo": {"ttft_ms": 2000, "tpot_ms": 40},
        "gpus": {"b200": {}, "h200-sxm": {}, "gb200": {}},
    },
    "Llama-3.3-70B 4000/500 4 req/s, whole catalog, $100/h": {
        "model": "meta-llama/Llama-3.3-70B-Instruct",
        "workload": {"input_len": 4000, "output_len": 500, "rate_rps": 4},
        "budget": {"usd_per_hour": 100},
        "slo": {"ttft_ms": 1500, "tpot_ms": 40},
    },
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=DEFAULT_REPEAT)
    args = ap.parse_args()
    warnings.simplefilter("ignore")
    cat = load_catalog()
    probe = probe_s()
    print(f"probe {probe:.3f} s (divide by it to compare machines)")
    for name, data in CASES.items():
        for mode in ("never", "allow", "only"):
            req = PlanRequest.model_validate({**data, "disaggregation": mode})
            best, phases, result = best_of(req, cat, args.repeat)
            top = result.plans[0]
            roles = " + ".join(f"{g.role or 'aggregated'} {g.replicas}x {g.gpu}" for g in top.groups)
            shown = ", ".join(f"{k} {v:.2f}" for k, v in phases.items() if v >= 0.01)
            print(f"{name} [{mode}]: {best:.2f} s = {best / probe:.1f} probes ({shown}); ${top.usd_per_hour}/h {roles}")


if __name__ == "__main__":
    main()
