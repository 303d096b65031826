"""The scheduler loop of ``engine.py``, compiled (numba): the same steps, in the same order,
over plain arrays (their layout: ``kernel_queues.py``).

A step here costs about a microsecond, against 100-200 µs for the numpy version it replaced
(dozens of small array operations a step, ~5,000 steps a simulated run of 2,000 requests).
``engine.py`` keeps the interface (checks, the clients' start, results) and the scheduler's
description. ``run`` returns ``DONE`` when every request has finished, ``YIELD`` when a
buffer (time series, progress counts) is full: the caller empties or grows it and calls
again, the state being all in the arrays; ``STALLED`` when requests wait and nothing can run.
Floating-point operations repeat the numpy code's, in its order (``interp.py``), so runs give
the same times as before (tests/test_kernel.py checks against a small reference loop).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from guideopt.simulator.interp import decode_run_s, internal, mixed_s, numpy_sum
from guideopt.simulator.kernel_queues import (
    C_BLOCK,
    C_BUDGET,
    C_CACHED,
    C_CAP,
    C_CHUNKED,
    C_POLICY,
    P_RESERVE,
    P_STALL,
    R_BLOCKS,
    R_CACHE,
    R_DONE,
    R_GEN,
    R_NEED,
    R_OUT,
    S_EVENTS,
    S_FINISHED,
    S_FREE,
    S_ISSUED,
    S_JUST_PREEMPTED,
    S_PENDING,
    S_RECORDS,
    S_RUNNING,
    S_STEPS,
    S_WAIT_HEAD,
    S_WAITING,
    T_ARRIVAL,
    T_FIRST,
    admit,
    complete,
    preempt_last,
    record,
    steps_within_free_blocks,
)

DONE, YIELD, STALLED = range(3)
PROGRESS_EVERY_STEPS = 2000  # single steps between progress counts (each decode run adds one too)
# Rows of the per-call scratch: decodes, their block growth and cache, prompts, their chunks
# and prefilled tokens, requests finishing in the step.
DEC, GROW, CACHE, PF, CHUNK, PF_DONE, FIN = range(7)
SCRATCH_ROWS = 7


@njit(cache=True)
def run(req, times, order, waiting, running, state, clock, series, events, conf, kv_keep, table):
    """Advance the simulation until it ends or a buffer has no room for one more step."""
    n = order.size
    scratch = np.empty((SCRATCH_ROWS, max(conf[C_CAP], 1)), np.int64)
    pairs = np.empty(max(conf[C_CAP], 1))
    t = clock[0]
    code = DONE
    while True:
        if state[S_RECORDS] >= series.shape[1] or state[S_EVENTS] >= events.size:
            code = YIELD
            break
        while state[S_PENDING] < state[S_ISSUED] and times[T_ARRIVAL, order[state[S_PENDING]]] <= t:
            waiting[(state[S_WAIT_HEAD] + state[S_WAITING]) % n] = order[state[S_PENDING]]
            state[S_WAITING] += 1
            state[S_PENDING] += 1
        if not state[S_JUST_PREEMPTED]:  # a preempted request is not readmitted in the step that evicted it
            admit(req, times, waiting, running, state, conf, t)
        state[S_JUST_PREEMPTED] = 0
        if state[S_RUNNING] == 0:
            if state[S_PENDING] == state[S_ISSUED]:
                code = STALLED if state[S_WAITING] else DONE
                break
            t = times[T_ARRIVAL, order[state[S_PENDING]]]
            continue
        any_pf = _any_prefill(req, running, state)
        if not any_pf:
            t_end, k = _decode_run(req, times, order, running, state, series, conf, kv_keep, table, t, scratch)
            if k:
                t = t_end
                state[S_STEPS] += k
                _count(state, events)
                continue
        t = _one_step(req, times, waiting, running, state, series, conf, kv_keep, table, t, any_pf, scratch, pairs)
        state[S_STEPS] += 1
        if state[S_STEPS] % PROGRESS_EVERY_STEPS == 0:
            _count(state, events)
    clock[0] = t
    return code


@internal
def _any_prefill(req, running, state):
    for j in range(state[S_RUNNING]):  # noqa: SIM110 (a loop compiles; any() over a generator does not)
        if req[R_DONE, running[j]] < req[R_NEED, running[j]]:
            return True
    return False


@internal
def _count(state, events):
    events[state[S_EVENTS]] = state[S_FINISHED]
    state[S_EVENTS] += 1


@internal
def _one_step(req, times, waiting, running, state, series, conf, kv_keep, table, t, any_pf, scratch, pairs):
    """One step: the decodes (all of them, those of a chunked engine beside prompts, or none
    while a prefill-first engine prefills), their KV growth under the policy, the prompt
    chunks, the step's time, tokens, completions."""
    n_dec = _decodes(req, running, state, conf, any_pf, scratch)
    grown, kv = 0, 0
    if n_dec:
        for j in range(n_dec):
            grown += scratch[GROW, j]
        if grown > state[S_FREE]:
            kept, grown = _within_free(state, scratch, n_dec)
            if conf[C_POLICY] == P_STALL and (kept or any_pf):
                n_dec = kept
            else:  # recompute (reserve never gets here; a stall with nothing left to run falls back to it)
                preempt_last(req, waiting, running, state)
                return t
        for j in range(n_dec):
            kv += scratch[CACHE, j]
        kv += n_dec
    n_pf, tokens = _prompt_chunks(req, running, state, conf, any_pf, n_dec, scratch, pairs) if any_pf else (0, 0)
    table_kv, decode_values, axes, values = table
    t += mixed_s(table_kv, decode_values, axes, values, n_dec, float(tokens), float(kv) * kv_keep, numpy_sum(pairs, n_pf), n_pf)
    fin = scratch[FIN]
    done = np.int64(0)  # not a literal: one compiled ``complete``
    cached = conf[C_CACHED] != 0
    state[S_FREE] -= grown
    for j in range(n_dec):
        r = scratch[DEC, j]
        req[R_BLOCKS, r] += scratch[GROW, j]
        req[R_CACHE, r] = scratch[CACHE, j] + 1
        req[R_GEN, r] += 1
        if cached and math.isnan(times[T_FIRST, r]):  # the second token, the first reaching the client
            times[T_FIRST, r] = t
        if req[R_GEN, r] >= req[R_OUT, r]:
            fin[done] = r
            done += 1
    for j in range(n_pf):
        r = scratch[PF, j]
        req[R_DONE, r] = scratch[PF_DONE, j] + scratch[CHUNK, j]
        req[R_CACHE, r] += scratch[CHUNK, j]
        if req[R_DONE, r] >= req[R_NEED, r]:  # the prompt is in: its next token
            if req[R_GEN, r] == 0 or (cached and math.isnan(times[T_FIRST, r])):  # (a decode recomputed before its token 2)
                times[T_FIRST, r] = t
            req[R_GEN, r] += 1
            if req[R_GEN, r] >= req[R_OUT, r]:
                fin[done] = r
                done += 1
    if done:
        complete(req, times, running, state, conf, fin, done, t)
    record(state, series, conf, t, float(tokens) + n_dec)
    return t


@internal
def _decodes(req, running, state, conf, any_pf, scratch):
    """The step's decodes into scratch (ids, blocks they would grow, cached tokens); their count."""
    if any_pf and not conf[C_CHUNKED]:
        return 0
    b = conf[C_BLOCK]
    n_dec = 0
    for j in range(state[S_RUNNING]):
        r = running[j]
        if req[R_DONE, r] >= req[R_NEED, r]:
            scratch[DEC, n_dec] = r
            scratch[CACHE, n_dec] = req[R_CACHE, r]
            scratch[GROW, n_dec] = max((req[R_CACHE, r] + b) // b - req[R_BLOCKS, r], 0)
            n_dec += 1
    return n_dec


@internal
def _within_free(state, scratch, n_dec):
    """The decodes whose growth, summed in batch order, fits the free blocks (a prefix): their
    count and blocks."""
    kept, total = 0, 0
    while kept < n_dec and total + scratch[GROW, kept] <= state[S_FREE]:
        total += scratch[GROW, kept]
        kept += 1
    return kept, total


@internal
def _prompt_chunks(req, running, state, conf, any_pf, n_dec, scratch, pairs):
    """The prompts this step advances (ids, chunks, tokens prefilled before) into scratch, their
    attention pairs into ``pairs``: chunked engines fill the budget left by the decodes in
    admission order; prefill-first engines take whole prompts while they fit (the first one
    always, even beyond the budget). Returns the count and the chunks' tokens."""
    chunked = conf[C_CHUNKED] != 0
    room = conf[C_BUDGET] - n_dec if chunked else conf[C_BUDGET]
    before, count, tokens, first = 0, 0, 0, True
    for j in range(state[S_RUNNING]):
        r = running[j]
        done = req[R_DONE, r]
        left = req[R_NEED, r] - done
        if left <= 0:
            continue
        if chunked:
            c = min(max(room - before, 0), left)
        else:
            c = left if first or before + left <= room else 0
        before += left
        first = False
        if c > 0:
            scratch[PF, count], scratch[CHUNK, count], scratch[PF_DONE, count] = r, c, done
            pairs[count] = float(c) * (float(done) + (float(c) + 1.0) / 2.0)  # costs.step.prefill_pairs
            count += 1
            tokens += c
    return count, tokens


@internal
def _decode_run(req, times, order, running, state, series, conf, kv_keep, table, t, scratch):
    """Advance a run of identical-batch decode steps at once (one record): as many as every
    request still decodes, the free blocks allow and no arrival would join the batch. Returns
    the run's end and its steps (0: it would be one step)."""
    d = state[S_RUNNING]
    k = req[R_OUT, running[0]] - req[R_GEN, running[0]]
    kv0 = 0
    for j in range(d):
        r = running[j]
        k = min(k, req[R_OUT, r] - req[R_GEN, r])
        kv0 += req[R_CACHE, r]
    if conf[C_POLICY] != P_RESERVE:
        k = min(k, steps_within_free_blocks(req, running, state, conf, k))
    if k < 2:
        return t, 0
    joins = state[S_WAITING] == 0 and d < conf[C_CAP] and state[S_PENDING] < state[S_ISSUED]
    until = times[T_ARRIVAL, order[state[S_PENDING]]] - t if joins else math.inf
    kv_axis, decode_values, _axes, _values = table
    row = decode_values[d]
    end, first_end = 0.0, 0.0
    for j in range(k):  # numpy: cumsum of the steps; stop at the first that starts at or after an arrival
        tau = decode_run_s(kv_axis, row, (float(kv0 + d) + float(d * j)) * kv_keep)
        step_end = tau if j == 0 else end + tau
        if step_end - tau >= until:
            k = j
            break
        end = step_end
        if j == 0:
            first_end = end
    if k < 2:
        return t, 0
    return _finish_run(req, times, running, state, series, conf, t, k, end, first_end, scratch), k


@internal
def _finish_run(req, times, running, state, series, conf, t, k, end, first_end, scratch):
    """Apply k decode steps ending ``end`` after ``t`` to the running batch."""
    d = state[S_RUNNING]
    cached = conf[C_CACHED] != 0
    b = conf[C_BLOCK]
    fin = scratch[FIN]
    done = np.int64(0)  # not a literal: one compiled ``complete``
    for j in range(d):
        r = running[j]
        if cached and math.isnan(times[T_FIRST, r]):
            times[T_FIRST, r] = t + first_end
        req[R_GEN, r] += k
        req[R_CACHE, r] += k
        if conf[C_POLICY] != P_RESERVE:
            held = req[R_BLOCKS, r]
            blocks = max((req[R_CACHE, r] + b - 1) // b, held)
            state[S_FREE] -= blocks - held
            req[R_BLOCKS, r] = blocks
        if req[R_GEN, r] >= req[R_OUT, r]:
            fin[done] = r
            done += 1
    t += end
    if done:
        complete(req, times, running, state, conf, fin, done, t)
    record(state, series, conf, t, float(d * k))
    return t
