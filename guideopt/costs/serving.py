"""Closed-loop serving (``concurrency`` clients, each sending its next request when the last
finishes) in steady state, for engines with continuous batching.

Per replica with c clients, requests cycle through prefill and O−1 decode steps. Each
engine step runs the d requests in decode plus the prefill tokens of newly arrived
requests (chunked into the token budget). The steady state is found by a fixed-point
iteration on three coupled quantities (vectorised, a few tens of iterations):

  cycle  = TTFT + (O−1)·TPOT                 time one request spends in the engine
  d      = min(c, cap) · (O−1)·TPOT / cycle   requests decoding at any step
  p      = (min(c, cap) / cycle) · I · step    prefill tokens per step (arrival rate × prompt)
  step   = forward(d decodes + p prefill tokens) + per-step overhead  = TPOT
  TTFT   = half a step of waiting + the prompt's passes: full ones of the room beside the d
           decodes and a last one with what remains (engines without chunked prefill: one pass)

Clients that start together with equal lengths stay in step, so a prompt also waits behind
the prompts of its wave; ``lockstep_share`` (``Calibration.closed_loop``, fitted) of that wait
(``lockstep_wait_s``) is added to TTFT after the fixed point.

Beyond what the engine holds at once (``max_num_seqs`` and the KV cache), clients wait
in a queue: by Little's law each cycle of a client then lasts c / X, X being the engine's
request throughput, and the wait is added to TTFT.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from guideopt.costs.hardware import HardwareArrays
from guideopt.costs.metrics import engine_step_s, first_token_path_s
from guideopt.costs.roofline import PassShape, forward_pass_s
from guideopt.model.llm import ModelArch

FIXED_POINT_ITERATIONS = 40
# Damping of the fixed-point update (new = (1−a)·old + a·update) keeps it from oscillating.
FIXED_POINT_DAMPING = 0.5
# A request arriving mid-step waits on average half a step before it is scheduled.
MEAN_WAIT_STEPS = 0.5


@dataclass(frozen=True)
class ServingInputs:
    tp: np.ndarray
    pp: np.ndarray
    concurrency: np.ndarray  # clients per replica
    input_len: np.ndarray
    output_len: np.ndarray
    split: np.ndarray  # token budget per step
    chunked: np.ndarray
    w_bytes: np.ndarray
    kv_bytes: np.ndarray
    running_cap: np.ndarray  # requests the engine holds at once (max_num_seqs and KV cache)
    kv_keep: np.ndarray
    flash: bool = True
    lockstep_share: float = 0.0  # Calibration.closed_loop: how far the clients stay in step
    dp: np.ndarray | float = 1.0  # attention-DP ranks (arrays above are per rank)
    ep: np.ndarray | float = 1.0  # expert-parallel ranks


@dataclass(frozen=True)
class ServingMetrics:
    ttft_s: np.ndarray
    tpot_s: np.ndarray
    request_latency_s: np.ndarray
    output_throughput_tok_s: np.ndarray  # per replica
    running: np.ndarray  # requests in the engine
    request_rate_rps: np.ndarray  # per replica: running / cycle (Little)
    client_wait_s: np.ndarray  # a client's wait for a running place (beyond the cap; in TTFT and latency)


def serving_cap(max_num_seqs, kv_full_cap, input_len, output_len, current_usage) -> np.ndarray:
    """Requests an engine runs at once under load: its sequence cap, and what its KV cache
    holds. Engines that admit by the KV a request holds now and preempt (recompute) when the
    cache runs out (vLLM; SGLang retracts) keep it full with requests at their mean length
    I + O/2; engines that reserve the whole length at admission (TensorRT-LLM's default
    GUARANTEED_NO_EVICT) hold ``kv_full_cap`` = KV / (I + O)."""
    i, o = np.asarray(input_len, dtype=float), np.asarray(output_len, dtype=float)
    kv_cap = np.asarray(kv_full_cap, dtype=float) * np.where(current_usage, (i + o) / (i + o / 2.0), 1.0)
    return np.maximum(np.minimum(np.asarray(max_num_seqs, dtype=float), kv_cap), 1.0)


def static_wave_cap(kv_full_cap, input_len, output_len, current_usage) -> np.ndarray:
    """Requests a static batch larger than the KV cache runs at once. Engines that reserve the
    whole length (TensorRT-LLM) run waves of ``kv_full_cap``; engines that admit by the KV a
    request holds now (vLLM, SGLang) keep the cache full and preempt (recompute) as sequences
    grow, which settles at requests of mean length I + O/2 (``serving_cap``; the recompute of
    the first, lockstep group is left out)."""
    return np.floor(serving_cap(np.inf, kv_full_cap, input_len, output_len, current_usage))


def _step_s(arch: ModelArch, x: ServingInputs, hw: HardwareArrays, decoding, prefill_tokens) -> np.ndarray:
    ctx = (x.input_len + x.output_len / 2.0) * x.kv_keep
    prefill_seqs = prefill_tokens / x.input_len
    shape = PassShape(
        new_tokens=np.maximum(decoding + prefill_tokens, 1.0),
        seqs=np.maximum(decoding + np.ceil(prefill_seqs), 1.0),
        attn_pairs=decoding * ctx + prefill_tokens * x.input_len / 2.0,
        kv_read_tokens=decoding * ctx + prefill_tokens,
        logit_tokens=np.maximum(decoding + prefill_seqs, 1.0),
    )
    kernels = forward_pass_s(arch, shape, tp=x.tp, pp=x.pp, w_bytes=x.w_bytes, kv_bytes=x.kv_bytes, hw=hw, flash=x.flash, dp=x.dp, ep=x.ep)
    return kernels + hw.decode_step_overhead_s + engine_step_s(hw, seqs=shape.seqs, tokens=shape.new_tokens)


def _mixed_step_s(arch: ModelArch, x: ServingInputs, hw: HardwareArrays, decoding, prefill_demand, room) -> np.ndarray:
    """Mean step time when prompts arrive at ``prefill_demand`` tokens per step. Engines put
    what waits of a prompt into the next step, up to the spare token budget ``room`` (vLLM's
    scheduler after the decodes, SGLang's chunked_prefill_size, TensorRT-LLM's max_num_tokens):
    a step carries min(room, max(I, demand)) prompt tokens (a whole prompt, or all that arrive
    per step when that is more), a fraction f = demand / carried of the steps carries them and
    the rest decode only. Spreading the prompts evenly over every step instead would hide their
    compute under the weight reads of memory-bound decode steps (step time is convex in the
    tokens of a step)."""
    carried = np.minimum(room, np.maximum(x.input_len, prefill_demand))
    f = np.minimum(prefill_demand / carried, 1.0)
    full = _step_s(arch, x, hw, decoding, carried)
    bare = _step_s(arch, x, hw, decoding, np.zeros_like(room))
    return f * full + (1.0 - f) * bare


def _prefill_s(arch: ModelArch, x: ServingInputs, hw: HardwareArrays, decoding, room) -> np.ndarray:
    """Time from a prompt's first step to its first token: chunked engines run it in passes of
    ``room`` tokens beside the decodes and a last pass with what remains (not another full
    chunk); engines without chunked prefill run the whole prompt in one step."""
    own = np.where(x.chunked, np.minimum(x.input_len, room), x.input_len)
    passes = np.ceil(x.input_len / own)
    last = x.input_len - (passes - 1.0) * own
    return (passes - 1.0) * _step_s(arch, x, hw, decoding, own) + _step_s(arch, x, hw, decoding, last)


def lockstep_wait_s(arch: ModelArch, x: ServingInputs, hw: HardwareArrays, decoding, room, running) -> np.ndarray:
    """Mean wait of a prompt behind the other prompts of its wave when all ``running`` clients
    send at once: on average half of the others are ahead, and the engine prefills ``room``
    prompt tokens per step beside the decodes (engines without chunked prefill: as many whole
    prompts as the token budget takes, at least one)."""
    whole = np.maximum(np.floor(np.maximum(x.split, x.input_len) / x.input_len), 1.0) * x.input_len
    per_step = np.where(x.chunked, np.maximum(room, 1.0), whole)
    ahead_tokens = np.maximum(running - 1.0, 0.0) / 2.0 * x.input_len
    return ahead_tokens / per_step * _step_s(arch, x, hw, decoding, per_step)


def serving_metrics(arch: ModelArch, x: ServingInputs, hw: HardwareArrays) -> ServingMetrics:
    c = np.asarray(x.concurrency, dtype=float)
    running = np.minimum(c, np.maximum(x.running_cap, 1.0))
    steps = np.maximum(x.output_len - 1.0, 0.0)
    chunk = np.where(x.chunked, x.split, np.maximum(x.split, x.input_len))
    tpot = _step_s(arch, x, hw, running, np.zeros_like(running))
    ttft = tpot * (1.0 + MEAN_WAIT_STEPS)
    for _ in range(FIXED_POINT_ITERATIONS):
        cycle = ttft + steps * tpot
        decoding = running * steps * tpot / cycle
        room = np.maximum(chunk - decoding, chunk / 2.0)  # prompt tokens a step can take beside the decodes
        step = _mixed_step_s(arch, x, hw, decoding, running / cycle * x.input_len * tpot, room)
        new_ttft = MEAN_WAIT_STEPS * step + _prefill_s(arch, x, hw, decoding, room)
        tpot = (1 - FIXED_POINT_DAMPING) * tpot + FIXED_POINT_DAMPING * step
        ttft = (1 - FIXED_POINT_DAMPING) * ttft + FIXED_POINT_DAMPING * new_ttft
    ttft = ttft + x.lockstep_share * lockstep_wait_s(arch, x, hw, decoding, room, running) + first_token_path_s(arch, hw)
    cycle = ttft + steps * tpot
    request_rate = running / cycle
    queue_wait = np.maximum(c / request_rate - cycle, 0.0)
    return ServingMetrics(
        ttft_s=ttft + queue_wait,
        tpot_s=tpot,
        request_latency_s=cycle + queue_wait,
        output_throughput_tok_s=request_rate * x.output_len,
        running=running,
        request_rate_rps=request_rate,
        client_wait_s=queue_wait,
    )
