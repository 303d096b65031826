"""The option table of a stream workload: replicas × engine knobs, each priced by the analytic model.

An option is a row of the static option table (GPU type, TP×PP, engine, precision, token
budget = the engine's chunk choices) at one running-request cap from
``STREAM_RUNNING_CAPS``. Per option, ``costs.stream`` gives the largest per-replica load
that keeps every percentile SLO (``slo_load``): requests/s for an open-loop stream,
clients for a closed loop (Little: clients = rate × mean end-to-end time at that rate).
Replicas of one option share the load evenly, so n replicas serve n × slo_load, and a
group's percentiles are those of one replica at load / n.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from guideopt.catalog import Catalog, load_length_mix
from guideopt.costs.lengths import LengthTable, bucket_lengths, fixed_lengths, mix_lengths
from guideopt.costs.stream import StreamMetrics, StreamOptions, options_from_table, steady_state, stream_metrics
from guideopt.costs.tables import OptionSpace, OptionTable, build_option_table
from guideopt.errors import InvalidRequestError
from guideopt.model.llm import ModelArch
from guideopt.model.request import PlanRequest
from guideopt.model.workload import PercentileTargets
from guideopt.simulator.policy import KvPolicy, kv_policy
from guideopt.solver.options import plan_precisions
from guideopt.units import MS_PER_S

# Running-request caps the solver tries per engine: powers of four spanning the engines'
# defaults (vLLM max_num_seqs 256 (V1: 1024 on H100-class), SGLang derives it from memory,
# TRT-LLM max_batch_size 2048 by default but 8-512 in its tuning guides).
STREAM_RUNNING_CAPS = (8, 32, 128, 512)
# Bisection steps for the stable rate (steady state only, cheap) and for the largest rate
# within the SLOs (percentiles, ~7x dearer): 2^-8 and 2^-7 of the bracket, rounded down.
STABLE_RATE_BISECTIONS = 8
SLO_LOAD_BISECTIONS = 7
IDLE_SHARE = 1.0 / 128  # an option that misses the SLOs at this share of its stable rate never meets them
TINY_RATE_RPS = 1e-6
PRUNE_BATCH = 512  # options priced per batch when pricing cheapest-first
PRUNE_SLACK_SHAPES = 4  # shapes priced beyond ``top``: room for plans the simulator cuts  # "no load": the steady state of an empty replica


@dataclass
class StreamSpace:
    arch: ModelArch
    table: OptionTable  # one row per option (static rows repeated per running cap)
    options: StreamOptions
    lengths: LengthTable
    targets: dict[str, PercentileTargets]
    slo_rate_rps: np.ndarray  # per replica: largest rate within every SLO (0: none)
    slo_load: np.ndarray  # per replica: the same in the workload's unit (req/s or clients)
    closed_loop: bool


def stream_lengths(req: PlanRequest, arch: ModelArch) -> LengthTable:
    """The request's length table (a trace file must have been read into buckets by the caller)."""
    wl = req.workload
    spec = wl.length_spec
    if spec is None:
        table = fixed_lengths(int(wl.input_len or 1), int(wl.output_len or 1))
    elif spec.file is not None:
        raise InvalidRequestError(f"workload.lengths.file: {spec.file} is read by the CLI; from the API pass its buckets instead")
    elif spec.mix is not None:
        table = mix_lengths(load_length_mix(spec.mix))
    elif spec.buckets is not None:
        table = bucket_lengths(spec.buckets)
    else:
        table = fixed_lengths(int(spec.input_len or 1), int(spec.output_len or 1))
    context = arch.max_position_embeddings
    if table.max_total > context:
        raise InvalidRequestError(
            f"workload.lengths: requests of up to {table.max_total} tokens exceed {arch.id}'s context of {context} (shorten them)"
        )
    return table


def build_stream_space(req: PlanRequest, cat: Catalog, gpus, prices: list[float], *, prune: bool = True) -> StreamSpace:
    """The options and their SLO loads. ``prune``: with cost the leading objective, price the
    options cheapest-first and stop once the rest cannot be among the plans shown (below)."""
    arch = cat.model(req.model)
    lengths = stream_lengths(req, arch)
    frameworks = [cat.framework(f) for f in req.framework_ids(list(cat.frameworks))]
    space = OptionSpace(
        gpus=gpus,
        frameworks=frameworks,
        dtypes=plan_precisions(req, arch),
        tp=req.parallelism.tp,
        pp=req.parallelism.pp,
        batch=[1],
        input_len=max(int(round(lengths.mean_input)), 1),
        output_len=max(int(round(lengths.mean_output)), 1),
        kv_dtype=req.kv_dtype,
    )
    base = build_option_table(arch, space, cat.calibration, prices=prices)
    chunked = np.array([space.frameworks[i].chunked_prefill for i in base.fw_idx], dtype=bool)
    longest = float(lengths.input_len.max())
    ok = base.fits & (base.memory.kv_tokens >= lengths.max_total) & (chunked | (base.split >= longest))
    rows = np.nonzero(ok)[0]
    caps = np.array(STREAM_RUNNING_CAPS, dtype=float)
    rep = np.repeat(rows, caps.size)
    cap = np.tile(caps, rows.size)
    table = base.take(rep)
    cap = effective_caps(table, cap, lengths)
    keep = _distinct(table, cap)
    table, cap = table.take(keep), cap[keep]
    opts = stream_options(table, cap, cat.calibration)
    targets = req.slo.stream_targets()
    closed = req.workload.concurrency is not None
    rate = _priced_slo_rates(req, arch, table, opts, lengths, targets, prune=prune and not closed)
    load = rate
    if closed and len(opts):  # clients one replica holds at that rate (Little's law)
        at = stream_metrics(arch, opts, lengths, np.maximum(rate, 1e-9), burstiness=req.workload.burstiness)
        load = np.where(rate > 0, rate * at.e2e_ms.mean / MS_PER_S, 0.0)
    return StreamSpace(arch, table, opts, lengths, targets, rate, load, closed)


def _priced_slo_rates(
    req: PlanRequest, arch: ModelArch, table: OptionTable, opts: StreamOptions, lengths: LengthTable, targets, *, prune: bool
) -> np.ndarray:
    """SLO rates of the options that can matter; the rest stay 0 (serve nothing).

    An empty replica's residence and prompt service bound the stable rate, hence the SLO
    rate, from above (one steady state), so ceil(rate / bound) × price bounds an option's
    cost from below. With ``prune``: options whose bound exceeds the budget cannot serve the
    rate within it, and with cost leading the objective the rest are priced in batches in
    order of that bound; once the ``top + PRUNE_SLACK_SHAPES``-th cheapest shape found costs
    less than the next bound, no later option can rank among the plans shown (nor replace
    one the simulator cuts, up to that slack)."""
    from guideopt.model.request import ObjectiveTerm
    from guideopt.solver.dominance import shape_key

    out = np.zeros(len(opts))
    rate = req.workload.rate_rps
    burst = req.workload.burstiness
    if len(opts) == 0:
        return out
    bound = idle_rate_bound(arch, opts, lengths)
    if not prune or rate is None:
        return slo_rates(arch, opts, lengths, targets, burst, bound=bound)
    price = table.usd_per_hour_per_gpu * table.gpus_per_replica
    budget = req.budget.usd_per_hour * (1 + 1e-9)
    lower = np.where(bound > 0, np.ceil(rate / np.maximum(bound, 1e-12) - 1e-9) * price, np.inf)
    alive = np.nonzero(lower <= budget)[0]
    if req.objective[0] is not ObjectiveTerm.COST:
        out[alive] = slo_rates(arch, opts.take(alive), lengths, targets, burst, bound=bound[alive])
        return out
    order = alive[np.argsort(lower[alive], kind="stable")]
    shapes = shape_key(table)
    best: dict[int, float] = {}
    want = req.top + PRUNE_SLACK_SHAPES
    for start in range(0, order.size, PRUNE_BATCH):
        batch = order[start : start + PRUNE_BATCH]
        if len(best) >= want and lower[batch[0]] > sorted(best.values())[want - 1]:
            break
        got = slo_rates(arch, opts.take(batch), lengths, targets, burst, bound=bound[batch])
        out[batch] = got
        cost = np.where(got > 0, np.ceil(rate / np.maximum(got, 1e-12) - 1e-9) * price[batch], np.inf)
        for i, c in zip(batch, cost):
            if c <= budget:
                best[int(shapes[i])] = min(best.get(int(shapes[i]), np.inf), float(c))
    return out


def idle_rate_bound(arch: ModelArch, opts: StreamOptions, lengths: LengthTable) -> np.ndarray:
    """Per option, a rate no steady state reaches: where an empty replica's residence fills
    its slots or its prompt service fills the steps (both only grow with the rate)."""
    st = steady_state(arch, opts, lengths, np.full(len(opts), TINY_RATE_RPS))
    return np.minimum(st.slots / st.residence_s, 1.0 / st.prefill_service_s)


def effective_caps(table: OptionTable, cap: np.ndarray, lengths: LengthTable) -> np.ndarray:
    """The running cap an engine applies: at most the token budget on chunked engines (vLLM
    caps max_num_seqs at max_num_batched_tokens), and caps beyond the requests the KV cache
    holds act alike (clipped there, so that equal options are priced once)."""
    chunked = np.array([table.space.frameworks[i].chunked_prefill for i in table.fw_idx], dtype=bool)
    cap = np.where(chunked, np.minimum(cap, table.split), np.asarray(cap, dtype=float))
    slots = np.maximum(np.floor(table.memory.kv_tokens / (lengths.mean_input + lengths.mean_output)), 1.0)
    return np.minimum(cap, np.maximum(slots, STREAM_RUNNING_CAPS[0]))


def stream_options(table: OptionTable, cap: np.ndarray, calibration) -> StreamOptions:
    reserve = np.array([kv_policy(table.space.frameworks[i].id) is KvPolicy.RESERVE for i in table.fw_idx], dtype=bool)
    return options_from_table(table, calibration, running_cap=cap, reserve_kv=reserve)


def _distinct(table: OptionTable, cap: np.ndarray) -> np.ndarray:
    """Rows of distinct (static row, cap): clipping caps at the budget repeats some."""
    key = np.stack([table.gpu_idx, table.fw_idx, table.dtype_idx, table.tp, table.pp, table.split, cap], axis=1)
    _, first = np.unique(key, axis=0, return_index=True)
    return np.sort(first)


def meets_targets(m: StreamMetrics, targets: dict[str, PercentileTargets]) -> np.ndarray:
    ok = np.asarray(m.stable, dtype=bool).copy()
    for metric, t in targets.items():
        dist = m.dist(metric)
        for pct, bound in t.targets.items():
            ok &= dist.within(pct, bound)
    return ok


def stable_rates(arch: ModelArch, opts: StreamOptions, lengths: LengthTable, bound: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per option, a bracket (stable, unstable) around the largest stable per-replica rate
    (bisection below ``bound``)."""
    hi = np.asarray(bound, dtype=float).copy()
    lo = np.zeros_like(hi)
    for _ in range(STABLE_RATE_BISECTIONS):
        mid = (lo + hi) / 2.0
        s = steady_state(arch, opts, lengths, mid)
        ok = s.converged & (mid * s.residence_s < s.slots) & (mid * s.prefill_service_s < 1.0)
        lo, hi = np.where(ok, mid, lo), np.where(ok, hi, mid)
    return lo, hi


def slo_rates(
    arch: ModelArch,
    opts: StreamOptions,
    lengths: LengthTable,
    targets: dict[str, PercentileTargets],
    burstiness: float,
    bound: np.ndarray | None = None,
) -> np.ndarray:
    """Per option, the largest per-replica rate (req/s) at which it is stable and meets every
    target: bisection below the stable rate (latencies grow with the rate), on the options
    that meet the targets when nearly idle (the rest get 0)."""
    if len(opts) == 0:
        return np.zeros(0)
    bound = idle_rate_bound(arch, opts, lengths) if bound is None else bound
    if not targets:
        return stable_rates(arch, opts, lengths, bound)[0]

    def ok_at(o: StreamOptions, rate: np.ndarray) -> np.ndarray:
        # no percentile values: each bound is tested with one CDF evaluation (Dist.within)
        m = stream_metrics(arch, o, lengths, np.maximum(rate, TINY_RATE_RPS), burstiness=burstiness, percentiles=())
        return meets_targets(m, targets)

    out = np.zeros(len(opts))
    # an option that misses the SLOs nearly idle never meets them: no stable-rate search for it
    usable = np.nonzero(ok_at(opts, np.minimum(bound * IDLE_SHARE, TINY_RATE_RPS * 1e3)))[0]
    if usable.size == 0:
        return out
    sub = opts.take(usable)
    stable, top = stable_rates(arch, sub, lengths, bound[usable])
    lo, hi = np.minimum(top * IDLE_SHARE, stable), top
    tested = np.zeros(lo.size, dtype=bool)  # lo is a rate that passed ok_at
    for _ in range(SLO_LOAD_BISECTIONS):
        mid = (lo + hi) / 2.0
        ok = ok_at(sub, mid)
        lo, hi, tested = np.where(ok, mid, lo), np.where(ok, hi, mid), tested | ok
    # only a bracket floor never moved up still needs its own check
    untested = np.nonzero(~tested)[0]
    keep = np.ones(lo.size, dtype=bool)
    if untested.size:
        keep[untested] = ok_at(sub.take(untested), lo[untested])
    out[usable] = np.where(keep, lo, 0.0)
    return out


def per_replica_rate(space: StreamSpace, rows: np.ndarray, total_load: float, replicas: np.ndarray, burstiness: float) -> np.ndarray:
    """Requests/s one replica of ``rows`` gets when ``replicas`` share ``total_load``."""
    share = total_load / np.maximum(replicas, 1)
    if not space.closed_loop:
        return share
    # closed loop: the replica's load in clients → its rate, scaled along the SLO point (rate ∝ clients
    # below it, as E2E changes little there); exact enough for ordering, the simulator checks it
    per_client = np.where(space.slo_load[rows] > 0, space.slo_rate_rps[rows] / np.maximum(space.slo_load[rows], 1e-12), 0.0)
    return share * per_client
