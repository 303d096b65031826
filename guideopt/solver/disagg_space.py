"""Disaggregated groups for a request stream: which prefill and decode workers, how many of
each, and the link the KV cache crosses (issue 23).

A *worker* is one replica of an option of the stream space (``StreamSpace``: GPU type,
layout, engine, precision, token budget, running cap); a disaggregated group is x prefill
workers and y decode workers of one engine and precision (the KV cache they hand over has
one dtype and page layout), on one GPU type or, where the engine's connector allows it,
two types of one vendor. Its costs are ``costs/disagg.py``'s.

The search is exact over what it keeps, in three steps:

1. Roles. Prefill workers: one per static row (the running cap does not matter to a
   prefill-only worker), ranked by the $/h per prompt/s of its prefill service; decode
   workers: every option, ranked by the $/h per request/s of its decode capacity. Per role
   the ``ROLE_KEEP`` best of each GPU type, plus the fastest of each type (the one TTFT or
   TPOT may need) are kept.
2. Sizes. Per decode worker the fewest workers whose step meets the TPOT bound and whose
   pool is stable at the rate (TPOT only falls with more workers, so a bisection over the
   count); then per (prefill, decode) pair the fewest prefill workers that meet every SLO
   with the full model (TTFT only falls with more prefill workers: a bisection again).
   Where that fails, the decode pool grows by ``DECODE_GROWTH`` and the pair is sized again,
   ``SIZE_ROUNDS`` times.
3. Link. Both roles on one GPU type inside one scale-up domain (an NVL72 rack, or one HGX
   node when the group fits) hand over on NVLink; otherwise over each GPU's scale-out NIC
   (``catalogs/links.yaml``'s network row where the GPU lists none), the slower side's.

The groups are the smallest that meet the SLOs at the rate, so they suit the cost-led
objectives streams default to; more workers than that are not enumerated.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from guideopt.catalog import Catalog
from guideopt.costs.disagg import DisaggOptions, disagg_stream_metrics, group_options
from guideopt.costs.disagg_kv import kv_link
from guideopt.costs.disagg_pools import decode_capacity_rps, decode_pool, prefill_moments, prefill_service_s
from guideopt.costs.stream import StreamMetrics
from guideopt.model.request import PlanRequest
from guideopt.solver.stream_options import StreamSpace

ROLE_KEEP = 6  # per GPU type and role: the workers with the best $/h per unit of work
MAX_WORKERS_PER_ROLE = 256  # safety cap on workers of one role (beyond any budget the catalog prices)
SIZE_ROUNDS = 3  # decode pool growths tried for a pair whose SLOs the first sizing misses
DECODE_GROWTH = 1.5
LINKS = ("nvlink", "rdma")  # link codes of ``DisaggTable.link``
MIN_RATE_RPS = 1e-9
DECODE_BISECTIONS = 30  # halves the decode count's bracket to 1e-9 of the slots
DECODE_CONFIRM_ROUNDS = 3  # counts added where the pool model finds a rounded count short
STABLE_MARGIN = 1e-6  # a pool exactly at its capacity never drains
PAIR_BATCH = 512  # pairs sized at a time, cheapest lower bound first
PRUNE_SLACK_SHAPES = 4  # pair shapes sized beyond ``top``: room for plans the simulator cuts


@dataclass
class DisaggTable:
    """One row per sized group (pair of workers): rows of the stream space, counts, link, metrics."""

    prefill_row: np.ndarray
    decode_row: np.ndarray
    prefill_replicas: np.ndarray  # x workers (replicas of the prefill row)
    decode_replicas: np.ndarray  # y
    link: np.ndarray  # index into LINKS
    opts: DisaggOptions  # ranks: x·dp and y·dp workers of the cost model
    metrics: StreamMetrics  # at the group's rate, percentiles of ``percentiles``
    usd_per_hour: np.ndarray
    max_rate_rps: np.ndarray  # the rate both pools sustain (stability)

    def __len__(self) -> int:
        return int(self.prefill_row.size)


def disagg_roles(space: StreamSpace, cat: Catalog) -> tuple[np.ndarray, np.ndarray]:
    """(prefill rows, decode rows) of the space worth pairing (step 1)."""
    t = space.table
    able = np.array([f.capabilities.disaggregation for f in t.space.frameworks], dtype=bool)[t.fw_idx]
    rows = np.nonzero(able)[0]
    if rows.size == 0:
        return rows, rows
    price = (t.usd_per_hour_per_gpu * t.gpus_per_replica / t.dp)[rows]  # one rank's: the rates below are a rank's
    opts = space.options.take(rows)
    inp = np.broadcast_to(space.lengths.input_len, (rows.size, space.lengths.input_len.size))
    service, _ = prefill_moments(prefill_service_s(space.arch, opts, inp), space.lengths.weight)
    static = _static_first(t, rows)  # one row per static row for prefill
    prefill = _keep_best(rows[static], t.gpu_idx[rows[static]], (price * service)[static], service[static])
    capacity = decode_capacity_rps(space.arch, opts, space.lengths)
    step1 = decode_pool(space.arch, opts, space.lengths, np.full(rows.size, MIN_RATE_RPS)).step_s
    decode = _keep_best(rows, t.gpu_idx[rows], price / np.maximum(capacity, 1e-12), step1)
    return prefill, decode


def _static_first(t, rows: np.ndarray) -> np.ndarray:
    """Positions in ``rows`` of the first row per (GPU, engine, dtype, layout, token budget)."""
    from guideopt.costs.tables import lex_ids

    key = lex_ids(t.gpu_idx[rows], t.fw_idx[rows], t.dtype_idx[rows], t.tp[rows], t.dp[rows], t.ep[rows], t.pp[rows], t.split[rows])
    _, first = np.unique(key, return_index=True)
    return np.sort(first)


def _keep_best(rows: np.ndarray, gpu: np.ndarray, per_work: np.ndarray, latency: np.ndarray) -> np.ndarray:
    """Per GPU type, the ``ROLE_KEEP`` rows of least $/h per unit of work and the fastest one."""
    keep: list[int] = []
    for g in np.unique(gpu):
        mine = np.nonzero(gpu == g)[0]
        cheap = mine[np.lexsort((latency[mine], per_work[mine]))][:ROLE_KEEP]
        fast = mine[np.lexsort((per_work[mine], latency[mine]))][:1]
        keep.extend(int(i) for i in np.concatenate([cheap, fast]))
    return rows[np.unique(np.array(keep, dtype=np.int64))]


def pairs_of(space: StreamSpace, prefill: np.ndarray, decode: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(prefill row, decode row) pairs that can hand over: one engine and precision, and one
    GPU type unless the engine's connector moves KV between types (of one vendor)."""
    t = space.table
    p, d = np.repeat(prefill, decode.size), np.tile(decode, prefill.size)
    gpus, fws = t.space.gpus, t.space.frameworks
    same_type = t.gpu_idx[p] == t.gpu_idx[d]
    mixed_ok = np.array([fws[i].capabilities.disaggregation_mixed_types for i in t.fw_idx[p]], dtype=bool)
    vendors = np.array([g.vendor.value for g in gpus])
    vendor = vendors[t.gpu_idx[p]] == vendors[t.gpu_idx[d]]
    ok = (t.fw_idx[p] == t.fw_idx[d]) & (t.dtype_idx[p] == t.dtype_idx[d]) & (same_type | (mixed_ok & vendor))
    return p[ok], d[ok]


def _decode_counts(req: PlanRequest, space: StreamSpace, rows: np.ndarray, rate: float, floor: np.ndarray) -> np.ndarray:
    """Per decode row, the fewest replicas (≥ ``floor``) stable at the rate with a step within the TPOT bound; 0: none.

    A worker's step at its fixed point d = λ_w·K·τ(d+1) grows with its rate, so the most a
    worker takes is where the step reaches the bound: λ_w = D/(K·τ(D+1)) with D the most
    decodes whose step τ(D+1) is within it (found once per row), and below what keeps the pool
    stable (slots/(K·τ(slots))). The count follows; the pool model confirms it (a count more
    where rounding left it short)."""
    from guideopt.costs.disagg_pools import decode_step_s, decode_steps_per_request
    from guideopt.costs.lengths import decode_terms
    from guideopt.costs.stream import running_slots

    dp = space.table.dp[rows]
    opts = space.options.take(rows)
    tpot = _tpot_bound_s(space)
    lengths = space.lengths
    slots, ctx, k = running_slots(opts, lengths), decode_terms(lengths)[1], decode_steps_per_request(lengths)

    def step(d: np.ndarray) -> np.ndarray:
        return decode_step_s(space.arch, opts, np.minimum(d + 1.0, slots), ctx)

    lo, hi = np.zeros(rows.size), slots.astype(float)  # d up to the slots (the step of d ≥ slots - 1 is τ(slots))
    for _ in range(DECODE_BISECTIONS):
        mid = (lo + hi) / 2.0
        ok_mid = step(mid) <= tpot
        lo, hi = np.where(ok_mid, mid, lo), np.where(ok_mid, hi, mid)
    within = np.where(step(hi) <= tpot, hi, lo)
    per_worker = np.minimum(within / (k * step(within)), slots / (k * step(slots)) * (1.0 - STABLE_MARGIN))
    usable = (step(np.zeros(rows.size)) <= tpot) & (per_worker > 0)
    need = np.where(usable, np.ceil(rate / np.maximum(per_worker * dp, 1e-300) - 1e-9), 0.0)
    counts = np.clip(np.maximum(need, floor), 0, MAX_WORKERS_PER_ROLE + 1).astype(np.int64)
    for _ in range(DECODE_CONFIRM_ROUNDS):
        pool = decode_pool(space.arch, opts, lengths, rate / (np.maximum(counts, 1) * dp))
        short = usable & (counts <= MAX_WORKERS_PER_ROLE) & ~(pool.stable & (pool.step_s <= tpot))
        if not short.any():
            break
        counts = counts + short
    ok = usable & (counts <= MAX_WORKERS_PER_ROLE)
    return np.where(ok, counts, 0)


def _tpot_bound_s(space: StreamSpace) -> float:
    t = space.targets.get("tpot_ms")
    return min(t.targets.values()) / 1000.0 if t is not None and t.targets else np.inf


def _fewest(ok, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Per entry the least n in [lo, hi] with ok(n) (ok monotone in n); 0 where ok(hi) fails."""
    lo = np.maximum(lo.astype(np.int64), 1)
    hi = np.maximum(hi.astype(np.int64), lo)
    good_hi = ok(hi.astype(float))
    good_lo = ok(lo.astype(float))
    a, b = lo.copy(), hi.copy()  # invariant: ok(b) where good_hi; a fails unless good_lo
    while np.any((b - a > 1) & good_hi & ~good_lo):
        mid = (a + b) // 2
        m_ok = ok(mid.astype(float))
        live = (b - a > 1) & good_hi & ~good_lo
        b = np.where(live & m_ok, mid, b)
        a = np.where(live & ~m_ok, mid, a)
    return np.where(good_lo, lo, np.where(good_hi, b, 0))


def link_of(space: StreamSpace, cat: Catalog, p: np.ndarray, d: np.ndarray, x: np.ndarray, y: np.ndarray):
    """(link code, GB/s, latency s) of each group's KV hand-over (step 3, ``costs.disagg_kv.kv_link``)."""
    t = space.table
    gpus = t.space.gpus
    rank_p, rank_d = t.gpus_per_replica[p] / t.dp[p], t.gpus_per_replica[d] / t.dp[d]  # GPUs of one rank: its KV shards
    group = x * t.gpus_per_replica[p] + y * t.gpus_per_replica[d]
    nvlink, bw, latency = kv_link(
        [gpus[i] for i in t.gpu_idx[p]],
        [gpus[i] for i in t.gpu_idx[d]],
        rank_p,
        rank_d,
        group,
        cat.links.network,
        cat.calibration.disaggregation.handoff_s,
    )
    return np.where(nvlink, 0, 1), bw, latency


def disagg_options(space: StreamSpace, cat: Catalog, p, d, x, y) -> tuple[DisaggOptions, np.ndarray]:
    """The cost model's options for groups of x × row ``p`` and y × row ``d``, and their link codes."""
    t = space.table
    code, bw, latency = link_of(space, cat, p, d, x, y)
    fws = t.space.frameworks
    layerwise = np.array([bool(fws[i].capabilities.kv_connectors) for i in t.fw_idx[p]], dtype=bool)
    ranks = ((x * t.dp[p]).astype(float), (y * t.dp[d]).astype(float))
    opts = group_options(space.arch, space.options.take(p), space.options.take(d), ranks, (bw, latency), layerwise, space.lengths.input_len)
    return opts, code


def size_groups(req: PlanRequest, space: StreamSpace, cat: Catalog, prefill: np.ndarray, decode: np.ndarray) -> DisaggTable:
    """The smallest group of each (prefill, decode) pair that meets every SLO at the rate (step 2).

    With cost leading the objective, pairs are sized in order of a lower bound on their
    price (the decode pool the TPOT bound needs, the prefill pool stability needs: sizing
    only adds to both) and the search stops once ``top`` + ``PRUNE_SLACK_SHAPES`` pair shapes
    cost less than the next bound: no later pair can rank among the plans shown."""
    from guideopt.costs.disagg import disagg_max_rate
    from guideopt.model.request import ObjectiveTerm
    from guideopt.solver.stream_extract import percentiles_wanted

    t, wl = space.table, req.workload
    rate = float(wl.rate_rps or 0.0)
    p, d = pairs_of(space, prefill, decode)
    distinct, inverse = np.unique(d, return_inverse=True)
    y = _decode_counts(req, space, distinct, rate, np.ones(distinct.size))[inverse.reshape(-1)]
    p, d, y = p[y > 0], d[y > 0], y[y > 0]
    price = t.usd_per_hour_per_gpu * t.gpus_per_replica
    lower = _prefill_floor(space, p, rate) * price[p] + y * price[d]
    order = np.argsort(lower, kind="stable")
    order = order[lower[order] <= req.budget.usd_per_hour * (1 + 1e-9)]
    shapes = pair_shapes(space, p, d)
    cost_first = req.objective[0] is ObjectiveTerm.COST
    found: list[tuple[np.ndarray, np.ndarray]] = []
    best: dict[int, float] = {}
    for start in range(0, order.size, PAIR_BATCH if cost_first else max(order.size, 1)):
        batch = order[start : start + (PAIR_BATCH if cost_first else order.size)]
        want = sorted(best.values())[: req.top + PRUNE_SLACK_SHAPES]
        if cost_first and len(want) == req.top + PRUNE_SLACK_SHAPES and lower[batch[0]] > want[-1]:
            break
        x, yy = _size_pairs(req, space, cat, (p[batch], d[batch], y[batch].copy()))
        ok = x > 0
        found.append((batch[ok], np.stack([x[ok], yy[ok]])))
        for k, usd in zip(batch[ok], x[ok] * price[p[batch[ok]]] + yy[ok] * price[d[batch[ok]]]):
            best[int(shapes[k])] = min(best.get(int(shapes[k]), np.inf), float(usd))
    idx = np.concatenate([f[0] for f in found]) if found else np.zeros(0, dtype=np.int64)
    xy = np.concatenate([f[1] for f in found], axis=1) if found else np.zeros((2, 0), dtype=np.int64)
    p, d, x, y = p[idx], d[idx], xy[0], xy[1]
    opts, code = disagg_options(space, cat, p, d, x, y)
    return DisaggTable(
        prefill_row=p,
        decode_row=d,
        prefill_replicas=x,
        decode_replicas=y,
        link=code,
        opts=opts,
        metrics=disagg_stream_metrics(space.arch, opts, space.lengths, np.full(p.size, rate), wl.burstiness, percentiles_wanted(req)),
        usd_per_hour=x * price[p] + y * price[d],
        max_rate_rps=disagg_max_rate(space.arch, opts, space.lengths),
    )


def pair_shapes(space: StreamSpace, p: np.ndarray, d: np.ndarray) -> np.ndarray:
    """One id per (prefill shape, decode shape): plans differ in pair shapes."""
    from guideopt.solver.dominance import shape_key

    shapes = shape_key(space.table)
    return shapes[p].astype(np.int64) * (int(shapes.max(initial=0)) + 1) + shapes[d]


def _prefill_floor(space: StreamSpace, p: np.ndarray, rate: float) -> np.ndarray:
    """Per prefill row, the fewest replicas whose prompt queue drains at the rate."""
    w = space.lengths.weight
    inp = np.broadcast_to(space.lengths.input_len, (p.size, w.size))
    mean_s, _ = prefill_moments(prefill_service_s(space.arch, space.options.take(p), inp), w)
    return np.floor(rate * mean_s / space.table.dp[p]) + 1


def _size_pairs(req: PlanRequest, space: StreamSpace, cat: Catalog, group) -> tuple[np.ndarray, np.ndarray]:
    """(x, y) per pair: the fewest prefill replicas meeting every SLO with ``y`` decode replicas,
    the decode pool grown where none does (x = 0: no group within the budget)."""
    from guideopt.solver.stream_rates import meets_targets

    p, d, y = group
    t, wl = space.table, req.workload
    rate = float(wl.rate_rps or 0.0)
    price = t.usd_per_hour_per_gpu * t.gpus_per_replica
    budget = req.budget.usd_per_hour * (1 + 1e-9)
    x = np.zeros(p.size, dtype=np.int64)
    for _ in range(SIZE_ROUNDS):
        todo = np.nonzero((x == 0) & (y * price[d] < budget))[0]
        if todo.size == 0:
            break
        x[todo] = _prefill_counts(
            space, cat, (p[todo], d[todo], y[todo]), (rate, wl.burstiness, wl.num_requests), budget - y[todo] * price[d[todo]]
        )
        grow = todo[x[todo] == 0]
        y[grow] = np.ceil(y[grow] * DECODE_GROWTH).astype(np.int64)
    ok = np.nonzero(x > 0)[0]
    opts, _ = disagg_options(space, cat, p[ok], d[ok], x[ok], y[ok])
    m = disagg_stream_metrics(space.arch, opts, space.lengths, np.full(ok.size, rate), burstiness=wl.burstiness, percentiles=())
    good = meets_targets(m, space.targets, wl.num_requests) if space.targets else np.asarray(m.stable, dtype=bool)
    x[ok[~good]] = 0  # the link the final counts give (NVLink only inside one domain) may miss an SLO the search met
    return x, y


def _prefill_counts(space: StreamSpace, cat: Catalog, group, load: tuple[float, float, int], left_usd: np.ndarray) -> np.ndarray:
    """Per pair, the fewest prefill replicas that meet every SLO with ``y`` decode replicas, within what the budget leaves; 0: none.
    ``load``: the rate, its burstiness and the requests of one run the SLOs are judged on."""
    from guideopt.solver.stream_rates import meets_targets

    p, d, y = group
    rate, burstiness, run_requests = load
    t = space.table
    price = (t.usd_per_hour_per_gpu * t.gpus_per_replica)[p]
    w = space.lengths.weight
    inp = np.broadcast_to(space.lengths.input_len, (p.size, w.size))
    mean_s, _ = prefill_moments(prefill_service_s(space.arch, space.options.take(p), inp), w)
    stable_floor = np.floor(rate * mean_s / t.dp[p]) + 1  # fewer replicas leave the prompt queue growing
    most = np.minimum(np.floor(left_usd / price), MAX_WORKERS_PER_ROLE)

    def ok(x: np.ndarray) -> np.ndarray:
        opts, _ = disagg_options(space, cat, p, d, x, y)
        m = disagg_stream_metrics(space.arch, opts, space.lengths, np.full(p.size, rate), burstiness=burstiness, percentiles=())
        return meets_targets(m, space.targets, run_requests) if space.targets else np.asarray(m.stable, dtype=bool)

    counts = _fewest(ok, stable_floor, np.maximum(most, 1))
    return np.where(most >= stable_floor, counts, 0)
