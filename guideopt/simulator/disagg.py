"""Disaggregated serving: a pool of prefill workers, a KV transfer, a pool of decode workers.

Each worker is one replica of ``engine.simulate`` on the same step table as an aggregated
replica; the pools run one after the other, because nothing flows back from decode to
prefill in an open-loop stream:

1. prefill: arrivals go to the ``prefill_workers`` round-robin in arrival order (ties in
   stream order); each worker runs its requests with one output token, so a request's
   prefill ends at that worker's first-token time. Round-robin is the default of NVIDIA
   Dynamo's frontend (``--router-mode round-robin``, ai-dynamo 1.6.1); SGLang's router
   defaults to ``cache_aware`` (sglang-router 0.3.2), which without shared prefixes
   balances by load instead: an ASSUMPTION for SGLang deployments.
2. transfer: the request is ready on the decode side ``transfer_s[i]`` after its prefill
   ends. The prefill worker frees its blocks when the prompt is done (it does not hold them
   until the transfer completes).
3. decode: ready requests go to the ``decode_workers`` round-robin in order of readiness;
   each worker runs with ``EngineSpec.prompt_cached``: admission allocates the prompt's
   blocks, no prefill is computed, and the first decode step emits token 2.

Per request (the same ``SimResult`` as an aggregated replica, so ``report.per_request_ms``
and ``report.stream_report`` apply unchanged):

* first token = completion of the first decode step: the first token, made by the prefill
  worker, reaches the client from the decode side with the second (issue 23's TTFT =
  prefill queueing + prefill + transfer + the first decode step). ``per_request_ms`` then
  gives TPOT = (finish − first token) / (O − 1), what a benchmark client measures when
  tokens 1 and 2 arrive together;
* finish from the decode worker; queueing (``admitted_s − arrival_s``) = the wait for a
  prefill worker plus the wait for a decode slot;
* a request with one output token needs no decode step: its token returns once the KV
  handover is done (prefill end + transfer), with no decode-pool work;
* steps and preemptions are summed over both pools; the time series sums every worker of
  both pools (waiting, running, KV in use, tokens), against both pools' KV capacity.

Closed-loop streams (clients waiting for their previous answer) are refused: their
arrivals depend on decode finishes, which the pool-by-pool order cannot feed back.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from guideopt.errors import InvalidRequestError
from guideopt.model.limits import MAX_SIMULATED_REQUESTS
from guideopt.simulator.engine import EngineSpec, RequestStream, Series, SimResult, simulate
from guideopt.simulator.table import StepTable

SERIES_COUNTS = ("waiting", "running")  # integer series (summed over workers as step functions)


@dataclass(frozen=True)
class Pool:
    """One role's workers: their engine, step table and count."""

    spec: EngineSpec
    table: StepTable
    workers: int


@dataclass
class DisaggRun:
    """A disaggregated simulation: the deployment per request, and each pool per request
    (workers merged; the decode pool's rows are NaN for one-token requests)."""

    result: SimResult
    prefill: SimResult
    decode: SimResult
    ready_s: np.ndarray  # prefill end + transfer: arrival on the decode side


def simulate_disagg(
    stream: RequestStream,
    prefill: EngineSpec,
    prefill_table: StepTable,
    prefill_workers: int,
    decode: EngineSpec,
    decode_table: StepTable,
    decode_workers: int,
    transfer_s: np.ndarray,
    progress: Callable[[int], None] | None = None,
) -> SimResult:
    """Run every request of ``stream`` through x prefill workers, the KV transfer and y
    decode workers; per-request times as ``simulate`` gives them for one replica."""
    pools = Pool(prefill, prefill_table, prefill_workers), Pool(decode, decode_table, decode_workers)
    return run_disagg(stream, *pools, transfer_s, progress).result


def run_disagg(
    stream: RequestStream, prefill: Pool, decode: Pool, transfer_s: np.ndarray, progress: Callable[[int], None] | None = None
) -> DisaggRun:
    """``simulate_disagg`` with each pool's own view kept (utilisation, per-role queues)."""
    transfer = _checked(stream, prefill, decode, transfer_s)
    assert stream.arrival_s is not None  # _checked refuses closed loops
    arrival = np.asarray(stream.arrival_s, dtype=float)
    inp = stream.input_len.astype(np.int64)
    out = stream.output_len.astype(np.int64)
    n = inp.size
    every = np.arange(n)
    tally = _Progress(progress)
    pre_spec = dataclasses.replace(prefill.spec, prompt_cached=False)
    pre = _run_pool(every, inp, np.ones(n, np.int64), arrival, Pool(pre_spec, prefill.table, prefill.workers), tally)
    ready = pre.first_token_s + transfer
    decoding = every[out >= 2]
    tally.add(n - decoding.size)  # one-token requests are done after prefill
    dec_spec = dataclasses.replace(decode.spec, prompt_cached=True)
    dec = _run_pool(decoding, inp, out, ready, Pool(dec_spec, decode.table, decode.workers), tally)
    return DisaggRun(_combine(arrival, inp, out, pre, dec, ready), pre, dec, ready)


def _checked(stream: RequestStream, prefill: Pool, decode: Pool, transfer_s: np.ndarray) -> np.ndarray:
    """The per-request transfer times, after refusing what the two pools cannot run."""
    for name, pool in (("prefill_workers", prefill), ("decode_workers", decode)):
        if not isinstance(pool.workers, (int, np.integer)) or pool.workers < 1:
            raise InvalidRequestError(f"{name}: {pool.workers} workers (a disaggregated group needs at least 1 of each role)")
    if stream.arrival_s is None:
        raise InvalidRequestError(
            "arrival_s: a disaggregated simulation needs open-loop arrivals (a rate or a trace's times), not closed-loop concurrency"
        )
    n = stream.input_len.size
    if n > MAX_SIMULATED_REQUESTS:
        raise InvalidRequestError(f"num_requests: {n} requests, more than {MAX_SIMULATED_REQUESTS} (simulate fewer)")
    transfer = np.asarray(transfer_s, dtype=float)
    if transfer.shape != (n,) or not np.isfinite(transfer).all() or (transfer < 0).any():
        raise InvalidRequestError(f"transfer_s: need {n} finite times >= 0 seconds, one per request (got shape {transfer.shape})")
    return transfer


class _Progress:
    """Completions of either stage, halved: reaches the request count when all are done."""

    def __init__(self, callback: Callable[[int], None] | None) -> None:
        self.callback = callback
        self.done = 0

    def add(self, stages: int) -> None:
        self.done += stages
        self.report(0)

    def report(self, extra: int) -> None:
        if self.callback is not None:
            self.callback((self.done + extra) // 2)


def round_robin(ids: np.ndarray, key_s: np.ndarray, workers: int) -> list[np.ndarray]:
    """``ids`` ordered by ``key_s`` (ties in id order), dealt to the workers in turn; one
    array per worker that gets requests."""
    order = ids[np.argsort(key_s[ids], kind="stable")]
    return [order[w::workers] for w in range(min(workers, order.size))]


def _run_pool(ids: np.ndarray, inp: np.ndarray, out: np.ndarray, arrival_s: np.ndarray, pool: Pool, tally: _Progress) -> SimResult:
    """Simulate each worker on its share of ``ids``; the pool's result indexed by request."""
    n = inp.size
    nan = np.full(n, np.nan)
    res = SimResult(
        nan, nan.copy(), nan.copy(), nan.copy(), inp, out, np.zeros(n, np.int64), 0, pool.spec.kv_tokens * pool.workers, Series()
    )
    res.arrival_s[ids] = arrival_s[ids]
    parts = []
    for share in round_robin(ids, arrival_s, pool.workers):
        sub = RequestStream(inp[share].astype(float), out[share].astype(float), arrival_s[share])
        one = simulate(sub, pool.spec, pool.table, tally.report if tally.callback else None)
        tally.add(share.size)
        res.admitted_s[share] = one.admitted_s
        res.first_token_s[share] = one.first_token_s
        res.finish_s[share] = one.finish_s
        res.preemptions[share] = one.preemptions
        res.path_s = one.path_s
        res.steps += one.steps
        parts.append(one.series)
    res.series = merge_series(parts)
    return res


def _combine(arrival: np.ndarray, inp: np.ndarray, out: np.ndarray, pre: SimResult, dec: SimResult, ready: np.ndarray) -> SimResult:
    """The deployment's per-request times from the two pools'."""
    decoded = out >= 2
    first = np.where(decoded, dec.first_token_s, ready)
    finish = np.where(decoded, dec.finish_s, ready)
    waits_s = (pre.admitted_s - arrival - pre.path_s) + np.where(decoded, dec.admitted_s - ready, 0.0)
    return SimResult(
        arrival_s=arrival.copy(),
        admitted_s=arrival + waits_s,
        first_token_s=first,
        finish_s=finish,
        input_len=inp,
        output_len=out,
        preemptions=pre.preemptions + dec.preemptions,
        steps=pre.steps + dec.steps,
        kv_tokens=pre.kv_tokens + dec.kv_tokens,
        series=merge_series([pre.series, dec.series]),
    )


def merge_series(parts: list[Series]) -> Series:
    """Sum workers' series: each is a step function from 0 (before its first record), so the
    sum changes by each worker's own change at each of its records, in time order (stable:
    simultaneous records in worker order). ``tokens`` stays per record (its total is kept)."""
    if not parts:
        return Series()
    t_s = np.concatenate([np.asarray(p.t_s, dtype=float) for p in parts])
    order = np.argsort(t_s, kind="stable")
    merged = Series(t_s=t_s[order].tolist())
    for name in (*SERIES_COUNTS, "kv_used_tokens"):
        steps = np.concatenate([np.diff(np.asarray(getattr(p, name), dtype=float), prepend=0.0) for p in parts])
        total = np.cumsum(steps[order])
        setattr(merged, name, np.rint(total).astype(int).tolist() if name in SERIES_COUNTS else total.tolist())
    merged.tokens = np.concatenate([np.asarray(p.tokens, dtype=float) for p in parts])[order].tolist()
    return merged
