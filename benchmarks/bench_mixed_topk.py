"""Time exact mixed-GPU-type top-k plans (issue 24 item 1; a script, not a test).

Cases (Llama-2-7b, 512 input / 256 output tokens, the README's $12/h):
  * top 20 over every catalog GPU type with the default inventory;
  * top 20 with 8 GPUs of every type;
  * top 1 over 100 GPU types: the catalog's types cloned with their prices raised 3 % per
    copy (ids ``<gpu>~k``), so that the copies are distinct choices.
Each line gives the best wall time of ``--repeat`` solves (the option table, candidates,
the ranked search and the single-type baseline; imports and catalog loading excluded), the
same as a ratio to a fixed numpy probe (compare ratios across machines or loads), the
status, the plans returned and the ranked search's knapsack passes.

Run: python benchmarks/bench_mixed_topk.py [--repeat N]
Exit status 1 if a case is not optimal or returns fewer plans than asked.
"""

from __future__ import annotations

import argparse
import platform
import sys
import warnings
from dataclasses import replace
from typing import Any

from plan_timing import best_of, probe_s  # benchmarks/plan_timing.py

from guideopt.catalog import Catalog, load_catalog
from guideopt.model.request import PlanRequest
from guideopt.solver import hetero_ranks

BASE: dict[str, Any] = {
    "model": "meta-llama/Llama-2-7b-hf",
    "workload": {"input_len": 512, "output_len": 256},
    "budget": {"usd_per_hour": 12},
    "heterogeneous": True,
}
CLONED_TYPES = 100
PRICE_STEP = 0.03  # each copy of a GPU type costs 3 % more than the previous one
DEFAULT_REPEAT = 3


def cloned_catalog(cat: Catalog, types: int) -> Catalog:
    """The catalog with its GPU types copied (prices raised per copy) up to ``types`` types."""
    gpus = dict(cat.gpus)
    originals = list(cat.gpus.values())
    k = 1
    while len(gpus) < types:
        for g in originals:
            if len(gpus) >= types:
                break
            gid = f"{g.id}~{k}"
            gpus[gid] = g.model_copy(update={"id": gid, "usd_per_hour": g.usd_per_hour * (1 + PRICE_STEP * k)})
        k += 1
    return replace(cat, gpus=gpus)


def cases(cat: Catalog) -> list[tuple[str, dict[str, Any], Catalog]]:
    big = cloned_catalog(cat, CLONED_TYPES)
    return [
        ("top 20, every type, default inventory", {**BASE, "top": 20}, cat),
        ("top 20, 8 GPUs of every type", {**BASE, "top": 20, "gpus": dict.fromkeys(cat.gpus, 8)}, cat),
        (f"top 1, {CLONED_TYPES} GPU types", {**BASE, "top": 1, "gpus": dict.fromkeys(big.gpus, 8)}, big),
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=DEFAULT_REPEAT)
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    cat = load_catalog()
    probe = probe_s()
    print(f"{platform.processor() or platform.machine()}, python {platform.python_version()}, probe {probe:.3f} s")
    ok = True
    passes: list[int] = []
    original = hetero_ranks.RankedSearch.run

    def counted(self, top):  # the ranked search's work, read off its result
        found = original(self, top)
        passes.append(found.passes)
        return found

    hetero_ranks.RankedSearch.run = counted  # type: ignore[method-assign]
    for name, raw, catalog in cases(cat):
        req = PlanRequest.model_validate(raw)
        passes.clear()
        best, phases, result = best_of(req, catalog, args.repeat)
        shown = ", ".join(f"{k} {v:.2f}" for k, v in phases.items() if v >= 0.005)
        print(
            f"{name}: {best:.2f} s wall = {best / probe:.1f} probes ({shown}); "
            f"status {result.status}, {len(result.plans)} plans, {passes[-1] if passes else 'n/a'} knapsack passes"
        )
        ok &= result.status == "optimal" and len(result.plans) == req.top
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
