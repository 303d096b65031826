"""Disaggregated groups as candidates beside the aggregated ones, and their plans.

A sized group (``disagg_space.DisaggTable``) is one candidate (``source`` ``DISAGG_SOURCE``):
its prefill workers count on their GPU type, its decode workers on theirs (the second type
of a candidate, as a cross-type pipeline's), its price is both pools', its latencies the
group's percentiles at the rate, and it serves exactly the rate. The same constraint rows
and objective terms then rank aggregated and disaggregated candidates together, so allowing
disaggregation can only add plans.
"""

from __future__ import annotations

import math

import numpy as np

from guideopt.catalog import Catalog
from guideopt.costs.disagg import prompt_kv_bytes
from guideopt.model.plan import Group, Metrics, Plan
from guideopt.model.request import PlanRequest
from guideopt.solver.candidates import Candidates, concat_candidates, micro_seconds, milli_usd
from guideopt.solver.constraints import stream_slo_bounds
from guideopt.solver.disagg_compare import DISAGG_SOURCE
from guideopt.solver.disagg_space import LINKS, DisaggTable, disagg_roles, pair_shapes, size_groups
from guideopt.solver.stream_extract import analytic_block, plan_metrics, row_group
from guideopt.solver.stream_options import StreamSpace
from guideopt.units import BYTES_PER_S_PER_GB_S, DECI_TOK_S_PER_TOK_S, MILLI_LOAD_PER_LOAD, MILLI_USD_PER_USD, MS_PER_S, ROUNDING_EPS

UNSTABLE_US = np.iinfo(np.int64).max // 4


def disagg_table(req: PlanRequest, space: StreamSpace, cat: Catalog) -> DisaggTable:
    prefill, decode = disagg_roles(space, cat)
    return size_groups(req, space, cat, prefill, decode)


def disagg_candidates(req: PlanRequest, space: StreamSpace, dt: DisaggTable, shape_offset: int) -> Candidates:
    """One candidate per group of ``dt``; shapes numbered from ``shape_offset`` (after the aggregated ones)."""
    t, n = space.table, len(dt)
    p, d = dt.prefill_row, dt.decode_row
    gpus_p = (t.gpus_per_replica[p] * dt.prefill_replicas).astype(np.int64)
    gpus_d = (t.gpus_per_replica[d] * dt.decode_replicas).astype(np.int64)
    same = t.gpu_idx[p] == t.gpu_idx[d]
    pct = req.slo.percentile
    m = dt.metrics

    def us(metric: str, q: float) -> np.ndarray:
        ms = m.dist(metric).percentiles[q]
        bad = ~np.asarray(m.stable, dtype=bool) | ~np.isfinite(ms)
        return np.where(bad, UNSTABLE_US, micro_seconds(np.where(bad, 0.0, ms) / MS_PER_S))

    bounds = stream_slo_bounds(req)
    cols = [us(metric, q) for metric, q, _ in bounds]
    rate = float(req.workload.rate_rps or 0.0)
    _, pair_id = np.unique(pair_shapes(space, p, d), return_inverse=True)
    return Candidates(
        option=np.arange(n),
        replicas=np.ones(n, dtype=np.int64),
        milli_usd_per_hour=milli_usd(dt.usd_per_hour),
        gpus=np.where(same, gpus_p + gpus_d, gpus_p),
        gpu_idx=t.gpu_idx[p].astype(np.int64),
        gpus2=np.where(same, 0, gpus_d),
        gpu_idx2=np.where(same, -1, t.gpu_idx[d]).astype(np.int64),
        deci_tok_s=np.full(n, math.floor(rate * space.lengths.mean_output * DECI_TOK_S_PER_TOK_S + ROUNDING_EPS), dtype=np.int64),
        ttft_us=us("ttft_ms", pct),
        tpot_us=us("tpot_ms", pct),
        latency_us=us("e2e_ms", pct),
        shape=shape_offset + pair_id.reshape(-1).astype(np.int64),
        source=np.full(n, DISAGG_SOURCE, dtype=np.int64),
        ref=np.arange(n),
        milli_load=np.full(n, math.ceil(rate * MILLI_LOAD_PER_LOAD - ROUNDING_EPS), dtype=np.int64),
        slo_us=np.stack(cols, axis=1) if cols else np.zeros((n, 0), dtype=np.int64),
    )


def disagg_plan_of(req: PlanRequest, space: StreamSpace, dt: DisaggTable, k: int, rank: int) -> Plan:
    """The plan of group ``k``: a prefill group and a decode group, and the KV hand-over."""
    m, lengths = dt.metrics, space.lengths
    rate = float(req.workload.rate_rps or 0.0)
    pct = req.slo.percentile
    metrics = plan_metrics(m, k, pct, rate, lengths)
    analytic = analytic_block(m, k)
    groups = [
        _role_group(space, int(dt.prefill_row[k]), int(dt.prefill_replicas[k]), "prefill", metrics, {"analytic": analytic}),
        _role_group(space, int(dt.decode_row[k]), int(dt.decode_replicas[k]), "decode", metrics, {"analytic": analytic}),
    ]
    counts: dict[str, int] = {}
    for g in groups:
        counts[g.gpu] = counts.get(g.gpu, 0) + g.num_gpus
    sub = dt.opts.take(np.array([k]))
    kv_bytes = float((prompt_kv_bytes(lengths.input_len, sub)[0] * lengths.weight).sum())
    transfer_ms = _transfer_ms(space, dt, k)
    return Plan(
        rank=rank,
        num_gpus=sum(counts.values()),
        gpu_counts=counts,
        usd_per_hour=round(sum(g.usd_per_hour for g in groups), 4),
        metrics=metrics,
        groups=groups,
        kv_transfer={
            "bytes_per_request": round(kv_bytes),
            "link": LINKS[int(dt.link[k])],
            "ms": transfer_ms,  # what TTFT pays after the prompt (layer-wise streaming hides the rest)
            "wire_ms": kv_bytes / (float(sub.kv_link_gb_s[0]) * BYTES_PER_S_PER_GB_S) * MS_PER_S,  # the link's time for the bytes
            "link_gb_s": float(sub.kv_link_gb_s[0]),
        },
        stream={
            "rate_rps": req.workload.rate_rps,
            "concurrency": None,
            "percentile": pct,
            "sustainable_load": float(dt.max_rate_rps[k]),
            "sustainable_unit": "req/s",
            "disaggregated": True,
        },
    )


def _transfer_ms(space: StreamSpace, dt: DisaggTable, k: int) -> float:
    """Mean seconds a request's KV hand-over adds after its prompt, in ms."""
    from guideopt.costs.disagg import handover_s

    s = handover_s(space.arch, dt.opts.take(np.array([k])), space.lengths.input_len)
    return float((s * space.lengths.weight).sum()) * MS_PER_S


def _role_group(space: StreamSpace, row: int, replicas: int, role: str, metrics: Metrics, stream: dict) -> Group:
    cap = float(space.options.running_cap[row])
    return row_group(space, row, replicas, metrics, running=cap, stream=stream, role=role)


def best_per_shape(req: PlanRequest, space, dt, bounds) -> list[float]:
    """$/h of the cheapest disaggregated group of each pair shape within every limit of the
    request (inventories, GPU caps): what the aggregated pricing may count as plans found."""
    from guideopt.solver.constraints import satisfied

    cands = disagg_candidates(req, space, dt, 0)
    ok = satisfied(cands, bounds)
    best: dict[int, float] = {}
    for shape, milli in zip(cands.shape[ok], cands.milli_usd_per_hour[ok]):
        best[int(shape)] = min(best.get(int(shape), np.inf), float(milli) / MILLI_USD_PER_USD)
    return sorted(best.values())


__all__ = [
    "DISAGG_SOURCE",
    "best_per_shape",
    "concat_candidates",
    "disagg_candidates",
    "disagg_plan_of",
    "disagg_table",
]
