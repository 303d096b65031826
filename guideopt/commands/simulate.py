"""``guideopt simulate``: one configuration against a request stream, simulated step by step."""

from __future__ import annotations

from pathlib import Path

import click

from guideopt.commands.common import calibration_option, catalog_with, echo_json, handle_errors, json_option
from guideopt.commands.params import WHOLE, disagg_role_options, layout_options
from guideopt.commands.progress import Progress
from guideopt.errors import InvalidRequestError

TRACE_SUFFIXES = (".csv", ".jsonl", ".ndjson")
# Whole-number flags that must be > 0 (the request models would name the key, not the flag).
# Request fields whose flag is not their name with dashes (a validation error names the flag).
REQUEST_FLAGS = {
    "workload.rate_rps": "--rate",
    "workload.concurrency": "--concurrency",
    "workload.burstiness": "--burstiness",
    "workload.num_requests": "--num-requests",
    "workload.lengths": "--lengths",
    "workload.seed": "--seed",
    "warmup_fraction": "--warmup",
    "workload.input_len": "--input-len",
    "workload.output_len": "--output-len",
}
POSITIVE_COUNTS: tuple[str, ...] = ("concurrency", "input_len", "output_len", "num_requests", "running_cap", "token_budget", "tp", "pp")
POSITIVE_COUNTS += ("replicas", "attention_dp", "moe_tp", "moe_ep")


@click.command()
@click.option("--model", required=True, help="Hugging Face id from the catalog, or a path to a config.json.")
@click.option("--gpu", required=True, help="GPU id (see `guideopt catalog gpus`).")
@click.option("--tp", type=WHOLE, default=1, show_default=True, help="Tensor-parallel size per replica.")
@click.option("--pp", type=WHOLE, default=1, show_default=True, help="Pipeline-parallel size per replica.")
@click.option(
    "--replicas",
    type=WHOLE,
    default=1,
    show_default=True,
    help="Replicas sharing the stream (one is simulated; one attention-DP rank of it).",
)
@click.option("--framework", default="vllm", show_default=True)
@click.option("--dtype", default=None, help="Weight precision (default: the checkpoint's, e.g. fp8 for DeepSeek-R1; else fp16).")
@click.option("--kv-dtype", default=None, help="KV-cache precision (default: 16-bit).")
@layout_options
@disagg_role_options
@click.option(
    "--running-cap", type=WHOLE, default=None, help="Max running requests per engine rank (vLLM max_num_seqs; default: the engine's)."
)
@click.option("--token-budget", type=WHOLE, default=None, help="Tokens per step (max_num_batched_tokens; default: the engine's).")
@click.option("--rate", type=float, default=None, help="Open-loop arrivals, requests/s for the whole deployment.")
@click.option(
    "--concurrency",
    type=WHOLE,
    default=None,
    help="Closed-loop clients for the whole deployment (first requests spread over one request's time).",
)
@click.option("--burstiness", type=float, default=1.0, show_default=True, help="CV of inter-arrival times (1 = Poisson).")
@click.option("--lengths", "lengths", default=None, help="A trace (CSV/JSONL with input_len,output_len[,arrival_s]) or a mix name.")
@click.option("--input-len", type=WHOLE, default=None, help="Fixed prompt tokens (instead of --lengths).")
@click.option("--output-len", type=WHOLE, default=None, help="Fixed output tokens (instead of --lengths).")
@click.option(
    "--num-requests", type=WHOLE, default=None, help="Requests to sample (default 2000, or the protocol's count; ignored for a trace)."
)
@click.option(
    "--protocol",
    default=None,
    help="Benchmark protocol (`guideopt catalog protocols`): arrivals, client start, length sampling, warm-up, requests.",
)
@click.option("--seed", type=WHOLE, default=0, show_default=True)
@click.option("--ttft-ms", type=float, default=None, help="TTFT SLO at --percentile.")
@click.option("--tpot-ms", type=float, default=None, help="TPOT SLO at --percentile.")
@click.option("--percentile", type=float, default=90.0, show_default=True, help="Percentile the SLOs apply at, in (0, 100).")
@click.option("--warmup", type=float, default=0.0, show_default=True, help="Share of the earliest requests left out of the metrics.")
@click.option("--plot", "plot_path", default=None, help="Draw queue, running, KV use and throughput over time (.png/.svg).")
@calibration_option
@json_option
@handle_errors
def simulate(**kw) -> None:
    """Replay a request stream through one configuration and print TTFT/TPOT/E2E/queueing percentiles.

    Example: guideopt simulate --model meta-llama/Llama-3.1-8B --gpu h100-sxm --rate 10 --lengths sharegpt

    Under a benchmark's protocol: guideopt simulate --model meta-llama/Llama-3.1-8B --gpu h100-sxm
    --protocol inferencex-random --input-len 1024 --output-len 1024 --concurrency 8
    """
    from guideopt.analyses.simulate import run_simulation
    from guideopt.analyses.simulate_bounds import simulated_requests
    from guideopt.io.simulation import plot_simulation, simulation_text
    from guideopt.io.traces import read_trace

    roles = _roles(kw)
    if roles and kw["protocol"]:
        raise InvalidRequestError("--protocol: not applied to a disaggregated deployment yet (drop --protocol or the pool flags)")
    catalog = catalog_with(kw.pop("calibration_file", None))  # the overlay a calibrated plan was made with
    (request, protocol), trace_path = _request(kw, catalog)
    trace = None
    if trace_path is not None:
        context = catalog.model(kw["model"]).max_position_embeddings
        tr = read_trace(trace_path, max_context=context)
        trace = (tr.input_len, tr.output_len, tr.arrival_s)
    if roles:
        _simulate_disagg(request, roles, trace, catalog, kw)
        return
    total = simulated_requests(request, len(trace[0]) if trace else None, trace is not None and trace[2] is not None)
    with Progress("simulate", total=total, unit="requests") as progress:  # stderr, only for a long run
        try:
            sim = run_simulation(request, trace, catalog, progress=progress, protocol=protocol)
        except InvalidRequestError as exc:
            if exc.field is None:
                raise
            raise InvalidRequestError(f"{_flag(exc.field)}: {exc.problem}") from None
    if kw["plot_path"]:
        plot_simulation(sim, kw["plot_path"])
    if kw["as_json"]:
        echo_json(sim.as_dict())
    else:
        click.echo(simulation_text(sim))
        if kw["plot_path"]:
            click.echo(f"chart: {kw['plot_path']}")


ROLE_KEYS = tuple(f"{role}_{f}" for role in ("prefill", "decode") for f in ("workers", "tp", "attention_dp", "moe_ep"))


def _roles(kw: dict) -> dict[str, int]:
    """The disaggregated deployment's flags (none: an aggregated simulation)."""
    roles = {k: kw.pop(k) for k in ROLE_KEYS}
    given = {k: v for k, v in roles.items() if v is not None}
    if not given:
        return {}
    for key, value in given.items():
        if value <= 0:
            raise InvalidRequestError(f"--{key.replace('_', '-')}: must be > 0 (got {value})")
    for key in ("prefill_workers", "decode_workers"):
        if key not in given:
            raise InvalidRequestError(f"--{key.replace('_', '-')}: a disaggregated deployment needs both pools (give it)")
    for flag in ("tp", "pp", "replicas", "attention_dp", "moe_tp", "moe_ep", "running_cap"):
        if kw.get(flag) not in (None, 1):  # 1: the aggregated flags' defaults
            raise InvalidRequestError(
                f"--{flag.replace('_', '-')}: a disaggregated deployment takes each pool's layout (--prefill-tp, --decode-tp, ...)"
            )
    return given


def _simulate_disagg(request, roles: dict[str, int], trace, catalog, kw: dict) -> None:
    from guideopt.analyses.simulate_disagg import run_disagg_simulation
    from guideopt.io.simulation import disagg_simulation_text

    if kw["plot_path"]:
        raise InvalidRequestError("--plot: not drawn for a disaggregated deployment yet (drop --plot)")
    sim = run_disagg_simulation(request, roles, trace, catalog)
    if kw["as_json"]:
        echo_json(sim.as_dict())
    else:
        click.echo(disagg_simulation_text(sim))


def _request(kw: dict, catalog):
    """(the request as it runs, its protocol or None), and the trace file to read."""
    from guideopt.analyses.protocol import expand_protocol
    from guideopt.model.workload import parse_percentile

    _check_positive(kw, "rate", "--rate", "requests/s")
    _check_positive(kw, "burstiness", "--burstiness", "(1 = Poisson)")
    for key in POSITIVE_COUNTS:
        if kw.get(key) is not None and kw[key] <= 0:
            raise InvalidRequestError(f"--{key.replace('_', '-')}: must be > 0 (got {kw[key]})")
    if (kw["rate"] is None) == (kw["concurrency"] is None) and kw["rate"] is not None:
        raise InvalidRequestError("--rate and --concurrency: give one of them, not both")
    try:
        pct = parse_percentile(kw["percentile"], "--percentile")
    except ValueError as exc:
        raise InvalidRequestError(str(exc)) from None
    trace_path, lengths = None, {}
    if kw["lengths"]:
        if kw["input_len"] or kw["output_len"]:
            raise InvalidRequestError("--lengths: give --lengths or --input-len/--output-len, not both")
        value = kw["lengths"]
        if Path(value).suffix.lower() in TRACE_SUFFIXES or Path(value).exists():
            trace_path, lengths = value, {"file": value}
        else:
            lengths = {"mix": value}
    elif kw["input_len"] and kw["output_len"]:
        lengths = {"input_len": kw["input_len"], "output_len": kw["output_len"]}
    elif kw["protocol"] and (kw["input_len"] or kw["output_len"]):
        lengths = {k: kw[k] for k in ("input_len", "output_len") if kw[k]}  # the protocol names the missing one
    if not lengths and not kw["protocol"]:
        raise InvalidRequestError("--lengths: give a trace file or mix name, or both --input-len and --output-len")
    if kw["rate"] is None and kw["concurrency"] is None and trace_path is None and not kw["protocol"]:
        raise InvalidRequestError("--rate: give --rate R or --concurrency C (or a trace with arrival_s)")
    slo = {m: {"targets": {pct: kw[m]}} for m in ("ttft_ms", "tpot_ms") if kw[m] is not None}
    _check_positive(kw, "ttft_ms", "--ttft-ms", "ms")
    _check_positive(kw, "tpot_ms", "--tpot-ms", "ms")
    if not 0 <= kw["warmup"] < 1:
        raise InvalidRequestError(f"--warmup: {kw['warmup']} must be in [0, 1)")
    data = {
        "model": kw["model"],
        "gpu": kw["gpu"],
        "tp": kw["tp"],
        "pp": kw["pp"],
        "replicas": kw["replicas"],
        **{k: kw[k] for k in ("attention_dp", "moe_tp", "moe_ep") if kw[k] is not None},  # else plain TP
        "framework": kw["framework"],
        "dtype": kw["dtype"],
        "kv_dtype": kw["kv_dtype"],
        "running_cap": kw["running_cap"],
        "token_budget": kw["token_budget"],
        "workload": {
            "rate_rps": kw["rate"],
            "concurrency": kw["concurrency"],
            "burstiness": kw["burstiness"],
            "lengths": lengths,
            "num_requests": kw["num_requests"],
            "seed": kw["seed"],
        },
        "slo": slo,
        "warmup_fraction": kw["warmup"],
        "protocol": kw["protocol"],
    }
    wl = data["workload"]
    for key in ("lengths", "num_requests", "rate_rps", "concurrency"):  # not given: the protocol's or the default
        if not wl[key]:
            del wl[key]
    if data["dtype"] is None:  # the checkpoint's own precision
        del data["dtype"]
    try:  # the wording every surface shares (files, web, plan flags), named by the flag
        return expand_protocol(data, catalog), trace_path
    except InvalidRequestError as exc:
        raise InvalidRequestError(f"{_flag(exc.field or '')}: {exc.problem}") from None


def _flag(loc: str) -> str:
    """A request field's flag (``token_budget`` → ``--token-budget``)."""
    return REQUEST_FLAGS.get(loc) or (f"--{loc.replace('_', '-')}" if "." not in loc else loc)


def _check_positive(kw: dict, key: str, flag: str, unit: str) -> None:
    value = kw.get(key)
    if value is not None and not value > 0:
        raise InvalidRequestError(f"{flag}: must be > 0 {unit} (got {value:g})")
