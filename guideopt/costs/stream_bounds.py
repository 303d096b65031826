"""Upper bounds on the rate a stream option can serve, cheap enough to order and prune
thousands of options before their SLO rates are searched (``stream_rates``).

Each is a rate no steady state of the option reaches, so ``ceil(load / bound) × price``
bounds its cost from below: the idle bound (an empty replica's residence and prompt
service), the full-decode bound (every slot decoding at once) and, with a TPOT target at
a percentile of 50 or more, the TPOT bound (no more requests decoding than a step within
the target allows).
"""

from __future__ import annotations

import numpy as np

from guideopt.costs.lengths import LengthTable, decode_terms
from guideopt.costs.step import mixed_step_s
from guideopt.costs.stream import StreamOptions, kv_slots, option_lengths, running_slots, steady_state
from guideopt.model.llm import ModelArch
from guideopt.model.workload import PercentileTargets
from guideopt.units import MS_PER_S

IDLE_SHARE = 1.0 / 128  # an option that misses the SLOs at this share of its rate bound never meets them
TINY_RATE_RPS = 1e-6  # "no load": the steady state of an empty replica
# Bisection steps for the most requests a decode step may hold within the TPOT target
# (2^-16 of the requests the KV cache holds), and the slack the bound keeps for a steady state
# that is converged only to within CONVERGED_REL (costs/stream.py).
TPOT_DECODES_BISECTIONS = 16
TPOT_BOUND_SLACK = 1.01


def rate_bounds(
    arch: ModelArch,
    opts: StreamOptions,
    lengths: LengthTable,
    static_rows: np.ndarray | None = None,
    targets: dict[str, PercentileTargets] | None = None,
    *,
    idle: bool = True,
) -> np.ndarray:
    """Per option, the tightest of the bounds that apply (``idle`` False: only the one-step
    bounds, leaving out the idle steady state's ~30 fixed-point rounds).

    ``static_rows``: per option, its row of the static table (options differing only in
    their running cap share one): what does not depend on the cap is found once per row."""
    first, inverse = _rows(opts, static_rows)
    slots = running_slots(opts, lengths)
    bound = full_decode_rate_bound(arch, opts, lengths, slots)
    if idle:
        bound = np.minimum(bound, idle_rate_bound(arch, opts, lengths, static_rows))
    target_s = tpot_target_s(targets or {})
    if target_s is not None:
        bound = np.minimum(bound, tpot_rate_bound(arch, opts, lengths, slots, target_s, (first, inverse)))
    return bound


def _rows(opts: StreamOptions, static_rows: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """(first option of each static row, each option's row); options with their own lengths are each their own row."""
    if static_rows is None or opts.lengths is not None:
        return np.arange(len(opts)), np.arange(len(opts))
    _, first, inverse = np.unique(static_rows, return_index=True, return_inverse=True)
    return first, inverse.reshape(-1)


def idle_rate_bound(arch: ModelArch, opts: StreamOptions, lengths: LengthTable, static_rows: np.ndarray | None = None) -> np.ndarray:
    """Where an empty replica's residence fills its slots or its prompt service fills the
    steps (both only grow with the rate). An empty replica runs one request whatever its
    cap, so the steady state is found once per static row and only the slots differ."""
    first, inverse = _rows(opts, static_rows)
    st = steady_state(arch, opts.take(first), lengths, np.full(first.size, TINY_RATE_RPS))
    slots = running_slots(opts, lengths)
    return np.minimum(slots / st.residence_s[inverse], 1.0 / st.prefill_service_s[inverse])


def _finish_rate(decoding, dec_steps, step_s) -> np.ndarray:
    """Requests/s that finish with ``decoding`` requests in decode, each for ``dec_steps`` steps
    of ``step_s`` (unbounded for options whose requests do not decode)."""
    denom = dec_steps * step_s
    return np.divide(decoding, denom, out=np.full(np.shape(denom), np.inf), where=np.asarray(dec_steps) > 0)


def _decode_step_s(arch: ModelArch, opts: StreamOptions, decodes, ctx: float | np.ndarray) -> np.ndarray:
    """The decode-only step of ``decodes`` requests (the steady state's τ_dec)."""
    return mixed_step_s(
        arch,
        opts.cfg,
        opts.hw,
        decodes=decodes,
        decode_kv_tokens=decodes * ctx * opts.kv_keep,
        prefill_tokens=0.0,
        prefill_seqs=0.0,
        prefill_pair_count=0.0,
    )


def full_decode_rate_bound(arch: ModelArch, opts: StreamOptions, lengths: LengthTable, slots: np.ndarray) -> np.ndarray:
    """Requests finish at most d / (E[O−1] · τ(d)) per second with d decoding, τ(d) the
    decode-only step of d requests (prompts only add work), and d / τ(d) grows with d (a
    step's weight reads are shared, its per-request work is not), so the full slots give the
    largest. One step per option, against the ~30 fixed-point rounds of the idle bound."""
    dec_steps, ctx = decode_terms(option_lengths(opts, lengths))
    if not np.any(np.asarray(dec_steps) > 0):
        return np.full(len(opts), np.inf)
    return _finish_rate(slots, dec_steps, _decode_step_s(arch, opts, slots, ctx))


def tpot_target_s(targets: dict[str, PercentileTargets]) -> float | None:
    """The tightest TPOT bound at a percentile of 50 or more, in seconds (None: none). The
    stream model's TPOT distribution is symmetric about its mean (``stream_metrics``), so
    such a percentile within the bound puts the mean TPOT within it too."""
    tpot = targets.get("tpot_ms")
    bounds = [b for p, b in tpot.targets.items() if p >= 50.0] if tpot is not None else []
    return min(bounds) / MS_PER_S if bounds else None


def tpot_rate_bound(
    arch: ModelArch, opts: StreamOptions, lengths: LengthTable, slots: np.ndarray, target_s: float, rows: tuple[np.ndarray, np.ndarray]
) -> np.ndarray:
    """With mean TPOT ≤ T: the mean TPOT is at least τ(D), the decode step of the D = d + 1
    requests a decoding request shares its steps with, so D ≤ D_T, the most requests whose
    step stays within T; the rate d / (E[O−1] · TPOT) is then at most D_T / (E[O−1] · τ(D_T))
    (d / τ(d) grows with d). D_T is bisected once per static row (τ does not depend on the
    running cap), then capped by each option's slots; an option whose single-request step
    already exceeds T gets 0."""
    dec_steps, ctx = decode_terms(option_lengths(opts, lengths))
    if not np.any(np.asarray(dec_steps) > 0):
        return np.full(len(opts), np.inf)
    first, inverse = rows
    sub = opts.take(first)
    sub_ctx = ctx if isinstance(ctx, float) else ctx[first]
    fits_one = _decode_step_s(arch, sub, np.ones(first.size), sub_ctx) <= target_s
    # bracketed by the requests the row's KV cache holds (the same for every cap of the row), so an
    # option's bound is the same whoever else is priced with it (plan, capacity and simulate agree)
    lo, hi = np.ones(first.size), np.maximum(kv_slots(sub.kv_tokens, option_lengths(sub, lengths), sub.reserve_kv), 1.0)
    for _ in range(TPOT_DECODES_BISECTIONS):
        mid = (lo + hi) / 2.0
        ok = _decode_step_s(arch, sub, mid, sub_ctx) <= target_s
        lo, hi = np.where(ok, mid, lo), np.where(ok, hi, mid)
    # D_T lies in [lo, hi]; capped by the slots, the bound takes the larger count over the smaller step
    d_lo, d_hi = np.minimum(lo[inverse], slots), np.minimum(hi[inverse], slots)
    bound = _finish_rate(TPOT_BOUND_SLACK * d_hi, dec_steps, _decode_step_s(arch, opts, d_lo, ctx))
    return np.where(fits_one[inverse], bound, 0.0)
