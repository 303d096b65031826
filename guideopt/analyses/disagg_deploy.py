"""Predict one disaggregated deployment (a ``predict --csv`` row with the prefill and decode
worker columns): x prefill workers and y decode workers of one engine and precision on one
GPU type, each role with its own layout, under an open-loop rate or a closed-loop load.

Each role is one configuration priced as ``capacity`` prices one (``capacity_cases.case_table``
after ``predict``'s layout refusals), made a stream option by ``stream_options`` (the decode
worker's running cap: the engine's, clipped as the planner clips it); the KV link is chosen as
the planner chooses it (``costs.disagg_kv.kv_link``) and the metrics are the analytic model's
(``costs.disagg.disagg_stream_metrics``, Poisson arrivals).

Load. ``rate_rps`` is taken as it is. ``concurrency`` (closed loop: each of C clients sends
its next request when the last one finishes, as the silicon sample's runs are measured) is
turned into the rate at which Little's law holds, C = λ × mean E2E(λ), found by bisection on
the analytic model over [0, the largest rate both pools sustain): E2E grows with λ, so the
root is unique. The open-loop waits at that rate stand in for the closed loop's (a closed
loop never has more than C requests inside, so near saturation they overstate its queueing).
Clients that start together with one fixed length finish and send again together, so a
prompt also waits behind the other prompts of its wave on its prefill rank
(``costs.disagg_pools.wave_wait_s``); ``Calibration.disagg_lockstep_share`` of that wait (the
clients drift out of step) is added to TTFT and E2E, in the Little's-law solve as well.
Open-loop rates (and the planner) see no wave.

Reported (the contract's columns): TTFT and TPOT means (and their percentiles), mean E2E as
``batch_latency_s``, whole-deployment throughputs at the rate, and the larger per-GPU memory
of the two roles (a prefill GPU with one prompt in flight, a decode GPU with its running
requests).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from guideopt.analyses.capacity_cases import case_table
from guideopt.analyses.capacity_request import CapacityRequest
from guideopt.analyses.predict import checked_layout
from guideopt.catalog import Catalog
from guideopt.costs.disagg import disagg_max_rate, disagg_stream_metrics, group_options
from guideopt.costs.disagg_kv import kv_link, kv_transfer_s
from guideopt.costs.disagg_options import DisaggOptions
from guideopt.costs.disagg_pools import prefill_service_s, wave_wait_s
from guideopt.costs.lengths import LengthTable, fixed_lengths
from guideopt.costs.rows import memory_breakdown
from guideopt.costs.stream import StreamMetrics, StreamOptions
from guideopt.costs.tables import OptionTable
from guideopt.errors import GuideoptError, InvalidRequestError, NoFeasiblePlanError
from guideopt.model.disagg_request import ROLES, DisaggPredictRequest
from guideopt.model.dtype import Dtype
from guideopt.model.llm import ModelArch
from guideopt.model.workload import REPORTED_PERCENTILES
from guideopt.solver.stream_options import effective_caps, stream_options
from guideopt.units import MS_PER_S

SEARCH_POINTS = 64  # rates tried per round of the closed-loop search (one vectorised call)
SEARCH_ROUNDS = 4  # 64^-4 of the stable range: far below the model's own error
EDGE = 1.0 - 1e-6  # the search stays just inside the stability edge


@dataclass(frozen=True)
class Deployment:
    """A disaggregated deployment as the cost model sees it."""

    request: DisaggPredictRequest
    arch: ModelArch
    opts: DisaggOptions  # one option
    lengths: LengthTable
    tables: dict[str, OptionTable]  # per role: its one-row option table
    nvlink: bool  # the KV crosses NVLink (else the scale-out NIC)
    wave_share: float = 0.0  # share of the closed-loop wave wait added to TTFT (Calibration.disagg_lockstep_share)


@dataclass(frozen=True)
class DisaggPrediction:
    deployment: Deployment
    rate_rps: float  # the group's request rate (given, or solved from the concurrency)
    concurrency: float  # requests inside the deployment: λ × mean E2E
    metrics: dict[str, float]  # the contract's metric columns and ``mem_per_gpu_gb``
    percentiles: dict[str, dict[float, float]]  # ttft_ms / tpot_ms / e2e_ms: percentile → ms
    kv_transfer_ms: float  # what a request waits for its KV after its prompt
    stable: bool


def build_deployment(req: DisaggPredictRequest, cat: Catalog) -> Deployment:
    """The cost model's options for ``req``; a layout the engine cannot run, an engine without
    disaggregated serving, or a role that does not fit raise (one short reason)."""
    arch, fw = cat.model(req.model), cat.framework(req.framework)
    if not fw.capabilities.disaggregation:
        able = sorted(f.id for f in cat.frameworks.values() if f.capabilities.disaggregation)
        raise InvalidRequestError(f"{fw.id} does not serve disaggregated prefill/decode (use one of {', '.join(able)})", field="framework")
    if "dtype" not in req.model_fields_set and arch.checkpoint_dtype:  # as predict: the checkpoint's precision
        req = req.model_copy(update={"dtype": Dtype(arch.checkpoint_dtype)})
    lengths = fixed_lengths(req.input_len, req.output_len)
    tables = {role: _role_table(req, role, cat) for role in ROLES}
    cap = np.array([float(fw.max_num_seqs)])
    options = {
        role: stream_options(t, effective_caps(t, cap, lengths) if role == "decode" else cap, cat.calibration) for role, t in tables.items()
    }
    opts, nvlink = _disagg_options(req, arch, options, lengths, cat)
    return Deployment(req, arch, opts, lengths, tables, nvlink, cat.calibration.disagg_lockstep_share)


def _role_request(req: DisaggPredictRequest, role: str) -> CapacityRequest:
    fields = {
        "model": req.model,
        "gpu": req.gpu,
        "framework": req.framework,
        "dtype": req.dtype,
        "kv_dtype": req.kv_dtype,
        "input_len": req.input_len,
        "output_len": req.output_len,
        "tp": getattr(req, f"{role}_tp"),
        "attention_dp": getattr(req, f"{role}_attention_dp"),
        "moe_ep": getattr(req, f"{role}_moe_ep"),
        "split": req.split if role == "prefill" else None,
    }
    return CapacityRequest(**{k: v for k, v in fields.items() if v is not None})


def _role_table(req: DisaggPredictRequest, role: str, cat: Catalog) -> OptionTable:
    """One worker of ``role``: ``predict``'s layout refusals, then a one-row option table."""
    creq = _role_request(req, role)
    layout = {k: v for k, v in creq.model_dump().items() if k in _LAYOUT_KEYS and v is not None}
    try:
        checked_layout(layout, cat)
    except GuideoptError as exc:
        raise InvalidRequestError(f"{role} workers: {exc}") from None
    table = case_table([creq], cat, creq.resolved_tp)
    need = req.input_len + (req.output_len if role == "decode" else 0)
    if len(table) == 0:
        raise InvalidRequestError(f"{role} workers: {req.framework} cannot form this layout on {req.gpu}", field=f"{role}_tp")
    if not bool(table.fits[0]) or float(table.memory.kv_tokens[0]) < need:
        raise NoFeasiblePlanError(f"{role} workers: {req.model} does not fit a {role} worker's GPUs with room for a {need}-token sequence")
    return table


_LAYOUT_KEYS = ("model", "gpu", "tp", "framework", "dtype", "kv_dtype", "input_len", "output_len", "attention_dp", "moe_ep")


def _disagg_options(req, arch, options: dict[str, StreamOptions], lengths, cat: Catalog) -> tuple[DisaggOptions, bool]:
    """The group's ``DisaggOptions`` (as ``solver.disagg_space.disagg_options`` builds a group's)."""
    gpu, fw = cat.gpu(req.gpu), cat.framework(req.framework)
    dp = {r: int(getattr(req, f"{r}_attention_dp")) for r in ROLES}
    rank_gpus = {r: req.worker_gpus(r) // dp[r] for r in ROLES}  # tp: a rank's KV shards
    nvlink, bw, latency = kv_link(
        [gpu],
        [gpu],
        [rank_gpus["prefill"]],
        [rank_gpus["decode"]],
        [req.total_gpus],
        cat.links.network,
        cat.calibration.disaggregation.handoff_s,
    )
    ranks = ([float(req.prefill_workers * dp["prefill"])], [float(req.decode_workers * dp["decode"])])
    layerwise = [bool(fw.capabilities.kv_connectors)]
    opts = group_options(arch, options["prefill"], options["decode"], ranks, (bw, latency), layerwise, lengths.input_len)
    return opts, bool(nvlink[0])


def closed_loop_wave_s(dep: Deployment, clients: float) -> float:
    """What a closed-loop prompt waits behind its wave: the share of ``wave_wait_s`` (seconds)."""
    ranks = dep.opts.prefill_workers
    return dep.wave_share * float(wave_wait_s(dep.arch, dep.opts.prefill, ranks, dep.lengths.input_len[None, :], clients)[0, 0])


def closed_loop_rate(dep: Deployment, clients: float) -> float:
    """The rate at which ``clients`` closed-loop clients are all inside: C = λ × (mean E2E(λ) +
    the wave wait) (bisection in ``SEARCH_ROUNDS`` rounds of ``SEARCH_POINTS`` rates each)."""
    lo, hi = 0.0, float(disagg_max_rate(dep.arch, dep.opts, dep.lengths)[0]) * EDGE
    wave_ms = closed_loop_wave_s(dep, clients) * MS_PER_S
    many = dep.opts.take(np.zeros(SEARCH_POINTS, dtype=np.int64))
    for _ in range(SEARCH_ROUNDS):
        rates = lo + (hi - lo) * np.arange(1, SEARCH_POINTS + 1) / SEARCH_POINTS
        m = disagg_stream_metrics(dep.arch, many, dep.lengths, rates, percentiles=())
        inside = rates * (m.e2e_ms.mean + wave_ms) / MS_PER_S
        above = np.nonzero(inside >= clients)[0]
        k = int(above[0]) if above.size else SEARCH_POINTS - 1
        lo, hi = (float(rates[k - 1]) if k > 0 else lo), float(rates[k])
    return (lo + hi) / 2.0


def predict_disagg(req: DisaggPredictRequest, cat: Catalog) -> DisaggPrediction:
    """The deployment's metrics at its load (see the module docstring)."""
    dep = build_deployment(req, cat)
    closed = req.rate_rps is None
    rate = closed_loop_rate(dep, float(req.concurrency or 0)) if closed else float(req.rate_rps or 0.0)
    m = disagg_stream_metrics(dep.arch, dep.opts, dep.lengths, np.array([rate]), percentiles=REPORTED_PERCENTILES)
    wave_ms = closed_loop_wave_s(dep, float(req.concurrency or 0)) * MS_PER_S if closed else 0.0
    e2e_s = (float(m.e2e_ms.mean[0]) + wave_ms) / MS_PER_S
    inp, out = float(req.input_len), float(req.output_len)
    metrics = {
        "ttft_ms": float(m.ttft_ms.mean[0]) + wave_ms,
        "tpot_ms": float(m.tpot_ms.mean[0]) if req.output_len > 1 else 0.0,
        "batch_latency_s": e2e_s,
        "decode_throughput_tok_s": rate * max(out - 1.0, 0.0),
        "output_throughput_tok_s": rate * out,
        "total_throughput_tok_s": rate * (inp + out),
        "prefill_throughput_tok_s": rate * inp,
        "mem_per_gpu_gb": _mem_per_gpu_gb(dep, m),
    }
    shift = {"ttft_ms": wave_ms, "tpot_ms": 0.0, "e2e_ms": wave_ms}  # the wave moves every percentile alike (mean shift)
    pcts = {k: {p: float(v[0]) + shift[k] for p, v in getattr(m, k).percentiles.items()} for k in shift}
    return DisaggPrediction(dep, rate, rate * e2e_s, metrics, pcts, transfer_ms(dep), bool(m.stable[0]))


def transfer_ms(dep: Deployment) -> float:
    """What a request waits for its KV hand-over after its prompt (ms)."""
    service = prefill_service_s(dep.arch, dep.opts.prefill, dep.lengths.input_len[None, :])
    return float(kv_transfer_s(dep.arch, dep.lengths.input_len, dep.opts, prefill_s=service)[0, 0]) * MS_PER_S


def _mem_per_gpu_gb(dep: Deployment, m: StreamMetrics) -> float:
    """The larger of a prefill GPU's (one prompt in flight) and a decode GPU's (its running requests)."""
    seq = dep.request.input_len + dep.request.output_len
    prefill = memory_breakdown(dep.tables["prefill"], 0, running=1.0, seq_tokens=dep.request.input_len)
    decode = memory_breakdown(dep.tables["decode"], 0, running=float(m.running[0]), seq_tokens=seq)
    return max(prefill.total_per_gpu_gb, decode.total_per_gpu_gb)
