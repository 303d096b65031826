"""Per-request times → the stream metrics: percentiles, throughput, goodput, KV use."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from guideopt.model.workload import REPORTED_PERCENTILES, PercentileTargets
from guideopt.simulator.engine import SimResult
from guideopt.units import MS_PER_S

STREAM_METRICS = ("ttft_ms", "tpot_ms", "e2e_ms", "queue_ms")


@dataclass(frozen=True)
class Distribution:
    mean: float
    percentiles: dict[float, float]

    def at(self, pct: float) -> float:
        return self.percentiles[pct]

    def as_dict(self) -> dict[str, float | None]:
        """Mean and percentiles; None where no request had the metric (JSON has no NaN)."""
        out = {"mean": self.mean, **{f"p{p:g}": v for p, v in self.percentiles.items()}}
        return {k: (None if math.isnan(v) else v) for k, v in out.items()}


def distribution(values: np.ndarray, percentiles: tuple[float, ...]) -> Distribution:
    v = values[np.isfinite(values)]
    if v.size == 0:
        return Distribution(float("nan"), {p: float("nan") for p in percentiles})
    return Distribution(float(v.mean()), {p: float(x) for p, x in zip(percentiles, np.percentile(v, percentiles))})


def per_request_ms(res: SimResult) -> dict[str, np.ndarray]:
    """TTFT, TPOT (mean inter-token time after the first), end-to-end and queueing, in ms."""
    steps = res.output_len - 1
    decode_s = res.finish_s - res.first_token_s
    tpot = np.where(steps > 0, decode_s / np.maximum(steps, 1), np.nan)
    return {
        "ttft_ms": (res.first_token_s - res.arrival_s) * MS_PER_S,
        "tpot_ms": tpot * MS_PER_S,
        "e2e_ms": (res.finish_s - res.arrival_s) * MS_PER_S,
        "queue_ms": (res.admitted_s - res.arrival_s - res.path_s) * MS_PER_S,
    }


@dataclass(frozen=True)
class StreamReport:
    metrics: dict[str, Distribution]
    requests: int
    duration_s: float
    request_throughput_rps: float
    output_throughput_tok_s: float
    total_throughput_tok_s: float
    goodput_rps: float | None
    slo_attainment: float | None
    kv_use_mean: float
    kv_use_max: float
    preemptions: int
    steps: int

    def as_dict(self) -> dict:
        return {
            "metrics": {k: d.as_dict() for k, d in self.metrics.items()},
            "requests": self.requests,
            "duration_s": self.duration_s,
            "request_throughput_rps": self.request_throughput_rps,
            "output_throughput_tok_s": self.output_throughput_tok_s,
            "total_throughput_tok_s": self.total_throughput_tok_s,
            "goodput_rps": self.goodput_rps,
            "slo_attainment": self.slo_attainment,
            "kv_use_mean": self.kv_use_mean,
            "kv_use_max": self.kv_use_max,
            "preemptions": self.preemptions,
            "steps": self.steps,
        }


def stream_report(
    res: SimResult,
    *,
    slo: dict[str, PercentileTargets] | None = None,
    percentiles: tuple[float, ...] = REPORTED_PERCENTILES,
    warmup_fraction: float = 0.0,
) -> StreamReport:
    """Metrics over the requests after the first ``warmup_fraction`` of arrivals."""
    order = np.argsort(res.arrival_s, kind="stable")
    keep = order[int(warmup_fraction * order.size) :]
    per = {k: v[keep] for k, v in per_request_ms(res).items()}
    extra = tuple(sorted({p for targets in (slo or {}).values() for p in targets.targets} - set(percentiles)))
    pcts = tuple(percentiles) + extra
    metrics = {k: distribution(per[k], pcts) for k in STREAM_METRICS}
    start, end = float(res.arrival_s[keep].min()), float(res.finish_s[keep].max())
    duration = max(end - start, 1e-12)
    goodput = attainment = None
    if slo:
        ok = np.ones(keep.size, dtype=bool)
        for metric, targets in slo.items():
            # a request meets a percentile bound when its own value is within the bound
            bound = min(targets.targets.values())
            ok &= ~(per[metric] > bound)
        attainment = float(ok.mean())
        goodput = float(ok.sum()) / duration
    kv = np.asarray(res.series.kv_used_tokens) / max(res.kv_tokens, 1)
    return StreamReport(
        metrics=metrics,
        requests=int(keep.size),
        duration_s=duration,
        request_throughput_rps=keep.size / duration,
        output_throughput_tok_s=float(res.output_len[keep].sum()) / duration,
        total_throughput_tok_s=float((res.input_len[keep] + res.output_len[keep]).sum()) / duration,
        goodput_rps=goodput,
        slo_attainment=attainment,
        kv_use_mean=_time_weighted_mean(np.asarray(res.series.t_s), kv),
        kv_use_max=float(kv.max()) if kv.size else 0.0,
        preemptions=int(res.preemptions.sum()),
        steps=res.steps,
    )


def _time_weighted_mean(t: np.ndarray, values: np.ndarray) -> float:
    if t.size < 2:
        return float(values.mean()) if values.size else 0.0
    dt = np.diff(t, prepend=t[0])
    return float((values * dt).sum() / max(dt.sum(), 1e-12))


def meets_slo(report: StreamReport, slo: dict[str, PercentileTargets]) -> bool:
    """Every percentile bound holds on the simulated distribution (a metric no request had,
    TPOT where every output is one token, holds any bound)."""
    return all(not report.metrics[m].at(p) > bound for m, targets in slo.items() for p, bound in targets.targets.items())
