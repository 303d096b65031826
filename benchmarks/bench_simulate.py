"""Time the stream evaluators (a script, not a test).

For a few configurations and loads it prints: the step-table build time, the simulator's
wall time for N requests (default 10,000) with the steps it ran, and the analytic model's
time for one option and for a table of 10,000 options (one vectorised call), plus the
sustainable-rate search. Best of ``--repeat`` runs (default 3).

Run: python benchmarks/bench_simulate.py [--requests N] [--repeat K]
"""

from __future__ import annotations

import argparse
import platform
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


def best_of(repeat: int, fn: Callable[[], Any]) -> tuple[float, Any]:
    times, out = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return min(times), out


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
    args = parser.parse_args()
    print(f"python {platform.python_version()}, {platform.machine()}, best of {args.repeat}")
    print(f"{'case':30} {'load':>5} {'table ms':>9} {'sim s':>7} {'steps':>8} {'1 opt ms':>9} {'10k opt s':>10} {'rate ms':>8}")
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
        t_sim, res = best_of(repeat, partial(simulate, stream, conf.engine, conf.step_table))
        t_one, _ = best_of(repeat, partial(stream_metrics, conf.arch, o, lengths, np.array([rate])))
        t_many, _ = best_of(1, partial(stream_metrics, conf.arch, many, lengths, np.full(TABLE_OPTIONS, rate)))
        rows.append(
            f"{label:30} {load:5.1f} {t_table * 1e3:9.1f} {t_sim:7.3f} {res.steps:8,} {t_one * 1e3:9.1f} {t_many:10.2f} {t_rate * 1e3:8.1f}"
        )
    return rows


if __name__ == "__main__":
    main()
