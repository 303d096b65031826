"""Batch capacity planning (GUIDE §3.3): what fits, how long a prompt can be, and how many
replicas a load needs.

* Memory capacity: KV-cache tokens left after weights, activation peak at the token
  budget, CUDA-graph/communication buffers and the engine's memory fraction, rounded
  down to whole KV pages; the largest batch of given lengths; the longest sequence at
  batch 1.
* Dynamic batch / sequence-length adjustment (§3.3.1–3.3.2): when a requested batch or
  length does not fit, the largest that does, and how a batch splits into sub-batches of
  that size and a prompt into chunks of the split size.
* Sizing for a load (``rate`` requests/s): the steady-state model of continuous batching
  in ``costs/serving.py`` gives, for c requests in flight on a replica, the request
  throughput X(c) = c / cycle(c) (Little's law). A replica sustains a rate λ when some
  c within its capacity has X(c) ≥ λ; the smallest such c is its operating point, where
  TTFT/TPOT must meet the SLOs. The smallest replica count n with a valid operating point
  at λ = rate / n is the answer. Assumes requests of the given fixed lengths, traffic
  spread evenly over replicas, and arrivals smooth enough that the closed-loop steady
  state stands for them (no burst queueing).
* Layouts (``attention_dp``, ``moe_tp``, ``moe_ep``, as ``predict`` takes them): a replica is
  ``tp × attention_dp × pp`` GPUs, and each attention-DP rank holds its own requests' KV, so
  the option table's KV tokens and caps are a rank's; a replica fits ``attention_dp`` times a
  rank's batch and serves ``attention_dp`` times a rank's rate.
"""

from __future__ import annotations

from collections.abc import Sequence

from guideopt.analyses import capacity_cases
from guideopt.analyses.capacity_cases import TP_CHOICES_FOR_HINT, case_table
from guideopt.analyses.capacity_rate import MAX_REPLICAS_FOR_RATE, stream_shapes
from guideopt.analyses.capacity_request import Capacity, CapacityRequest, split_batch, sub_batch_sizes
from guideopt.catalog import Catalog, load_catalog

__all__ = [
    "MAX_REPLICAS_FOR_RATE",
    "TP_CHOICES_FOR_HINT",
    "Capacity",
    "CapacityRequest",
    "capacities",
    "capacity",
    "replica_throughput_req_s",
    "split_batch",
    "sub_batch_sizes",
]


def capacity(req: CapacityRequest, catalog: Catalog | None = None) -> Capacity:
    return capacities([req], catalog)[0]


def capacities(reqs: Sequence[CapacityRequest], catalog: Catalog | None = None) -> list[Capacity]:
    """``capacity`` of each request, as each gets it alone (the first error in request order
    raises): requests alike but for their lengths, a sweep's cases, are priced together as
    arrays (``capacity_cases.py``)."""
    return capacity_cases.capacities(reqs, catalog or load_catalog())


def replica_throughput_req_s(out: Capacity, catalog: Catalog | None = None) -> float:
    """Most requests/s one replica of this shape sustains within the SLOs (for checks): its
    attention-DP ranks' together."""
    cat = catalog or load_catalog()
    req = out.request
    table = case_table([req], cat, req.resolved_tp)
    rank_rates = stream_shapes([req], table, cat, req.running_cap or cat.framework(req.framework).max_num_seqs)[1]
    return req.attention_dp * float(rank_rates[0])
