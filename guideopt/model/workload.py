"""Request-stream workloads: arrivals, request lengths and per-percentile SLOs.

A stream is open-loop (``rate_rps`` requests/s, Poisson by default, or gamma
inter-arrivals with coefficient of variation ``burstiness``) or closed-loop
(``concurrency`` clients, each sending its next request when the last one finishes).
Request lengths are one fixed pair, a weighted list of buckets, a named mix from
``catalogs/length_mixes/`` or a trace file (CSV or JSONL with ``input_len,output_len`` and
optional ``arrival_s``; arrivals, when present, are replayed as recorded).

SLOs are per percentile: ``slo: {ttft_ms: {p90: 800}, tpot_ms: {p99: 60}}``; a bare number
applies at the default percentile.
"""

from __future__ import annotations

import re

from pydantic import Field, field_validator, model_validator

from guideopt.model.base import StrictModel
from guideopt.model.limits import MAX_BUCKET_WEIGHT, MAX_BURSTINESS, MAX_GPUS, MAX_PARALLEL_SIZE, MAX_SIMULATED_REQUESTS

DEFAULT_PERCENTILE = 90.0  # the percentile a bare SLO number applies at (common serving practice: P90)
REPORTED_PERCENTILES = (50.0, 90.0, 99.0)
POISSON_CV = 1.0  # exponential inter-arrivals have a coefficient of variation of 1
DEFAULT_NUM_REQUESTS = 2000  # requests a simulation samples when no trace gives them
# Share of the earliest arrivals a plan's check leaves out: the simulation starts with an empty
# replica, so its first requests see no queue and would flatter the percentiles.
VERIFY_WARMUP_FRACTION = 0.1
_PERCENTILE_KEY = re.compile(r"^p(\d+(\.\d+)?)$")


def parse_percentile(key: str | float, field: str) -> float:
    """``"p90"``, ``"90"`` or ``90`` → 90.0; outside (0, 100) is an error naming ``field``."""
    text = str(key).strip().lower()
    match = _PERCENTILE_KEY.match(text)
    try:
        value = float(match.group(1)) if match else float(text)
    except ValueError:
        raise ValueError(f"{field}: percentile {key!r} is not a number (write p50, p90, p99 or a number in (0, 100))") from None
    if not 0.0 < value < 100.0:
        raise ValueError(f"{field}: percentile {key!r} is outside (0, 100) (use e.g. p50, p90 or p99)")
    return value


class LengthBucket(StrictModel):
    input_len: int = Field(gt=0, description="prompt tokens")
    output_len: int = Field(gt=0, description="generated tokens")
    weight: float = Field(default=1.0, gt=0, le=MAX_BUCKET_WEIGHT, description="relative share of requests")


class LengthMoments(StrictModel):
    """One side (prompt or output) of a published length distribution: its published percentiles
    (piecewise linear between them, from ``min`` to ``max``) where the source gives them, else a
    log-normal through the median and mean."""

    median: float = Field(gt=0, description="median tokens")
    mean: float = Field(gt=0, description="mean tokens (>= median for a log-normal)")
    max: int = Field(gt=0, description="largest length the source allows")
    min: int = Field(default=1, gt=0, description="smallest length (the 0th percentile with ``percentiles``)")
    percentiles: dict[float, float] | None = Field(
        default=None, description="tokens at probabilities in (0, 1), e.g. {0.1: 85, 0.5: 152, 0.9: 519}; None: the log-normal"
    )
    source: str = Field(min_length=1, description="where the median and mean (and percentiles) come from")

    @model_validator(mode="after")
    def _a_distribution(self) -> LengthMoments:
        if self.percentiles is None:
            if self.mean < self.median:
                raise ValueError(f"mean {self.mean} is below median {self.median} (a log-normal needs mean >= median; give percentiles)")
            return self
        probs = sorted(self.percentiles)
        values = [self.min, *(self.percentiles[q] for q in probs), self.max]
        if probs[0] <= 0 or probs[-1] >= 1:
            raise ValueError(f"percentiles must be at probabilities strictly between 0 and 1, not {probs[0]} or {probs[-1]}")
        if any(b < a for a, b in zip(values, values[1:], strict=False)):
            raise ValueError(f"percentiles must not decrease from min {self.min} to max {self.max}: {values}")
        return self


class LengthMix(StrictModel):
    """A named length distribution (``catalogs/length_mixes/<id>.yaml``)."""

    id: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$")
    name: str
    input: LengthMoments
    output: LengthMoments
    sources: list[str] = Field(min_length=1)
    notes: str = ""


class Lengths(StrictModel):
    """Exactly one of: a fixed pair, ``buckets``, a named ``mix`` or a trace ``file``."""

    input_len: int | None = Field(default=None, gt=0)
    output_len: int | None = Field(default=None, gt=0)
    buckets: list[LengthBucket] | None = Field(default=None, min_length=1)
    mix: str | None = Field(default=None, min_length=1, description="a mix id from catalogs/length_mixes")
    file: str | None = Field(default=None, min_length=1, description="CSV or JSONL trace with input_len,output_len[,arrival_s]")

    @model_validator(mode="after")
    def _exactly_one(self) -> Lengths:
        fixed = self.input_len is not None or self.output_len is not None
        if fixed and (self.input_len is None or self.output_len is None):
            raise ValueError("a fixed length needs both input_len and output_len")
        given = [fixed, self.buckets is not None, self.mix is not None, self.file is not None]
        if sum(given) != 1:
            raise ValueError("give exactly one of input_len+output_len, buckets, mix or file")
        return self


class StreamWorkload(StrictModel):
    """A request stream: open-loop ``rate_rps`` or closed-loop ``concurrency``."""

    rate_rps: float | None = Field(default=None, gt=0, description="mean arrival rate, requests/s")
    concurrency: int | None = Field(default=None, gt=0, description="closed-loop clients")
    burstiness: float = Field(
        default=POISSON_CV, gt=0, le=MAX_BURSTINESS, description="coefficient of variation of inter-arrival times (1 = Poisson)"
    )
    lengths: Lengths
    num_requests: int = Field(default=DEFAULT_NUM_REQUESTS, gt=0, le=MAX_SIMULATED_REQUESTS, description="requests a simulation samples")
    seed: int = Field(default=0, ge=0)

    @model_validator(mode="after")
    def _one_arrival_process(self) -> StreamWorkload:
        if (self.rate_rps is None) == (self.concurrency is None) and self.lengths.file is None:
            raise ValueError("give exactly one of rate_rps or concurrency")
        if self.rate_rps is not None and self.concurrency is not None:
            raise ValueError("give rate_rps or concurrency, not both")
        return self


class PercentileTargets(StrictModel):
    """Upper bounds at percentiles, e.g. {p90: 800, p99: 1500}."""

    targets: dict[float, float]

    @field_validator("targets")
    @classmethod
    def _positive(cls, v: dict[float, float]) -> dict[float, float]:
        for pct, bound in v.items():
            if not 0.0 < pct < 100.0:
                raise ValueError(f"percentile {pct} is outside (0, 100)")
            if bound <= 0:
                raise ValueError(f"bound {bound} at p{pct:g} must be > 0")
        return v


STREAM_SLO_METRICS = ("ttft_ms", "tpot_ms", "e2e_ms", "queue_ms")


def parse_stream_slo(raw: dict[str, object]) -> dict[str, PercentileTargets]:
    """``{ttft_ms: {p90: 800}, tpot_ms: 60}`` → targets per metric (bare numbers at P90)."""
    out: dict[str, PercentileTargets] = {}
    for metric, spec in raw.items():
        if metric not in STREAM_SLO_METRICS:
            raise ValueError(f"slo.{metric}: unknown stream SLO (use one of {', '.join(STREAM_SLO_METRICS)})")
        if spec is None:
            continue
        if isinstance(spec, dict):
            targets = {parse_percentile(k, f"slo.{metric}.{k}"): _bound(v, f"slo.{metric}.{k}") for k, v in spec.items()}
        else:
            targets = {DEFAULT_PERCENTILE: _bound(spec, f"slo.{metric}")}
        out[metric] = PercentileTargets(targets=targets)
    return out


def _bound(value: object, field: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise ValueError(f"{field}: {value!r} must be a positive number of ms")
    return float(value)


class SimulateRequest(StrictModel):
    """One configuration against a request stream (``guideopt simulate``)."""

    model: str = Field(min_length=1)
    gpu: str = Field(min_length=1)
    tp: int = Field(default=1, gt=0)
    pp: int = Field(default=1, gt=0)
    attention_dp: int = Field(default=1, gt=0, le=MAX_PARALLEL_SIZE, description="attention data-parallel ranks per replica")
    moe_tp: int | None = Field(default=None, gt=0, le=MAX_PARALLEL_SIZE, description="TP of each expert; default tp·attention_dp/moe_ep")
    moe_ep: int = Field(default=1, gt=0, le=MAX_PARALLEL_SIZE, description="expert-parallel ranks of the MoE layers")
    replicas: int = Field(
        default=1, gt=0, le=MAX_GPUS, description="replicas sharing the stream evenly; one attention-DP rank of one is simulated"
    )
    framework: str = "vllm"
    dtype: str = "fp16"
    kv_dtype: str | None = None
    running_cap: int | None = Field(default=None, gt=0, description="max running requests; default: the engine's")
    token_budget: int | None = Field(default=None, gt=0, description="tokens per step; default: the engine's")
    workload: StreamWorkload
    slo: dict[str, PercentileTargets] = Field(default_factory=dict)
    warmup_fraction: float = Field(default=0.0, ge=0, lt=1, description="share of the earliest arrivals left out of the metrics")
    protocol: str | None = Field(
        default=None, min_length=1, description="a benchmark protocol id (catalogs/protocols): arrivals, lengths, warm-up, requests"
    )
