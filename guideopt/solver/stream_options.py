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
from guideopt.costs.tables import OptionSpace, OptionTable, build_option_table, lex_ids
from guideopt.errors import InvalidRequestError
from guideopt.model.llm import ModelArch
from guideopt.model.request import PlanRequest
from guideopt.model.workload import PercentileTargets
from guideopt.simulator.policy import KvPolicy, kv_policy
from guideopt.solver.options import layout_choices, plan_precisions
from guideopt.solver.stream_pricing import priced_slo_rates
from guideopt.solver.stream_rates import slo_clients, slo_rates

# Running-request caps the solver tries per engine: powers of four spanning the engines'
# defaults (vLLM max_num_seqs 256 (V1: 1024 on H100-class), SGLang derives it from memory,
# TRT-LLM max_batch_size 2048 by default but 8-512 in its tuning guides).
STREAM_RUNNING_CAPS = (8, 32, 128, 512)


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
    # per option, the rate bound (one rank's) its SLO rate is searched below where that rate is
    # still a provisional one it meets them at (``refine_rates``); NaN or None: final
    rate_ceiling: np.ndarray | None = None


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
    req: PlanRequest, cat: Catalog, gpus, prices: list[float], *, prune: bool = True, priced: bool = True, refine_later: bool = False
) -> StreamSpace:
    """The options and their SLO loads. ``prune``: with cost the leading objective, price the
    options cheapest-first and stop once the rest cannot be among the plans shown (below).
    ``priced`` False: no SLO loads (all 0; the options as workers of disaggregated pools only).
    ``refine_later``: as ``priced_space``."""
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
    return priced_space(req, unpriced, prune=prune, refine_later=refine_later) if priced else unpriced


def priced_space(
    req: PlanRequest, space: StreamSpace, *, prune: bool = True, known_usd: Sequence[float] = (), refine_later: bool = False
) -> StreamSpace:
    """``space`` with its SLO loads. ``known_usd``: $/h of plans of other shapes already known
    (disaggregated groups), which the cheapest-first pricing counts among the plans shown.
    ``refine_later``: the options the cheapest-first pricing found keep a rate they were shown to
    meet the SLOs at (their fewest replicas are final) until ``refine_rates`` searches their
    largest; otherwise every rate is searched here."""
    arch, table, opts, lengths = space.arch, space.table, space.options, space.lengths
    ceiling = None
    if space.closed_loop:  # the most clients whose closed loop keeps the SLOs, and the rate they drive
        share, runs = space.lockstep_share, req.workload.num_requests
        load = slo_clients(arch, opts, lengths, space.targets, lockstep_share=share, run_requests=runs)
        driven = closed_loop_rate(arch, opts, lengths, np.maximum(load, 1.0), lockstep_share=share) if len(opts) else np.zeros(0)
        rate = np.where(load > 0, driven, 0.0)  # no client within the SLOs: no rate (and no 0/0)
    else:
        rate, ceiling = priced_slo_rates(
            req, arch, table, opts, lengths, space.targets, prune=prune, static_rows=space.static_rows, known_usd=known_usd
        )
        load = rate
    # the options are attention-DP ranks (each serves its own requests); a replica is dp of them
    out = dataclasses.replace(space, slo_rate_rps=rate * table.dp, slo_load=load * table.dp, rate_ceiling=ceiling)
    if not refine_later:
        refine_rates(req, out, np.arange(len(table)))
    return out


def refine_rates(req: PlanRequest, space: StreamSpace, rows: np.ndarray) -> np.ndarray:
    """Search the largest SLO rate of those of ``rows`` that still hold a provisional one (in
    place: ``space.slo_rate_rps`` and ``slo_load``); returns the rows refined. The search is the
    one ``simulate`` and ``capacity`` run (``slo_rates`` below the rate bound), which finds at
    least the provisional rate (``stream_pricing.cheapest_first`` tested its grid point); kept
    at least that where rounding says otherwise, so the fewest replicas never change."""
    if space.rate_ceiling is None:
        return np.zeros(0, dtype=np.int64)
    rows = np.unique(rows)
    rows = rows[np.isfinite(space.rate_ceiling[rows])]
    if rows.size:
        dp = space.table.dp[rows]
        wl = req.workload
        got = slo_rates(
            space.arch,
            space.options.take(rows),
            space.lengths,
            space.targets,
            wl.burstiness,
            bound=space.rate_ceiling[rows],
            known_usable=True,
            run_requests=wl.num_requests,
        )
        rate = np.maximum(got * dp, space.slo_rate_rps[rows])
        space.slo_rate_rps[rows] = rate
        space.slo_load[rows] = rate
        space.rate_ceiling[rows] = np.nan
    return rows


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
