"""Closed-loop figures (``concurrency`` clients) from one function.

``serving_metrics`` (``costs/serving.py``) is the closed loop's steady state: for c clients
per replica (per attention-DP rank), the requests in the engine (at most its cap and what its
KV cache holds), their cycle, and the wait of the clients beyond them for a place,
c / X − cycle with X = running / cycle (Little's law), plus the calibrated share of the
lockstep wave (``Calibration.closed_loop``). ``predict --concurrency`` reports its means;
``closed_loop_metrics`` gives the same means as distributions (``simulate``'s analytic
column), ``closed_loop_rate`` the requests/s c clients drive (a closed-loop plan's operating
point). Evaluating the stream model at the closed loop's measured throughput instead, as
``simulate`` once did, leaves out the clients waiting beyond the running cap: 1,000 clients
of an engine running 256 wait about 33 s each for a place (mean TTFT 72.7 ms "analytic"
against 33,500 ms simulated and predicted).

Spread: a closed loop has no Poisson queue (at most c requests are ever in the system; the
clients beyond the cap wait a nearly constant time), so each metric is the stream model's
per-bucket spread at rate X (``costs/stream.py``: the step a request arrives in, the mixed
steps among its decodes, its lengths) without the stream model's waiting terms, centred on
the closed-loop mean.
"""

from __future__ import annotations

import numpy as np

from guideopt.costs.lengths import LengthTable, weighted
from guideopt.costs.queueing import Wait, mixture_mean, mixture_quantiles
from guideopt.costs.serving import ServingInputs, serving_metrics
from guideopt.costs.stream import Dist, StreamMetrics, StreamOptions, kv_tokens_per_request, option_lengths, running_slots, stream_metrics
from guideopt.model.llm import ModelArch
from guideopt.model.workload import REPORTED_PERCENTILES
from guideopt.units import MS_PER_S

TINY_RATE_RPS = 1e-12  # the stream model's spread at a closed loop that drives no requests (an empty engine)


def stream_serving_inputs(opts: StreamOptions, lengths: LengthTable, clients, *, lockstep_share: float) -> ServingInputs:
    """The closed-loop inputs of stream options (one attention-DP rank each) at the lengths'
    means; ``clients`` per rank."""
    lengths = option_lengths(opts, lengths)
    n = len(opts)

    def col(a) -> np.ndarray:
        return np.broadcast_to(np.asarray(a, dtype=float), (n,)).copy()

    return ServingInputs(
        tp=col(opts.cfg.tp),
        pp=col(opts.cfg.pp),
        concurrency=col(clients),
        input_len=col(weighted(lengths, lengths.input_len)),
        output_len=col(weighted(lengths, lengths.output_len)),
        split=col(opts.token_budget),
        chunked=np.broadcast_to(np.asarray(opts.chunked, dtype=bool), (n,)).copy(),
        w_bytes=col(opts.cfg.w_bytes),
        kv_bytes=col(opts.cfg.kv_bytes),
        running_cap=col(running_slots(opts, lengths)),
        kv_keep=col(opts.kv_keep),
        flash=opts.cfg.flash,
        lockstep_share=lockstep_share,
        dp=col(opts.cfg.dp),
        ep=col(opts.cfg.ep),
    )


def closed_loop_rate(arch: ModelArch, opts: StreamOptions, lengths: LengthTable, clients, *, lockstep_share: float) -> np.ndarray:
    """Per option, the requests/s ``clients`` closed-loop clients drive through one rank."""
    x = stream_serving_inputs(opts, lengths, clients, lockstep_share=lockstep_share)
    return serving_metrics(arch, x, opts.hw).request_rate_rps


def closed_loop_metrics(
    arch: ModelArch,
    opts: StreamOptions,
    lengths: LengthTable,
    x: ServingInputs,
    *,
    percentiles: tuple[float, ...] = REPORTED_PERCENTILES,
) -> StreamMetrics:
    """Per option, the closed loop ``x`` describes (``serving_metrics``: its means exactly) as
    distributions of TTFT, TPOT, E2E and queueing (ms), at the rate its clients drive."""
    s = serving_metrics(arch, x, opts.hw)
    rate = np.asarray(s.request_rate_rps, dtype=float)
    m = stream_metrics(arch, opts, lengths, np.maximum(rate, TINY_RATE_RPS), percentiles=())
    queue_base = _no_wait_mean_s(m.queue_ms)
    means = {"ttft_ms": s.ttft_s, "tpot_ms": s.tpot_s, "e2e_ms": s.request_latency_s, "queue_ms": queue_base + s.client_wait_s}
    dists = {metric: _centred(m.dist(metric), np.asarray(mean_s, dtype=float), percentiles) for metric, mean_s in means.items()}
    lengths = option_lengths(opts, lengths)
    held = kv_tokens_per_request(lengths, np.asarray(opts.reserve_kv))
    return StreamMetrics(
        **dists,
        rate_rps=rate,
        output_throughput_tok_s=rate * weighted(lengths, lengths.output_len),
        running=s.running,
        kv_use=s.running * held / np.maximum(opts.kv_tokens, 1.0),
        stable=np.ones(rate.shape, dtype=bool),  # clients wait for their last request: the queue never grows without bound
        steady=m.steady,
        running_sd=None,  # Poisson (no feedback model for a closed loop)
    )


def _no_wait_mean_s(d: Dist) -> np.ndarray:
    mu, _, _, weight = d.parts
    return mixture_mean(mu, _no_wait(mu), weight)


def _no_wait(mu) -> Wait:
    zero = np.zeros(np.shape(mu))
    return Wait(zero, zero)


def _centred(d: Dist, mean_s: np.ndarray, percentiles: tuple[float, ...]) -> Dist:
    """``d``'s per-bucket spread without its waits, shifted so that its mean is ``mean_s``."""
    mu, sd, _, weight = d.parts
    mu = np.asarray(mu, dtype=float)
    shift = mean_s - _no_wait_mean_s(d)
    finite = np.isfinite(mu).all(axis=-1) & np.isfinite(shift)
    mu = np.where(finite[..., None], mu + shift[..., None], mean_s[..., None] + 0.0 * mu)
    sd = np.where(finite[..., None], np.asarray(sd, dtype=float) + 0.0 * mu, 0.0)
    wait = _no_wait(mu)
    has = np.asarray(weight).sum(axis=-1) > 0  # 0 where no request has the metric (TPOT of one-token outputs)
    q = mixture_quantiles(mu, sd, wait, weight, percentiles)
    mean = np.where(has, mean_s, 0.0) * MS_PER_S
    return Dist(mean, {p: np.where(has, v, 0.0) * MS_PER_S for p, v in q.items()}, (mu, sd, wait, weight))
