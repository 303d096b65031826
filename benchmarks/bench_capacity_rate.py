"""Time ``capacity`` over a sweep of 1,024 length cases, with and without ``--rate`` (a script, not a test).

32 prompt lengths x 32 output lengths of Llama-2-7B on one A100-80GB: the memory capacity
of each case, then (``--rate 4``, P90 TTFT <= 500 ms, TPOT <= 50 ms) the fewest replicas
of each. The cases are priced together as arrays (``analyses/capacity_cases.py``); the
per-case loop the command ran before is timed beside it for a few cases (``--per-case``)
and scaled, so the speed-up is a ratio on the same machine and load.

Run: python benchmarks/bench_capacity_rate.py [--repeat K] [--per-case N]
"""

from __future__ import annotations

import argparse
import time

from plan_timing import probe_s  # benchmarks/plan_timing.py

from guideopt.analyses.capacity import CapacityRequest, capacities
from guideopt.catalog import load_catalog

DEFAULT_REPEAT = 3
DEFAULT_PER_CASE = 32
INPUTS = list(range(128, 4096 + 1, 128))  # 32 values
OUTPUTS = list(range(32, 1024 + 1, 32))  # 32 values
BASE = {"model": "meta-llama/Llama-2-7b-hf", "gpu": "a100-sxm4-80gb"}
RATED = {"rate": 4.0, "ttft_ms": 500.0, "tpot_ms": 50.0}


def requests(extra: dict) -> list[CapacityRequest]:
    cases = [(i, o) for i in INPUTS for o in OUTPUTS if i + o <= 4096]  # the model's context
    return [CapacityRequest(**BASE, **extra, input_len=i, output_len=o) for i, o in cases]


def best_s(fn, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=DEFAULT_REPEAT)
    ap.add_argument("--per-case", type=int, default=DEFAULT_PER_CASE, help="cases timed one at a time, for the ratio")
    args = ap.parse_args()
    cat = load_catalog()
    probe = probe_s()
    print(f"probe {probe:.3f} s (divide by it to compare machines)")
    for name, extra in (("memory only", {}), ("--rate 4 with SLOs", RATED)):
        reqs = requests(extra)
        together = best_s(lambda reqs=reqs: capacities(reqs, cat), args.repeat)
        few = reqs[:: max(len(reqs) // args.per_case, 1)][: args.per_case]
        alone = best_s(lambda few=few: [capacities([r], cat) for r in few], 1) / len(few) * len(reqs)
        print(
            f"{name}: {len(reqs)} cases together {together:.2f} s ({together / probe:.1f} probes); "
            f"one at a time ~{alone:.1f} s (from {len(few)} cases), {alone / together:.0f}x"
        )


if __name__ == "__main__":
    main()
