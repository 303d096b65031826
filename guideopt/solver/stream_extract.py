"""A stream plan from one (option, replica count) group: its metrics at its share of the load.

``metrics`` keeps the contract's names: for a stream, ttft_ms / tpot_ms are the analytic
``slo.percentile``-th percentiles, batch_latency_s the end-to-end one, and throughputs the
offered load's tokens/s. ``group.stream`` carries every analytic percentile (and, after the
check, the simulated ones).
"""

from __future__ import annotations

import numpy as np

from guideopt.costs.rows import layout_fields, memory_breakdown
from guideopt.costs.stream import StreamMetrics, stream_metrics
from guideopt.model.plan import Group, Metrics, Plan
from guideopt.model.request import PlanRequest
from guideopt.model.workload import REPORTED_PERCENTILES, STREAM_SLO_METRICS
from guideopt.solver.stream_options import StreamSpace, per_replica_rate, rank_clients
from guideopt.solver.stream_rates import closed_loop_at
from guideopt.units import MS_PER_S


def percentiles_wanted(req: PlanRequest) -> tuple[float, ...]:
    extra = {p for t in req.slo.stream_targets().values() for p in t.targets}
    return tuple(sorted(set(REPORTED_PERCENTILES) | {req.slo.percentile} | extra))


def analytic_block(m: StreamMetrics, i: int = 0) -> dict:
    return {
        metric: {"mean": float(m.dist(metric).mean[i]), **{f"p{p:g}": float(v[i]) for p, v in m.dist(metric).percentiles.items()}}
        for metric in STREAM_SLO_METRICS
    }


def total_load(req: PlanRequest) -> float:
    wl = req.workload
    return float(wl.rate_rps if wl.rate_rps is not None else wl.concurrency or 0)


def operating_metrics(
    req: PlanRequest, space: StreamSpace, rows: np.ndarray, replicas: np.ndarray, rank_rate: np.ndarray, percentiles: tuple[float, ...]
) -> StreamMetrics:
    """One attention-DP rank of each of ``rows`` when ``replicas`` of it share the load: the stream
    model at ``rank_rate`` req/s, or, for a closed loop, the closed loop of its share of the
    clients as ``predict --concurrency`` and ``simulate`` price it (``stream_rates.closed_loop_at``)."""
    wl = req.workload
    if not space.closed_loop:
        opts = space.options.take(rows)
        return stream_metrics(
            space.arch, opts, space.lengths, np.maximum(rank_rate, 1e-12), burstiness=wl.burstiness, percentiles=percentiles
        )
    clients = rank_clients(space, rows, total_load(req), replicas)
    return closed_loop_at(
        space.arch, space.options.take(rows), space.lengths, clients, lockstep_share=space.lockstep_share, percentiles=percentiles
    )


def stream_plan_of(req: PlanRequest, space: StreamSpace, row: int, replicas: int, rank: int) -> Plan:
    return stream_plans_of(req, space, np.array([row]), np.array([replicas]), rank)[0]


def stream_plans_of(req: PlanRequest, space: StreamSpace, rows: np.ndarray, replicas: np.ndarray, rank: int = 1) -> list[Plan]:
    """The plans of ``replicas[i]`` × option ``rows[i]``, their operating points in one call."""
    t = space.table
    wl = req.workload
    rates = per_replica_rate(space, rows, total_load(req), replicas, wl.burstiness)
    m = operating_metrics(req, space, rows, replicas, rates / t.dp[rows], percentiles_wanted(req))  # one attention-DP rank's share
    return [_plan(req, space, m, k, int(row), int(n), float(rate), rank) for k, (row, n, rate) in enumerate(zip(rows, replicas, rates))]


def _plan(req: PlanRequest, space: StreamSpace, m: StreamMetrics, k: int, row: int, replicas: int, rate: float, rank: int) -> Plan:
    """Plan ``k`` of the operating points ``m``: ``replicas`` × option ``row`` at ``rate`` req/s each."""
    wl = req.workload
    pct = req.slo.percentile
    metrics = plan_metrics(m, k, pct, rate * replicas, space.lengths)
    cap = int(space.options.running_cap[row])
    group = row_group(
        space,
        row,
        replicas,
        metrics,
        running=float(min(cap, max(float(m.running[k]), 1.0))),
        stream={
            "rate_rps_per_replica": rate,
            "sustainable_rate_rps_per_replica": float(space.slo_rate_rps[row]),
            "running_mean": float(m.running[k]),
            "kv_use": float(m.kv_use[k]),
            "analytic": analytic_block(m, k),
        },
    )
    return Plan(
        rank=rank,
        num_gpus=group.num_gpus,
        gpu_counts={group.gpu: group.num_gpus},
        usd_per_hour=group.usd_per_hour,
        metrics=metrics,
        groups=[group],
        stream={
            "rate_rps": wl.rate_rps,
            "concurrency": wl.concurrency,
            "percentile": pct,
            "sustainable_load": float(space.slo_load[row]) * replicas,
            "sustainable_unit": "clients" if space.closed_loop else "req/s",
        },
    )


def plan_metrics(m: StreamMetrics, k: int, pct: float, rate_rps: float, lengths) -> Metrics:
    """The contract's metrics of option ``k`` of ``m`` serving ``rate_rps`` requests/s: its
    ``pct``-th percentiles, and the throughputs of that load."""
    return Metrics(
        ttft_ms=float(m.ttft_ms.percentiles[pct][k]),
        tpot_ms=float(m.tpot_ms.percentiles[pct][k]),
        batch_latency_s=float(m.e2e_ms.percentiles[pct][k]) / MS_PER_S,
        decode_throughput_tok_s=rate_rps * float(lengths.weight @ np.maximum(lengths.output_len - 1.0, 0.0)),
        output_throughput_tok_s=rate_rps * lengths.mean_output,
        total_throughput_tok_s=rate_rps * (lengths.mean_input + lengths.mean_output),
        prefill_throughput_tok_s=rate_rps * lengths.mean_input,
    )


def row_group(
    space: StreamSpace, row: int, replicas: int, metrics: Metrics, *, running: float, stream: dict, role: str | None = None
) -> Group:
    """``replicas`` × option ``row`` as a plan group (``running``: requests a replica holds, for its memory)."""
    t = space.table
    cap = int(space.options.running_cap[row])
    per_replica_gpus = int(t.gpus_per_replica[row])
    return Group(
        gpu=t.space.gpus[int(t.gpu_idx[row])].id,
        framework=t.space.frameworks[int(t.fw_idx[row])].id,
        dtype=t.space.dtypes[int(t.dtype_idx[row])].value,
        kv_dtype=t.kv_dtype_names[row],
        replicas=replicas,
        **layout_fields(t, row),
        batch=cap,
        split=int(t.split[row]),
        metrics=metrics,
        memory=memory_breakdown(t, row, running=running),
        usd_per_hour=round(replicas * per_replica_gpus * float(t.usd_per_hour_per_gpu[row]), 4),
        num_gpus=replicas * per_replica_gpus,
        role=role,
        stream={"running_cap": cap, "token_budget": int(t.split[row]), **stream},
    )
