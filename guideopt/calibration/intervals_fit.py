"""Error bands for prediction intervals from held-out residuals, and their coverage.

``bands`` turns leave-one-source-out results into ``Calibration.intervals``: per regime (and
every back-off level of it) with enough residuals from at least two sources, the 10th, 50th and
90th percentiles of log(measured / predicted).
Residuals of the other sources understate how far a new source lands (sources differ by
engine version, host and client), so the half-widths around the median are widened by one
factor per metric kind (TTFT, closed-loop TTFT, TPOT, batch latency, throughput), the smallest that puts
``TARGET_COVERAGE`` of each source's rows inside bands built without that source.

``coverage`` checks this honestly, nested: each source's rows are scored against bands built
without it, widened by factors chosen without it (on the other sources, each against bands
built without both).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

import numpy as np

from guideopt.calibration.results import Result
from guideopt.costs.intervals import CLOSED_LOOP_TTFT, MIN_RESIDUALS, MIN_SOURCES, lookup_keys, regime_keys
from guideopt.model.calibration import ErrorBand

LOW_Q, MID_Q, HIGH_Q = 0.10, 0.50, 0.90
TARGET_COVERAGE = 0.80  # issue 11: about 80 % of held-out measurements inside the 10-90 % interval
WIDENINGS = np.round(np.arange(1.0, 8.0001, 0.05), 2)  # candidate factors, smallest first
ROUND = 4
RawBand = tuple[float, float, float, int, int]  # q10, q50, q90 of the log errors, rows, sources
Found = tuple[str, RawBand] | None  # a row's band and the metric kind it belongs to


def result_keys(r: Result, family_of: Callable[[str], str], engine_of: Callable[[str, str], str]) -> list[str]:
    q = r.case.request
    load = q.get("concurrency") or q.get("batch") or 1
    replicas = max(int(q.get("num_gpus", 1)) // (int(q.get("tp", 1)) * int(q.get("pp", 1))), 1)
    closed = r.case.workload == "closed_loop"
    return regime_keys(r.case.metric, family_of(q["gpu"]), engine_of(q["framework"], q["gpu"]), load / replicas, q.get("tp", 1), closed)


@dataclass(frozen=True)
class Residuals:
    """One row per held-out result: its regime keys (most specific first), log error and source."""

    keys: list[list[str]]
    logs: np.ndarray
    sources: np.ndarray

    @classmethod
    def of(cls, results: Iterable[Result], family_of, engine_of) -> Residuals:
        kept = [r for r in results if r.predicted > 0]
        return cls(
            [result_keys(r, family_of, engine_of) for r in kept],
            np.array([math.log(r.measured / r.predicted) for r in kept]),
            np.array([r.case.source for r in kept], dtype=object),
        )

    def kind(self, i: int) -> str:
        return self.keys[i][-1]


def _raw_bands(res: Residuals, rows: np.ndarray) -> dict[str, RawBand]:
    members: dict[str, list[int]] = defaultdict(list)
    for i in rows:
        for key in res.keys[i]:
            members[key].append(int(i))
    out = {}
    for key, idx in members.items():
        sources = len(set(res.sources[idx]))
        if len(idx) >= MIN_RESIDUALS and sources >= MIN_SOURCES:
            q10, q50, q90 = np.quantile(res.logs[idx], (LOW_Q, MID_Q, HIGH_Q))
            out[key] = (float(q10), float(q50), float(q90), len(idx), sources)
    return out


def _inside(found: Found, x: float, widen: Mapping[str, float]) -> bool:
    """Whether ``x`` lies in the band ``found`` (its kind, its raw percentiles) widened by its kind's factor."""
    if found is None:
        return False
    kind, (q10, q50, q90, _, _) = found
    w = widen.get(kind, 1.0)
    return q50 - w * (q50 - q10) <= x <= q50 + w * (q90 - q50)


def _found(bands: dict, keys: list[str]) -> Found:
    """The first band of ``keys`` (closed-loop TTFT backing off to static TTFT), with its kind."""
    return next(((k.split("|")[0], bands[k]) for k in lookup_keys(keys) if k in bands), None)


def _hits(res: Residuals, rows: Iterable[int], bands: dict) -> dict[str, list[tuple[int, Found]]]:
    by_kind: dict[str, list[tuple[int, Found]]] = defaultdict(list)
    for i in rows:
        by_kind[res.kind(i)].append((i, _found(bands, res.keys[i])))
    return by_kind


def _smallest_widening(kind: str, pairs: list[tuple[int, Found]], res: Residuals) -> float:
    """The smallest factor that puts TARGET_COVERAGE of ``pairs`` (row, its held-out band) inside;
    rows with no held-out band of their own kind say nothing about the width (no factor covers
    them, and a band backed off to another kind is widened by that kind's factor), and with
    none at all the raw percentiles stand (1.0)."""
    pairs = [(i, b) for i, b in pairs if b is not None and b[0] == kind]
    if not pairs:
        return 1.0
    for w in WIDENINGS:
        if np.mean([_inside(b, res.logs[i], {kind: float(w)}) for i, b in pairs]) >= TARGET_COVERAGE:
            return float(w)
    return float(WIDENINGS[-1])


def widenings(res: Residuals, exclude: str | None = None) -> dict[str, float]:
    """Per metric kind, the factor that covers TARGET_COVERAGE of each source's rows with bands
    built without that source (all sources but ``exclude``; its rows never enter the bands)."""
    sources = sorted(s for s in set(res.sources) if s != exclude)
    pooled: dict[str, list[tuple[int, Found]]] = defaultdict(list)
    for s in sources:
        train = np.flatnonzero((res.sources != s) & (res.sources != exclude))
        for kind, pairs in _hits(res, np.flatnonzero(res.sources == s), _raw_bands(res, train)).items():
            pooled[kind].extend(pairs)
    return {kind: _smallest_widening(kind, pairs, res) for kind, pairs in pooled.items()}


def _widened(raw: RawBand, widen: float) -> ErrorBand:
    q10, q50, q90, n, sources = raw
    return ErrorBand(
        q10=round(q50 - widen * (q50 - q10), ROUND), q90=round(q50 + widen * (q90 - q50), ROUND), n=n, sources=sources, widening=widen
    )


def bands(results: Iterable[Result], family_of, engine_of) -> dict[str, ErrorBand]:
    res = Residuals.of(results, family_of, engine_of)
    widen = widenings(res)
    raw = _raw_bands(res, np.arange(len(res.logs)))
    return {k: _widened(v, widen.get(k.split("|")[0], 1.0)) for k, v in sorted(raw.items())}


def coverage(results: list[Result], family_of, engine_of) -> dict[str, float]:
    """Fraction of rows inside the interval built (and widened) without their own source, per
    metric kind, workload and source, and overall."""
    res = Residuals.of(results, family_of, engine_of)
    workloads = [r.case.workload for r in results if r.predicted > 0]
    inside: dict[str, list[bool]] = defaultdict(list)
    for source in sorted(set(res.sources)):
        widen = widenings(res, exclude=source)
        held = _raw_bands(res, np.flatnonzero(res.sources != source))
        for kind, pairs in _hits(res, np.flatnonzero(res.sources == source), held).items():
            for i, band in pairs:
                ok = _inside(band, res.logs[i], widen)
                groups = (kind, f"workload {workloads[i]}", f"source {source}", "all")
                for group in groups + (("all but closed-loop TTFT",) if kind != CLOSED_LOOP_TTFT else ()):
                    inside[group].append(ok)
    return {k: float(np.mean(v)) for k, v in sorted(inside.items())}
