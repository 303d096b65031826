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
arrival, no completion, enough free blocks) are advanced in one move (one record of the time
series). The loop itself runs compiled (``kernel.py``, numba) over index arrays; this module
checks the input, lays out the state, reports progress and returns the results.
A closed loop's clients send their first requests when ``clients.py`` says.

``EngineSpec.prompt_cached`` (off by default) models a disaggregated decode worker:
requests arrive with their prompt already in the KV cache and their first token already
generated (by a prefill worker). Admission allocates their prompt blocks as usual, no
prefill is computed, and their first decode step emits token 2; ``first_token_s`` is then
the time of that step (the first token reaches the client with the second).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

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
    path_s: float = 0.0  # the server's path from a client's send to the engine: in TTFT and E2E, not in queue_ms


SERIES_START = 4096  # time-series points allocated first (doubled when full; a run records at most one per step)
PROGRESS_BUFFER = 256  # progress counts the kernel collects before the callback hears them


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
    from guideopt.simulator import kernel  # numba: imported when a command first simulates
    from guideopt.simulator import kernel_queues as q

    st = _initial_state(stream, spec, client_starts_s(stream, spec, table), _path_s(spec, table))
    series = np.empty((q.SERIES_ROWS, SERIES_START))
    events = np.empty(PROGRESS_BUFFER, np.int64)
    args = (st.req, st.times, st.order, st.waiting, st.running, st.state, st.clock)
    while True:
        code = kernel.run(*args, series, events, st.conf, float(spec.kv_keep), table.kernel_arrays())
        if progress is not None:
            for finished in events[: st.state[q.S_EVENTS]].tolist():
                progress(finished)
        st.state[q.S_EVENTS] = 0
        if code == kernel.STALLED:  # nothing runs and the head cannot be admitted: cannot happen with the fit check
            raise AssertionError("simulator stalled with requests waiting")
        if code == kernel.DONE:
            break
        if st.state[q.S_RECORDS] >= series.shape[1]:
            series = np.concatenate([series, np.empty_like(series)], axis=1)
    req, times = st.req, st.times
    return SimResult(
        times[q.T_ARRIVAL] - _path_s(spec, table),  # when the client sent it
        times[q.T_ADMITTED],
        times[q.T_FIRST],
        times[q.T_FINISH],
        req[q.R_INP],
        req[q.R_OUT],
        req[q.R_PREEMPT],
        int(st.state[q.S_STEPS]),
        spec.kv_tokens,
        _series(series[:, : st.state[q.S_RECORDS]]),
        _path_s(spec, table),
    )


@dataclass
class _KernelState:
    """``kernel_queues.py``'s arrays for one run."""

    req: np.ndarray
    times: np.ndarray
    order: np.ndarray
    waiting: np.ndarray
    running: np.ndarray
    state: np.ndarray
    clock: np.ndarray
    conf: np.ndarray


def _path_s(spec: EngineSpec, table: StepTable) -> float:
    """The server's path from a client's send to the engine (``StepTable.first_token_s``); a decode pool's
    requests took it at their prefill worker."""
    return 0.0 if spec.prompt_cached else table.first_token_s


def _initial_state(stream: RequestStream, spec: EngineSpec, starts_s: np.ndarray | None, path_s: float) -> _KernelState:
    from guideopt.simulator import kernel_queues as q

    n = stream.input_len.size
    req = np.zeros((q.REQ_ROWS, n), np.int64)
    req[q.R_INP] = stream.input_len
    req[q.R_OUT] = stream.output_len
    req[q.R_NEED] = req[q.R_INP]  # prompt tokens to (re)compute
    times = np.full((q.TIME_ROWS, n), np.nan)
    state = np.zeros(q.STATE_SIZE, np.int64)
    total_blocks = spec.kv_tokens // spec.block_tokens
    state[q.S_FREE] = total_blocks
    if stream.arrival_s is not None:
        times[q.T_ARRIVAL] = stream.arrival_s + path_s  # the engine's view: the path after the client's send
        order = np.argsort(stream.arrival_s, kind="stable").astype(np.int64)
        state[q.S_ISSUED] = n
    else:  # closed loop: the clients' first requests (``clients.py``), then one per finished request, in index order
        assert starts_s is not None
        times[q.T_ARRIVAL, : starts_s.size] = starts_s + path_s
        order = np.arange(n, dtype=np.int64)
        state[q.S_ISSUED] = starts_s.size
    if spec.prompt_cached:  # the state a prompt leaves behind when its prefill completes
        req[q.R_DONE] = req[q.R_NEED]
        req[q.R_CACHE] = req[q.R_INP]
        req[q.R_GEN] = 1
    policy = {KvPolicy.RECOMPUTE: q.P_RECOMPUTE, KvPolicy.RESERVE: q.P_RESERVE, KvPolicy.STALL: q.P_STALL}[spec.policy]
    conf = np.zeros(q.CONF_SIZE, np.int64)
    conf[[q.C_CAP, q.C_BUDGET, q.C_CHUNKED, q.C_BLOCK, q.C_POLICY, q.C_CACHED, q.C_TOTAL_BLOCKS, q.C_PATH_NS]] = (
        spec.running_cap,
        spec.token_budget,
        spec.chunked,
        spec.block_tokens,
        policy,
        spec.prompt_cached,
        total_blocks,
        round(path_s * 1e9),
    )
    running = np.zeros(max(spec.running_cap, 1), np.int64)
    return _KernelState(req, times, order, np.zeros(max(n, 1), np.int64), running, state, np.zeros(1), conf)


def _series(points: np.ndarray) -> Series:
    t_s, waiting, running, kv, tokens = points
    return Series(t_s.tolist(), waiting.astype(np.int64).tolist(), running.astype(np.int64).tolist(), kv.tolist(), tokens.tolist())
