"""Time guideopt's planner on the whole bundled catalog (a script, not a test).

For a few representative requests it prints the option-table size (all structurally valid
options, those that fit in memory, those left after pruning), the option-table build time
(``build_plan_options``) and the full solve time (``guideopt.api.plan``), each the best of
``--repeat`` runs (default 5). Catalog load time is measured uncached.

Run: python benchmarks/bench_plan.py [--repeat N]
"""

from __future__ import annotations

import argparse
import platform
import time
from collections.abc import Callable
from typing import Any

from guideopt import api
from guideopt.catalog import load_catalog
from guideopt.errors import NoFeasiblePlanError
from guideopt.model.request import PlanRequest
from guideopt.solver.options import build_plan_options

DEFAULT_REPEAT = 5


def _request(model: str, budget: float, input_len: int = 1024, output_len: int = 256, **extra: Any) -> dict[str, Any]:
    req: dict[str, Any] = {
        "model": model,
        "workload": {"input_len": input_len, "output_len": output_len},
        "budget": {"usd_per_hour": budget},
    }
    req.update(extra)
    return req


REQUESTS: list[tuple[str, dict[str, Any]]] = [
    ("Llama-2-7b  $12/h", _request("meta-llama/Llama-2-7b-hf", 12, input_len=512, output_len=256)),
    ("Llama-3.1-70B  $40/h", _request("meta-llama/Llama-3.1-70B", 40)),
    ("Mixtral-8x7B  $30/h", _request("mistralai/Mixtral-8x7B-v0.1", 30)),
    ("Qwen2.5-72B  $60/h ttft<=2s", _request("Qwen/Qwen2.5-72B", 60, slo={"ttft_ms": 2000})),
    ("Llama-3-8B  $20/h any engine fp16/fp8", _request("meta-llama/Meta-Llama-3-8B", 20, framework="any", precision=["fp16", "fp8"])),
]


def best_of(fn: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    best, result = float("inf"), None
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return best, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=DEFAULT_REPEAT, help="runs per measurement (best is reported)")
    args = parser.parse_args()

    def load_uncached():
        load_catalog.cache_clear()
        return load_catalog()

    load_s, catalog = best_of(load_uncached, args.repeat)
    print(f"python {platform.python_version()} on {platform.machine()}; best of {args.repeat} runs")
    print(
        f"catalog load: {load_s * 1e3:8.1f} ms  ({len(catalog.gpus)} GPUs, {len(catalog.models)} models, "
        f"{len(catalog.frameworks)} frameworks)"
    )
    print()
    header = f"{'request':40s} {'options':>8s} {'fit':>7s} {'pruned':>7s} {'table ms':>9s} {'solve ms':>9s}  best plan"
    print(header)
    print("-" * len(header))
    for name, raw in REQUESTS:
        req = PlanRequest.model_validate(raw)
        table_s, opts = best_of(lambda req=req: build_plan_options(req, catalog), args.repeat)
        n_all = len(opts.all_options)
        n_fit = int(opts.all_options.fits.sum())
        n_pruned = len(opts.table)
        try:
            solve_s, result = best_of(lambda req=req: api.plan(req, catalog), args.repeat)
            p = result.plans[0]
            g = p.groups[0]
            best = (
                f"{p.num_gpus}x {g.gpu} ({g.replicas}x tp{g.tp} pp{g.pp}, {g.framework} {g.dtype}, batch {g.batch}) "
                f"${p.usd_per_hour:.2f}/h {p.metrics.output_throughput_tok_s:,.0f} tok/s"
            )
        except NoFeasiblePlanError as exc:
            solve_s, best = float("nan"), f"infeasible: {exc}"
        print(f"{name:40s} {n_all:8d} {n_fit:7d} {n_pruned:7d} {table_s * 1e3:9.1f} {solve_s * 1e3:9.1f}  {best}")


if __name__ == "__main__":
    main()
