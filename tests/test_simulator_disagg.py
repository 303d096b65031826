"""The disaggregated simulator: prefill pool, KV transfer, decode pool (issue 23, item 3).

The engine's ``prompt_cached`` flag is off by default; with it off ``simulate`` is unchanged
(tests/test_simulator.py and the stream tests cover that behaviour)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from guideopt.errors import InvalidRequestError
from guideopt.simulator.disagg import Pool, merge_series, round_robin, run_disagg, simulate_disagg
from guideopt.simulator.engine import RequestStream, Series, simulate
from guideopt.simulator.report import per_request_ms, stream_report
from guideopt.simulator.sampling import make_stream, static_batch_stream
from tests.stream_helpers import config

N_REQUESTS = 400
TIGHT_REL = 1e-9  # the same float operations in a different order


def _lengths(seed: int, n: int = N_REQUESTS) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng([seed, 9])
    return rng.integers(128, 2048, n).astype(float), rng.integers(1, 256, n).astype(float)


def _run(stream: RequestStream, x: int, y: int, transfer_s: float | np.ndarray = 0.01, name: str = "8b-h100-vllm"):
    conf = config(name, 2048, 256)
    transfer = np.broadcast_to(np.asarray(transfer_s, dtype=float), stream.input_len.shape).copy()
    return simulate_disagg(stream, conf.engine, conf.step_table, x, conf.engine, conf.step_table, y, transfer)


def test_prompt_cached_decoding_continues_where_the_aggregated_prefill_stops():
    """Four prompts prefill in one step; from there the aggregated engine decodes exactly as
    a decode worker whose requests arrive with their prompts cached at t = 0."""
    conf = config("8b-h100-vllm", 2048, 256)
    agg = simulate(static_batch_stream(4, 1024, 64), conf.engine, conf.step_table)
    assert np.unique(agg.first_token_s).size == 1  # one prefill step
    cached = dataclasses.replace(conf.engine, prompt_cached=True)
    dec = simulate(static_batch_stream(4, 1024, 64), cached, conf.step_table)
    np.testing.assert_allclose(dec.finish_s, agg.finish_s - agg.first_token_s, rtol=TIGHT_REL)
    assert dec.steps == agg.steps - 1  # no prefill step
    assert conf.engine.prompt_cached is False  # off unless asked for


def test_prompt_cached_needs_a_second_token():
    conf = config("8b-h100-vllm", 2048, 256)
    cached = dataclasses.replace(conf.engine, prompt_cached=True)
    with pytest.raises(InvalidRequestError, match="output_len"):
        simulate(static_batch_stream(2, 512, 1), cached, conf.step_table)


@pytest.mark.parametrize(("inp", "out"), [(1024, 64), (700, 2), (2000, 3)])
def test_a_single_request_costs_its_prefill_step_the_transfer_and_its_decode_steps(inp, out):
    conf = config("8b-h100-vllm", 2048, 256)
    table = conf.step_table
    transfer = 0.0123
    res = _run(RequestStream(np.array([float(inp)]), np.array([float(out)]), np.array([0.5])), 1, 1, transfer)
    prefill_s = table.step_s(0, inp, 0.0, inp * (inp + 1) / 2.0, 1)  # one chunk, no decodes
    decode_s = table.decode_s(1, inp + 1.0 + np.arange(out - 1))  # token 2 reads prompt + token 1
    ms = per_request_ms(res)
    path = table.first_token_s  # the server's path to the prefill worker, once
    assert ms["ttft_ms"][0] == pytest.approx((path + prefill_s + transfer + decode_s[0]) * 1e3, rel=TIGHT_REL)
    assert ms["e2e_ms"][0] == pytest.approx((path + prefill_s + transfer + decode_s.sum()) * 1e3, rel=TIGHT_REL)
    assert ms["queue_ms"][0] == pytest.approx(0.0, abs=1e-9)
    assert res.steps == out  # one prefill step, O − 1 decode steps


def test_a_one_token_request_returns_after_prefill_and_transfer():
    conf = config("8b-h100-vllm", 2048, 256)
    res = _run(RequestStream(np.array([800.0]), np.array([1.0]), np.array([0.0])), 2, 2, 0.02)
    prefill_s = conf.step_table.step_s(0, 800, 0.0, 800 * 801 / 2.0, 1)
    path = conf.step_table.first_token_s
    assert res.first_token_s[0] == res.finish_s[0] == pytest.approx(path + prefill_s + 0.02, rel=TIGHT_REL)
    assert res.steps == 1


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_more_prefill_workers_never_raise_mean_ttft(seed):
    inp, out = _lengths(seed)
    stream = make_stream(inp, out, rate_rps=40.0, seed=seed)  # one prefill worker is saturated
    ttft = [stream_report(_run(stream, x, 1)).metrics["ttft_ms"].mean for x in (1, 2, 3, 4)]
    assert ttft[0] > 2 * ttft[1]  # the load is high enough for the test to mean something
    assert all(b <= a for a, b in zip(ttft, ttft[1:])), ttft


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_more_decode_workers_never_raise_mean_tpot(seed):
    inp, out = _lengths(seed)
    stream = make_stream(inp, out, rate_rps=40.0, seed=seed)
    tpot = [stream_report(_run(stream, 2, y)).metrics["tpot_ms"].mean for y in (1, 2, 3, 4)]
    assert tpot[0] > 1.1 * tpot[-1]
    assert all(b <= a for a, b in zip(tpot, tpot[1:])), tpot


def test_seeded_runs_repeat_and_seeds_differ():
    inp, out = _lengths(0)

    def run(seed: int):
        return _run(make_stream(inp, out, rate_rps=30.0, seed=seed), 2, 3)

    a, b = run(5), run(5)
    for f in ("arrival_s", "admitted_s", "first_token_s", "finish_s", "preemptions"):
        np.testing.assert_array_equal(getattr(a, f), getattr(b, f))
    assert a.steps == b.steps and a.series == b.series
    assert not np.array_equal(a.finish_s, run(6).finish_s)


def test_transfer_time_adds_one_for_one_to_ttft_at_low_load():
    inp, out = _lengths(3, 100)
    out = np.maximum(out, 2.0)
    stream = make_stream(inp, out, arrival_s=np.arange(100) * 2.0)  # each request alone in the system
    transfer = np.random.default_rng(4).uniform(0.0, 0.2, 100)
    base = per_request_ms(_run(stream, 1, 1, 0.0))
    slow = per_request_ms(_run(stream, 1, 1, transfer))
    np.testing.assert_allclose(slow["ttft_ms"] - base["ttft_ms"], transfer * 1e3, atol=1e-6)
    np.testing.assert_allclose(slow["tpot_ms"], base["tpot_ms"], rtol=TIGHT_REL)


def test_queueing_is_the_prefill_wait_plus_the_decode_wait():
    conf = config("8b-h100-vllm", 2048, 256)
    inp, out = _lengths(1)
    small = dataclasses.replace(conf.engine, running_cap=4)  # both pools queue
    stream = make_stream(inp, out, rate_rps=40.0, seed=1)
    transfer = np.full(inp.size, 0.005)
    run = run_disagg(stream, Pool(small, conf.step_table, 2), Pool(small, conf.step_table, 2), transfer)
    res, pre, dec = run.result, run.prefill, run.decode
    np.testing.assert_allclose(run.ready_s, pre.first_token_s + transfer, rtol=TIGHT_REL)
    decoded = out >= 2
    waits = (pre.admitted_s - pre.arrival_s - pre.path_s) + np.where(decoded, dec.admitted_s - run.ready_s, 0.0)
    np.testing.assert_allclose(res.admitted_s - res.arrival_s, waits, rtol=1e-9, atol=1e-12)
    assert (waits > 1e-6).any()
    assert (res.first_token_s >= run.ready_s).all() and (res.finish_s >= res.first_token_s).all()
    assert res.steps == pre.steps + dec.steps
    assert res.kv_tokens == 4 * small.kv_tokens


def test_round_robin_deals_in_key_order():
    ids = np.arange(7)
    key = np.array([5.0, 1.0, 3.0, 1.0, 0.0, 9.0, 2.0])
    shares = round_robin(ids, key, 3)
    assert [s.tolist() for s in shares] == [[4, 6, 5], [1, 2], [3, 0]]  # order 4, 1, 3 (tie after 1), 6, 2, 0, 5
    assert len(round_robin(ids[:2], key, 5)) == 2  # idle workers get no simulation


def test_merged_series_is_the_sum_of_the_workers():
    a = Series([1.0, 3.0], [2, 0], [1, 0], [32.0, 0.0], [10.0, 5.0])
    b = Series([2.0, 4.0], [1, 0], [3, 1], [16.0, 16.0], [7.0, 1.0])
    m = merge_series([a, b])
    assert m.t_s == [1.0, 2.0, 3.0, 4.0]
    assert m.waiting == [2, 3, 1, 0]
    assert m.running == [1, 4, 3, 1]
    assert m.kv_used_tokens == [32.0, 48.0, 16.0, 16.0]
    assert m.tokens == [10.0, 7.0, 5.0, 1.0]


def test_series_covers_both_pools_and_the_report_works():
    inp, out = _lengths(2)
    res = _run(make_stream(inp, out, rate_rps=30.0, seed=2), 2, 2)
    s = res.series
    assert sum(s.tokens) == pytest.approx(inp.sum() + (out - 1).sum())  # no preemption at this load
    assert s.waiting[-1] == s.running[-1] == 0 and s.kv_used_tokens[-1] == 0.0
    assert max(s.kv_used_tokens) <= res.kv_tokens and res.preemptions.sum() == 0
    rep = stream_report(res, warmup_fraction=0.1)
    assert rep.requests == 360 and np.isfinite(rep.metrics["ttft_ms"].mean)


def test_bad_input_is_refused_with_the_field_named():
    inp, out = _lengths(0, 10)
    stream = make_stream(inp, out, rate_rps=5.0)
    with pytest.raises(InvalidRequestError, match="prefill_workers"):
        _run(stream, 0, 1)
    with pytest.raises(InvalidRequestError, match="decode_workers"):
        _run(stream, 1, 0)
    with pytest.raises(InvalidRequestError, match="arrival_s"):
        _run(make_stream(inp, out, concurrency=4), 1, 1)
    conf = config("8b-h100-vllm", 2048, 256)
    with pytest.raises(InvalidRequestError, match="transfer_s"):
        simulate_disagg(stream, conf.engine, conf.step_table, 1, conf.engine, conf.step_table, 1, np.full(9, 0.01))
    with pytest.raises(InvalidRequestError, match="transfer_s"):
        simulate_disagg(stream, conf.engine, conf.step_table, 1, conf.engine, conf.step_table, 1, np.full(10, -1.0))


@pytest.mark.parametrize("policy", ["recompute", "stall", "reserve"])
def test_a_decode_pool_short_of_kv_still_finishes_every_request(policy):
    conf = config("8b-a100-vllm", 2048, 256)
    inp, out = _lengths(4, 200)
    tight = dataclasses.replace(conf.engine, kv_tokens=8192, policy=type(conf.engine.policy)(policy))
    stream = make_stream(inp, out, arrival_s=np.sort(np.random.default_rng(4).uniform(0, 2.0, 200)))
    run = run_disagg(stream, Pool(conf.engine, conf.step_table, 1), Pool(tight, conf.step_table, 1), np.full(200, 0.002))
    res = run.result
    assert np.isfinite(res.first_token_s).all() and np.isfinite(res.finish_s).all()
    assert (res.first_token_s > run.ready_s - 1e-12).all() and (res.finish_s >= res.first_token_s).all()
    assert (np.asarray(run.decode.series.kv_used_tokens) <= 8192).all()
    if policy != "stall":  # a stall with no decode able to grow falls back to recompute (engine.py)
        assert (res.preemptions.sum() > 0) == (policy == "recompute")
