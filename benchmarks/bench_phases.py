"""Where planning time goes: one table, per phase, against a vectorised enumerator (a script, not a test).

Single-type rows (option count grows down the table): catalog load (uncached), option table
build, dominance pruning, the rest of the plan (candidates, model build, solve, extraction;
split per phase when the solver reports phases), the whole ``guideopt.api.plan`` call, and a
vectorised numpy enumerator over the same fitting table (every option at its most replicas
under the budget, best by lexsort of the objective). ``ratio`` = plan work / (table + enum);
issue 15 asks for <= 1.5 on the whole catalog.

Heterogeneous rows: ``api.plan`` wall time for 10 GPU types with 8 or 64 GPUs each and top
1..20 (time per extra plan should stay about constant), each run cut at ``--cap-s``.

Run: python benchmarks/bench_phases.py [--repeat N] [--cap-s S] [--skip-hetero] [--tops 1,2,...]
Every time is the best of ``--repeat`` runs (milliseconds).
"""

from __future__ import annotations

import argparse
import inspect
import platform
import signal
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from guideopt import api
from guideopt.catalog import load_catalog
from guideopt.costs.tables import OptionSpace, build_option_table
from guideopt.model.request import DEFAULT_BATCH_CHOICES, PlanRequest
from guideopt.solver import options as solver_options
from guideopt.solver import plan as solver_plan

HETERO_TYPES = ("h100-sxm", "a100-sxm4-80gb", "a100-sxm4-40gb", "l40s", "l4", "a10g", "rtx-a6000", "rtx-4090", "h200-sxm", "v100-sxm2-32gb")
MS_PER_S = 1e3


def _req(**extra: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "model": "meta-llama/Llama-2-7b-hf",
        "workload": {"input_len": 512, "output_len": 256},
        "budget": {"usd_per_hour": 12},
    }
    base.update(extra)
    return base


DTYPES_3 = ["fp16", "fp8", "int8"]
DTYPES_4 = ["fp16", "fp8", "int8", "int4"]
SINGLE: list[tuple[str, dict[str, Any]]] = [
    ("README 7B, vllm fp16", _req()),
    ("7B, 4 engines fp16", _req(framework="any")),
    ("7B, 4 engines x 3 dtypes", _req(framework="any", precision=DTYPES_3)),
    ("7B, 4 engines x 4 dtypes", _req(framework="any", precision=DTYPES_4)),
    ("7B, 4 engines x 4 dtypes, pp 1,2,3,4,8", _req(framework="any", precision=DTYPES_4, parallelism={"pp": [1, 2, 3, 4, 8]})),
    (
        "7B, 4 engines x 4 dtypes, pp 1..8, ttft+tpot SLOs",
        _req(framework="any", precision=DTYPES_4, parallelism={"pp": [1, 2, 3, 4, 8]}, slo={"ttft_ms": 5000, "tpot_ms": 100}),
    ),
]


def best_of(fn: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    """The shortest of ``repeat`` runs, and that run's result."""
    best, result = float("inf"), None
    for _ in range(repeat):
        start = time.perf_counter()
        out = fn()
        took = time.perf_counter() - start
        if took < best:
            best, result = took, out
    return best, result


def option_table(req: PlanRequest, catalog):
    """The request's option table, built as ``build_plan_options`` builds it (without pruning)."""
    gpus = solver_options.resolve_gpus(req, catalog)
    frameworks = [catalog.framework(f) for f in req.framework_ids(list(catalog.frameworks))]
    prices = [req.allowance(g.id).usd_per_hour or g.usd_per_hour for g in gpus]
    space = OptionSpace(
        gpus=gpus,
        frameworks=frameworks,
        dtypes=list(req.precision),
        tp=req.parallelism.tp,
        pp=req.parallelism.pp,
        batch=[req.workload.batch] if req.workload.batch else list(DEFAULT_BATCH_CHOICES),
        input_len=req.workload.input_len,
        output_len=req.workload.output_len,
        kv_dtype=req.kv_dtype,
    )
    return build_option_table(arch=catalog.model(req.model), space=space, calibration=catalog.calibration, prices=prices)


def enumerate_best(table, budget_usd_per_hour: float) -> int:
    """Vectorised exhaustive search of the default objective (throughput, latency, cost) over
    single-type plans: each fitting option at its most replicas within the budget."""
    fits = np.nonzero(table.fits)[0]
    usd = table.usd_per_hour_per_gpu[fits] * table.gpus_per_replica[fits]
    replicas = np.floor(budget_usd_per_hour / usd)
    ok = replicas >= 1
    thr = table.metrics.output_throughput_tok_s[fits] * replicas
    order = np.lexsort((usd * replicas, table.metrics.batch_latency_s[fits], -thr)[::1])
    order = order[ok[order]]
    return int(fits[order[0]]) if order.size else -1


def single_rows(catalog, repeat: int) -> None:
    phased = "phases" in inspect.signature(solver_plan.solve_request).parameters
    head = f"{'single-type request':44s} {'options':>8s} {'fit':>7s} {'table':>7s} {'prune':>7s} {'rest':>7s} {'plan':>7s} {'enum':>6s} {'ratio':>5s}"
    print(head + ("  phases of the plan call (ms)" if phased else ""))
    print("-" * len(head))
    for name, raw in SINGLE:
        req = PlanRequest.model_validate(raw)
        table_s, table = best_of(lambda req=req: option_table(req, catalog), repeat)
        fitting = table.take(np.nonzero(table.fits)[0])
        prune_s, _ = best_of(lambda f=fitting, req=req: solver_options.non_dominated(f, solver_options.relevant_terms(req)), repeat)
        enum_s, _ = best_of(lambda t=table, req=req: enumerate_best(t, req.budget.usd_per_hour), repeat)
        phases: dict[str, float] = {}
        if phased:
            plan_s, phases = best_of(lambda req=req: _phased(req, catalog), repeat)
        else:
            plan_s, _ = best_of(lambda req=req: api.plan(req, catalog), repeat)
        rest_s = plan_s - table_s - prune_s
        cells = f"{len(table):8d} {len(fitting):7d} {table_s * MS_PER_S:7.1f} {prune_s * MS_PER_S:7.1f} {rest_s * MS_PER_S:7.1f}"
        ratio = plan_s / (table_s + enum_s)
        detail = "  " + " ".join(f"{k} {v * MS_PER_S:.1f}" for k, v in phases.items() if k != "catalog") if phases else ""
        print(f"{name:44s} {cells} {plan_s * MS_PER_S:7.1f} {enum_s * MS_PER_S:6.1f} {ratio:5.2f}{detail}")


def _phased(req: PlanRequest, catalog) -> dict[str, float]:
    phases: dict[str, float] = {}
    solver_plan.solve_request(req, catalog, phases=phases)
    return phases


class _Timeout(Exception):
    pass


def _alarm(signum, frame):
    raise _Timeout


def hetero_rows(catalog, repeat: int, tops: list[int], cap_s: float) -> None:
    print()
    print(f"heterogeneous: Llama-2-7b $50/h, 10 GPU types, top k (wall ms of api.plan; '>' = cut at {cap_s:g} s)")
    print(f"{'GPUs/type':>9s} " + " ".join(f"{'k=' + str(k):>8s}" for k in tops))
    signal.signal(signal.SIGALRM, _alarm)
    for per_type in (8, 64):
        cells = []
        cut = False
        for top in tops:
            if cut:
                cells.append(f"{'-':>8s}")
                continue
            raw = _req(budget={"usd_per_hour": 50}, gpus=dict.fromkeys(HETERO_TYPES, per_type), heterogeneous=True, top=top)
            signal.setitimer(signal.ITIMER_REAL, cap_s)
            try:
                wall_s, _ = best_of(lambda raw=raw: api.plan(raw, catalog), repeat)
                cells.append(f"{wall_s * MS_PER_S:8.0f}")
            except _Timeout:
                cells.append(f"{'>' + format(cap_s, 'g') + 's':>8s}")
                cut = True
            finally:
                signal.setitimer(signal.ITIMER_REAL, 0)
        print(f"{per_type:9d} " + " ".join(cells))
    print("(time per extra plan: the difference between neighbouring columns over the difference in k)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="runs per measurement (best is reported)")
    parser.add_argument("--cap-s", type=float, default=30.0, help="cut a heterogeneous run after this long")
    parser.add_argument("--tops", default="1,2,3,5,10,15,20,50", help="heterogeneous top-k values")
    parser.add_argument("--skip-hetero", action="store_true")
    args = parser.parse_args()

    def load_uncached():
        load_catalog.cache_clear()
        return load_catalog()

    load_s, catalog = best_of(load_uncached, args.repeat)
    print(f"python {platform.python_version()} on {platform.machine()}; best of {args.repeat}; times in ms")
    print(f"catalog load {load_s * MS_PER_S:.1f} ms")
    single_rows(catalog, args.repeat)
    if not args.skip_hetero:
        hetero_rows(catalog, 1, [int(k) for k in args.tops.split(",")], args.cap_s)


if __name__ == "__main__":
    main()
