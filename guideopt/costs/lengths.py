"""Request-length distributions as weighted (input, output) buckets, for the analytic model.

A named mix stores, per side, a log-normal given by its median m and mean μ:
σ² = 2·ln(μ/m), ln-median = ln m. The analytic evaluator needs a handful of buckets: each
side is cut at the probabilities ``MIX_EDGES`` (eight even bins, then finer ones in the
upper tail so that P90 and P99 of lengths are represented) and each bin is represented by
its mid quantile; the two sides are crossed (independent, as the sources give no joint
statistics).

A table is shared by every option (arrays over buckets), or holds one distribution per
option (``per_option``: arrays of options × buckets, as ``case_lengths`` makes for a sweep
of fixed-length cases priced together); ``weighted`` and ``decode_terms`` give its means
either way.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from guideopt.model.limits import MAX_LENGTH_BUCKETS
from guideopt.model.workload import LengthBucket, LengthMix, LengthMoments

MIX_EDGES = (0.0, 0.125, 0.25, 0.375, 0.5, 0.625, 0.75, 0.875, 0.95, 0.99, 0.998, 1.0)


@dataclass(frozen=True)
class LengthTable:
    """Weighted request lengths; weights sum to 1 (per option, for a ``per_option`` table).
    The ``mean_*`` properties are a shared table's (``weighted`` serves both kinds)."""

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
        return self.input_len.shape[-1] == 1

    @property
    def per_option(self) -> bool:
        return self.weight.ndim > 1

    def take(self, idx) -> LengthTable:
        """A per-option table's rows ``idx``."""
        return LengthTable(self.input_len[idx], self.output_len[idx], self.weight[idx])


def case_lengths(input_len, output_len) -> LengthTable:
    """Per-option fixed lengths: option i's requests all have ``input_len[i]``, ``output_len[i]`` tokens."""
    i = np.asarray(input_len, dtype=float).reshape(-1, 1)
    o = np.asarray(output_len, dtype=float).reshape(-1, 1)
    return LengthTable(i, o, np.ones_like(i))


def weighted(lengths: LengthTable, values) -> float | np.ndarray:
    """Σ_b w_b·x_b of per-bucket ``values``: a float for a shared table, one per option for a per-option one."""
    if not lengths.per_option:
        return float(lengths.weight @ values)
    return (lengths.weight * values).sum(axis=-1)


def decode_terms(lengths: LengthTable) -> tuple[float | np.ndarray, float | np.ndarray]:
    """(decode steps per request E[O−1], mean context of a decoding request: its prompt plus
    half its output, weighted by decode steps; the mean prompt where no request decodes)."""
    inp, out = lengths.input_len, lengths.output_len
    dec = np.maximum(out - 1.0, 0.0)
    steps, held, mean_in = weighted(lengths, dec), weighted(lengths, dec * (inp + out / 2.0)), weighted(lengths, inp)
    if isinstance(steps, float):
        return steps, held / steps if steps > 0 else mean_in
    return steps, np.where(steps > 0, held / np.where(steps > 0, steps, 1.0), mean_in)


def fixed_lengths(input_len: int, output_len: int) -> LengthTable:
    return LengthTable(np.array([float(input_len)]), np.array([float(output_len)]), np.ones(1))


def bucket_lengths(buckets: list[LengthBucket]) -> LengthTable:
    """A weighted bucket list's table; a list longer than ``MAX_LENGTH_BUCKETS`` is condensed (below)."""
    i = np.array([b.input_len for b in buckets], dtype=float)
    o = np.array([b.output_len for b in buckets], dtype=float)
    w = np.array([b.weight for b in buckets], dtype=float)
    return condensed_lengths(i, o, w) if len(buckets) > MAX_LENGTH_BUCKETS else LengthTable(i, o, w / w.sum())


def sample_lengths(inputs: np.ndarray, outputs: np.ndarray) -> LengthTable:
    """Empirical distribution of a trace: one bucket per distinct pair weighted by its count,
    condensed to at most ``MAX_LENGTH_BUCKETS`` (below)."""
    return condensed_lengths(np.asarray(inputs, dtype=float), np.asarray(outputs, dtype=float), np.ones(np.size(inputs)))


def condensed_lengths(inputs: np.ndarray, outputs: np.ndarray, weights: np.ndarray) -> LengthTable:
    """Weighted lengths as a table of at most ``MAX_LENGTH_BUCKETS`` buckets (weights sum to 1).

    Up to that many distinct pairs are kept as they are. Beyond it, each side is cut at the
    weighted quantiles ``MIX_EDGES`` (a mix's bins: even ones, finer in the tail so that P90
    and P99 lengths are represented), and each non-empty (prompt bin, output bin) cell
    becomes one bucket at its members' mean lengths (rounded: a trace's pairs stay whole
    tokens), so the correlation of prompt and output lengths and the means are kept. The
    longest request stays a bucket of its own: memory and context checks need its length.
    """
    pairs, w = _distinct_pairs(inputs, outputs, weights)
    if len(pairs) > MAX_LENGTH_BUCKETS:
        pairs, w = _quantile_cells(pairs, w)
    return LengthTable(pairs[:, 0].astype(float), pairs[:, 1].astype(float), w / w.sum())


def _distinct_pairs(inputs: np.ndarray, outputs: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The distinct (input, output) pairs in sorted order, and each one's total weight
    (a sort by both keys: ``np.unique(axis=0)`` is ~10x slower on a 200,000-row trace)."""
    order = np.lexsort((outputs, inputs))
    a, b = inputs[order], outputs[order]
    first = np.ones(a.size, dtype=bool)
    first[1:] = (a[1:] != a[:-1]) | (b[1:] != b[:-1])
    group = np.cumsum(first) - 1
    return np.stack([a[first], b[first]], axis=1), np.bincount(group, weights=weights[order], minlength=int(first.sum()))


def _quantile_cells(pairs: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct ``pairs`` with weights ``w`` merged into quantile cells (``condensed_lengths``)."""
    longest = int(np.argmax(pairs.sum(axis=1)))
    rest = np.arange(len(pairs)) != longest
    p, pw = pairs[rest], w[rest]
    bins = len(MIX_EDGES) - 1
    cell = _quantile_bin(p[:, 0], pw) * bins + _quantile_bin(p[:, 1], pw)
    cells, inverse = np.unique(cell, return_inverse=True)
    cw = np.bincount(inverse, weights=pw, minlength=cells.size)
    means = np.stack([np.bincount(inverse, weights=pw * p[:, k], minlength=cells.size) / cw for k in (0, 1)], axis=1)
    merged = np.vstack([np.maximum(np.round(means), 1.0), pairs[longest : longest + 1]])
    out, back = np.unique(merged, axis=0, return_inverse=True)  # rounding may make two cells one pair
    return out, np.bincount(back.ravel(), weights=np.append(cw, w[longest]), minlength=len(out))


def _quantile_bin(values: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Each value's bin among the weighted quantiles ``MIX_EDGES`` (equal values share a bin)."""
    distinct, inverse = np.unique(values, return_inverse=True)
    mass = np.bincount(inverse, weights=w, minlength=distinct.size)
    mid = (np.cumsum(mass) - mass / 2.0) / mass.sum()  # a value's place in the distribution
    return np.searchsorted(np.asarray(MIX_EDGES[1:-1]), mid, side="right")[inverse]


def lognormal_sigma(side: LengthMoments) -> float:
    return float(np.sqrt(2.0 * np.log(side.mean / side.median)))


def side_quantiles(side: LengthMoments, probs: np.ndarray) -> np.ndarray:
    """Token counts at the given probabilities, rounded and clipped to [1, max]: the published
    percentiles, linear between them (``min`` at 0, ``max`` at 1), or the side's lognormal,
    median · exp(σ·Φ⁻¹(p)) (scipy.special's Φ⁻¹; scipy.stats, whose ``lognorm.ppf`` is the same,
    takes ~1 s to import)."""
    probs = np.asarray(probs, dtype=float)
    if side.percentiles is not None:
        qs = sorted(side.percentiles)
        values = np.interp(probs, [0.0, *qs, 1.0], [side.min, *(side.percentiles[q] for q in qs), side.max])
    else:
        from scipy.special import ndtri

        values = side.median * np.exp(max(lognormal_sigma(side), 1e-9) * ndtri(probs))
    return np.clip(np.round(values), 1, side.max)


def mix_lengths(mix: LengthMix, edges: tuple[float, ...] = MIX_EDGES) -> LengthTable:
    e = np.asarray(edges)
    mids, widths = (e[:-1] + e[1:]) / 2.0, np.diff(e)
    i = side_quantiles(mix.input, mids)
    o = side_quantiles(mix.output, mids)
    ii, oo = np.meshgrid(i, o, indexing="ij")
    ww = np.outer(widths, widths)
    return LengthTable(ii.ravel(), oo.ravel(), ww.ravel() / ww.sum())
