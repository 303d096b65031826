"""Time the stream evaluators (a script, not a test).

For a few configurations and loads it prints: the step-table build time, the simulator's
wall and CPU time for N requests (default 10,000) with the steps it ran, and the analytic
model's time for one option and for a table of 10,000 options (one vectorised call), plus the
sustainable-rate search. Best of ``--repeat`` runs (default 3).

With ``--cold-start`` it first times a fresh process's first simulation (numba's import, then
the kernel's compilation into an empty cache, ``simulator/kernel.py``) and the same in a second
fresh process that finds the cache warm.

Run: python benchmarks/bench_simulate.py [--requests N] [--repeat K] [--cold-start]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from typing import Any

import numpy as np

from guideopt.analyses.simulate import configuration
from guideopt.catalog import load_length_mix
from guideopt.costs.lengths import LengthTable, fixed_lengths, mix_lengths
from guideopt.costs.stream import stream_metrics
from guideopt.costs.stream_search import sustainable_rate
from guideopt.model.workload import SimulateRequest
from guideopt.simulator.engine import simulate
from guideopt.simulator.sampling import make_stream, sample_mix, sample_table
from guideopt.simulator.table import StepTable

DEFAULT_REPEAT = 3
DEFAULT_REQUESTS = 10_000
TABLE_OPTIONS = 10_000

CASES: list[tuple[str, dict[str, Any], str | tuple[int, int]]] = [
    ("8B H100 vLLM 1024/256", {"model": "meta-llama/Llama-3.1-8B", "gpu": "h100-sxm"}, (1024, 256)),
    ("8B H100 vLLM sharegpt", {"model": "meta-llama/Llama-3.1-8B", "gpu": "h100-sxm"}, "sharegpt"),
    ("70B H100x4 TRT-LLM 467/256", {"model": "meta-llama/Llama-3.1-70B", "gpu": "h100-sxm", "tp": 4, "framework": "trtllm"}, (467, 256)),
    ("70B A100x4 vLLM azure-conv", {"model": "meta-llama/Llama-3.1-70B", "gpu": "a100-sxm4-80gb", "tp": 4}, "azure-conv-2023"),
]
LOADS = (0.3, 0.8)  # fractions of the analytic sustainable rate
COLD_REQUESTS = 200  # the first simulation of a fresh process: its cost is start-up, not steps

# A fresh process: the first simulation's wall and CPU time, then a second one's (as JSON).
COLD_PROBE = f"""
import json, time
import numpy as np
from guideopt.analyses.simulate import configuration
from guideopt.costs.lengths import fixed_lengths
from guideopt.model.workload import SimulateRequest
from guideopt.simulator.engine import simulate
from guideopt.simulator.sampling import make_stream
lengths = fixed_lengths(1024, 256)
req = SimulateRequest.model_validate({{"model": "meta-llama/Llama-3.1-8B", "gpu": "h100-sxm",
    "workload": {{"concurrency": 1, "lengths": {{"input_len": 1024, "output_len": 256}}}}}})
conf = configuration(req, lengths, lengths.max_total)
stream = make_stream(np.full({COLD_REQUESTS}, 1024.0), np.full({COLD_REQUESTS}, 256.0), rate_rps=10.0, seed=0)
out = []
for _ in range(2):
    wall, cpu = time.perf_counter(), time.process_time()
    simulate(stream, conf.engine, conf.step_table)
    out.append((time.perf_counter() - wall, time.process_time() - cpu))
print(json.dumps(out))
"""


def best_of(repeat: int, fn: Callable[[], Any]) -> tuple[float, Any]:
    wall, _cpu, out = best_of_cpu(repeat, fn)
    return wall, out


def best_of_cpu(repeat: int, fn: Callable[[], Any]) -> tuple[float, float, Any]:
    """The best wall and CPU seconds of ``repeat`` calls, and the last result."""
    walls, cpus, out = [], [], None
    for _ in range(repeat):
        wall, cpu = time.perf_counter(), time.process_time()
        out = fn()
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return min(walls), min(cpus), out


def cold_start() -> None:
    """A fresh process's first two simulations with an empty numba cache, then with it warm."""
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "NUMBA_CACHE_DIR": cache}
        for label in ("empty numba cache", "warm numba cache"):
            out = subprocess.run([sys.executable, "-c", COLD_PROBE], env=env, capture_output=True, text=True, check=True)
            (wall1, cpu1), (wall2, _cpu2) = json.loads(out.stdout.strip().splitlines()[-1])
            print(
                f"fresh process, {label}: first simulation ({COLD_REQUESTS} requests) {wall1:.2f} s wall, {cpu1:.2f} s CPU; "
                f"second {wall2 * 1e3:.1f} ms wall"
            )


def _lengths(spec: str | tuple[int, int]) -> tuple[LengthTable, Callable[[int, np.random.Generator], tuple[np.ndarray, np.ndarray]]]:
    if isinstance(spec, str):
        mix = load_length_mix(spec)
        return mix_lengths(mix), lambda n, rng: sample_mix(mix, n, rng)
    table = fixed_lengths(*spec)
    return table, lambda n, rng: sample_table(table, n, rng)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=DEFAULT_REQUESTS)
    parser.add_argument("--repeat", type=int, default=DEFAULT_REPEAT)
    parser.add_argument(
        "--cold-start", action="store_true", help="first time a fresh process's first simulations (empty, then warm numba cache)"
    )
    args = parser.parse_args()
    print(f"python {platform.python_version()}, {platform.machine()}, best of {args.repeat}")
    if args.cold_start:
        cold_start()
    print(
        f"{'case':30} {'load':>5} {'table ms':>9} {'sim s':>7} {'cpu s':>7} {'steps':>8} {'1 opt ms':>9} {'10k opt s':>10} {'rate ms':>8}"
    )
    for label, conf_kw, spec in CASES:
        for row in bench_case(label, conf_kw, spec, args.requests, args.repeat):
            print(row)


def bench_case(label: str, conf_kw: dict[str, Any], spec: str | tuple[int, int], requests: int, repeat: int) -> list[str]:
    lengths, sampler = _lengths(spec)
    req = SimulateRequest.model_validate({**conf_kw, "workload": {"concurrency": 1, "lengths": {"input_len": 1, "output_len": 1}}})
    conf = configuration(req, lengths, lengths.max_total)
    o = conf.options
    build = partial(
        StepTable.build,
        conf.arch,
        o.cfg,
        o.hw,
        cap=conf.engine.running_cap,
        budget=conf.engine.token_budget,
        max_context=lengths.max_total,
        pp=req.pp,
    )
    t_table, _ = best_of(repeat, build)
    t_rate, best = best_of(repeat, partial(sustainable_rate, conf.arch, o, lengths))
    many = o.take(np.zeros(TABLE_OPTIONS, dtype=int))
    rows = []
    for load in LOADS:
        rate = load * float(best[0])
        inputs, outputs = sampler(requests, np.random.default_rng(0))
        stream = make_stream(inputs, outputs, rate_rps=rate, seed=0)
        t_sim, cpu_sim, res = best_of_cpu(repeat, partial(simulate, stream, conf.engine, conf.step_table))
        t_one, _ = best_of(repeat, partial(stream_metrics, conf.arch, o, lengths, np.array([rate])))
        t_many, _ = best_of(1, partial(stream_metrics, conf.arch, many, lengths, np.full(TABLE_OPTIONS, rate)))
        rows.append(
            f"{label:30} {load:5.1f} {t_table * 1e3:9.1f} {t_sim:7.3f} {cpu_sim:7.3f} {res.steps:8,} {t_one * 1e3:9.1f} {t_many:10.2f} {t_rate * 1e3:8.1f}"
        )
    return rows


if __name__ == "__main__":
    main()
