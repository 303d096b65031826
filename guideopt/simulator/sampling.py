"""Seeded request streams: arrival times and lengths."""

from __future__ import annotations

import numpy as np

from guideopt.costs.lengths import LengthTable, lognormal_sigma, side_quantiles
from guideopt.model.workload import LengthMix
from guideopt.simulator.engine import RequestStream


def arrival_times(rate_rps: float, n: int, rng: np.random.Generator, burstiness: float = 1.0) -> np.ndarray:
    """Open-loop arrivals: gamma inter-arrival times with mean 1/rate and coefficient of
    variation ``burstiness`` (shape 1/cv²; cv = 1 is a Poisson process), first at t = 0."""
    shape = 1.0 / burstiness**2
    gaps = rng.gamma(shape, 1.0 / (rate_rps * shape), size=n)
    gaps[0] = 0.0
    return np.cumsum(gaps)


def sample_table(table: LengthTable, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    if table.is_fixed:
        return np.full(n, table.input_len[0]), np.full(n, table.output_len[0])
    idx = rng.choice(table.weight.size, size=n, p=table.weight)
    return table.input_len[idx], table.output_len[idx]


def sample_mix(mix: LengthMix, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Independent prompt and output lengths, rounded, clipped to [1, max]: drawn through the published
    percentiles (inverse transform) where the mix has them, else log-normal."""

    def side(moments) -> np.ndarray:
        if moments.percentiles is not None:
            return side_quantiles(moments, rng.random(n))
        x = rng.lognormal(np.log(moments.median), lognormal_sigma(moments), size=n)
        return np.clip(np.round(x), 1, moments.max)

    return side(mix.input), side(mix.output)


def make_stream(
    inputs: np.ndarray,
    outputs: np.ndarray,
    *,
    rate_rps: float | None = None,
    concurrency: int | None = None,
    arrival_s: np.ndarray | None = None,
    burstiness: float = 1.0,
    seed: int = 0,
    together: bool = False,
) -> RequestStream:
    """A stream from lengths and one arrival rule (recorded times, a rate, or clients; with
    ``together`` the clients all start at t = 0, else spread over a cycle: ``clients.py``)."""
    if arrival_s is None and rate_rps is not None:
        arrival_s = arrival_times(rate_rps, inputs.size, np.random.default_rng([seed, 1]), burstiness)
    return RequestStream(inputs.astype(float), outputs.astype(float), arrival_s, concurrency, together)


def static_batch_stream(batch: int, input_len: int, output_len: int) -> RequestStream:
    """``batch`` requests all arriving at t = 0 (GUIDE's offline case)."""
    return RequestStream(np.full(batch, float(input_len)), np.full(batch, float(output_len)), np.zeros(batch))
