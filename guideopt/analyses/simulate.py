"""Simulate one configuration against a request stream (``guideopt simulate``), beside the
analytic steady state of the same configuration.

The replica's KV capacity, step costs and engine defaults come from the same option table
as ``predict``; the stream's lengths from a fixed pair, buckets, a named mix or a trace
(read by ``io/traces.py`` and passed in as arrays).

With attention data parallelism (``attention_dp`` > 1, a MoE layout as ``predict`` takes it)
each rank of a replica runs its own scheduler over its own KV pool: one rank is simulated at
the replica's load divided over its ranks, and the replica's throughputs are ``attention_dp``
times the rank's.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from guideopt.analyses.predict import checked_layout, serving_inputs
from guideopt.analyses.protocol import expand_protocol
from guideopt.analyses.simulate_bounds import check_prompt_steps
from guideopt.catalog import Catalog, load_catalog, load_length_mix
from guideopt.costs.closed_loop import closed_loop_metrics, closed_loop_rate
from guideopt.costs.engine_defaults import token_budget
from guideopt.costs.lengths import LengthTable, bucket_lengths, fixed_lengths, mix_lengths, sample_lengths
from guideopt.costs.stream import StreamMetrics, StreamOptions, options_from_table, stream_metrics
from guideopt.costs.stream_search import sustainable_rate
from guideopt.costs.tables import OptionSpace, OptionTable, build_option_table
from guideopt.errors import InvalidRequestError, NoFeasiblePlanError
from guideopt.model.dtype import Dtype
from guideopt.model.llm import ModelArch
from guideopt.model.predict_request import PredictRequest
from guideopt.model.protocol import BenchmarkProtocol
from guideopt.model.workload import REPORTED_PERCENTILES, SimulateRequest
from guideopt.simulator.engine import EngineSpec, SimResult, simulate
from guideopt.simulator.policy import KvPolicy, kv_policy
from guideopt.simulator.report import StreamReport, stream_report
from guideopt.simulator.sampling import make_stream, sample_mix, sample_table
from guideopt.simulator.table import StepTable

TraceArrays = tuple[np.ndarray, np.ndarray, "np.ndarray | None"]
# The simulated rank's figures that a replica has ``attention_dp`` times over.
REPLICA_THROUGHPUT_KEYS = ("request_throughput_rps", "output_throughput_tok_s", "total_throughput_tok_s", "goodput_rps")


@dataclass(frozen=True)
class Configuration:
    """One replica, ready for both evaluators."""

    arch: ModelArch
    table: OptionTable
    options: StreamOptions
    engine: EngineSpec
    step_table: StepTable
    layout: PredictRequest  # the configuration as ``predict`` takes it (mean lengths): its closed loop is predict's


@dataclass
class Simulation:
    request: SimulateRequest
    report: StreamReport
    analytic: StreamMetrics
    sustainable_rate_rps: float  # whole deployment
    rate_rps: float | None  # whole deployment, offered
    result: SimResult
    engine: EngineSpec
    sustainable_within_slo_rps: float | None = None  # whole deployment, with the request's SLOs (plan's "sustains")
    sustainable_within_slo_clients: float | None = None  # closed loop: the most clients within the SLOs (plan's "sustains")
    protocol: str | None = None  # the benchmark protocol the stream was run under (``request`` is its expansion)

    def as_dict(self) -> dict:
        req = self.request
        dp, moe_tp, moe_ep = req.attention_dp, req.moe_tp, req.moe_ep
        rank = self.report.as_dict()
        a = self.analytic
        analytic = {
            m: {"mean": float(a.dist(m).mean[0]), **{f"p{p:g}": float(v[0]) for p, v in a.dist(m).percentiles.items()}}
            for m in ("ttft_ms", "tpot_ms", "e2e_ms", "queue_ms")
        }
        out = {
            "model": req.model,
            "gpu": req.gpu,
            "framework": req.framework,
            "dtype": req.dtype,
            "tp": req.tp,
            "pp": req.pp,
            "attention_dp": dp,
            "moe_tp": moe_tp or req.tp * dp // moe_ep,
            "moe_ep": moe_ep,
            "replicas": req.replicas,
            "running_cap": self.engine.running_cap,
            "token_budget": self.engine.token_budget,
            "kv_cache_tokens": self.engine.kv_tokens,
            "kv_policy": self.engine.policy.value,
            "rate_rps": self.rate_rps,
            "concurrency": req.workload.concurrency,
            "sustainable_rate_rps": self.sustainable_rate_rps,
            "sustainable_within_slo_rps": self.sustainable_within_slo_rps,
            "sustainable_within_slo_clients": self.sustainable_within_slo_clients,
            "protocol": self.protocol,
            "simulated": {**rank, **{k: rank[k] * dp for k in REPLICA_THROUGHPUT_KEYS if rank[k] is not None}},  # a replica
            "analytic": {"metrics": analytic, "stable": bool(a.stable[0])},
        }
        if dp > 1:  # the rank as simulated; kv_cache_tokens and running_cap above are a rank's too
            out["simulated_rank"] = rank
        return out


def resolve_lengths(
    req: SimulateRequest, arch: ModelArch, trace: TraceArrays | None
) -> tuple[LengthTable, np.ndarray, np.ndarray, np.ndarray | None]:
    """The length table (analytic) and the sampled or recorded requests (simulator)."""
    wl = req.workload
    spec = wl.lengths
    rng = np.random.default_rng([wl.seed, 0])
    context = arch.max_position_embeddings
    if spec.file is not None:
        if trace is None:
            raise InvalidRequestError(f"lengths: {spec.file} was not read (pass the trace arrays)")
        inputs, outputs, arrival = trace
        if arrival is None and wl.rate_rps is None and wl.concurrency is None:
            raise InvalidRequestError("rate: the trace has no arrival_s column (give --rate or --concurrency)")
        if wl.rate_rps is not None or wl.concurrency is not None:
            arrival = None  # an explicit rate or concurrency overrides recorded times
        return sample_lengths(inputs, outputs), inputs, outputs, arrival
    if spec.mix is not None:
        mix = load_length_mix(spec.mix)
        if mix.input.max + mix.output.max > context:
            raise InvalidRequestError(
                f"lengths: mix {mix.id} allows {mix.input.max}+{mix.output.max} tokens, beyond {arch.id}'s context of {context} (use a model with a longer context or another mix)"
            )
        inputs, outputs = sample_mix(mix, wl.num_requests, rng)
        return mix_lengths(mix), inputs, outputs, None
    table = fixed_lengths(spec.input_len or 1, spec.output_len or 1) if spec.buckets is None else bucket_lengths(spec.buckets)
    if table.max_total > context:
        raise InvalidRequestError(
            f"lengths: input_len+output_len = {table.max_total} exceeds {arch.id}'s context of {context} (shorten the requests)"
        )
    inputs, outputs = sample_table(table, wl.num_requests, rng)
    return table, inputs, outputs, None


def configuration(req: SimulateRequest, lengths: LengthTable, max_context: int, cat: Catalog | None = None) -> Configuration:
    cat = cat or load_catalog()
    arch = cat.model(req.model)
    gpu, fw = cat.gpu(req.gpu), cat.framework(req.framework)
    dtype = _dtype(req.dtype, "dtype")
    kv_dtype = _dtype(req.kv_dtype, "kv_dtype") if req.kv_dtype else None
    dp, moe_tp, moe_ep = req.attention_dp, req.moe_tp, req.moe_ep
    mean_in, mean_out = max(int(round(lengths.mean_input)), 1), max(int(round(lengths.mean_output)), 1)
    fields = {"model": req.model, "gpu": req.gpu, "tp": req.tp, "pp": req.pp, "framework": req.framework, "dtype": dtype}
    fields |= {"kv_dtype": kv_dtype, "attention_dp": dp, "moe_tp": moe_tp, "moe_ep": moe_ep, "input_len": mean_in, "output_len": mean_out}
    # engine, TP, PP and expert-split refusals, as predict's
    layout = checked_layout({k: v for k, v in fields.items() if v is not None}, cat)
    longest = int(lengths.input_len.max())
    budget = token_budget(fw, gpu.memory_bytes, requested=req.token_budget, longest_prompt=longest)
    if not fw.chunked_prefill and budget < longest:
        raise InvalidRequestError(
            f"token_budget: {budget} tokens is shorter than the longest prompt ({longest}) and {fw.id} does not chunk prefill (use a budget >= {longest})"
        )
    space = OptionSpace(
        gpus=[gpu],
        frameworks=[fw],
        dtypes=[dtype],
        tp=[req.tp],
        pp=[req.pp],
        batch=[1],
        input_len=mean_in,
        output_len=mean_out,
        kv_dtype=kv_dtype,
        split=[budget],
        allow_waves=True,
        allow_multi_node_tp=True,
        attention_dp=[dp],
        moe_ep=[moe_ep],
    )
    table = build_option_table(arch, space, cat.calibration)
    kv_tokens = int(table.memory.kv_tokens[0]) if len(table) else 0  # a rank's pool
    if len(table) == 0 or kv_tokens < lengths.max_total:
        raise NoFeasiblePlanError(
            f"does not fit: {arch.id} on {gpu.id} at tp={req.tp}, pp={req.pp} leaves {kv_tokens} KV tokens, fewer than the longest request's {lengths.max_total} "
            f"(use {'a smaller --token-budget, whose activations take memory, or ' if req.token_budget else ''}more TP/PP, a larger GPU or a lower precision)",
            ["memory"],
        )
    policy = kv_policy(fw.calibration_id)
    cap = req.running_cap or fw.max_num_seqs  # per engine instance: per attention-DP rank
    if fw.chunked_prefill:
        cap = min(cap, budget)  # vLLM caps max_num_seqs at max_num_batched_tokens: every decode needs a token
    opts = options_from_table(table, cat.calibration, running_cap=cap, reserve_kv=policy is KvPolicy.RESERVE)
    engine = EngineSpec(cap, budget, fw.chunked_prefill, kv_tokens, fw.kv_block_tokens, policy)
    steps = StepTable.build(arch, opts.cfg, opts.hw, cap=cap, budget=budget, max_context=max(max_context, lengths.max_total), pp=req.pp)
    return Configuration(arch, table, opts, engine, steps, layout.model_copy(update={"max_num_seqs": cap, "split": budget}))


def analytic_metrics(
    conf: Configuration,
    lengths: LengthTable,
    rate_rps: float,
    clients: int | None,
    burstiness: float,
    pcts: tuple[float, ...],
    cat: Catalog,
) -> StreamMetrics:
    """The analytic model of what was simulated, one rank: the stream model at the offered (or
    recorded) rate, or the closed loop of ``clients`` as ``predict --concurrency`` prices it
    (the same inputs, so the same means; an open-loop evaluation at the measured throughput
    would leave out the clients waiting beyond the running cap)."""
    if clients is None:
        return stream_metrics(conf.arch, conf.options, lengths, np.array([rate_rps]), burstiness=burstiness, percentiles=pcts)
    x = serving_inputs(conf.layout, conf.table, cat, clients)
    return closed_loop_metrics(conf.arch, conf.options, lengths, x, percentiles=pcts)


def _dtype(value: str, field: str) -> Dtype:
    try:
        return Dtype(value)
    except ValueError:
        raise InvalidRequestError(f"{field}: unknown precision {value!r} (use one of {', '.join(d.value for d in Dtype)})") from None


def run_simulation(
    req: SimulateRequest | Mapping[str, Any],
    trace: TraceArrays | None = None,
    catalog: Catalog | None = None,
    progress: Callable[[int], None] | None = None,
    *,
    clients_together: bool = False,
    protocol: BenchmarkProtocol | None = None,
) -> Simulation:
    """``clients_together``: a closed loop's clients all send their first request at t = 0, as
    a benchmark starts them (``simulator/clients.py``; default: spread over a request's time).
    A request naming a ``protocol`` is run under it (``analyses/protocol.py``), which then
    decides the clients' start; ``protocol``: the one an already expanded request was made under."""
    cat = catalog or load_catalog()
    if not isinstance(req, SimulateRequest) or req.protocol is not None:
        req, protocol = expand_protocol(req, cat)
    if protocol is not None:
        clients_together = protocol.together
    arch = cat.model(req.model)
    if "dtype" not in req.model_fields_set and arch.checkpoint_dtype:  # a quantized checkpoint runs in its own precision
        req = req.model_copy(update={"dtype": arch.checkpoint_dtype})
    lengths, inputs, outputs, arrival = resolve_lengths(req, arch, trace)
    conf = configuration(req, lengths, int(max(inputs.max() + outputs.max(), lengths.max_total)), cat)
    wl = req.workload
    ranks = req.replicas * req.attention_dp  # the load spreads evenly over replicas and their attention-DP ranks
    per_rate = wl.rate_rps / ranks if wl.rate_rps is not None else None
    clients = math.ceil(wl.concurrency / ranks) if wl.concurrency is not None else None
    if arrival is not None and ranks > 1:
        arrival = arrival[::ranks]  # every n-th recorded request goes to the simulated rank
        inputs, outputs = inputs[::ranks], outputs[::ranks]
    stream = make_stream(
        inputs,
        outputs,
        rate_rps=per_rate,
        concurrency=clients,
        arrival_s=arrival,
        burstiness=wl.burstiness,
        seed=wl.seed,
        together=clients_together,
    )
    check_prompt_steps(req, stream.input_len, conf.engine)
    result = simulate(stream, conf.engine, conf.step_table, progress)
    pcts = tuple(
        sorted(set(REPORTED_PERCENTILES) | {p for t in req.slo.values() for p in t.targets} | set(protocol.percentiles if protocol else ()))
    )
    report = stream_report(result, slo=req.slo or None, percentiles=pcts, warmup_fraction=req.warmup_fraction)
    offered = per_rate if per_rate is not None else report.request_throughput_rps
    analytic = analytic_metrics(conf, lengths, offered, clients, wl.burstiness, pcts, cat)
    best = float(sustainable_rate(conf.arch, conf.options, lengths)[0]) * ranks
    within, within_clients = _within_slo(conf, lengths, req, cat)
    return Simulation(
        req, report, analytic, best, wl.rate_rps, result, conf.engine, within, within_clients, protocol.id if protocol else None
    )


def _within_slo(conf: Configuration, lengths: LengthTable, req: SimulateRequest, cat: Catalog) -> tuple[float | None, float | None]:
    """The load plan and capacity call sustainable for these SLOs, from the same search, for
    the whole deployment: req/s, and for a closed loop the most clients (``slo_clients``) with
    the rate they drive."""
    from guideopt.solver.stream_rates import slo_clients, slo_rates

    if not req.slo:
        return None, None
    wl = req.workload
    ranks = req.replicas * req.attention_dp
    if wl.concurrency is None:
        return float(slo_rates(conf.arch, conf.options, lengths, req.slo, wl.burstiness, run_requests=wl.num_requests)[0]) * ranks, None
    share = cat.calibration.closed_loop.lockstep_share
    clients = slo_clients(conf.arch, conf.options, lengths, req.slo, lockstep_share=share, run_requests=wl.num_requests)
    rate = closed_loop_rate(conf.arch, conf.options, lengths, clients, lockstep_share=share)
    return float(rate[0]) * ranks, float(clients[0]) * ranks
