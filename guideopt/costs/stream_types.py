"""The types of the analytic stream model (``costs.stream``): options, the steady state, a
metric's distribution and the metrics of a stream, per option."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from guideopt.costs.hardware import HardwareArrays
from guideopt.costs.lengths import LengthTable
from guideopt.costs.queueing import Wait, mixture_cdf
from guideopt.costs.step import StepConfig
from guideopt.units import MS_PER_S


@dataclass(frozen=True)
class StreamOptions:
    """One row per option (arrays of equal length): a replica and its engine knobs."""

    cfg: StepConfig
    hw: HardwareArrays
    running_cap: np.ndarray  # max running requests (max_num_seqs and equivalents)
    token_budget: np.ndarray  # tokens per step (chunk size)
    chunked: np.ndarray  # bool: prompt chunks fused with decodes; else prefill-first
    kv_tokens: np.ndarray  # KV-cache capacity of the replica, tokens
    reserve_kv: np.ndarray  # bool: admission reserves prompt + output (TRT-LLM GUARANTEED_NO_EVICT)
    kv_keep: np.ndarray  # H2O keep ratio
    lengths: LengthTable | None = None  # per option (a ``per_option`` table); None: the lengths each call is given

    def __len__(self) -> int:
        return int(np.asarray(self.running_cap).size)

    def take(self, idx) -> StreamOptions:
        def sub(a):
            a = np.asarray(a)
            return a if a.ndim == 0 else a[idx]

        cfg = StepConfig(
            sub(self.cfg.tp),
            sub(self.cfg.pp),
            sub(self.cfg.w_bytes),
            sub(self.cfg.kv_bytes),
            self.cfg.flash,
            sub(self.cfg.dp),
            sub(self.cfg.ep),
        )
        hw = HardwareArrays(**{f: sub(getattr(self.hw, f)) for f in HardwareArrays.__dataclass_fields__})
        return StreamOptions(
            cfg,
            hw,
            sub(self.running_cap),
            sub(self.token_budget),
            sub(self.chunked),
            sub(self.kv_tokens),
            sub(self.reserve_kv),
            sub(self.kv_keep),
            None if self.lengths is None else self.lengths.take(idx),
        )


def option_lengths(opts: StreamOptions, lengths: LengthTable) -> LengthTable:
    """The lengths the options serve: their own where they carry them, else ``lengths``."""
    return lengths if opts.lengths is None else opts.lengths


def per_option(x, extra_dims: int = 0, lengths: LengthTable | None = None) -> float | np.ndarray:
    """A length term (a float, or per option) shaped to broadcast against options × ``extra_dims``
    trailing axes; with ``lengths`` (per option), a per-bucket array keeping its bucket axis last."""
    if isinstance(x, float) or (lengths is not None and not lengths.per_option):
        return x
    a = np.asarray(x, dtype=float)
    return a.reshape(a.shape[:1] + (1,) * extra_dims + a.shape[1:])


@dataclass(frozen=True)
class Steady:
    """The fixed point, per option (arrays of the rate's shape)."""

    tau_s: np.ndarray  # mean step
    tau_dec_s: np.ndarray
    tau_mix_s: np.ndarray
    mixed_share: np.ndarray
    decodes: np.ndarray
    room: np.ndarray
    tpot_s: np.ndarray
    slots: np.ndarray
    residence_s: np.ndarray
    prefill_service_s: np.ndarray
    converged: np.ndarray


@dataclass(frozen=True)
class Dist:
    """A metric's mixture over length buckets (ms): its mean, the percentiles asked for, and
    the mixture itself so that a bound can be tested with one CDF evaluation."""

    mean: np.ndarray
    percentiles: dict[float, np.ndarray]
    parts: tuple[np.ndarray, np.ndarray, Wait, np.ndarray]  # μ, σ, wait (s), bucket weights

    def within(self, pct: float, bound_ms: float, level: np.ndarray | None = None) -> np.ndarray:
        """Per option, whether the ``pct`` percentile is at most ``bound_ms``: P(X ≤ bound) ≥ pct/100,
        or ≥ ``level`` (per option, a share above pct/100: the margin one finite run needs).
        A metric no request has (TPOT where every request is one token long) meets any bound."""
        mu, sd, wait, weight = self.parts
        none = np.asarray(weight).sum(axis=-1) <= 0
        if level is None and pct in self.percentiles:
            return (self.percentiles[pct] <= bound_ms) | none
        x = np.full(mu.shape[:-1] + (1,), bound_ms / MS_PER_S)
        need = pct / 100.0 if level is None else level
        return (mixture_cdf(x, mu, sd, wait, weight) >= need) | none


@dataclass(frozen=True)
class StreamMetrics:
    """Per option: distributions in ms, rates per replica, and the steady state."""

    ttft_ms: Dist
    tpot_ms: Dist
    e2e_ms: Dist
    queue_ms: Dist
    rate_rps: np.ndarray
    output_throughput_tok_s: np.ndarray
    running: np.ndarray
    kv_use: np.ndarray  # fraction of the KV cache in use
    stable: np.ndarray  # the rate is sustainable (queues drain)
    steady: Steady
    running_sd: np.ndarray | None = None  # sd of the running count (None: Poisson, √running)

    def dist(self, metric: str) -> Dist:
        return getattr(self, metric)
