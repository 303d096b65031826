"""The option table of a stream workload: replicas × engine knobs, each priced by the analytic model.

An option is a row of the static option table (GPU type, TP×PP, engine, precision, token
budget = the engine's chunk choices) at one running-request cap from
``STREAM_RUNNING_CAPS``. Per option, ``costs.stream`` gives the largest per-replica load
that keeps every percentile SLO (``slo_load``): requests/s for an open-loop stream,
clients for a closed loop (``stream_rates.slo_clients``: the closed loop priced by
``costs.closed_loop``, the function ``predict --concurrency`` and ``simulate`` use). Replicas of one option share the load evenly, so n
replicas serve n × slo_load, and a group's percentiles are those of one replica at load / n.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from guideopt.catalog import Catalog, load_length_mix
from guideopt.costs.closed_loop import closed_loop_rate
from guideopt.costs.lengths import LengthTable, bucket_lengths, fixed_lengths, mix_lengths
from guideopt.costs.stream import StreamOptions, options_from_table
from guideopt.costs.stream_bounds import idle_rate_bound, rate_bounds
from guideopt.costs.tables import OptionSpace, OptionTable, build_option_table, lex_ids
from guideopt.errors import InvalidRequestError
from guideopt.model.llm import ModelArch
from guideopt.model.request import PlanRequest
from guideopt.model.workload import PercentileTargets
from guideopt.simulator.policy import KvPolicy, kv_policy
from guideopt.solver.options import layout_choices, plan_precisions
from guideopt.solver.stream_rates import slo_clients, slo_rates, usable_mask

# Running-request caps the solver tries per engine: powers of four spanning the engines'
# defaults (vLLM max_num_seqs 256 (V1: 1024 on H100-class), SGLang derives it from memory,
# TRT-LLM max_batch_size 2048 by default but 8-512 in its tuning guides).
STREAM_RUNNING_CAPS = (8, 32, 128, 512)
PRUNE_BATCH = 512  # options priced per batch when pricing cheapest-first
USABLE_CHUNK = 4096  # options screened nearly idle at a time, cheapest bound first
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
    static_rows: np.ndarray | None = None  # per option, its row of the static table (options differing only in their cap share one)
    lockstep_share: float = 0.0  # Calibration.closed_loop: the closed loop's rate as predict --concurrency prices it


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


def build_stream_space(
    req: PlanRequest, cat: Catalog, gpus, prices: list[float], *, prune: bool = True, priced: bool = True
) -> StreamSpace:
    """The options and their SLO loads. ``prune``: with cost the leading objective, price the
    options cheapest-first and stop once the rest cannot be among the plans shown (below).
    ``priced`` False: no SLO loads (all 0; the options as workers of disaggregated pools only)."""
    arch = cat.model(req.model)
    lengths = stream_lengths(req, arch)
    frameworks = [cat.framework(f) for f in req.framework_ids(list(cat.frameworks))]
    space = OptionSpace(
        gpus=gpus,
        frameworks=frameworks,
        dtypes=plan_precisions(req, arch),
        tp=req.parallelism.tp,
        pp=req.parallelism.pp,
        **layout_choices(req, arch),
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
    closed = req.workload.concurrency is not None
    zero = np.zeros(len(opts))
    share = cat.calibration.closed_loop.lockstep_share
    unpriced = StreamSpace(arch, table, opts, lengths, req.slo.stream_targets(), zero, zero, closed, rep[keep], share)
    return priced_space(req, unpriced, prune=prune) if priced else unpriced


def priced_space(req: PlanRequest, space: StreamSpace, *, prune: bool = True, known_usd: Sequence[float] = ()) -> StreamSpace:
    """``space`` with its SLO loads. ``known_usd``: $/h of plans of other shapes already known
    (disaggregated groups), which the cheapest-first pricing counts among the plans shown."""
    arch, table, opts, lengths = space.arch, space.table, space.options, space.lengths
    if space.closed_loop:  # the most clients whose closed loop keeps the SLOs, and the rate they drive
        share, runs = space.lockstep_share, req.workload.num_requests
        load = slo_clients(arch, opts, lengths, space.targets, lockstep_share=share, run_requests=runs)
        driven = closed_loop_rate(arch, opts, lengths, np.maximum(load, 1.0), lockstep_share=share) if len(opts) else np.zeros(0)
        rate = np.where(load > 0, driven, 0.0)  # no client within the SLOs: no rate (and no 0/0)
    else:
        rate = _priced_slo_rates(
            req, arch, table, opts, lengths, space.targets, prune=prune, static_rows=space.static_rows, known_usd=known_usd
        )
        load = rate
    # the options are attention-DP ranks (each serves its own requests); a replica is dp of them
    return dataclasses.replace(space, slo_rate_rps=rate * table.dp, slo_load=load * table.dp)


def _priced_slo_rates(
    req: PlanRequest,
    arch: ModelArch,
    table: OptionTable,
    opts: StreamOptions,
    lengths: LengthTable,
    targets,
    *,
    prune: bool,
    static_rows: np.ndarray | None = None,
    known_usd: Sequence[float] = (),
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
    runs = req.workload.num_requests
    if len(opts) == 0:
        return out
    if not prune or rate is None:
        return slo_rates(
            arch, opts, lengths, targets, burst, bound=rate_bounds(arch, opts, lengths, static_rows, targets), run_requests=runs
        )
    price = table.usd_per_hour_per_gpu * table.gpus_per_replica
    ranks = table.dp  # the rates are one attention-DP rank's; a replica has dp of them
    budget = req.budget.usd_per_hour * (1 + 1e-9)

    def lower_cost(bound: np.ndarray) -> np.ndarray:
        return np.where(bound > 0, np.ceil(rate / np.maximum(bound * ranks, 1e-12) - 1e-9) * price, np.inf)

    # the one-step bounds first; the idle steady state only for what they leave within the budget
    bound = rate_bounds(arch, opts, lengths, static_rows, targets, idle=False)
    within = np.nonzero(lower_cost(bound) <= budget)[0]
    rows = static_rows[within] if static_rows is not None else None
    bound[within] = np.minimum(bound[within], idle_rate_bound(arch, opts.take(within), lengths, rows))
    lower = lower_cost(bound)
    alive = np.nonzero(lower <= budget)[0]
    if req.objective[0] is not ObjectiveTerm.COST:
        out[alive] = slo_rates(arch, opts.take(alive), lengths, targets, burst, bound=bound[alive], run_requests=runs)
        return out
    order = alive[np.argsort(lower[alive], kind="stable")]
    priced = _cheapest_first(req, arch, opts, lengths, targets, order, lower, bound, shape_key(table), (price, ranks), known_usd)
    out[priced[0]] = priced[1]
    return out


def _cheapest_first(
    req: PlanRequest, arch, opts, lengths, targets, order, lower, bound, shapes, priced_as, known_usd: Sequence[float] = ()
) -> tuple[np.ndarray, np.ndarray]:
    """(options, SLO rates) priced in ``order`` of their cost bound ``lower``, until no later
    option can rank among the plans shown. Options are first screened nearly idle in chunks
    of ``USABLE_CHUNK`` (one that misses the SLOs idle never meets them), and the usable ones
    priced in batches of ``PRUNE_BATCH``. ``priced_as``: per option, the replica's $/h and its
    attention-DP ranks (the rates are one rank's)."""
    price, ranks = priced_as
    rate, burst, budget = float(req.workload.rate_rps or 0), req.workload.burstiness, req.budget.usd_per_hour * (1 + 1e-9)
    runs = req.workload.num_requests
    best: dict[int, float] = {-1 - i: float(c) for i, c in enumerate(known_usd)}  # other shapes' plans (negative keys)
    want = req.top + PRUNE_SLACK_SHAPES
    done_i: list[np.ndarray] = []
    done_r: list[np.ndarray] = []
    queue = np.zeros(0, dtype=np.int64)
    pos, size = 0, PRUNE_BATCH
    while queue.size or pos < order.size:
        nxt = queue[0] if queue.size else order[pos]
        if len(best) >= want and lower[nxt] > sorted(best.values())[want - 1]:
            break
        while queue.size < size and pos < order.size:
            chunk = order[pos : pos + USABLE_CHUNK]
            pos += chunk.size
            queue = np.concatenate([queue, chunk[usable_mask(arch, opts.take(chunk), lengths, targets, burst, bound[chunk], runs)]])
        batch, queue = queue[:size], queue[size:]
        if batch.size == 0:
            break
        got = slo_rates(arch, opts.take(batch), lengths, targets, burst, bound=bound[batch], known_usable=True, run_requests=runs)
        done_i.append(batch)
        done_r.append(got)
        cost = np.where(got > 0, np.ceil(rate / np.maximum(got * ranks[batch], 1e-12) - 1e-9) * price[batch], np.inf)
        for i, c in zip(batch, cost):
            if c <= budget:
                best[int(shapes[i])] = min(best.get(int(shapes[i]), np.inf), float(c))
    if not done_i:
        return np.zeros(0, dtype=np.int64), np.zeros(0)
    return np.concatenate(done_i), np.concatenate(done_r)


def effective_caps(table: OptionTable, cap: np.ndarray, lengths: LengthTable) -> np.ndarray:
    """The running cap an engine applies: at most the token budget on chunked engines (vLLM
    caps max_num_seqs at max_num_batched_tokens), and caps beyond the requests the KV cache
    holds act alike (clipped there, so that equal options are priced once)."""
    chunked = np.array([table.space.frameworks[i].chunked_prefill for i in table.fw_idx], dtype=bool)
    cap = np.where(chunked, np.minimum(cap, table.split), np.asarray(cap, dtype=float))
    slots = np.maximum(np.floor(table.memory.kv_tokens / (lengths.mean_input + lengths.mean_output)), 1.0)
    return np.minimum(cap, np.maximum(slots, STREAM_RUNNING_CAPS[0]))


def stream_options(table: OptionTable, cap: np.ndarray, calibration) -> StreamOptions:
    per_engine = np.array([kv_policy(fw.calibration_id) is KvPolicy.RESERVE for fw in table.space.frameworks], dtype=bool)
    reserve = per_engine[table.fw_idx]
    return options_from_table(table, calibration, running_cap=cap, reserve_kv=reserve)


def _distinct(table: OptionTable, cap: np.ndarray) -> np.ndarray:
    """Rows of distinct (static row, cap): clipping caps at the budget repeats some."""
    key = lex_ids(table.gpu_idx, table.fw_idx, table.dtype_idx, table.tp, table.dp, table.ep, table.pp, table.split, cap)
    _, first = np.unique(key, return_index=True)
    return np.sort(first)


def per_replica_rate(space: StreamSpace, rows: np.ndarray, total_load: float, replicas: np.ndarray, burstiness: float) -> np.ndarray:
    """Requests/s one replica of ``rows`` gets when ``replicas`` share ``total_load``: for a
    closed loop, the rate its busiest rank's clients drive (``closed_loop_rate``: the closed
    loop of ``predict --concurrency`` and ``simulate``, clients beyond the cap waiting), times
    its ranks."""
    if not space.closed_loop:
        return total_load / np.maximum(replicas, 1)
    dp = space.table.dp[rows].astype(float)
    clients = rank_clients(space, rows, total_load, replicas)
    rank = closed_loop_rate(space.arch, space.options.take(rows), space.lengths, clients, lockstep_share=space.lockstep_share)
    return rank * dp


def rank_clients(space: StreamSpace, rows: np.ndarray, total_load: float, replicas: np.ndarray) -> np.ndarray:
    """Closed-loop clients of the busiest attention-DP rank when ``replicas`` of ``rows`` share
    ``total_load`` clients, as the simulator and ``predict`` split them."""
    dp = space.table.dp[rows].astype(float)
    return np.ceil(total_load / np.maximum(replicas * dp, 1.0) - 1e-9)


def per_rank_rate(space: StreamSpace, rows: np.ndarray, total_load: float, replicas: np.ndarray, burstiness: float) -> np.ndarray:
    """Requests/s one attention-DP rank of ``rows`` gets (a replica's rate split over its ranks):
    the rate the stream model and the simulator evaluate an option at."""
    return per_replica_rate(space, rows, total_load, replicas, burstiness) / space.table.dp[rows]
