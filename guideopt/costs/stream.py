"""Analytic steady state of continuous batching under a request stream, vectorised over options.

The model (justified in docs/serving-model.md): requests of weighted lengths (I_b, O_b)
arrive at λ per replica (coefficient of variation ``burstiness``). In steady state a
step is either a decode-only step (the d running decodes) or a mixed step that also
carries prompt tokens. With τ̄ the mean step time:

  d      = λ·E[O−1]·TPOT                    requests in decode (Little's law); a decoding
                                            request shares its steps with d others + itself
  f      = (1−e^(−u·τ_dec)) / (1−e^(−u·τ_dec)+e^(−u·τ_mix)), u = λ·E[passes]
                                            share of mixed steps: a step is mixed when a
                                            prompt arrived during the step before; at
                                            least λ·E[I]·τ̄/room (the prompts' passes)
  p      = min(λ·E[I]·τ̄ / f, room)          prompt tokens per mixed step (flow balance)
  τ_mix  = step(d, p), τ_dec = step(d, 0)   from ``costs.step`` (prefill-first: step(0, p))
  τ̄      = f·τ_mix + (1−f)·τ_dec            solved by damped fixed-point iteration
  TPOT   = τ̄ (fused chunks) or τ̄ / (1−f) (prefill-first: decodes sit out prompt steps)

Queueing on top (``costs.queueing``): admission into c = min(running cap, KV slots)
slots as M/G/c, prompt tokens waiting for budget room as GI/G/1; each metric's
percentiles come from the mixture over length buckets.

Options serve the length table the functions are given, or each its own where they carry
one (``StreamOptions.lengths``: ``capacity`` prices a sweep of cases as one array of options).
"""

from __future__ import annotations

import numpy as np

from guideopt.costs.hardware import HardwareArrays
from guideopt.costs.lengths import LengthTable, decode_terms, weighted
from guideopt.costs.metrics import first_token_path_s
from guideopt.costs.queueing import Wait, combine, kingman_wait, merged_columns, mixture_mean, mixture_quantiles, slot_wait
from guideopt.costs.step import StepConfig, mixed_step_s
from guideopt.costs.stream_fixed_point import MIN_SHARE, FixedPointInputs, solve_fixed_point
from guideopt.costs.stream_types import Dist, Steady, StreamMetrics, StreamOptions, option_lengths, per_option
from guideopt.costs.tables import hardware_for_rows
from guideopt.model.llm import ModelArch
from guideopt.model.workload import REPORTED_PERCENTILES
from guideopt.units import MS_PER_S

CONVERGED_REL = 1e-3  # a fixed point that still moves by more than this is overload
UNIFORM_SD = 1.0 / np.sqrt(12.0)  # sd of a uniform wait over one step, in steps


def _col(x) -> np.ndarray:
    return np.asarray(x, dtype=float)[..., None]


def _per_decode_s(arch: ModelArch, cfg: StepConfig, hw: HardwareArrays, st: Steady, kv_per_decode) -> np.ndarray:
    """∂τ/∂d: what one more decode adds to a decode step at the steady state's batch (d others and
    itself: ``tau_dec_s`` is the step of d + 1), per option (column)."""
    d = _col(st.decodes) + 2.0
    zero = 0.0 * d
    more = mixed_step_s(
        arch, cfg, hw, decodes=d, decode_kv_tokens=d * kv_per_decode, prefill_tokens=zero, prefill_seqs=zero, prefill_pair_count=zero
    )
    return np.maximum(more - _col(st.tau_dec_s), 0.0)


def _broadcast(opts: StreamOptions, extra_dims: int) -> tuple[StepConfig, HardwareArrays]:
    """Step configuration and hardware with ``extra_dims`` trailing axes (options first)."""

    def ex(a):
        a = np.asarray(a, dtype=float)
        return a.reshape(a.shape + (1,) * extra_dims)

    cfg = StepConfig(
        ex(opts.cfg.tp), ex(opts.cfg.pp), ex(opts.cfg.w_bytes), ex(opts.cfg.kv_bytes), opts.cfg.flash, ex(opts.cfg.dp), ex(opts.cfg.ep)
    )
    hw = HardwareArrays(**{f: ex(getattr(opts.hw, f)) for f in HardwareArrays.__dataclass_fields__})
    return cfg, hw


def kv_tokens_per_request(lengths: LengthTable, reserve: np.ndarray) -> np.ndarray:
    """Mean KV a running request holds: prompt plus half its output (the whole output when reserved)."""
    held = weighted(lengths, lengths.input_len + lengths.output_len / 2.0)
    full = weighted(lengths, lengths.input_len + lengths.output_len)
    return np.where(reserve, full, held)


def kv_slots(kv_tokens, lengths: LengthTable, reserve) -> np.ndarray:
    """Requests the KV cache holds at once, each at its mean held length."""
    return np.floor(np.asarray(kv_tokens, dtype=float) / kv_tokens_per_request(lengths, reserve))


def running_slots(opts: StreamOptions, lengths: LengthTable) -> np.ndarray:
    """Per option, the requests a replica runs at once: its cap, or fewer when the KV cache holds fewer (at least 1)."""
    lengths = option_lengths(opts, lengths)
    return np.maximum(np.minimum(opts.running_cap, kv_slots(opts.kv_tokens, lengths, opts.reserve_kv)), 1.0)


def steady_state(arch: ModelArch, opts: StreamOptions, lengths: LengthTable, rate_rps: np.ndarray) -> Steady:
    """The fixed point at ``rate_rps`` (shape (options,) or (options, k))."""
    lam = np.asarray(rate_rps, dtype=float)
    extra = lam.ndim - 1
    cfg, hw = _broadcast(opts, extra)

    def ex(a):
        a = np.asarray(a, dtype=float)
        return a.reshape(a.shape + (1,) * extra)

    lengths = option_lengths(opts, lengths)
    inp = lengths.input_len
    dec_steps, ctx = decode_terms(lengths)
    terms = (weighted(lengths, inp), dec_steps, ctx, weighted(lengths, inp * (inp + 1.0) / 2.0))
    mean_in, dec_steps, ctx, pairs = (per_option(x, extra) for x in terms)
    chunked = ex(opts.chunked) > 0
    budget, keep = ex(opts.token_budget), ex(opts.kv_keep)
    slots = ex(running_slots(opts, lengths))

    k = FixedPointInputs(
        arch=arch,
        cfg=cfg,
        hw=hw,
        lam=lam + np.zeros_like(budget),
        chunked=chunked + np.zeros(lam.shape, dtype=bool),
        budget=budget + np.zeros_like(lam),
        keep=keep + np.zeros_like(lam),
        slots=slots + np.zeros_like(lam),
        w=np.asarray(per_option(lengths.weight, extra, lengths)),
        inp=np.asarray(per_option(inp, extra, lengths)),
        mean_in=mean_in,
        dec_steps=dec_steps,
        ctx=ctx,
        pairs=pairs,
        own_lengths=lengths.per_option,
    )
    it = solve_fixed_point(k)
    tau, tau_mix, tau_dec, f, d, room, passes, moved = it.tau, it.tau_mix, it.tau_dec, it.f, it.d, it.room, it.passes, it.moved
    tpot = np.where(chunked, tau, tau / np.maximum(1.0 - f, MIN_SHARE))
    prefill_service = mean_in / room * tau_mix
    ttft_service = tau / 2.0 + passes * tau_mix
    residence = ttft_service + dec_steps * tpot
    converged = (moved < CONVERGED_REL) & (lam * mean_in * tau / f <= room * (1 + CONVERGED_REL))
    return Steady(tau, tau_dec, tau_mix, f, d, room, tpot, slots, residence, prefill_service, converged)


def stream_metrics(
    arch: ModelArch,
    opts: StreamOptions,
    lengths: LengthTable,
    rate_rps: np.ndarray,
    *,
    burstiness: float = 1.0,
    percentiles: tuple[float, ...] | dict[str, tuple[float, ...]] = REPORTED_PERCENTILES,
) -> StreamMetrics:
    """Per-request metric distributions at ``rate_rps`` requests/s per replica (shape (options,)).

    ``percentiles``: the percentile values to compute, for every metric or per metric name
    (``{"ttft_ms": (90.0, 99.0)}``; a metric left out gets none, its bounds still testable
    with ``Dist.within``)."""
    lam = np.asarray(rate_rps, dtype=float)
    st = steady_state(arch, opts, lengths, lam)
    ca2 = burstiness**2
    lengths = option_lengths(opts, lengths)
    w, inp, out = lengths.weight, lengths.input_len, lengths.output_len
    dec = np.maximum(out - 1.0, 0.0)
    mean_dec, mean_in = weighted(lengths, dec), weighted(lengths, inp)
    cs2_res = weighted(lengths, (dec - per_option(mean_dec, 1)) ** 2) / np.maximum(mean_dec, 1.0) ** 2
    cs2_in = weighted(lengths, (inp - per_option(mean_in, 1)) ** 2) / mean_in**2
    slot = slot_wait(st.slots, lam, st.residence_s, ca2, cs2_res)
    rho_pf = lam * st.prefill_service_s
    prompt = kingman_wait(lam, st.prefill_service_s, ca2, cs2_in)
    stable = st.converged & (lam * st.residence_s < st.slots) & (rho_pf < 1.0)

    cfg, hw = _broadcast(opts, 1)
    chunked = _col(opts.chunked) > 0
    room = _col(st.room)
    # A prompt's passes and their times depend on its bucket only through its length: priced
    # once per distinct prompt length (a crossed mix repeats each one per output length).
    inp_u, inv = (inp, None) if lengths.per_option else np.unique(inp, return_inverse=True)
    if inv is not None and inp_u.size == inp.size:
        inp_u, inv = inp, None
    passes = np.ceil(inp_u / room)
    # A prompt shares its step with the prompts that arrived during the step before (PASTA:
    # λ·τ̄·E[I] tokens on average), up to the room the budget leaves.
    others = _col(lam * st.tau_s * mean_in)
    d_mix = np.where(chunked, _col(st.decodes), 0.0)

    def pass_s(prompt_tokens):
        return mixed_step_s(
            arch,
            cfg,
            hw,
            decodes=d_mix,
            decode_kv_tokens=d_mix * per_option(decode_terms(lengths)[1], 1) * _col(opts.kv_keep),
            prefill_tokens=np.minimum(prompt_tokens + others, room),
            prefill_seqs=1.0 + others / per_option(mean_in, 1),
            prefill_pair_count=inp_u * (inp_u + 1.0) / 2.0 / passes,
        )

    # Passes of a full room, then one with what remains of the prompt (not another full room).
    last = inp_u - (passes - 1.0) * room
    if bool(np.any(passes > 1)):  # only multi-pass prompts use a full room's pass: both in one call
        both = pass_s(np.stack([last, np.broadcast_to(room, last.shape)]))
        tau_pass, tau_full = both[0], both[1]
    else:
        tau_pass = pass_s(last)
        tau_full = 0.0 * tau_pass
    boundary_mean = _col((st.mixed_share * st.tau_mix_s**2 + (1 - st.mixed_share) * st.tau_dec_s**2) / (2.0 * st.tau_s))
    boundary_sd = _col(st.tau_s) * UNIFORM_SD
    f = _col(st.mixed_share)
    spread = _col(st.tau_mix_s - st.tau_dec_s)
    waits = combine(_wait_col(slot), _wait_col(prompt))
    clump = _col(weighted(lengths, inp**2.0) / np.maximum(mean_in, 1.0) ** 2)  # E[I²]/E[I]²
    arrivals_per_step = _col(lam * st.tau_s)
    per_decode = _per_decode_s(arch, cfg, hw, st, per_option(decode_terms(lengths)[1], 1) * _col(opts.kv_keep))
    c_p = np.abs(spread) * f / np.maximum(arrivals_per_step, MIN_SHARE)  # the mean extra time one prompt brings (below)
    tpot_w = np.where(dec > 0, w, 0.0)
    tpot_w = tpot_w / np.maximum(tpot_w.sum(axis=-1, keepdims=True), MIN_SHARE)

    # A metric's buckets alike in the lengths it depends on share one distribution (``merge_buckets``): only the
    # first of each is computed (every term is elementwise over buckets: the values computing all and merging gives).
    def columns(c):
        """(passes, prompt's last pass, full pass, decode steps) at bucket columns ``c`` (None: all)."""
        idx = inv if c is None else (c if inv is None else inv[c])
        at = (lambda a: a) if idx is None else (lambda a: np.take(a, idx, axis=-1))  # C order, as computed on all buckets
        return at(passes), at(tau_pass), at(tau_full), (dec if c is None else np.take(dec, c, axis=-1))

    first = _col(first_token_path_s(arch, opts.hw))  # the server's path to the first token, outside the steps

    def ttft(c):
        n_passes, t_pass, t_full, _ = columns(c)
        mu = boundary_mean + first + (n_passes - 1.0) * t_full + t_pass
        return mu, boundary_sd, Wait(waits.p_wait + 0 * t_pass, waits.theta_s + 0 * t_pass)

    def tpot(c):
        _, t_pass, _, d = columns(c)
        n_dec = np.maximum(d, 1.0)
        # Requests arriving during a request's n decode steps: λ·n·τ̄ of them (index of dispersion ca²).
        # Each adds its prompt's tokens to some mixed step, c_p·I/E[I] (c_p = spread·f/(λ·τ̄), the mean
        # extra time a prompt brings, whatever steps prompts share: near saturation (f → 1) the count of
        # mixed steps stops varying but the tokens they carry do not), and then decodes beside it for
        # n/2 steps on average, c_d = (∂τ/∂d)·n/2. A window with more arrivals is longer and so
        # gathers more: the count's sd grows by 1/(1 − λ·(c_p + c_d)). Measured on the simulator
        # (8B, RTX 6000 Ada, 2.5 req/s): 5.4 arrivals' sd for Poisson's 4.3, 0.35 ms of TPOT each.
        c_d = per_decode * n_dec / 2.0
        arrivals = np.maximum(arrivals_per_step * n_dec, MIN_SHARE)
        spread2 = ca2 * (c_p**2 * clump + 2.0 * c_p * c_d + c_d**2)
        feedback = np.maximum(1.0 - _col(lam) * (c_p + c_d), MIN_SHARE)
        sd_chunked = np.sqrt(arrivals * spread2) / n_dec / feedback
        sd = np.where(chunked, sd_chunked, _col(st.tau_mix_s) * np.sqrt(f) / np.maximum(1 - f, MIN_SHARE) / np.sqrt(n_dec))
        return _col(st.tpot_s) + 0 * t_pass, sd, Wait(np.zeros_like(t_pass), np.zeros_like(t_pass))

    def e2e(c):
        (ttft_mu, _, wait), (tpot_mu, tpot_sd, _), d = ttft(c), tpot(c), columns(c)[3]
        return ttft_mu + d * tpot_mu, np.sqrt(boundary_sd**2 + (d * tpot_sd) ** 2), wait

    def queue(c):
        t_pass = columns(c)[1]
        return boundary_mean + 0 * t_pass, boundary_sd, Wait(_col(slot.p_wait) + 0 * t_pass, _col(slot.theta_s) + 0 * t_pass)

    def dist(metric, parts, weight, *keys) -> Dist:
        cols, weight = (None, weight) if lengths.per_option else merged_columns(np.stack(keys, axis=1), weight)
        mu, sd, wait = parts(cols)
        sd = sd + 0 * mu
        if cols is not None:  # the shapes and memory order ``merge_buckets`` gives (sums over buckets follow it)
            mu, sd = np.asfortranarray(mu), np.asfortranarray(np.broadcast_to(sd, np.shape(mu)))
            wait = Wait(*(np.asfortranarray(np.broadcast_to(a, np.shape(mu))) for a in (wait.p_wait, wait.theta_s)))
        pcts = percentiles.get(metric, ()) if isinstance(percentiles, dict) else percentiles
        q = mixture_quantiles(mu, sd, wait, weight, pcts)
        has = np.asarray(weight).sum(axis=-1) > 0  # 0 where no request has the metric (TPOT of one-token outputs)
        mean = np.where(has, mixture_mean(mu, wait, weight), 0.0)
        return Dist(mean * MS_PER_S, {p: np.where(has, v, 0.0) * MS_PER_S for p, v in q.items()}, (mu, sd, wait, weight))

    running = lam * st.residence_s
    # The running count of an M/G/∞ stream is Poisson (variance λ·R, × (1 + ca²)/2 for other
    # arrivals), widened by the same feedback as TPOT: an arrival slows every running request by
    # its prompt (c_p) and by one more decode over their remaining steps (n̄·∂τ/∂d), so a busy spell
    # keeps them longer and gathers more.
    slows = lam * (c_p[..., 0] + per_decode[..., 0] * mean_dec)
    running_sd = np.sqrt(running * (1.0 + ca2) / 2.0) / np.maximum(1.0 - slows, MIN_SHARE)
    kv_use = np.minimum(running, st.slots) * kv_tokens_per_request(lengths, np.asarray(opts.reserve_kv)) / np.maximum(opts.kv_tokens, 1.0)
    return StreamMetrics(
        ttft_ms=dist("ttft_ms", ttft, w, inp),
        tpot_ms=dist("tpot_ms", tpot, tpot_w, out),
        e2e_ms=dist("e2e_ms", e2e, w, inp, out),
        queue_ms=dist("queue_ms", queue, w, np.zeros(np.shape(inp)[-1])),
        rate_rps=lam,
        output_throughput_tok_s=lam * weighted(lengths, out),
        running=running,
        kv_use=kv_use,
        stable=stable,
        steady=st,
        running_sd=running_sd,
    )


def _wait_col(w: Wait) -> Wait:
    return Wait(_col(w.p_wait), _col(w.theta_s))


def options_from_table(table, calibration, *, running_cap, reserve_kv, kv_keep=1.0) -> StreamOptions:
    """Stream options for the rows of an ``OptionTable`` (its split is the token budget)."""
    space = table.space
    hw = hardware_for_rows(space, calibration, table.gpu_idx, table.fw_idx, table.dtype_idx)
    n = len(table)
    cfg = StepConfig(
        tp=table.tp.astype(float),
        pp=table.pp.astype(float),
        w_bytes=np.array([dt.bytes for dt in space.dtypes], dtype=float)[table.dtype_idx],
        kv_bytes=table.kv_dtype_bytes.astype(float),
        flash=space.flash_attention,
        dp=table.dp.astype(float),
        ep=table.ep.astype(float),
    )
    return StreamOptions(
        cfg=cfg,
        hw=hw,
        running_cap=np.broadcast_to(np.asarray(running_cap, dtype=float), (n,)).copy(),
        token_budget=table.split.astype(float),
        chunked=np.array([fw.chunked_prefill for fw in space.frameworks], dtype=bool)[table.fw_idx],
        kv_tokens=table.memory.kv_tokens.astype(float),
        reserve_kv=np.broadcast_to(np.asarray(reserve_kv, dtype=bool), (n,)).copy(),
        kv_keep=np.full(n, float(kv_keep)),
    )
