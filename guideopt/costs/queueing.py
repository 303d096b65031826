"""Queueing approximations behind the analytic stream model (see docs/serving-model.md).

* Admission into the engine's running set: an M/G/c queue (c = running slots, service =
  a request's residence time), waiting probability from Erlang C, the wait's tail
  exponential with rate c/R − λ, scaled for non-Poisson arrivals and service variability
  by the Allen–Cunneen factor (ca² + cs²)/2.
* Prompt tokens waiting for room in the token budget: an M/G/1 queue with Kingman's
  (GI/G/1) mean, ρ/(1−ρ)·(ca² + cs²)/2·E[s], and an exponential tail with atom 1 − ρ.
* A metric per length bucket is ``μ + σ·Z + W`` (Z standard normal, W the wait: zero with
  probability 1 − π, else exponential with mean θ); its CDF is closed-form (normal plus
  exponentially-modified Gaussian) and percentiles of the mixture over buckets are found
  by bisection, vectorised over options; a bound alone is tested with one CDF evaluation
  (P(X ≤ bound) ≥ p), which is all the solver's SLO search needs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import gammaln, log_ndtr, ndtr, pdtr, xlogy

BISECTION_STEPS = 40  # halves the bracket to 1e-12 of its width
MIN_SIGMA_S = 1e-9  # a point mass is treated as a normal this narrow


def erlang_c(servers: np.ndarray, offered: np.ndarray) -> np.ndarray:
    """Probability an arrival waits in M/M/c with c = ``servers`` and load a = λ·E[S] (< c)."""
    c = np.maximum(np.floor(servers), 1.0)
    a = np.minimum(offered, c * (1 - 1e-12))
    top = poisson_pmf(c, a) * c / (c - a)
    return np.clip(top / (pdtr(c - 1, a) + top), 0.0, 1.0)  # pdtr: the Poisson CDF


def poisson_pmf(k, mu) -> np.ndarray:
    """P(N = k) for N ~ Poisson(mu), whole k ≥ 0: scipy.stats.poisson.pmf's own formula, from
    scipy.special (scipy.stats takes about a second to import)."""
    return np.exp(xlogy(k, mu) - gammaln(k + 1) - mu)


@dataclass(frozen=True)
class Wait:
    """Atom at zero with probability 1 − ``p_wait``, else exponential with mean ``theta_s``."""

    p_wait: np.ndarray
    theta_s: np.ndarray

    @property
    def mean_s(self) -> np.ndarray:
        return self.p_wait * self.theta_s


def slot_wait(servers, arrival_rps, residence_s, ca2, cs2) -> Wait:
    """M/G/c (Allen–Cunneen) wait for one of ``servers`` running slots."""
    c = np.maximum(np.floor(servers), 1.0)
    rho_c = arrival_rps * residence_s
    p = erlang_c(c, rho_c)
    drain = np.maximum(c / residence_s - arrival_rps, 1e-12)
    return Wait(p, (ca2 + cs2) / 2.0 / drain)


def kingman_wait(arrival_rps, service_s, ca2, cs2) -> Wait:
    """GI/G/1 wait: Kingman's mean, an exponential tail behind an atom of 1 − ρ."""
    rho = np.minimum(arrival_rps * service_s, 1 - 1e-12)
    mean = rho / (1.0 - rho) * (ca2 + cs2) / 2.0 * service_s
    p = np.where(mean > 0, rho, 0.0)
    return Wait(p, np.where(p > 0, mean / np.maximum(p, 1e-300), 0.0))


def combine(a: Wait, b: Wait) -> Wait:
    """Sum of two independent waits, kept in the same family: same mean and P(W > 0)."""
    p = 1.0 - (1.0 - a.p_wait) * (1.0 - b.p_wait)
    mean = a.mean_s + b.mean_s
    return Wait(p, np.where(p > 0, mean / np.maximum(p, 1e-300), 0.0))


def _cdf(x, mu, sigma, wait: Wait) -> np.ndarray:
    """P(μ + σZ + W ≤ x), elementwise."""
    s = np.maximum(sigma, MIN_SIGMA_S)
    u = (x - mu) / s
    normal = ndtr(u)
    waits = wait.theta_s > 0
    theta = np.where(waits, wait.theta_s, 1.0)  # placeholder where there is no wait (masked below)
    # exponentially modified Gaussian: Φ(u) − exp(−(x−μ)/θ + σ²/(2θ²)) Φ(u − σ/θ)
    expo = np.exp(np.minimum(-(x - mu) / theta + s**2 / (2 * theta**2) + log_ndtr(u - s / theta), 0.0))
    emg = np.where(waits, normal - expo, normal)
    return (1.0 - wait.p_wait) * normal + wait.p_wait * emg


def mixture_cdf(x, mu, sigma, wait: Wait, weight) -> np.ndarray:
    """CDF of the bucket mixture at x; arrays are (options, buckets), ``x`` is (options, 1)."""
    return (_cdf(x, mu, sigma, wait) * weight).sum(axis=-1)


def merge_buckets(mu, sigma, wait: Wait, weight, keys) -> tuple[np.ndarray, np.ndarray, Wait, np.ndarray]:
    """Merge the buckets whose rows of ``keys`` (buckets, k) are equal, adding their weights.

    The caller vouches that such buckets have the same distribution for every option (TTFT
    depends on the prompt only, TPOT on the output only), so the mixture is unchanged; this
    compares a few lengths per bucket instead of every option's values (``collapse_buckets``)."""
    first, w = merged_columns(keys, weight)
    if first is None:
        return mu, sigma, wait, weight
    wait = Wait(*(np.broadcast_to(a, np.shape(mu))[..., first] for a in (wait.p_wait, wait.theta_s)))
    return np.asarray(mu)[..., first], np.broadcast_to(sigma, np.shape(mu))[..., first], wait, w


def merged_columns(keys, weight) -> tuple[np.ndarray | None, np.ndarray]:
    """(the first bucket of each distinct row of ``keys``, the merged weights): what
    ``merge_buckets`` keeps; (None, ``weight``) where every row is distinct. A caller computing
    per-bucket values elementwise may compute them at these columns only."""
    _, first, inverse = np.unique(np.asarray(keys), axis=0, return_index=True, return_inverse=True)
    if first.size == np.shape(keys)[0]:
        return None, weight
    return first, np.bincount(inverse.ravel(), weights=np.asarray(weight, dtype=float), minlength=first.size)


class _MixtureCdf:
    """``mixture_cdf`` at many x for the same mixture: what does not depend on x computed once
    (the same operations in the same order as ``_cdf``, so the same values)."""

    def __init__(self, mu, sigma, wait: Wait, weight) -> None:
        s = np.maximum(sigma, MIN_SIGMA_S)
        self.waits = wait.theta_s > 0
        self.any_wait = bool(np.any(self.waits))
        theta = np.where(self.waits, wait.theta_s, 1.0)
        self.mu, self.s, self.theta, self.weight = mu, s, theta, weight
        self.var_term = s**2 / (2 * theta**2)
        self.shift = s / theta
        self.p, self.q = wait.p_wait, 1.0 - wait.p_wait

    def __call__(self, x) -> np.ndarray:
        dx = x - self.mu
        u = dx / self.s
        normal = ndtr(u)
        emg = normal
        if self.any_wait:  # without any wait the exponential term is masked out everywhere
            expo = np.exp(np.minimum(-dx / self.theta + self.var_term + log_ndtr(u - self.shift), 0.0))
            emg = np.where(self.waits, normal - expo, normal)
        return ((self.q * normal + self.p * emg) * self.weight).sum(axis=-1)


def mixture_quantiles(mu, sigma, wait: Wait, weight, percentiles: tuple[float, ...]) -> dict[float, np.ndarray]:
    """Percentiles of the mixture over buckets, per option, by bisection."""
    s = np.maximum(sigma, MIN_SIGMA_S)
    lo = (mu - 10 * s).min(axis=-1)
    hi = (mu + 10 * s + 50 * np.where(wait.p_wait > 0, wait.theta_s, 0.0)).max(axis=-1)
    out: dict[float, np.ndarray] = {}
    cdf = _MixtureCdf(mu, sigma, wait, weight) if percentiles else None
    for pct in percentiles:
        assert cdf is not None
        target = pct / 100.0
        a, b = lo.copy(), hi.copy()
        for _ in range(BISECTION_STEPS):
            mid = (a + b) / 2.0
            below = cdf(mid[..., None]) < target
            a = np.where(below, mid, a)
            b = np.where(below, b, mid)
        out[pct] = (a + b) / 2.0
    return out


def mixture_mean(mu, wait: Wait, weight) -> np.ndarray:
    return ((mu + wait.mean_s) * weight).sum(axis=-1)
