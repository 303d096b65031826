"""The kernel's state (``kernel.py``): its layout, and the moves between queues.

Per request: int64 rows of ``req`` (``R_*``) and float64 rows of ``times`` (``T_*``). The
queues are index arrays: ``order`` (requests by arrival; ``order[pending head:issued]`` are
pending: open loop, every request sorted by arrival; closed loop, requests in index order,
issued as clients' answers finish), ``waiting`` (a ring of n: admission pops its head,
preemption pushes a request back in front) and ``running`` (admission order: completions
remove from anywhere, preemption takes the last). Scalars live in ``state`` (``S_*``), the
engine's knobs in ``conf`` (``C_*``).
"""

from __future__ import annotations

import math

from guideopt.simulator.interp import internal

R_INP, R_OUT, R_NEED, R_DONE, R_GEN, R_CACHE, R_BLOCKS, R_PREEMPT = range(8)
REQ_ROWS = 8
T_ARRIVAL, T_ADMITTED, T_FIRST, T_FINISH = range(4)
TIME_ROWS = 4
# free blocks, requests issued, finished, a preemption this step, steps, pending head,
# waiting head and length, running count, series records, progress counts
S_FREE, S_ISSUED, S_FINISHED, S_JUST_PREEMPTED, S_STEPS, S_PENDING, S_WAIT_HEAD, S_WAITING, S_RUNNING, S_RECORDS, S_EVENTS = range(11)
STATE_SIZE = 11
C_CAP, C_BUDGET, C_CHUNKED, C_BLOCK, C_POLICY, C_CACHED, C_TOTAL_BLOCKS, C_PATH_NS = range(8)
CONF_SIZE = 8  # C_PATH_NS: the server's path to the first token (ns), between a client's send and the engine
P_RECOMPUTE, P_RESERVE, P_STALL = range(3)  # ``conf[C_POLICY]``: policy.KvPolicy
SERIES_ROWS = 5  # t_s, waiting, running, kv_used_tokens, tokens (engine.Series)


@internal
def blocks_for(tokens: int, block: int) -> int:
    return (tokens + block - 1) // block


@internal
def admit(req, times, waiting, running, state, conf, t):
    """The head of the queue enters while the cap and the KV cache allow (``reserve``: prompt +
    output; else the tokens to (re)compute)."""
    n = waiting.size
    while state[S_WAITING] and state[S_RUNNING] < conf[C_CAP]:
        r = waiting[state[S_WAIT_HEAD]]
        tokens = req[R_INP, r] + req[R_OUT, r] if conf[C_POLICY] == P_RESERVE else req[R_NEED, r]
        want = max(blocks_for(tokens, conf[C_BLOCK]) - req[R_BLOCKS, r], 0)
        if want > state[S_FREE]:
            return
        state[S_WAIT_HEAD] = (state[S_WAIT_HEAD] + 1) % n
        state[S_WAITING] -= 1
        state[S_FREE] -= want
        req[R_BLOCKS, r] += want
        running[state[S_RUNNING]] = r
        state[S_RUNNING] += 1
        if math.isnan(times[T_ADMITTED, r]):
            times[T_ADMITTED, r] = t


@internal
def preempt_last(req, waiting, running, state):
    """The newest running request frees its blocks and goes back to the head of the queue, to
    recompute its prompt and generated tokens."""
    state[S_RUNNING] -= 1
    r = running[state[S_RUNNING]]
    state[S_FREE] += req[R_BLOCKS, r]
    req[R_BLOCKS, r] = 0
    req[R_CACHE, r] = 0
    req[R_DONE, r] = 0
    req[R_NEED, r] = req[R_INP, r] + req[R_GEN, r]
    req[R_PREEMPT, r] += 1
    n = waiting.size
    state[S_WAIT_HEAD] = (state[S_WAIT_HEAD] - 1 + n) % n
    waiting[state[S_WAIT_HEAD]] = r
    state[S_WAITING] += 1
    state[S_JUST_PREEMPTED] = 1


@internal
def complete(req, times, running, state, conf, ids, count, t):
    """``ids[:count]`` finish at ``t``: they leave the batch and free their blocks; in a closed
    loop each one's client sends its next request, which reaches the engine after the server's
    path (``C_PATH_NS``)."""
    n = times.shape[1]
    state[S_FINISHED] += count
    for j in range(count):
        r = ids[j]
        times[T_FINISH, r] = t
        state[S_RUNNING] -= 1
        at = 0
        while running[at] != r:
            at += 1
        while at < state[S_RUNNING]:  # the rest move up one place, keeping their order
            running[at] = running[at + 1]
            at += 1
        state[S_FREE] += req[R_BLOCKS, r]
        req[R_BLOCKS, r] = 0
        issued = state[S_ISSUED]
        if issued < n and math.isnan(times[T_ARRIVAL, issued]):
            times[T_ARRIVAL, issued] = t + conf[C_PATH_NS] * 1e-9
            state[S_ISSUED] += 1


@internal
def record(state, series, conf, t, tokens):
    """One point of the time series (``engine.Series``) at the end of a step or a decode run."""
    i = state[S_RECORDS]
    series[0, i] = t
    series[1, i] = state[S_WAITING]
    series[2, i] = state[S_RUNNING]
    series[3, i] = float((conf[C_TOTAL_BLOCKS] - state[S_FREE]) * conf[C_BLOCK])
    series[4, i] = tokens
    state[S_RECORDS] += 1


@internal
def steps_within_free_blocks(req, running, state, conf, k):
    """Largest j ≤ k such that j more decode steps of the running batch need at most the free blocks."""
    b, free, d = conf[C_BLOCK], state[S_FREE], state[S_RUNNING]
    if d * (k // b + 2) <= free:  # every sequence may cross k/b + 1 boundaries at most
        return k
    if _blocks_needed(req, running, d, b, k) <= free:
        return k
    lo, hi = 0, k
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if _blocks_needed(req, running, d, b, mid) <= free:
            lo = mid
        else:
            hi = mid - 1
    return lo


@internal
def _blocks_needed(req, running, d, b, steps):
    total = 0
    if steps:
        for j in range(d):
            r = running[j]
            total += max(blocks_for(req[R_CACHE, r] + steps, b) - req[R_BLOCKS, r], 0)
    return total
