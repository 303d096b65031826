"""Benchmark protocols as data (``catalogs/protocols/<id>.yaml``).

A measured row means what its benchmark's protocol makes it mean: how load arrives (an open
loop at a rate, a closed loop of clients, or every request at once), how the clients of a
closed loop start, how request lengths are drawn, whether the first requests are warm-up,
how many requests run, and what TTFT and TPOT are averaged over. ``guideopt simulate
--protocol ID`` replays a stream under one (``analyses/protocol.py``).

Uniform-range lengths come in two forms, both uniform over integers around a nominal L:
``symmetric`` [⌊L(1−r)⌋, ⌈L(1+r)⌉] (``vllm bench serve`` since vLLM PR #16126) and ``below``
[int(L·r), L] (old vLLM, SGLang ``bench_serving``, InferenceX's ``benchmark_serving.py``).
For the analytic model and the simulator a range is cut into at most ``RANGE_CELLS``
contiguous runs of integers per side, each represented by its mean with its count as weight
(the range's mean is kept to within half a token; every value lies inside the range).
"""

from __future__ import annotations

import math
from enum import Enum

from pydantic import Field, model_validator

from guideopt.model.base import StrictModel

# Runs of integers per side of a uniform range: 11 × 11 crossed buckets stay within the
# analytic model's bucket limit (``limits.MAX_LENGTH_BUCKETS``), as a named mix's do.
RANGE_CELLS = 11


class Arrival(str, Enum):
    POISSON = "poisson"  # open loop: exponential inter-arrival times at a target rate
    CLOSED_LOOP = "closed_loop"  # C clients, each sending its next request when its last one finishes
    BURST = "burst"  # every request sent at t = 0


class ClientStart(str, Enum):
    TOGETHER = "together"  # every client's first request at t = 0, as benchmark tools start them
    SPREAD = "spread"  # first requests spread over one request's time (independent users)


class LengthSampling(str, Enum):
    FIXED = "fixed"  # every request has the given input and output lengths
    UNIFORM_RANGE = "uniform_range"  # uniform integers around the given lengths (``range_ratio``, ``range_form``)
    DATASET = "dataset"  # lengths drawn from a dataset: a length mix of catalogs/length_mixes


class RangeForm(str, Enum):
    SYMMETRIC = "symmetric"  # [floor(L(1-r)), ceil(L(1+r))]
    BELOW = "below"  # [int(L*r), L]


class TpotDefinition(str, Enum):
    PER_REQUEST = "per_request"  # mean over requests of (e2e - ttft)/(n - 1)
    PER_TOKEN = "per_token"  # inter-token latency averaged over all tokens


class BenchmarkProtocol(StrictModel):
    """One benchmark's protocol; every figure cites its source in ``sources`` (assumed ones say so in ``notes``)."""

    id: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$", description="the protocol's id, its file name")
    name: str = Field(min_length=1, description="the benchmark tool and mode, in words")
    arrival: Arrival = Field(description="poisson (open loop at a rate), closed_loop (clients) or burst (all at t = 0)")
    client_start: ClientStart | None = Field(
        default=None, description="closed loops only (and required there): together (every first request at t = 0) or spread"
    )
    length_sampling: LengthSampling = Field(description="fixed, uniform_range around the given lengths, or dataset")
    range_ratio: float = Field(default=0.0, ge=0, le=1, description="uniform_range: the ratio r of the range")
    range_form: RangeForm = Field(default=RangeForm.SYMMETRIC, description="uniform_range: symmetric or below (see the module)")
    length_mix: str | None = Field(default=None, min_length=1, description="dataset: the length mix id (catalogs/length_mixes)")
    ignore_eos: bool = Field(default=False, description="outputs run to the requested length (else they may stop at EOS)")
    warmup_requests_per_client: int = Field(default=0, ge=0, description="warm-up requests per client left out of the metrics")
    requests_per_client: int | None = Field(default=None, gt=0, description="closed loop: measured requests sent per client")
    num_requests: int | None = Field(default=None, gt=0, description="measured requests of a run (when not per client)")
    ttft_definition: str = Field(min_length=1, description="what TTFT is measured from and to, in words")
    tpot_definition: TpotDefinition = Field(
        default=TpotDefinition.PER_REQUEST, description="per_request (mean of (e2e - ttft)/(n - 1)) or per_token (ITL over all tokens)"
    )
    percentiles: list[float] = Field(default_factory=list, description="percentiles the benchmark reports or limits (empty: not stated)")
    sources: list[str] = Field(min_length=1, description="where each figure comes from")
    notes: str = Field(default="", description="what is assumed (ASSUMED), and caveats")

    @model_validator(mode="after")
    def _consistent(self) -> BenchmarkProtocol:
        dataset = self.length_sampling is LengthSampling.DATASET
        if dataset != (self.length_mix is not None):
            raise ValueError("length_mix: give it exactly when length_sampling is dataset")
        if self.range_form is RangeForm.SYMMETRIC and self.range_ratio >= 1:
            raise ValueError("range_ratio: a symmetric range needs r < 1 (vllm bench serve requires r in [0, 1))")
        if (self.client_start is not None) != (self.arrival is Arrival.CLOSED_LOOP):
            raise ValueError("client_start: give it exactly for a closed_loop arrival (together or spread)")
        if self.requests_per_client is not None and self.arrival is not Arrival.CLOSED_LOOP:
            raise ValueError("requests_per_client: only for a closed_loop arrival (give num_requests)")
        if self.requests_per_client is not None and self.num_requests is not None:
            raise ValueError("give requests_per_client or num_requests, not both")
        if any(not 0 < p < 100 for p in self.percentiles):
            raise ValueError("percentiles: each must be in (0, 100)")
        return self

    @property
    def together(self) -> bool:
        """Whether every client sends its first request at t = 0 (a burst is one wave of all requests)."""
        return self.arrival is Arrival.BURST or (self.arrival is Arrival.CLOSED_LOOP and self.client_start is ClientStart.TOGETHER)

    def length_range(self, nominal: int) -> tuple[int, int]:
        """The integer range [lo, hi] the protocol draws one side's length from, around ``nominal``
        (at least 1 token)."""
        r = self.range_ratio
        if self.length_sampling is not LengthSampling.UNIFORM_RANGE:
            return nominal, nominal
        if self.range_form is RangeForm.SYMMETRIC:
            lo, hi = math.floor(nominal * (1 - r)), math.ceil(nominal * (1 + r))
        else:
            lo, hi = int(nominal * r), nominal
        return max(lo, 1), max(hi, 1)


def range_cells(lo: int, hi: int, cells: int = RANGE_CELLS) -> list[tuple[int, int]]:
    """A uniform integer range [lo, hi] as (tokens, count) runs: every integer when it has at most
    ``cells`` of them, else ``cells`` contiguous runs of near-equal size, each at its mean rounded
    down (so the range's mean is kept to within half a token)."""
    span = hi - lo + 1
    if span <= cells:
        return [(v, 1) for v in range(lo, hi + 1)]
    edges = [lo + (span * k) // cells for k in range(cells + 1)]
    return [((a + b - 1) // 2, b - a) for a, b in zip(edges, edges[1:], strict=False)]
