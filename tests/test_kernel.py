"""The compiled scheduler loop (``simulator/kernel.py``, issue 24) against the numpy loop it
replaced (``tests/sim_reference.py``), and its interpolation against numpy and scipy.

The kernel repeats the numpy loop's floating-point operations in their order, so every
per-request time, step count, time-series point and progress count must be equal, not close.
numba compiles the kernel on its first call in a process with an empty cache (about 10 s on
the shared 2-core machine); ``cache=True`` keeps the machine code beside the modules, so later
processes load it in well under a second.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from scipy.interpolate import RegularGridInterpolator

from guideopt.simulator import engine
from guideopt.simulator.engine import EngineSpec, RequestStream, SimResult, simulate
from guideopt.simulator.interp import decode_run_s, mixed_s, numpy_sum
from guideopt.simulator.policy import KvPolicy
from guideopt.simulator.sampling import make_stream, static_batch_stream
from tests.sim_reference import simulate_reference
from tests.stream_helpers import config

N = 80  # requests per case: a few hundred to a few thousand steps in the slow reference
MAX_IN, MAX_OUT = 1024, 512  # the step tables' context
SMALL_KV = 6000  # tokens: a few requests' worth, so that decodes run out of blocks
RESULT_ARRAYS = ("arrival_s", "admitted_s", "first_token_s", "finish_s", "input_len", "output_len", "preemptions")
SERIES_FIELDS = ("t_s", "waiting", "running", "kv_used_tokens", "tokens")


def _lengths(seed: int, n: int = N, min_out: int = 1) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng([seed, 24])
    return rng.integers(16, MAX_IN, n).astype(float), rng.integers(min_out, MAX_OUT, n).astype(float)


def _open(seed: int, rate_rps: float, min_out: int = 1) -> RequestStream:
    return make_stream(*_lengths(seed, min_out=min_out), rate_rps=rate_rps, seed=seed)


def _case(name: str, stream: RequestStream, **spec: object) -> tuple[RequestStream, EngineSpec, object]:
    conf = config(name, MAX_IN, MAX_OUT)
    # The numpy loop predates the server's path to the engine (tests/test_first_token.py covers it): none here.
    return stream, dataclasses.replace(conf.engine, **spec), dataclasses.replace(conf.step_table, first_token_s=0.0)


CASES = {
    "chunked, recompute, preempts": lambda: _case("8b-a100-vllm", _open(1, 40.0), kv_tokens=SMALL_KV),
    "chunked, stall": lambda: _case("8b-a100-vllm", _open(2, 40.0), kv_tokens=SMALL_KV, policy=KvPolicy.STALL),
    "chunked, reserve": lambda: _case("8b-a100-vllm", _open(3, 40.0), kv_tokens=SMALL_KV, policy=KvPolicy.RESERVE),
    "chunked, small budget (FastGen)": lambda: _case("8b-h100-fastgen", _open(4, 20.0)),
    "prefill-first, reserve": lambda: _case("70b-h100-trtllm", _open(5, 8.0)),
    "prefill-first, recompute": lambda: _case("70b-h100-trtllm", _open(6, 30.0), kv_tokens=SMALL_KV, policy=KvPolicy.RECOMPUTE),
    "prefill-first, stall": lambda: _case("70b-h100-trtllm", _open(7, 30.0), kv_tokens=SMALL_KV, policy=KvPolicy.STALL),
    "closed loop, spread": lambda: _case("8b-h100-vllm", make_stream(*_lengths(8), concurrency=12)),
    "closed loop, together": lambda: _case("70b-h100-trtllm", make_stream(*_lengths(9), concurrency=16, together=True)),
    "prompt cached, recompute": lambda: _case("8b-a100-vllm", _open(10, 60.0, 2), kv_tokens=SMALL_KV, prompt_cached=True),
    "prompt cached, stall": lambda: _case(
        "8b-a100-vllm", _open(11, 60.0, 2), kv_tokens=SMALL_KV, prompt_cached=True, policy=KvPolicy.STALL
    ),
    "pipeline (two prompt levels)": lambda: _case("7b-l40s-pp2-vllm", _open(12, 15.0)),
    "KV kept at half": lambda: _case("8b-h100-vllm", _open(13, 10.0), kv_keep=0.5),
    "300 prompts in one step": lambda: _case("70b-h100-trtllm", static_batch_stream(300, 30, 4)),
}


def _assert_same(got: SimResult, want: SimResult) -> None:
    for name in RESULT_ARRAYS:
        np.testing.assert_array_equal(getattr(got, name), getattr(want, name), err_msg=name)
    assert got.steps == want.steps
    for name in SERIES_FIELDS:
        assert getattr(got.series, name) == getattr(want.series, name), name


@pytest.mark.parametrize("case", sorted(CASES))
def test_the_kernel_repeats_the_numpy_loop_exactly(case):
    stream, spec, table = CASES[case]()
    calls: list[int] = []
    got = simulate(stream, spec, table, calls.append)
    expected_calls: list[int] = []
    want = simulate_reference(stream, spec, table, expected_calls)
    _assert_same(got, want)
    assert calls == expected_calls
    assert np.isfinite(got.finish_s).all()


def test_full_buffers_hand_back_to_python_and_the_run_goes_on(monkeypatch):
    """Tiny series and progress buffers: the kernel yields every few steps and resumes."""
    stream, spec, table = CASES["chunked, recompute, preempts"]()
    want = simulate(stream, spec, table)
    calls: list[int] = []
    monkeypatch.setattr(engine, "SERIES_START", 3)
    monkeypatch.setattr(engine, "PROGRESS_BUFFER", 2)
    got = simulate(stream, spec, table, calls.append)
    _assert_same(got, want)
    assert want.preemptions.sum() > 0 and len(calls) > 2 and calls == sorted(calls)


@pytest.mark.parametrize("n", [0, 1, 7, 8, 9, 127, 128, 129, 255, 256, 300, 1000, 4099])
def test_the_pairs_sum_adds_in_numpys_order(n):
    x = np.random.default_rng(n).lognormal(8.0, 3.0, n)
    assert numpy_sum(x, n) == x.sum()


def test_decode_runs_interpolate_as_numpy_interp():
    table = config("8b-h100-vllm", MAX_IN, MAX_OUT).step_table
    axis = table.decode_kv_axis
    xs = np.concatenate([axis, np.random.default_rng(0).uniform(-1.0, axis[-1] * 1.1, 500)])
    for d in (1, 7, 100):
        row = table.decode_values[d]
        assert [decode_run_s(axis, row, x) for x in xs] == np.interp(xs, axis, row).tolist()


def test_steps_interpolate_multilinearly_inside_the_grid():
    table = config("7b-l40s-pp2-vllm", MAX_IN, MAX_OUT).step_table
    rng = np.random.default_rng(1)
    points = np.column_stack([rng.uniform(a[0], a[-1], 200) for a in table.axes])
    points[:, 0] = np.round(points[:, 0])  # decode counts are integers
    points[:, 1] = np.maximum(points[:, 1], 1.0)  # a step with prompt tokens
    for prompts in (1, 2):
        grid = RegularGridInterpolator(table.axes, table.values[prompts - 1])
        want = grid(points)
        got = [table.step_s(int(d), p, s, q, prompts) for d, p, s, q in points]
        np.testing.assert_allclose(got, want, rtol=1e-12)
    kv = rng.uniform(0.0, table.decode_kv_axis[-1], 50)
    got = [mixed_s(*table.kernel_arrays(), 5, 0.0, x, 0.0, 1) for x in kv]
    np.testing.assert_allclose(got, table.decode_s(5, kv), rtol=1e-12)
