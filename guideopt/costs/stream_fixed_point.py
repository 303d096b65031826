"""The damped fixed-point iteration of the stream steady state (``costs/stream.py``).

Options iterate together as arrays, over an active set: every ``CHECK_EVERY`` rounds the
options whose state (mean, mixed and decode step, mixed share) no longer moves by more than
``SETTLED_REL`` leave, so a table of thousands of MoE options (each step a forward pass of
dozens of layers) pays for the rounds its slowest options need rather than 60 for all.
An option that leaves is at its fixed point to within that tolerance; the rest run the
full ``FIXED_POINT_ITERATIONS``, exactly as before. The work done depends only on the
inputs, never on the machine.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from guideopt.costs.hardware import HardwareArrays
from guideopt.costs.step import StepConfig, mixed_step_s
from guideopt.model.llm import ModelArch

FIXED_POINT_ITERATIONS = 60
FIXED_POINT_DAMPING = 0.5  # new = (1−a)·old + a·update keeps the iteration from oscillating
CHECK_EVERY = 5  # rounds between checks of which options have settled
SETTLED_REL = 1e-6  # relative change per round below which an option has settled (what is left to move is of that order)
MIN_SHARE = 1e-12
LENGTH_TERMS = ("w", "inp", "mean_in", "dec_steps", "ctx", "pairs")  # per option where the options carry their own lengths


def _rows(a, idx: np.ndarray, n: int):
    """``a`` restricted to the options ``idx`` (its first axis), or ``a`` itself where it is
    a constant broadcast over the options."""
    arr = np.asarray(a)
    return a if arr.ndim == 0 or arr.shape[0] != n else arr[idx]


@dataclass(frozen=True)
class FixedPointInputs:
    """Per option (first axis) and rate (trailing axes): what the iteration does not change."""

    arch: ModelArch
    cfg: StepConfig
    hw: HardwareArrays
    lam: np.ndarray  # requests/s
    chunked: np.ndarray  # bool
    budget: np.ndarray  # tokens per step
    keep: np.ndarray  # H2O keep ratio
    slots: np.ndarray  # requests the replica runs at once
    # The lengths: shared by the options (floats, buckets on the one axis), or each option's own
    # (``own_lengths``: arrays with the options first, the buckets last).
    w: np.ndarray  # length buckets: weights, prompt tokens
    inp: np.ndarray
    mean_in: float | np.ndarray
    dec_steps: float | np.ndarray
    ctx: float | np.ndarray  # mean context of a decoding request
    pairs: float | np.ndarray  # mean attention pairs of a prompt
    own_lengths: bool = False

    def take(self, idx: np.ndarray) -> FixedPointInputs:
        n = self.lam.shape[0]
        cfg = StepConfig(**{f.name: _rows(getattr(self.cfg, f.name), idx, n) for f in dataclasses.fields(StepConfig)})
        hw = HardwareArrays(**{f: _rows(getattr(self.hw, f), idx, n) for f in HardwareArrays.__dataclass_fields__})
        keys = ("lam", "chunked", "budget", "keep", "slots") + (LENGTH_TERMS if self.own_lengths else ())
        per_option = {k: _rows(getattr(self, k), idx, n) for k in keys}
        return dataclasses.replace(self, cfg=cfg, hw=hw, **per_option)


@dataclass
class FixedPointState:
    tau: np.ndarray  # mean step, s
    tau_mix: np.ndarray  # step carrying prompt tokens, s
    tau_dec: np.ndarray  # decode-only step, s
    f: np.ndarray  # share of mixed steps
    d: np.ndarray  # requests in decode
    room: np.ndarray  # prompt tokens a step can take
    passes: np.ndarray  # steps a prompt takes
    moved: np.ndarray  # relative change of the mean step in the last round

    def take(self, idx: np.ndarray) -> FixedPointState:
        return FixedPointState(**{f.name: getattr(self, f.name)[idx] for f in dataclasses.fields(self)})

    def put(self, idx: np.ndarray, part: FixedPointState) -> None:
        for f in dataclasses.fields(self):
            getattr(self, f.name)[idx] = getattr(part, f.name)


def _step(k: FixedPointInputs, d, p, seqs, q) -> np.ndarray:
    return mixed_step_s(
        k.arch, k.cfg, k.hw, decodes=d, decode_kv_tokens=d * k.ctx * k.keep, prefill_tokens=p, prefill_seqs=seqs, prefill_pair_count=q
    )


def _passes(k: FixedPointInputs, room: np.ndarray) -> np.ndarray:
    """Σ_b w_b·⌈I_b / room⌉, the mean steps a prompt takes. Where the room holds the longest
    prompt every term is w_b·1, so the sum is Σ_b w_b (the same sum, term for term); only the
    rest are divided bucket by bucket."""
    w = np.asarray(k.w)
    inp = np.asarray(k.inp)
    multi = ~(room >= inp.max(axis=-1))  # NaN rooms take the full path too
    passes = w.sum(axis=-1) + np.zeros_like(room)
    if multi.all():
        return (w * np.ceil(inp / room[..., None])).sum(axis=-1)
    if multi.any():
        b = w.shape[-1]
        w_m = w if w.ndim == 1 else np.broadcast_to(w, room.shape + (b,))[multi]
        inp_m = inp if inp.ndim == 1 else np.broadcast_to(inp, room.shape + (b,))[multi]
        passes[multi] = (w_m * np.ceil(inp_m / room[multi][..., None])).sum(axis=-1)
    return passes


def _round(k: FixedPointInputs, s: FixedPointState) -> FixedPointState:
    lam, chunked, tau, f = k.lam, k.chunked, s.tau, s.f
    tpot = np.where(chunked, tau, tau / np.maximum(1.0 - f, MIN_SHARE))
    d = np.minimum(lam * k.dec_steps * tpot, k.slots)
    room = np.where(chunked, np.maximum(k.budget - d, 1.0), k.budget)
    passes = _passes(k, room)
    # The next step carries prompt tokens when a prompt arrived during this one; long
    # mixed steps collect more arrivals (a two-state Markov chain over step kinds).
    units = lam * np.where(chunked, passes, 1.0)
    stay_dec = np.exp(-units * s.tau_dec)
    f = np.maximum((1.0 - stay_dec) / (1.0 - stay_dec + np.exp(-units * s.tau_mix)), MIN_SHARE)
    # ... and at least the share that carries the prompt tokens within the room (flow balance):
    # a prompt of many passes keeps the steps mixed for all of them, which the chain of
    # arrivals alone undercounts (a budget of 1 token: every prompt token is a step of its own)
    f = np.minimum(np.maximum(f, lam * k.mean_in * tau / room), 1.0)
    p = np.minimum(lam * k.mean_in * tau / f, room)
    seqs = np.maximum(lam * passes * tau / f, 1.0)
    q = lam * k.pairs * tau / f * np.minimum(1.0, room / np.maximum(lam * k.mean_in * tau / f, 1e-300))
    # A decoding request sees itself plus the others: d + 1 decodes (the new prompt's
    # step, seen on arrival, holds the d others).
    d_seen = np.minimum(d + 1.0, k.slots)
    # The three steps of a round (mixed, mixed as an arrival sees it, decode-only) priced in one
    # call over a leading axis of 3: the same elementwise arithmetic, a third of the calls.
    zero = np.zeros_like(p)
    steps = _step(
        k,
        np.stack([np.where(chunked, d, 0.0), np.where(chunked, d_seen, 0.0), d_seen]),
        np.stack([p, p, zero]),
        np.stack([seqs, seqs, zero]),
        np.stack([q, q, zero]),
    )
    tau_mix, tau_mix_seen, tau_dec = steps[0], steps[1], steps[2]
    new = f * tau_mix_seen + (1.0 - f) * tau_dec
    moved = np.abs(new - tau) / tau
    tau = (1.0 - FIXED_POINT_DAMPING) * tau + FIXED_POINT_DAMPING * new
    return FixedPointState(tau, tau_mix, tau_dec, f, d, room, passes, moved)


def _settled(before: FixedPointState, after: FixedPointState) -> np.ndarray:
    """Per option, whether no part of its state moved by more than ``SETTLED_REL`` in the last round."""
    worst = after.moved
    for name in ("tau_mix", "tau_dec", "f"):
        old, new = getattr(before, name), getattr(after, name)
        worst = np.maximum(worst, np.abs(new - old) / np.maximum(np.abs(new), MIN_SHARE))
    within = np.asarray(worst, dtype=float).reshape(worst.shape[0], -1) <= SETTLED_REL
    return np.all(within, axis=1)


def solve_fixed_point(k: FixedPointInputs) -> FixedPointState:
    """The state after ``FIXED_POINT_ITERATIONS`` damped rounds (or fewer, once settled)."""
    n = k.lam.shape[0]
    tau = _step(k, 0.0, k.mean_in, 1.0, k.pairs) + np.zeros_like(k.lam)
    zeros = np.zeros_like(tau)
    state = FixedPointState(tau, tau.copy(), tau.copy(), zeros.copy(), zeros.copy(), zeros.copy(), zeros.copy(), np.full_like(tau, np.inf))
    active = np.arange(n)
    done = 0
    while done < FIXED_POINT_ITERATIONS and active.size:
        part_k = k if active.size == n else k.take(active)
        part = state.take(active)
        before = part
        for _ in range(min(CHECK_EVERY, FIXED_POINT_ITERATIONS - done)):
            before, part = part, _round(part_k, part)
        state.put(active, part)
        done += CHECK_EVERY
        active = active[~_settled(before, part)]
    return state
