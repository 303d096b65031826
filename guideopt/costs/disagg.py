"""Analytic steady state of disaggregated serving: a prefill pool, a KV hand-over and a
decode pool, vectorised over options (``DisaggOptions``).

A group of x prefill and y decode workers serves λ requests/s (coefficient of variation
``burstiness``), requests of weighted lengths (I_b, O_b):

  prefill   an M/G/x queue of prompts (one queue in front of the pool, as the routers of
            Dynamo and SGLang send a prompt to the least-loaded worker), service S_b = the
            prompt's prefill-only passes (``disagg_pools.prefill_service_s``); its wait from
            ``slot_wait`` (Erlang C with the Allen–Cunneen factor (c_a² + c_s²)/2, which is
            Kingman's GI/G/1 wait at x = 1), the same approximations ``costs/stream.py`` uses
  transfer  ``kv_transfer_s`` per bucket (layer-wise streaming hides the wire time behind S_b)
  decode    per worker λ/y, continuous batching without prompt chunks: the fixed point
            d = (λ/y)·K·τ(d) (``disagg_pools.decode_pool``), capped by the worker's slots
            (``running_slots``: running cap and KV of prompt plus output); admission into
            the slots is M/G/c (``slot_wait``) on the request stream split at random over the
            y workers (QNA: c² → c²/y + 1 − 1/y); the smoothing a busy prefill pool gives
            its departures (Whitt's linking equation) is left out: it is conservative, and
            with it more prefill workers could raise TTFT by un-smoothing the decode arrivals
  TTFT      prefill wait + S_b + transfer + decode admission wait + the wait for the step
            under way (uniform over a step, when the worker is busy: 1 − e^(−d)) + one step;
            the two queue waits are independent and each bucket is split by which of them a
            request meets (``_two_waits``), so a shorter queue never raises a percentile
  TPOT      τ (a decode-only step: no spread from prompt steps, as in ``costs/stream.py``)
  E2E       TTFT + (O_b − 1)·TPOT

Stable when both pools drain: λ·E[S]/x < 1 and (λ/y)·K·τ(slots) < slots; the largest such
λ is ``disagg_max_rate``. Options serve the length table they are given, or the one their
decode (else prefill) ``StreamOptions`` carries.

``rate_rps`` is the group's rate; ``running`` and ``kv_use`` are one decode worker's (as
``stream_metrics`` gives a replica's); ``steady`` is the decode pool's: τ for every step
kind, no mixed steps, the prefill worker's token budget as ``room`` and its mean service
as ``tau_mix_s`` and ``prefill_service_s``.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from guideopt.costs.disagg_kv import kv_bytes_per_prompt_token, kv_transfer_s, prompt_kv_bytes
from guideopt.costs.disagg_options import DisaggOptions
from guideopt.costs.disagg_pools import (
    DecodePool,
    decode_capacity_rps,
    decode_pool,
    mean_output,
    prefill_moments,
    prefill_service_s,
    split_scv,
)
from guideopt.costs.lengths import LengthTable
from guideopt.costs.metrics import first_token_path_s
from guideopt.costs.queueing import Wait, merge_buckets, mixture_mean, mixture_quantiles, slot_wait
from guideopt.costs.stream import Dist, Steady, StreamMetrics, StreamOptions, kv_tokens_per_request
from guideopt.model.llm import ModelArch
from guideopt.model.workload import REPORTED_PERCENTILES
from guideopt.units import MS_PER_S

__all__ = [
    "DisaggOptions",
    "at_prompt_lengths",
    "disagg_lengths",
    "disagg_max_rate",
    "disagg_stream_metrics",
    "group_options",
    "handover_s",
    "kv_bytes_per_prompt_token",
    "kv_transfer_s",
    "prompt_kv_bytes",
]

Percentiles = tuple[float, ...] | dict[str, tuple[float, ...]]


def disagg_lengths(opts: DisaggOptions, lengths: LengthTable) -> LengthTable:
    """The lengths the options serve: the decode worker's own, the prefill worker's, or ``lengths``."""
    if opts.decode.lengths is not None:
        return opts.decode.lengths
    return lengths if opts.prefill.lengths is None else opts.prefill.lengths


def _grid(lengths: LengthTable, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(weight, input, output) as options × buckets."""
    w, i, o = (np.asarray(a, dtype=float) for a in (lengths.weight, lengths.input_len, lengths.output_len))
    shape = (n, w.shape[-1])
    return np.broadcast_to(w, shape), np.broadcast_to(i, shape), np.broadcast_to(o, shape)


def _per_option(a, n: int) -> np.ndarray:
    return np.broadcast_to(np.asarray(a, dtype=float), (n,)).copy()


def disagg_max_rate(arch: ModelArch, opts: DisaggOptions, lengths: LengthTable) -> np.ndarray:
    """Per option, the largest group rate both pools sustain: min(x / E[S], y·slots / (K·τ(slots)))."""
    lengths = disagg_lengths(opts, lengths)
    n = len(opts)
    w, inp, _ = _grid(lengths, n)
    mean_s, _ = prefill_moments(prefill_service_s(arch, opts.prefill, inp), w)
    prefill = _per_option(opts.prefill_workers, n) / mean_s
    decode = _per_option(opts.decode_workers, n) * decode_capacity_rps(arch, opts.decode, lengths)
    return np.minimum(prefill, decode)


def _busy_boundary(pool: DecodePool) -> tuple[np.ndarray, np.ndarray]:
    """(mean, sd) of the wait for the decode step under way when a request arrives: zero when
    the worker is idle (probability e^(−d), Poisson occupancy), else uniform over a step."""
    p = 1.0 - np.exp(-pool.decodes)
    tau = pool.step_s
    return p * tau / 2.0, tau * np.sqrt(np.maximum(p / 3.0 - p**2 / 4.0, 0.0))


def _waits(arch, opts, lengths, lam, ca2, service_s, w) -> tuple[Wait, Wait, DecodePool, np.ndarray]:
    """(prefill wait, decode admission wait, decode pool, prefill utilisation), per option."""
    n = len(opts)
    x, y = _per_option(opts.prefill_workers, n), _per_option(opts.decode_workers, n)
    mean_s, cs2_s = prefill_moments(service_s, w)
    prefill_wait = slot_wait(x, lam, mean_s, ca2, cs2_s)
    rho = lam * mean_s / x
    pool = decode_pool(arch, opts.decode, lengths, lam / y)
    _, _, out = _grid(lengths, n)
    steps = 1.0 + np.maximum(out - 1.0, 0.0)
    cs2_res = (w * (steps - pool.steps_per_request[:, None]) ** 2).sum(axis=-1) / pool.steps_per_request**2
    ca2_dec = split_scv(ca2, 1.0 / y)  # the prefill pool's smoothing is left out (conservative, and TTFT stays monotone in x)
    admit = slot_wait(pool.slots, lam / y, pool.residence_s, ca2_dec, cs2_res)
    return prefill_wait, admit, pool, rho


def _two_waits(mu, sd, waits: tuple[Wait, Wait], weight) -> tuple[np.ndarray, np.ndarray, Wait, np.ndarray]:
    """Each bucket split four ways by which of two independent waits (per option) it meets:
    none, the first, the second, or both (their sum, as one exponential of the summed means,
    which keeps the mean and slightly lengthens the tail). Exact in mean, and a smaller wait
    never raises a percentile, which ``queueing.combine`` (one atom, one exponential) cannot
    promise: there a smaller first wait lengthens the shared tail."""
    (pa, ta), (pb, tb) = ((np.asarray(w.p_wait, dtype=float)[:, None], np.asarray(w.theta_s, dtype=float)[:, None]) for w in waits)
    shares = ((1 - pa) * (1 - pb), pa * (1 - pb), (1 - pa) * pb, pa * pb)
    thetas = (0.0 * ta, ta, tb, ta + tb)
    theta = np.concatenate([np.broadcast_to(t, np.shape(mu)) for t in thetas], axis=-1)
    weight = np.concatenate([np.asarray(weight, dtype=float) * s for s in shares], axis=-1)
    return np.concatenate([mu] * 4, axis=-1), np.concatenate([sd] * 4, axis=-1), Wait((theta > 0) * 1.0, theta), weight


def _dist(mu, sd, waits: tuple[Wait, Wait] | None, weight, keys, pcts: tuple[float, ...]) -> Dist:
    """A metric's mixture over buckets (as ``stream_metrics`` builds it) behind ``waits``:
    buckets alike in ``keys`` (None: per-option lengths) are merged first."""
    sd = sd + 0 * mu
    if keys is not None:
        none = Wait(np.zeros_like(mu), np.zeros_like(mu))
        mu, sd, _, weight = merge_buckets(mu, sd, none, weight, keys)
    wait = Wait(np.zeros_like(mu), np.zeros_like(mu))
    if waits is not None:
        mu, sd, wait, weight = _two_waits(mu, sd, waits, weight)
    q = mixture_quantiles(mu, sd, wait, weight, pcts)
    has = np.asarray(weight).sum(axis=-1) > 0
    mean = np.where(has, mixture_mean(mu, wait, weight), 0.0)
    return Dist(mean * MS_PER_S, {p: np.where(has, v, 0.0) * MS_PER_S for p, v in q.items()}, (mu, sd, wait, weight))


def _steady(pool: DecodePool, prefill_mean_s: np.ndarray, opts: DisaggOptions) -> Steady:
    """The decode pool's steady state in ``stream_metrics``'s terms (see the module docstring)."""
    n = len(opts)
    return Steady(
        tau_s=pool.step_s,
        tau_dec_s=pool.step_s,
        tau_mix_s=prefill_mean_s,
        mixed_share=np.zeros(n),
        decodes=pool.decodes,
        room=_per_option(opts.prefill.token_budget, n),
        tpot_s=pool.step_s,
        slots=pool.slots,
        residence_s=pool.residence_s,
        prefill_service_s=prefill_mean_s,
        converged=np.ones(n, dtype=bool),
    )


def _dists(lengths: LengthTable, ttft_mu, tau, boundary, waits, percentiles: Percentiles) -> dict[str, Dist]:
    """The four metric distributions from TTFT's mean per bucket, the decode step ``tau``
    (options, 1) and the step-boundary wait's (mean, sd)."""
    shape = np.shape(ttft_mu)
    inp, out = lengths.input_len, lengths.output_len
    weight = np.asarray(lengths.weight, dtype=float)  # (buckets,) when shared: merged per bucket key
    tpot_w = np.where(np.asarray(out) > 1.0, weight, 0.0)
    tpot_w = tpot_w / np.maximum(tpot_w.sum(axis=-1, keepdims=True), 1e-12)

    def keys(*cols):
        return None if lengths.per_option else np.stack([np.asarray(c, dtype=float) for c in cols], axis=1)

    def pcts(metric: str) -> tuple[float, ...]:
        return percentiles.get(metric, ()) if isinstance(percentiles, dict) else percentiles

    e2e_mu = ttft_mu + np.maximum(out - 1.0, 0.0) * tau
    sd = boundary[1]
    return {
        "ttft_ms": _dist(ttft_mu, sd, waits, weight, keys(inp), pcts("ttft_ms")),
        "tpot_ms": _dist(np.broadcast_to(tau, shape), 0.0, None, tpot_w, keys(out), pcts("tpot_ms")),
        "e2e_ms": _dist(e2e_mu, sd, waits, weight, keys(inp, out), pcts("e2e_ms")),
        "queue_ms": _dist(boundary[0] + np.zeros(shape), sd, waits, weight, keys(np.zeros(np.shape(inp))), pcts("queue_ms")),
    }


def disagg_stream_metrics(
    arch: ModelArch,
    opts: DisaggOptions,
    lengths: LengthTable,
    rate_rps,
    burstiness: float = 1.0,
    percentiles: Percentiles = REPORTED_PERCENTILES,
) -> StreamMetrics:
    """Per-request metric distributions at ``rate_rps`` requests/s per group (shape (options,)).

    ``percentiles`` as for ``stream_metrics``: for every metric, or per metric name."""
    lengths = disagg_lengths(opts, lengths)
    n = len(opts)
    lam = _per_option(rate_rps, n)
    w, inp, _ = _grid(lengths, n)
    service = prefill_service_s(arch, opts.prefill, inp)
    transfer = kv_transfer_s(arch, inp, opts, prefill_s=service)
    prefill_wait, admit, pool, rho = _waits(arch, opts, lengths, lam, burstiness**2, service, w)
    tau = pool.step_s[:, None]
    boundary = tuple(a[:, None] for a in _busy_boundary(pool))
    first = first_token_path_s(arch, opts.prefill.hw)[:, None]  # the request enters through the prefill worker's server
    dists = _dists(lengths, service + transfer + boundary[0] + tau + first, tau, boundary, (prefill_wait, admit), percentiles)
    running = lam / _per_option(opts.decode_workers, n) * pool.residence_s
    held = kv_tokens_per_request(lengths, np.asarray(opts.decode.reserve_kv))
    return StreamMetrics(
        **dists,
        rate_rps=lam,
        output_throughput_tok_s=lam * mean_output(lengths),
        running=running,
        kv_use=np.minimum(running, pool.slots) * held / np.maximum(np.asarray(opts.decode.kv_tokens, dtype=float), 1.0),
        stable=(rho < 1.0) & pool.stable,
        steady=_steady(pool, prefill_moments(service, w)[0], opts),
        running_sd=None,  # Poisson
    )


def group_options(
    arch: ModelArch, prefill: StreamOptions, decode: StreamOptions, ranks: tuple, link: tuple, layerwise, prompt_tokens
) -> DisaggOptions:
    """Groups of ``ranks`` = (prefill, decode) attention-DP ranks of these workers, handing
    over on ``link`` = (GB/s, latency s), with the KV bytes per token of prompts of
    ``prompt_tokens`` (length buckets, per option)."""
    opts = DisaggOptions(
        prefill=prefill,
        decode=decode,
        prefill_workers=np.asarray(ranks[0], dtype=float),
        decode_workers=np.asarray(ranks[1], dtype=float),
        kv_link_gb_s=np.asarray(link[0], dtype=float),
        kv_link_latency_s=np.asarray(link[1], dtype=float),
        kv_bytes_per_token=np.zeros(1),
        layerwise=np.asarray(layerwise, dtype=bool),
    )
    return at_prompt_lengths(arch, opts, prompt_tokens)


def at_prompt_lengths(arch: ModelArch, opts: DisaggOptions, prompt_tokens) -> DisaggOptions:
    """``opts`` with its KV bytes per token at these prompt lengths (options × prompts): length
    buckets, or the sampled requests of a simulation."""
    element = np.broadcast_to(np.asarray(opts.prefill.cfg.kv_bytes, dtype=float), (len(opts),))
    per_token = kv_bytes_per_prompt_token(arch, element[:, None], np.asarray(prompt_tokens, dtype=float)[None, :])
    return dataclasses.replace(opts, kv_bytes_per_token=per_token)


def handover_s(arch: ModelArch, opts: DisaggOptions, prompt_tokens) -> np.ndarray:
    """Seconds each prompt of ``prompt_tokens`` waits for its KV hand-over after it, on option 0 of ``opts``."""
    prompt = np.asarray(prompt_tokens, dtype=float)[None, :]
    sized = at_prompt_lengths(arch, opts, prompt_tokens)
    return kv_transfer_s(arch, prompt, sized, prefill_s=prefill_service_s(arch, opts.prefill, prompt))[0]
