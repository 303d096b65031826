"""The user-constraint kinds: one row each, read by every model, front and explanation.

A row says where its limits come from in the request (one ``Bound`` per limit, named as the
constraints file names it), the integer quantity it bounds per candidate (and per replica,
when it caps the replica count), its scope, and how to say by how much it must move:

* ``PLAN``: the plan's sum over its groups is bounded (budget, GPU count, throughput floor);
* ``TYPE``: the sum over the groups using one GPU type (inventory);
* ``GROUP``: every group on its own (latency SLOs: a plan's latency is its worst group's).

For a single-group plan every scope is a mask over candidates; the mixed-type model turns
PLAN rows into linear constraints over its picks, TYPE rows into per-type limits and GROUP
rows into dropped candidates. Adding a constraint kind: one row here, plus its tests.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import Any

import numpy as np

from guideopt.model.gpu import Gpu
from guideopt.model.request import ObjectiveTerm, PlanRequest
from guideopt.solver.candidates import Candidates, ReplicaKinds, type_use
from guideopt.units import CENTS_PER_USD, DECI_TOK_S_PER_TOK_S, MILLI_LOAD_PER_LOAD, MILLI_USD_PER_USD, ROUNDING_EPS, US_PER_MS, US_PER_S

# Budgets beyond this many milli-dollars are treated as unbounded: CP-SAT sums costs of
# many candidates in int64, so the budget keeps this factor of headroom below its limit.
INT64_SUM_HEADROOM = 1 << 14
MAX_BUDGET_MILLI_USD = np.iinfo(np.int64).max // INT64_SUM_HEADROOM


class Scope(str, Enum):
    PLAN = "plan"
    TYPE = "type"
    GROUP = "group"


@dataclass(frozen=True)
class Bound:
    """One limit of the request: ``values(c) <= limit`` (or ``>=`` for an ``at_least`` row)."""

    name: str  # as the constraints file names it: "budget.usd_per_hour", "gpus.l4", ...
    kind: ConstraintKind
    limit: float  # in the integer scale of the column
    user_limit: float  # as the user wrote it
    gpu: int = -1  # the GPU type of a TYPE row
    context: Any = None  # what a row needs besides the candidates (e.g. node sizes per type)

    def values(self, c: Any) -> np.ndarray:
        return self.kind.value(c, self)

    def violated(self, c: Any) -> np.ndarray:
        v = self.values(c)
        return v < self.limit if self.kind.at_least else v > self.limit

    def int_limit(self) -> int:
        return math.ceil(self.limit - ROUNDING_EPS) if self.kind.at_least else math.floor(self.limit + ROUNDING_EPS)


@dataclass(frozen=True)
class ConstraintKind:
    key: str
    scope: Scope
    at_least: bool
    limits: Callable[[PlanRequest, list[Gpu]], list[tuple[str, float, float, int, Any]]]  # name, limit, user limit, gpu, context
    value: Callable[[Any, Bound], np.ndarray]  # per candidate (also per replica kind for caps)
    describe: Callable[[PlanRequest, Bound, float], str]  # why, given the best value the rest allows
    relaxed: Callable[[float], float]  # the limit (as the user writes it) the best value needs, rounded to the safe side
    max_replicas: Callable[[Any, Bound], np.ndarray] | None = None  # most replicas per kind it allows
    min_replicas: Callable[[Any, Bound], np.ndarray] | None = None  # fewest replicas per kind it needs
    term: ObjectiveTerm | None = None  # the objective term measuring the same quantity


def _budget_milli_usd(req: PlanRequest) -> int:
    return int(min(np.floor(req.budget.usd_per_hour * MILLI_USD_PER_USD + ROUNDING_EPS), MAX_BUDGET_MILLI_USD))


def _per_replica_cap(per_replica: Callable[[Any, Bound], np.ndarray]) -> Callable[[Any, Bound], np.ndarray]:
    def cap(k: Any, b: Bound) -> np.ndarray:
        used = per_replica(k, b)
        big = np.iinfo(np.int64).max
        return np.where(used > 0, b.int_limit() // np.maximum(used, 1), big)

    return cap


def _cents(value_milli: float) -> float:
    return math.ceil(value_milli / (MILLI_USD_PER_USD / CENTS_PER_USD) - ROUNDING_EPS) / CENTS_PER_USD


def _slo_row(key: str, field: str, column: str, scale: float, unit: str, label: str, digits: int) -> ConstraintKind:
    def limits(req: PlanRequest, gpus: list[Gpu]) -> list[tuple[str, float, float, int, Any]]:
        value = getattr(req.slo, field)
        if value is None or req.workload.is_stream:  # a stream's latency bounds are STREAM_SLO rows
            return []
        return [(key, value * scale, value, -1, None)]

    def relaxed(best: float) -> float:  # rounded up at the shown precision, so that it suffices
        return math.ceil(best / scale * 10**digits - ROUNDING_EPS) / 10**digits

    def describe(req: PlanRequest, b: Bound, best: float) -> str:
        return f"{key}: {label} <= {b.user_limit:g} {unit} is below the fastest possible {relaxed(best):.{digits}f} {unit}"

    term = {"ttft_us": ObjectiveTerm.TTFT, "tpot_us": ObjectiveTerm.TPOT, "latency_us": ObjectiveTerm.LATENCY}[column]
    return ConstraintKind(key, Scope.GROUP, False, limits, lambda c, b: getattr(c, column), describe, relaxed, term=term)


def _inventory_limits(req: PlanRequest, gpus: list[Gpu]) -> list[tuple[str, float, float, int, Any]]:
    out = []
    for i, g in enumerate(gpus):
        limit = req.allowance(g.id).max
        if limit is not None:
            out.append((f"gpus.{g.id}", float(limit), float(limit), i, None))
    return out


BUDGET = ConstraintKind(
    "budget.usd_per_hour",
    Scope.PLAN,
    False,
    lambda req, gpus: [("budget.usd_per_hour", float(_budget_milli_usd(req)), req.budget.usd_per_hour, -1, None)],
    lambda c, b: c.milli_usd_per_hour,
    lambda req, b, best: (
        f"budget.usd_per_hour: ${b.user_limit:g}/h is too little; a budget of ${_cents(best):.2f}/h or more would allow a plan"
    ),
    _cents,
    max_replicas=_per_replica_cap(lambda k, b: k.milli_usd_per_hour),
    term=ObjectiveTerm.COST,
)
MAX_GPUS = ConstraintKind(
    "parallelism.max_gpus",
    Scope.PLAN,
    False,
    lambda req, gpus: (
        []
        if not req.parallelism.max_gpus
        else [("parallelism.max_gpus", float(req.parallelism.max_gpus), float(req.parallelism.max_gpus), -1, None)]
    ),
    lambda c, b: c.gpus + c.gpus2,
    lambda req, b, best: f"parallelism.max_gpus: {b.user_limit:g} GPUs are too few; {best:.0f} or more would allow a plan",
    float,
    max_replicas=_per_replica_cap(lambda k, b: k.gpus + k.gpus2),
)


def nodes_used(gpus_per_replica: np.ndarray, replicas: np.ndarray, gpus_per_node: np.ndarray) -> np.ndarray:
    """Nodes that ``replicas`` replicas of ``gpus_per_replica`` GPUs (of one type, whose
    nodes hold ``gpus_per_node``) occupy. A replica no wider than a node shares nodes with
    others of its group: floor(node / replica) replicas per node. A wider replica takes
    ceil(replica / node) whole nodes of its own. Groups, and GPU types, never share a node;
    a cross-type pipeline counts each stage on its own type's nodes."""
    g = np.maximum(gpus_per_replica, 1)
    per_node = np.maximum(gpus_per_node // g, 1)
    shared = -(-replicas // per_node)
    whole = replicas * -(-g // gpus_per_node)
    return np.where(gpus_per_replica == 0, 0, np.where(g <= gpus_per_node, shared, whole))


def _group_nodes(c: Any, b: Bound) -> np.ndarray:
    """Nodes of each candidate group (both stages of a pipeline)."""
    node = b.context
    n = np.maximum(c.replicas, 1)
    first = nodes_used(c.gpus // n, n, node[c.gpu_idx])
    second = np.where(c.gpu_idx2 >= 0, nodes_used(c.gpus2 // n, n, node[np.maximum(c.gpu_idx2, 0)]), 0)
    return first + second


def _node_cap(k: Any, b: Bound) -> np.ndarray:
    """Most replicas within the node limit (exact for one GPU type; for a pipeline, the
    tighter of its two stages' caps, an upper bound the plan-sum constraint then enforces)."""
    limit = b.int_limit()

    def cap(gpus: np.ndarray, gpu_idx: np.ndarray) -> np.ndarray:
        node = b.context[np.maximum(gpu_idx, 0)]
        g = np.maximum(gpus, 1)
        most = np.where(g <= node, limit * (node // g), limit // -(-g // node))
        return np.where((gpus == 0) | (gpu_idx < 0), np.iinfo(np.int64).max, most)

    return np.minimum(cap(k.gpus, k.gpu_idx), cap(k.gpus2, k.gpu_idx2))


MAX_NODES = ConstraintKind(
    "parallelism.max_nodes",
    Scope.PLAN,
    False,
    lambda req, gpus: (
        []
        if not req.parallelism.max_nodes
        else [
            (
                "parallelism.max_nodes",
                float(req.parallelism.max_nodes),
                float(req.parallelism.max_nodes),
                -1,
                np.array([g.gpus_per_node for g in gpus], dtype=np.int64),
            )
        ]
    ),
    _group_nodes,
    lambda req, b, best: f"parallelism.max_nodes: {b.user_limit:g} nodes are too few; {best:.0f} or more would allow a plan",
    float,
    max_replicas=_node_cap,
)
INVENTORY = ConstraintKind(
    "gpus",
    Scope.TYPE,
    False,
    _inventory_limits,
    lambda c, b: c.gpus_on(b.gpu),
    lambda req, b, best: f"{b.name}: {b.user_limit:g} GPUs of this type are too few; {best:.0f} would allow a plan",
    float,
    max_replicas=_per_replica_cap(lambda k, b: k.gpus_on(b.gpu)),
)
THROUGHPUT_FLOOR = ConstraintKind(
    "slo.min_output_throughput_tok_s",
    Scope.PLAN,
    True,
    lambda req, gpus: (
        []
        if not req.slo.min_output_throughput_tok_s
        else [
            (
                "slo.min_output_throughput_tok_s",
                req.slo.min_output_throughput_tok_s * DECI_TOK_S_PER_TOK_S,
                req.slo.min_output_throughput_tok_s,
                -1,
                None,
            )
        ]
    ),
    lambda c, b: c.deci_tok_s,
    lambda req, b, best: (
        f"slo.min_output_throughput_tok_s: {b.user_limit:g} tok/s is above the most reachable "
        f"{math.floor(best / DECI_TOK_S_PER_TOK_S):.0f} tok/s"
    ),
    lambda best: float(math.floor(best / DECI_TOK_S_PER_TOK_S)),
    min_replicas=lambda k, b: np.ceil(b.user_limit / k.tok_s - ROUNDING_EPS).astype(np.int64),
    term=ObjectiveTerm.THROUGHPUT,
)


def _stream_slo_limits(req: PlanRequest, gpus: list[Gpu]) -> list[tuple[str, float, float, int, Any]]:
    """One bound per (metric, percentile) of a stream; the context is its ``slo_us`` column."""
    if not req.workload.is_stream:
        return []
    out = []
    for j, (metric, pct, bound) in enumerate(stream_slo_bounds(req)):
        out.append((f"slo.{metric}.p{pct:g}", bound * US_PER_MS, bound, -1, j))
    return out


def stream_slo_bounds(req: PlanRequest) -> list[tuple[str, float, float]]:
    """(metric, percentile, bound in ms) of a stream's SLOs, in a fixed order (``slo_us`` columns)."""
    return [(m, p, b) for m, t in sorted(req.slo.stream_targets().items()) for p, b in sorted(t.targets.items())]


STREAM_SLO = ConstraintKind(
    "slo.stream",
    Scope.GROUP,
    False,
    _stream_slo_limits,
    lambda c, b: c.slo_us[:, b.context],
    lambda req, b, best: (
        f"{b.name}: {b.user_limit:g} ms is below the fastest possible {math.ceil(best / US_PER_MS * 10) / 10:.1f} ms at this rate"
    ),
    lambda best: math.ceil(best / US_PER_MS * 10 - ROUNDING_EPS) / 10,
)


def _load_limits(req: PlanRequest, gpus: list[Gpu]) -> list[tuple[str, float, float, int, Any]]:
    wl = req.workload
    if wl.rate_rps is not None:
        return [("workload.rate_rps", wl.rate_rps * MILLI_LOAD_PER_LOAD, wl.rate_rps, -1, "req/s")]
    if wl.concurrency is not None:
        return [("workload.concurrency", wl.concurrency * MILLI_LOAD_PER_LOAD, float(wl.concurrency), -1, "clients")]
    return []


def _fewest_for_load(k: Any, b: Bound) -> np.ndarray:
    """Replicas that share the load so that each gets no more than it serves within the SLOs."""
    per = np.maximum(k.milli_load, 0)
    need = np.ceil(b.limit / np.maximum(per, 1) - ROUNDING_EPS)
    return np.where(per > 0, np.minimum(need, UNSERVABLE_REPLICAS), UNSERVABLE_REPLICAS).astype(np.int64)


def _most_load(best_milli: float, unit: str) -> float:
    """The largest load a plan serves, rounded down: whole clients, or req/s to the milli."""
    load = math.floor(best_milli) / MILLI_LOAD_PER_LOAD
    return float(math.floor(load)) if unit == "clients" else load


# A replica kind that serves no load within the SLOs needs more replicas than any cap allows.
UNSERVABLE_REPLICAS = np.iinfo(np.int32).max
STREAM_LOAD = ConstraintKind(
    "workload.load",
    Scope.PLAN,
    True,
    _load_limits,
    lambda c, b: c.milli_load,
    lambda req, b, best: (
        f"{b.name}: {b.user_limit:g} {b.context} is more than any plan within the other limits serves; "
        f"the most is {_most_load(best, b.context):g} {b.context} (lower it, or raise budget.usd_per_hour)"
    ),
    lambda best: _most_load(best, "req/s"),
    min_replicas=_fewest_for_load,
    term=ObjectiveTerm.RATE,
)

# The order of the rows is the order constraints are reported in.
CONSTRAINT_KINDS: tuple[ConstraintKind, ...] = (
    BUDGET,
    MAX_GPUS,
    MAX_NODES,
    INVENTORY,
    _slo_row("slo.ttft_ms", "ttft_ms", "ttft_us", US_PER_MS, "ms", "TTFT", 1),
    _slo_row("slo.tpot_ms", "tpot_ms", "tpot_us", US_PER_MS, "ms", "TPOT", 2),
    _slo_row("slo.batch_latency_s", "batch_latency_s", "latency_us", US_PER_S, "s", "batch latency", 2),
    THROUGHPUT_FLOOR,
    STREAM_SLO,
    STREAM_LOAD,
)


def user_bounds(req: PlanRequest, gpus: list[Gpu]) -> list[Bound]:
    """Every limit the request sets, in report order."""
    out: list[Bound] = []
    for kind in CONSTRAINT_KINDS:
        for name, limit, user_limit, gpu, context in kind.limits(req, gpus):
            out.append(Bound(name, kind, limit, user_limit, gpu, context))
    return out


def violations(c: Any, bounds: list[Bound], skip: frozenset[str] = frozenset()) -> dict[str, np.ndarray]:
    """Per limit, the candidates (single-group plans) that break it."""
    return {b.name: b.violated(c) for b in bounds if b.name not in skip}


def satisfied(c: Any, bounds: list[Bound], skip: frozenset[str] = frozenset()) -> np.ndarray:
    return _meets(c, [b for b in bounds if b.name not in skip])


def replica_range(k: Any, bounds: list[Bound], skip: frozenset[str], cap: int) -> tuple[np.ndarray, np.ndarray]:
    """Per replica kind: the fewest replicas the limits need and the most they allow (the
    latter may be 0: not even one replica fits)."""
    hi, lo = np.full(len(k), cap, dtype=np.int64), np.ones(len(k), dtype=np.int64)
    stock = _inventories(k, [b for b in bounds if b.name not in skip])
    if stock:  # every inventory at once: the tightest per type, on the (at most two) types of a row
        for t, used in type_use(k):
            limit = np.array([stock.get(g, (np.iinfo(np.int64).max, 0))[0] for g in range(int(t.max(initial=-1)) + 1)] + [0])
            hi = np.minimum(hi, np.where((used > 0) & np.isin(t, list(stock)), limit[t] // np.maximum(used, 1), np.iinfo(np.int64).max))
    for b in bounds:
        if b.name in skip or (stock and b.kind is INVENTORY):
            continue
        if b.kind.max_replicas is not None:
            hi = np.minimum(hi, b.kind.max_replicas(k, b))
        if b.kind.min_replicas is not None:
            lo = np.maximum(lo, b.kind.min_replicas(k, b))
    return np.minimum(lo, cap), hi


def within(k: Any, bounds: list[Bound], scope: Scope) -> np.ndarray:
    """Rows (replica kinds or candidates) that meet every limit of ``scope``."""
    return _meets(k, [b for b in bounds if b.kind.scope is scope])


def _meets(k: Any, bounds: list[Bound]) -> np.ndarray:
    """Rows that meet every one of ``bounds`` (inventories checked at once)."""
    ok = np.ones(len(k), dtype=bool)
    stock = _inventories(k, bounds)
    for t, used in type_use(k) if stock else ():
        limit = np.array([stock.get(g, (0, np.inf))[1] for g in range(int(t.max(initial=-1)) + 1)] + [np.inf])
        ok &= ~(used > limit[t])
    for b in bounds:
        if not (stock and b.kind is INVENTORY):
            ok &= ~b.violated(k)
    return ok


def _inventories(k: Any, bounds: list[Bound]) -> dict[int, tuple[int, float]]:
    """Per GPU type, its tightest inventory (integer, as given); empty: check one by one."""
    rows = [b for b in bounds if b.kind is INVENTORY]
    if not rows or not isinstance(k, ReplicaKinds | Candidates) or min(b.limit for b in rows) < 0 or min(b.gpu for b in rows) < 0:
        return {}
    out: dict[int, tuple[int, float]] = {}
    for b in rows:
        most, limit = out.get(b.gpu, (np.iinfo(np.int64).max, np.inf))
        out[b.gpu] = (min(most, b.int_limit()), min(limit, b.limit))
    return out


def group_ok(k: Any, bounds: list[Bound]) -> np.ndarray:
    """Replica kinds that meet every GROUP limit (each group on its own)."""
    return within(k, bounds, Scope.GROUP)
