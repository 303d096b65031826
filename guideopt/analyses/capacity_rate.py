"""``capacity --rate``: the fewest replicas of a shape that share a load within the SLOs, for
many cases at once.

Each case is one stream option carrying its own lengths (``StreamOptions.lengths``), with
the planner's model and cap rules, so the SLO rates of all the cases come from one search
(``slo_rates``): the rate ``plan`` and ``simulate`` report for the shape, and what a case
priced alone gets. Its metrics at its share of the load are one ``stream_metrics`` call.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import numpy as np

from guideopt.analyses.capacity_request import Capacity, CapacityRequest
from guideopt.catalog import Catalog
from guideopt.costs.lengths import case_lengths, fixed_lengths
from guideopt.costs.stream import StreamMetrics, StreamOptions, stream_metrics
from guideopt.costs.tables import OptionTable
from guideopt.errors import GuideoptError, NoFeasiblePlanError
from guideopt.model.plan import Metrics
from guideopt.model.workload import POISSON_CV, PercentileTargets
from guideopt.solver.stream_options import effective_caps, stream_options
from guideopt.solver.stream_rates import slo_rates
from guideopt.units import MS_PER_S

# Replica counts tried when sizing for a load before giving up.
MAX_REPLICAS_FOR_RATE = 1024
IDLE_RATE_RPS = 1e-6  # the load at which a shape that meets no SLO is described


def stream_shapes(reqs: Sequence[CapacityRequest], table: OptionTable, cat: Catalog, cap: int) -> tuple[StreamOptions, np.ndarray]:
    """The cases (one per row of ``table``) as stream options carrying their lengths, and each
    one's SLO rate: an attention-DP rank's (a replica serves ``attention_dp`` times it)."""
    lengths = case_lengths([r.input_len for r in reqs], [r.output_len for r in reqs])
    # the engine's cap rule per case (the planner's, one option and one length at a time)
    caps = [
        effective_caps(table.take(np.array([j])), np.array([float(cap)]), fixed_lengths(r.input_len, r.output_len))
        for j, r in enumerate(reqs)
    ]
    opts = dataclasses.replace(stream_options(table, np.concatenate(caps), cat.calibration), lengths=lengths)
    first = reqs[0]
    slos = (("ttft_ms", first.ttft_ms), ("tpot_ms", first.tpot_ms))
    targets = {m: PercentileTargets(targets={first.percentile: v}) for m, v in slos if v}
    return opts, slo_rates(table.arch, opts, lengths, targets, POISSON_CV)


def size_for_rate(outs: Sequence[Capacity], table: OptionTable, cat: Catalog, cap: int) -> list[Capacity | GuideoptError]:
    """Fewest replicas of each case's shape that share its rate within the SLOs (``outs``: cases
    alike but for their lengths, one per row of ``table``), filled into ``outs``; or the case's error."""
    opts, rank_rates = stream_shapes([o.request for o in outs], table, cat, cap)
    req = outs[0].request
    rate, dp = req.rate, req.attention_dp
    assert rate is not None, "sizing needs a rate"
    served = [j for j, r in enumerate(rank_rates) if r > 0]
    replicas = [max(1, math.ceil(rate / (dp * float(rank_rates[j])) - 1e-12)) for j in served]
    at = _metrics(table, opts, served, np.array([rate / (n * dp) for n in replicas]), req.percentile)  # the load spreads evenly
    outcomes: list[Capacity | GuideoptError] = list(outs)
    for k, (j, n) in enumerate(zip(served, replicas)):
        if n > MAX_REPLICAS_FOR_RATE:
            outcomes[j] = NoFeasiblePlanError(
                f"rate: {rate:g} req/s needs more than {MAX_REPLICAS_FOR_RATE} replicas of this shape", ["rate"]
            )
        else:
            _fill(outs[j], n, float(rank_rates[j]), at, k, float(opts.running_cap[j]), cat)
    unserved = [j for j in range(len(outs)) if rank_rates[j] <= 0]
    idle = _metrics(table, opts, unserved, np.full(len(unserved), IDLE_RATE_RPS), req.percentile)
    for k, j in enumerate(unserved):
        outcomes[j] = _no_slo_rate(req, idle, k)
    return outcomes


def _metrics(table: OptionTable, opts: StreamOptions, rows: list[int], rate_rps: np.ndarray, pct: float) -> StreamMetrics | None:
    if not rows:
        return None
    sub = opts.take(np.array(rows))
    assert sub.lengths is not None, "the cases carry their lengths"
    return stream_metrics(table.arch, sub, sub.lengths, rate_rps, percentiles=(pct,))


def _no_slo_rate(req: CapacityRequest, idle: StreamMetrics | None, k: int) -> NoFeasiblePlanError:
    assert idle is not None, "described at the idle load"
    named = [n for n, v in (("slo.ttft_ms", req.ttft_ms), ("slo.tpot_ms", req.tpot_ms)) if v is not None]
    pct = req.percentile
    return NoFeasiblePlanError(
        f"slo: no load level meets the SLOs on this replica shape (P{pct:g} TTFT {float(idle.ttft_ms.percentiles[pct][k]):.1f} ms, "
        f"TPOT {float(idle.tpot_ms.percentiles[pct][k]):.2f} ms when idle)",
        named,
    )


def _fill(out: Capacity, n: int, rank_rate: float, m: StreamMetrics | None, k: int, running_cap: float, cat: Catalog) -> None:
    """Case ``out`` served by ``n`` replicas; ``m``'s ``k``-th option: its metrics at its share of the load."""
    assert m is not None, "a served case has metrics"
    req = out.request
    rate, dp, pct = req.rate, req.attention_dp, req.percentile
    assert rate is not None, "sizing needs a rate"
    gpus_per_replica = req.gpus_per_replica
    out.replicas, out.num_gpus = n, n * gpus_per_replica
    out.sustainable_rate_rps_per_replica = dp * rank_rate
    out.usd_per_hour = round(n * gpus_per_replica * cat.gpu(req.gpu).usd_per_hour, 4)
    out.concurrency_per_replica = dp * int(min(max(math.ceil(float(m.running[k])), 1), running_cap))
    out.metrics = Metrics(
        ttft_ms=float(m.ttft_ms.percentiles[pct][k]),
        tpot_ms=float(m.tpot_ms.percentiles[pct][k]),
        batch_latency_s=float(m.e2e_ms.percentiles[pct][k]) / MS_PER_S,
        decode_throughput_tok_s=rate * max(req.output_len - 1, 0),
        output_throughput_tok_s=rate * req.output_len,
        total_throughput_tok_s=rate * (req.input_len + req.output_len),
        prefill_throughput_tok_s=rate * req.input_len,
    )
