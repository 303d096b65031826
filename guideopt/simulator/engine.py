"""The scheduler loop: admission, chunked or prefill-first steps, KV blocks, preemption.

One replica, requests in FCFS order. Each step:

1. arrivals up to the step's start join the waiting queue;
2. admission: the head of the queue enters while fewer than ``running_cap`` requests run
   and the KV cache has blocks for its prompt (``reserve`` engines: prompt + output);
3. the batch: chunked engines take every decode (one token each) and fill the rest of the
   token budget with prompt chunks in admission order; prefill-first engines run whole
   prompts alone while any wait, decodes otherwise;
4. KV growth: a decode crossing a block boundary needs a free block; when none is left
   the engine's policy applies (``policy.py``: recompute, stall; reserve never runs out);
5. the step's time from the step table; prompts that complete emit their first token,
   decodes one token each; finished requests free their blocks.

Runs of pure decode steps with nothing to change the batch (no prompt in flight, no admissible
arrival, no completion, enough free blocks) are advanced in one vectorised move (one table lookup).
A closed loop's clients send their first requests when ``clients.py`` says.

``EngineSpec.prompt_cached`` (off by default) models a disaggregated decode worker:
requests arrive with their prompt already in the KV cache and their first token already
generated (by a prefill worker). Admission allocates their prompt blocks as usual, no
prefill is computed, and their first decode step emits token 2; ``first_token_s`` is then
the time of that step (the first token reaches the client with the second).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from guideopt.costs.step import prefill_pairs
from guideopt.errors import InvalidRequestError
from guideopt.simulator.clients import client_starts_s
from guideopt.simulator.policy import KvPolicy
from guideopt.simulator.table import StepTable


@dataclass(frozen=True)
class EngineSpec:
    running_cap: int  # max_num_seqs / max_running_requests / max_batch_size / max_ragged_sequence_count
    token_budget: int  # max_num_batched_tokens / chunked_prefill_size / max_num_tokens / max_ragged_batch_size
    chunked: bool
    kv_tokens: int  # KV-cache capacity of the replica
    block_tokens: int
    policy: KvPolicy
    kv_keep: float = 1.0
    prompt_cached: bool = False  # requests arrive with prompt KV and first token (disaggregated decode)


@dataclass(frozen=True)
class RequestStream:
    input_len: np.ndarray
    output_len: np.ndarray
    arrival_s: np.ndarray | None  # open loop (or a replayed trace); None: closed loop
    concurrency: int | None = None
    together: bool = False  # closed loop: every client's first request at t = 0 (a benchmark's start); else spread (clients.py)


@dataclass
class Series:
    t_s: list[float] = field(default_factory=list)
    waiting: list[int] = field(default_factory=list)
    running: list[int] = field(default_factory=list)
    kv_used_tokens: list[float] = field(default_factory=list)
    tokens: list[float] = field(default_factory=list)  # tokens processed in the interval ending at t_s


@dataclass
class SimResult:
    arrival_s: np.ndarray
    admitted_s: np.ndarray
    first_token_s: np.ndarray
    finish_s: np.ndarray
    input_len: np.ndarray
    output_len: np.ndarray
    preemptions: np.ndarray
    steps: int
    kv_tokens: int
    series: Series


class _State:
    def __init__(self, stream: RequestStream, spec: EngineSpec, starts_s: np.ndarray | None) -> None:
        n = stream.input_len.size
        self.spec = spec
        self.inp = stream.input_len.astype(np.int64)
        self.out = stream.output_len.astype(np.int64)
        self.need = self.inp.copy()  # prompt tokens to (re)compute
        self.done = np.zeros(n, np.int64)
        self.gen = np.zeros(n, np.int64)
        self.cache = np.zeros(n, np.int64)  # tokens held in the KV cache
        self.blocks = np.zeros(n, np.int64)
        self.preempt = np.zeros(n, np.int64)
        self.arrival = np.full(n, np.nan)
        self.admitted = np.full(n, np.nan)
        self.first = np.full(n, np.nan)
        self.finish = np.full(n, np.nan)
        self.total_blocks = spec.kv_tokens // spec.block_tokens
        self.free = self.total_blocks
        self.running: list[int] = []
        self.waiting: deque[int] = deque()
        self.pending: deque[int] = deque()
        self.issued = 0
        self.finished = 0
        self.just_preempted = False
        self.run_arr: np.ndarray | None = None  # ``running`` as an array; None when it changed
        self.series = Series()
        if stream.arrival_s is not None:
            self.arrival[:] = stream.arrival_s
            self.pending.extend(np.argsort(stream.arrival_s, kind="stable").tolist())
            self.issued = n
        elif starts_s is not None:
            self.arrival[: starts_s.size] = starts_s  # closed loop: the clients' first requests (``clients.py``)
            self.pending.extend(range(starts_s.size))
            self.issued = starts_s.size
        if spec.prompt_cached:  # the state a prompt leaves behind when its prefill completes
            self.done[:] = self.need
            self.cache[:] = self.inp
            self.gen[:] = 1

    def blocks_for(self, tokens: int) -> int:
        return -(-int(tokens) // self.spec.block_tokens)

    def admit(self, t: float) -> None:
        spec = self.spec
        while self.waiting and len(self.running) < spec.running_cap:
            r = self.waiting[0]
            tokens = self.inp[r] + self.out[r] if spec.policy is KvPolicy.RESERVE else self.need[r]
            want = max(self.blocks_for(tokens) - int(self.blocks[r]), 0)
            if want > self.free:
                return
            self.waiting.popleft()
            self.free -= want
            self.blocks[r] += want
            self.running.append(r)
            self.run_arr = None
            if math.isnan(self.admitted[r]):
                self.admitted[r] = t

    def preempt_last(self) -> None:
        r = self.running.pop()
        self.run_arr = None
        self.free += int(self.blocks[r])
        self.blocks[r] = 0
        self.cache[r] = 0
        self.done[r] = 0
        self.need[r] = self.inp[r] + self.gen[r]
        self.preempt[r] += 1
        self.waiting.appendleft(r)
        self.just_preempted = True

    def complete(self, ids: list[int], t: float) -> None:
        self.finished += len(ids)
        self.run_arr = None
        for r in ids:
            self.finish[r] = t
            self.running.remove(r)
            self.free += int(self.blocks[r])
            self.blocks[r] = 0
            if self.issued < self.inp.size and math.isnan(self.arrival[self.issued]):
                self.arrival[self.issued] = t  # closed loop: the client sends its next request
                self.pending.append(self.issued)
                self.issued += 1

    def record(self, t: float, tokens: float) -> None:
        s = self.series
        s.t_s.append(t)
        s.waiting.append(len(self.waiting))
        s.running.append(len(self.running))
        s.kv_used_tokens.append(float((self.total_blocks - self.free) * self.spec.block_tokens))
        s.tokens.append(tokens)


PROGRESS_EVERY_STEPS = 2000  # how often the progress callback hears the number of finished requests


def simulate(stream: RequestStream, spec: EngineSpec, table: StepTable, progress: Callable[[int], None] | None = None) -> SimResult:
    """Run every request of ``stream`` to completion on one replica."""
    too_long = (stream.input_len + stream.output_len) > spec.kv_tokens
    if too_long.any():
        i = int(np.argmax(too_long))
        raise InvalidRequestError(
            f"lengths: a request of {int(stream.input_len[i] + stream.output_len[i])} tokens does not fit the replica's KV cache of "
            f"{spec.kv_tokens} tokens (use more GPUs per replica or shorter requests)"
        )
    if spec.prompt_cached and (stream.output_len < 2).any():
        raise InvalidRequestError(
            "output_len: a request arriving with its prompt cached needs at least 2 output tokens (its first came with the prompt)"
        )
    st = _State(stream, spec, client_starts_s(stream, spec, table))
    t = 0.0
    steps = 0
    while True:
        while st.pending and st.arrival[st.pending[0]] <= t:
            st.waiting.append(st.pending.popleft())
        if not st.just_preempted:  # a preempted request is not readmitted in the step that evicted it
            st.admit(t)
        st.just_preempted = False
        if not st.running:
            if not st.pending:
                if st.waiting:  # nothing runs and the head cannot be admitted: cannot happen with the fit check
                    raise AssertionError("simulator stalled with requests waiting")
                break
            t = float(st.arrival[st.pending[0]])
            continue
        run = st.run_arr
        if run is None:
            run = st.run_arr = np.fromiter(st.running, np.int64, len(st.running))
        in_prefill = st.done[run] < st.need[run]
        any_pf = bool(in_prefill.any())
        if not any_pf:
            moved = _decode_run(st, run, t, table)
            if moved is not None:
                t, k = moved
                steps += k
                if progress is not None:
                    progress(st.finished)
                continue
        t = _one_step(st, run, in_prefill, any_pf, t, table)
        steps += 1
        if progress is not None and steps % PROGRESS_EVERY_STEPS == 0:
            progress(st.finished)
    return SimResult(st.arrival, st.admitted, st.first, st.finish, st.inp, st.out, st.preempt, steps, spec.kv_tokens, st.series)


def _one_step(st: _State, run: np.ndarray, in_prefill: np.ndarray, any_pf: bool, t: float, table: StepTable) -> float:
    spec = st.spec
    dec = run if not any_pf else run[~in_prefill] if spec.chunked else run[:0]
    # KV growth of the decodes; the policy decides when blocks run short.
    n_dec = int(dec.size)
    if n_dec:
        cache = st.cache[dec]
        grow = np.maximum((cache + spec.block_tokens) // spec.block_tokens - st.blocks[dec], 0)
        grown = int(grow.sum())
        if grown > st.free:
            keep = np.cumsum(grow) <= st.free
            if spec.policy is KvPolicy.STALL and (keep.any() or any_pf):
                dec, grow, cache = dec[keep], grow[keep], cache[keep]
                grown = int(grow.sum())
                n_dec = int(dec.size)
            else:  # recompute (reserve never gets here; a stall with nothing left to run falls back to it)
                st.preempt_last()
                return t
        kv = int(cache.sum()) + n_dec
    else:
        grown = kv = 0
    # The prompts: one (the common case) in Python scalars, several in arrays.
    pf_ids = run[in_prefill] if any_pf else run[:0]
    one = -1
    if pf_ids.size == 1:
        one = int(pf_ids[0])
        done1 = int(st.done[one])
        c = int(st.need[one]) - done1
        if spec.chunked:
            c = min(c, max(spec.token_budget - n_dec, 0))
        if c <= 0:
            one = -1
        p, pairs, n_pf = (float(c), c * (done1 + (c + 1) / 2.0), 1) if one >= 0 else (0.0, 0.0, 0)
        pf = chunk = pf_ids[:0]
    else:
        pf, chunk, pairs = _prompt_chunks(st, pf_ids, n_dec)
        p, n_pf = float(chunk.sum()), int(pf.size)
    tau = table.step_s(n_dec, p, float(kv * spec.kv_keep), pairs, n_pf)
    t += tau
    finished: list[int] = []
    if n_dec:
        st.free -= grown
        if grown:
            st.blocks[dec] += grow
        st.cache[dec] = cache + 1
        gen = st.gen[dec] + 1
        st.gen[dec] = gen
        if spec.prompt_cached:
            _mark_token_two(st, dec, t)
        fin = gen >= st.out[dec]
        if fin.any():
            finished = dec[fin].tolist()
    if one >= 0:
        done1 += c
        st.done[one] = done1
        st.cache[one] += c
        if done1 >= st.need[one]:
            g = int(st.gen[one])
            if g == 0:
                st.first[one] = t
            st.gen[one] = g + 1
            if spec.prompt_cached and math.isnan(st.first[one]):  # a decode recomputed after preemption before its token 2
                st.first[one] = t
            if g + 1 >= st.out[one]:
                finished.append(one)
    elif pf.size:
        done = st.done[pf] + chunk
        st.done[pf] = done
        st.cache[pf] += chunk
        ready = pf[done >= st.need[pf]]
        if ready.size:
            st.first[ready[st.gen[ready] == 0]] = t
            st.gen[ready] += 1
            if spec.prompt_cached:  # a decode recomputed after preemption before its token 2
                _mark_token_two(st, ready, t)
            finished += ready[st.gen[ready] >= st.out[ready]].tolist()
    if finished:
        st.complete(finished, t)
    st.record(t, p + n_dec)
    return t


def _prompt_chunks(st: _State, pf: np.ndarray, decodes: int) -> tuple[np.ndarray, np.ndarray, float]:
    """The prompts this step advances, their chunks, and the chunks' attention pairs."""
    spec = st.spec
    if pf.size == 0:
        return pf, pf, 0.0
    room = spec.token_budget - decodes if spec.chunked else spec.token_budget
    done = st.done[pf]
    left = st.need[pf] - done
    if pf.size == 1:
        c = int(left[0]) if not spec.chunked else min(int(left[0]), max(room, 0))
        if c <= 0:
            return pf[:0], pf[:0], 0.0
        return pf, np.array([c]), c * (int(done[0]) + (c + 1) / 2.0)  # prefill_pairs, scalar (hot path)
    if spec.chunked:
        chunk = np.minimum(np.maximum(room - (np.cumsum(left) - left), 0), left)
    else:
        fits = np.cumsum(left) <= room
        fits[0] = True  # a prompt longer than the budget still runs, alone
        chunk = np.where(fits, left, 0)
    busy = chunk > 0
    pf, chunk, done = pf[busy], chunk[busy], done[busy]
    return pf, chunk, float(prefill_pairs(chunk, done).sum())


def _decode_run(st: _State, run: np.ndarray, t: float, table: StepTable) -> tuple[float, int] | None:
    """Advance a run of identical-batch decode steps at once; None when it would be one step."""
    spec = st.spec
    gen = st.gen[run]
    left = st.out[run] - gen
    k = int(left.min())
    if spec.policy is not KvPolicy.RESERVE:
        k = min(k, _steps_within_free_blocks(st, run, k))
    if k < 2:
        return None
    d = run.size
    cache = st.cache[run]
    kv0 = float(cache.sum() + d)
    taus = table.decode_s(d, (kv0 + d * np.arange(k)) * spec.kv_keep)
    ends = np.cumsum(taus)
    if not st.waiting and d < spec.running_cap and st.pending:  # an arrival would join the batch
        k = min(k, max(int(np.searchsorted(ends - taus, st.arrival[st.pending[0]] - t, side="left")), 1))
        if k < 2:
            return None
    if spec.prompt_cached:
        _mark_token_two(st, run, t + float(ends[0]))
    t += float(ends[k - 1])
    st.gen[run] = gen + k
    cache = cache + k
    st.cache[run] = cache
    if spec.policy is not KvPolicy.RESERVE:
        held = st.blocks[run]
        blocks = np.maximum((cache + spec.block_tokens - 1) // spec.block_tokens, held)
        st.free -= int((blocks - held).sum())
        st.blocks[run] = blocks
    finished = left <= k
    if finished.any():
        st.complete(run[finished].tolist(), t)
    st.record(t, float(d * k))
    return t, k


def _steps_within_free_blocks(st: _State, run: np.ndarray, k: int) -> int:
    """Largest j ≤ k such that j more decode steps need at most the free blocks."""
    b = st.spec.block_tokens
    if run.size * (k // b + 2) <= st.free:  # every sequence may cross k/b + 1 boundaries at most
        return k

    cache, held = st.cache[run], st.blocks[run]

    def need(j: int) -> int:
        return int(np.maximum(-(-(cache + j) // b) - held, 0).sum()) if j else 0

    if need(k) <= st.free:
        return k
    lo, hi = 0, k
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if need(mid) <= st.free:
            lo = mid
        else:
            hi = mid - 1
    return lo


def _mark_token_two(st: _State, ids: np.ndarray, t: float) -> None:
    """``prompt_cached``: the first token time of requests emitting their second token now."""
    new = ids[np.isnan(st.first[ids])]
    st.first[new] = t
