"""The simulator's scheduler loop as it was written in numpy before the compiled kernel
(issue 24): a slow reference that tests/test_kernel.py runs beside ``engine.simulate``.

It keeps the old loop's order of floating-point operations (numpy sums and cumulative sums,
``StepTable.step_s`` and ``StepTable.decode_s``), so the two agree bit for bit: any change of
the scheduler's behaviour has to be made in both."""

from __future__ import annotations

import math
from collections import deque

import numpy as np

from guideopt.costs.step import prefill_pairs
from guideopt.simulator.clients import client_starts_s
from guideopt.simulator.engine import EngineSpec, RequestStream, Series, SimResult
from guideopt.simulator.policy import KvPolicy
from guideopt.simulator.table import StepTable

PROGRESS_EVERY_STEPS = 2000


class _State:
    def __init__(self, stream: RequestStream, spec: EngineSpec, starts_s: np.ndarray | None) -> None:
        n = stream.input_len.size
        self.spec = spec
        self.inp = stream.input_len.astype(np.int64)
        self.out = stream.output_len.astype(np.int64)
        self.need = self.inp.copy()
        self.done = np.zeros(n, np.int64)
        self.gen = np.zeros(n, np.int64)
        self.cache = np.zeros(n, np.int64)
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
        self.series = Series()
        if stream.arrival_s is not None:
            self.arrival[:] = stream.arrival_s
            self.pending.extend(np.argsort(stream.arrival_s, kind="stable").tolist())
            self.issued = n
        elif starts_s is not None:
            self.arrival[: starts_s.size] = starts_s
            self.pending.extend(range(starts_s.size))
            self.issued = starts_s.size
        if spec.prompt_cached:
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
            if math.isnan(self.admitted[r]):
                self.admitted[r] = t

    def preempt_last(self) -> None:
        r = self.running.pop()
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
        for r in ids:
            self.finish[r] = t
            self.running.remove(r)
            self.free += int(self.blocks[r])
            self.blocks[r] = 0
            if self.issued < self.inp.size and math.isnan(self.arrival[self.issued]):
                self.arrival[self.issued] = t
                self.pending.append(self.issued)
                self.issued += 1

    def record(self, t: float, tokens: float) -> None:
        s = self.series
        s.t_s.append(t)
        s.waiting.append(len(self.waiting))
        s.running.append(len(self.running))
        s.kv_used_tokens.append(float((self.total_blocks - self.free) * self.spec.block_tokens))
        s.tokens.append(tokens)


def simulate_reference(stream: RequestStream, spec: EngineSpec, table: StepTable, progress: list[int]) -> SimResult:
    st = _State(stream, spec, client_starts_s(stream, spec, table))
    t = 0.0
    steps = 0
    while True:
        while st.pending and st.arrival[st.pending[0]] <= t:
            st.waiting.append(st.pending.popleft())
        if not st.just_preempted:
            st.admit(t)
        st.just_preempted = False
        if not st.running:
            if not st.pending:
                assert not st.waiting
                break
            t = float(st.arrival[st.pending[0]])
            continue
        run = np.array(st.running, np.int64)
        in_prefill = st.done[run] < st.need[run]
        any_pf = bool(in_prefill.any())
        if not any_pf:
            moved = _decode_run(st, run, t, table)
            if moved is not None:
                t, k = moved
                steps += k
                progress.append(st.finished)
                continue
        t = _one_step(st, run, in_prefill, any_pf, t, table)
        steps += 1
        if steps % PROGRESS_EVERY_STEPS == 0:
            progress.append(st.finished)
    return SimResult(st.arrival, st.admitted, st.first, st.finish, st.inp, st.out, st.preempt, steps, spec.kv_tokens, st.series)


def _one_step(st: _State, run: np.ndarray, in_prefill: np.ndarray, any_pf: bool, t: float, table: StepTable) -> float:
    spec = st.spec
    dec = run if not any_pf else run[~in_prefill] if spec.chunked else run[:0]
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
            else:
                st.preempt_last()
                return t
        kv = int(cache.sum()) + n_dec
    else:
        grown = kv = 0
    pf, chunk, pairs = _prompt_chunks(st, run[in_prefill] if any_pf else run[:0], n_dec)
    p = float(chunk.sum())
    t += table.step_s(n_dec, p, float(kv * spec.kv_keep), pairs, int(pf.size))
    finished: list[int] = []
    if n_dec:
        st.free -= grown
        st.blocks[dec] += grow
        st.cache[dec] = cache + 1
        gen = st.gen[dec] + 1
        st.gen[dec] = gen
        if spec.prompt_cached:
            _mark_token_two(st, dec, t)
        finished = dec[gen >= st.out[dec]].tolist()
    if pf.size:
        done = st.done[pf] + chunk
        st.done[pf] = done
        st.cache[pf] += chunk
        ready = pf[done >= st.need[pf]]
        st.first[ready[st.gen[ready] == 0]] = t
        st.gen[ready] += 1
        if spec.prompt_cached:
            _mark_token_two(st, ready, t)
        finished += ready[st.gen[ready] >= st.out[ready]].tolist()
    if finished:
        st.complete(finished, t)
    st.record(t, p + n_dec)
    return t


def _prompt_chunks(st: _State, pf: np.ndarray, decodes: int) -> tuple[np.ndarray, np.ndarray, float]:
    spec = st.spec
    if pf.size == 0:
        return pf, pf, 0.0
    room = spec.token_budget - decodes if spec.chunked else spec.token_budget
    done = st.done[pf]
    left = st.need[pf] - done
    if spec.chunked:
        chunk = np.minimum(np.maximum(room - (np.cumsum(left) - left), 0), left)
    else:
        fits = np.cumsum(left) <= room
        fits[0] = True
        chunk = np.where(fits, left, 0)
    busy = chunk > 0
    pf, chunk, done = pf[busy], chunk[busy], done[busy]
    return pf, chunk, float(prefill_pairs(chunk, done).sum())


def _decode_run(st: _State, run: np.ndarray, t: float, table: StepTable) -> tuple[float, int] | None:
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
    if not st.waiting and d < spec.running_cap and st.pending:
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
    b = st.spec.block_tokens
    if run.size * (k // b + 2) <= st.free:
        return k
    cache, held = st.cache[run], st.blocks[run]

    def need(j: int) -> int:
        return int(np.maximum(-(-(cache + j) // b) - held, 0).sum()) if j else 0

    lo, hi = 0, k
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if need(mid) <= st.free:
            lo = mid
        else:
            hi = mid - 1
    return lo


def _mark_token_two(st: _State, ids: np.ndarray, t: float) -> None:
    new = ids[np.isnan(st.first[ids])]
    st.first[new] = t
