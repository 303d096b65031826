"""The two pools of disaggregated serving, each priced with the one step-time function.

Prefill worker: steps carry prompt tokens only (``mixed_step_s`` with no decodes). A prompt
of I tokens runs in ceil(I / budget) passes: full passes of the token budget, then one
with what remains, each with an equal share of the prompt's I·(I+1)/2 attention pairs
(the same split ``costs/stream.py`` uses for chunked prompts). Prompts are not batched
together: a short prompt runs alone in its step, which overstates the service of prompts
much shorter than the budget at high load (engines pack several into one step); it is
exact at low load and for prompts of a budget or more.

Decode worker: steps carry decodes only. A request stays for K = 1 + E[O−1] steps (the
first step makes the first token after the hand-over, then O−1 more), so by Little's law
the mean number in decode is d = λ_w·K·τ(d), with τ the decode-only step of d + 1 requests
(a request sees itself and the d others, as in ``costs/stream_fixed_point.py``) whose KV
holds d·ctx tokens (``decode_terms``: prompt plus half the output). τ grows with d, so the
fixed point is found by bisection on [0, slots]; it exists exactly when
λ_w·K·τ(slots) < slots, which is the pool's stability edge and capacity.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from guideopt.costs.hardware import HardwareArrays
from guideopt.costs.lengths import LengthTable, decode_terms, weighted
from guideopt.costs.step import StepConfig, mixed_step_s
from guideopt.costs.stream import StreamOptions, running_slots
from guideopt.model.llm import ModelArch

BISECTION_STEPS = 50  # halves [0, slots] to 1e-15 of its width


def _columns(opts: StreamOptions) -> tuple[StepConfig, HardwareArrays]:
    """Step configuration and hardware as (options, 1) columns against length buckets."""

    def col(a):
        return np.asarray(a, dtype=float)[..., None]

    c = opts.cfg
    cfg = StepConfig(col(c.tp), col(c.pp), col(c.w_bytes), col(c.kv_bytes), c.flash, col(c.dp), col(c.ep))
    hw = HardwareArrays(**{f: col(getattr(opts.hw, f)) for f in HardwareArrays.__dataclass_fields__})
    return cfg, hw


def prefill_service_s(arch: ModelArch, opts: StreamOptions, prompt_tokens) -> np.ndarray:
    """Seconds a prefill worker spends on one prompt, per option × bucket."""
    cfg, hw = _columns(opts)
    inp = np.asarray(prompt_tokens, dtype=float)
    budget = np.asarray(opts.token_budget, dtype=float).reshape(-1, 1)
    passes = np.maximum(np.ceil(inp / budget), 1.0)
    last = inp - (passes - 1.0) * budget
    pairs = inp * (inp + 1.0) / 2.0 / passes
    tokens = np.stack(np.broadcast_arrays(last, budget + 0.0 * last))
    steps = mixed_step_s(
        arch, cfg, hw, decodes=0.0, decode_kv_tokens=0.0, prefill_tokens=tokens, prefill_seqs=1.0, prefill_pair_count=pairs
    )
    return steps[0] + (passes - 1.0) * steps[1]


def wave_wait_s(arch: ModelArch, opts: StreamOptions, ranks, prompt_tokens, clients) -> np.ndarray:
    """Mean wait of a prompt behind the other prompts of its wave on its prefill rank, when all
    ``clients`` send at once and are spread over ``ranks`` (per option × bucket).

    A rank gets n = C / ranks prompts and prefills as many whole prompts per pass as its token
    budget takes (w = max(⌊budget / I⌋, 1)): P = ⌈n / w⌉ passes of n / P prompts each, the
    prompt of pass j done after j passes, so the mean completion is (P + 1)/2 passes; the wait
    is that less one prompt alone (``prefill_service_s``). One prompt per pass (w = 1, and
    every prompt longer than the budget): (n − 1)/2 prompts ahead."""
    cfg, hw = _columns(opts)
    inp = np.asarray(prompt_tokens, dtype=float)
    budget = np.asarray(opts.token_budget, dtype=float).reshape(-1, 1)
    n = np.asarray(clients, dtype=float).reshape(-1, 1) / np.asarray(ranks, dtype=float).reshape(-1, 1)
    whole = np.maximum(np.floor(budget / inp), 1.0)
    passes = np.maximum(np.ceil(n / whole - 1e-9), 1.0)
    per_pass = n / passes
    alone = prefill_service_s(arch, opts, inp)
    packed = mixed_step_s(
        arch,
        cfg,
        hw,
        decodes=0.0,
        decode_kv_tokens=0.0,
        prefill_tokens=per_pass * inp,
        prefill_seqs=per_pass,
        prefill_pair_count=per_pass * inp * (inp + 1.0) / 2.0,
    )
    pass_s = np.where(whole > 1.0, packed, per_pass * alone)
    return np.maximum((passes + 1.0) / 2.0 * pass_s - alone, 0.0)


def decode_step_s(arch: ModelArch, opts: StreamOptions, decodes, context_tokens) -> np.ndarray:
    """A decode-only step of ``decodes`` requests holding ``context_tokens`` each on average."""
    d = np.asarray(decodes, dtype=float)
    return mixed_step_s(
        arch,
        opts.cfg,
        opts.hw,
        decodes=d,
        decode_kv_tokens=d * context_tokens * np.asarray(opts.kv_keep, dtype=float),
        prefill_tokens=0.0,
        prefill_seqs=0.0,
        prefill_pair_count=0.0,
    )


def decode_steps_per_request(lengths: LengthTable) -> np.ndarray:
    """K = 1 + E[O−1]: the steps a request spends on a decode worker."""
    return 1.0 + np.asarray(decode_terms(lengths)[0], dtype=float)


@dataclass(frozen=True)
class DecodePool:
    """One decode worker's steady state, per option."""

    decodes: np.ndarray  # d: requests in decode (mean)
    step_s: np.ndarray  # τ(min(d + 1, slots)): the step a request sees, its TPOT
    edge_step_s: np.ndarray  # τ(slots): the step of a full worker
    slots: np.ndarray  # requests a worker runs at once (running cap, KV)
    steps_per_request: np.ndarray  # K
    stable: np.ndarray  # λ_w·K·τ(slots) < slots

    @property
    def residence_s(self) -> np.ndarray:
        return self.steps_per_request * self.step_s


def decode_capacity_rps(arch: ModelArch, opts: StreamOptions, lengths: LengthTable) -> np.ndarray:
    """Largest request rate one decode worker sustains: slots / (K·τ(slots))."""
    slots = running_slots(opts, lengths)
    ctx = decode_terms(lengths)[1]
    return slots / (decode_steps_per_request(lengths) * decode_step_s(arch, opts, slots, ctx))


def decode_pool(arch: ModelArch, opts: StreamOptions, lengths: LengthTable, worker_rps) -> DecodePool:
    """The fixed point d = λ_w·K·τ(min(d + 1, slots)) per option at ``worker_rps`` per worker."""
    lam = np.asarray(worker_rps, dtype=float)
    slots = running_slots(opts, lengths) + np.zeros_like(lam)
    ctx = decode_terms(lengths)[1]
    k = decode_steps_per_request(lengths) + np.zeros_like(lam)
    edge = decode_step_s(arch, opts, slots, ctx)
    stable = lam * k * edge < slots
    lo, hi = np.zeros_like(slots), slots.copy()
    for _ in range(BISECTION_STEPS):
        mid = (lo + hi) / 2.0
        above = lam * k * decode_step_s(arch, opts, np.minimum(mid + 1.0, slots), ctx) > mid
        lo, hi = np.where(above, mid, lo), np.where(above, hi, mid)
    d = np.where(stable, (lo + hi) / 2.0, slots)
    step = decode_step_s(arch, opts, np.minimum(d + 1.0, slots), ctx)
    return DecodePool(d, step, edge, slots, k, stable)


def prefill_moments(service_s: np.ndarray, weight) -> tuple[np.ndarray, np.ndarray]:
    """(mean, squared coefficient of variation) of the prompt service over buckets."""
    w = np.asarray(weight, dtype=float)
    mean = (w * service_s).sum(axis=-1)
    cs2 = (w * (service_s - mean[:, None]) ** 2).sum(axis=-1) / np.maximum(mean, 1e-300) ** 2
    return mean, cs2


def split_scv(scv, share) -> np.ndarray:
    """Squared coefficient of variation of a stream thinned to ``share`` at random (QNA):
    p·c² + 1 − p."""
    return share * scv + 1.0 - share


def mean_output(lengths: LengthTable) -> np.ndarray:
    return np.asarray(weighted(lengths, lengths.output_len), dtype=float)
