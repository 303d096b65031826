"""Request-length distributions as weighted (input, output) buckets, for the analytic model.

A named mix stores, per side, a log-normal given by its median m and mean μ:
σ² = 2·ln(μ/m), ln-median = ln m. The analytic evaluator needs a handful of buckets: each
side is cut into ``MIX_BINS`` equal-probability bins represented by their mid quantile,
the two sides crossed (independent, as the sources give no joint statistics).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.stats import lognorm

from guideopt.model.workload import LengthBucket, LengthMix, LengthMoments

MIX_BINS = 8  # per side: 64 buckets keep the percentile mixture within ~1% of a finer grid


@dataclass(frozen=True)
class LengthTable:
    """Weighted request lengths; weights sum to 1."""

    input_len: np.ndarray
    output_len: np.ndarray
    weight: np.ndarray

    @property
    def mean_input(self) -> float:
        return float(self.weight @ self.input_len)

    @property
    def mean_output(self) -> float:
        return float(self.weight @ self.output_len)

    @property
    def max_total(self) -> int:
        return int((self.input_len + self.output_len).max())

    @property
    def is_fixed(self) -> bool:
        return self.input_len.size == 1


def fixed_lengths(input_len: int, output_len: int) -> LengthTable:
    return LengthTable(np.array([float(input_len)]), np.array([float(output_len)]), np.ones(1))


def bucket_lengths(buckets: list[LengthBucket]) -> LengthTable:
    w = np.array([b.weight for b in buckets], dtype=float)
    return LengthTable(
        np.array([b.input_len for b in buckets], dtype=float),
        np.array([b.output_len for b in buckets], dtype=float),
        w / w.sum(),
    )


def sample_lengths(inputs: np.ndarray, outputs: np.ndarray) -> LengthTable:
    """Empirical distribution of a trace: one equally weighted bucket per distinct pair."""
    pairs, counts = np.unique(np.stack([inputs, outputs], axis=1), axis=0, return_counts=True)
    return LengthTable(pairs[:, 0].astype(float), pairs[:, 1].astype(float), counts / counts.sum())


def lognormal_sigma(side: LengthMoments) -> float:
    return float(np.sqrt(2.0 * np.log(side.mean / side.median)))


def side_quantiles(side: LengthMoments, probs: np.ndarray) -> np.ndarray:
    """Token counts at the given probabilities, rounded and clipped to [1, max]."""
    values = lognorm.ppf(probs, s=max(lognormal_sigma(side), 1e-9), scale=side.median)
    return np.clip(np.round(values), 1, side.max)


def mix_lengths(mix: LengthMix, bins: int = MIX_BINS) -> LengthTable:
    mids = (np.arange(bins) + 0.5) / bins
    i = side_quantiles(mix.input, mids)
    o = side_quantiles(mix.output, mids)
    ii, oo = np.meshgrid(i, o, indexing="ij")
    return LengthTable(ii.ravel(), oo.ravel(), np.full(bins * bins, 1.0 / (bins * bins)))
