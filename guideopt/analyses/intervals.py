"""Prediction intervals on plans: each group's metrics get the 10-90 % band of held-out
errors in its regime (``guideopt.costs.intervals``); the plan's, combined as its metrics
are (throughputs summed over groups, latencies the worst group's)."""

from __future__ import annotations

from guideopt.catalog import Catalog
from guideopt.costs.intervals import error_band, interval, regime_engine, regime_keys
from guideopt.model.plan import Group, Metrics, Plan, PlanResult

LATENCIES = ("ttft_ms", "tpot_ms", "batch_latency_s")


def _group_bounds(g: Group, cat: Catalog, moe: bool = False) -> tuple[Metrics, Metrics] | None:
    if g.gpu not in cat.gpus or g.framework not in cat.frameworks:
        return None  # a pipeline across GPU types ("mixed"): no single regime
    gpu = cat.gpus[g.gpu]
    engine = regime_engine(cat.frameworks[g.framework].calibration_id, gpu.vendor.value)
    low, high = {}, {}
    for name, value in g.metrics.model_dump().items():
        low[name], high[name] = interval(
            value, error_band(cat.calibration.intervals, regime_keys(name, gpu.arch, engine, g.batch, g.tp, moe=moe))
        )
    return Metrics(**low), Metrics(**high)


def _combine(groups: list[Metrics]) -> Metrics:
    out = {}
    for f in Metrics.model_fields:
        values = [getattr(m, f) for m in groups if getattr(m, f) is not None]
        out[f] = None if not values else (max(values) if f in LATENCIES else sum(values))
    return Metrics(**out)


def _plan(p: Plan, cat: Catalog, moe: bool) -> Plan:
    bounds = [_group_bounds(g, cat, moe) for g in p.groups]
    if any(b is None for b in bounds):
        return p
    groups = [g.model_copy(update={"metrics_low": b[0], "metrics_high": b[1]}) for g, b in zip(p.groups, bounds) if b]
    lows, highs = [b[0] for b in bounds if b], [b[1] for b in bounds if b]
    return p.model_copy(update={"groups": groups, "metrics_low": _combine(lows), "metrics_high": _combine(highs)})


def with_plan_intervals(result: PlanResult, cat: Catalog, moe: bool = False) -> PlanResult:
    """Each group's interval from its regime's held-out errors (``moe``: the model routes to experts)."""
    return result.model_copy(update={"plans": [_plan(p, cat, moe) for p in result.plans]})
