"""What every command shares: error handling and exit codes, JSON output, and the request flags of `plan`.

The `plan`, `pareto` and `launch` commands take the same request flags; they are declared
once here (``PLAN_REQUEST_FLAGS``) and turned into a request by ``flags_request``.
"""

from __future__ import annotations

import json
import sys
import time
import warnings
from collections.abc import Callable, Mapping
from functools import wraps
from typing import Any

import click

from guideopt.commands.params import LOAD, LOAD_INT, WHOLE
from guideopt.errors import GuideoptError, GuideoptWarning, InvalidRequestError, NoFeasiblePlanError
from guideopt.io.constraints_parse import ConstraintsFileError
from guideopt.io.render import fit_lines, plan_text
from guideopt.model.keypath import leading_key
from guideopt.model.plan import infeasible_json
from guideopt.model.request import DEFAULT_OBJECTIVE, DEFAULT_TOP
from guideopt.model.validation import display_name

# A group is at the catalog price when its $/h matches count x price within rounding
# (plans round $/h to 4 decimals).
PRICE_MATCH_TOL_USD = 1e-3

# How the command line names each request field (key paths without list indices): a
# message about `budget.usd_per_hour` reads `--budget: ...` on the command line, as the
# same message reads `FILE:LINE: budget.usd_per_hour: ...` for a constraints file.
FLAG_NAMES: dict[str, str] = {
    "model": "--model",
    "workload.input_len": "--input-len",
    "workload.output_len": "--output-len",
    "workload.batch": "--batch",
    "workload.rate_rps": "--rate",
    "workload.concurrency": "--concurrency",
    "workload.burstiness": "--burstiness",
    "budget": "--budget",
    "objective": "--objective",
    "top": "--top",
    "gpus": "--gpu",
    "parallelism.max_gpus": "--max-gpus",
    "parallelism.max_nodes": "--max-nodes",
    "time_limit_s": "--time-limit-s",
    "parallelism.tp": "--tp",
    "parallelism.pp": "--pp",
    "parallelism.ep": "--ep",
    "parallelism.attention_dp": "--attention-dp",
    "attention_dp": "--attention-dp",
    "moe_tp": "--moe-tp",
    "moe_ep": "--moe-ep",
    "framework": "--framework",
    "precision": "--dtype",
    "kv_dtype": "--kv-dtype",
    "slo.ttft_ms": "--ttft-ms",
    "slo.tpot_ms": "--tpot-ms",
    "slo.min_output_throughput_tok_s": "--min-throughput",
    "heterogeneous": "--heterogeneous",
    "disaggregation": "--disaggregated",
    # predict and capacity take flat requests
    "gpu": "--gpu",
    "num_gpus": "--num-gpus",
    "tp": "--tp",
    "pp": "--pp",
    "dtype": "--dtype",
    "batch": "--batch",
    "input_len": "--input-len",
    "output_len": "--output-len",
    "split": "--split",
    "concurrency": "--concurrency",
    "h2o_keep": "--h2o-keep",
    "rate": "--rate",
    "ttft_ms": "--ttft-ms",
    "tpot_ms": "--tpot-ms",
    "emit": "--emit",
    "plot": "--plot",
    "prices": "--prices",
}


def flag_message(exc: GuideoptError, names: Mapping[str, str] | None = FLAG_NAMES) -> str:
    """The error's one line with its field named as a flag (``--budget: must be > 0 ...``)."""
    text = str(exc)
    if isinstance(exc, ConstraintsFileError) or not names:
        return text
    field = getattr(exc, "field", None)
    if field:
        return f"{display_name(field, names)}: {getattr(exc, 'problem', text)}"
    head = leading_key(text)
    if head is None or head.split(".")[0].split("[")[0] not in {k.split(".")[0] for k in names}:
        return text
    return f"{display_name(head, names)}: {text[len(head) + 2 :]}"


def echo_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, default=float))


def handle_errors(func: Callable[..., Any]) -> Callable[..., Any]:
    """Expected failures become one line on stderr and the contract's exit code; model
    caveats (GuideoptWarning) become ``warning:`` lines on stderr."""

    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        as_json = kwargs.get("as_json", False)
        names = None if kwargs.get("file") else FLAG_NAMES  # --file: its own key paths
        start = time.perf_counter()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("ignore")  # numeric warnings are not the user's to read ...
            warnings.simplefilter("always", GuideoptWarning)  # ... model caveats are
            try:
                return func(*args, **kwargs)
            except NoFeasiblePlanError as exc:
                click.echo(f"error: no feasible plan: {exc}", err=True)
                if as_json:
                    objective = objective_terms(kwargs["objective"]) if "objective" in kwargs else kwargs.get("objective_terms") or []
                    echo_json(infeasible_json(objective, str(exc), list(exc.conflicts), round(time.perf_counter() - start, 6)))
                sys.exit(exc.exit_code)
            except GuideoptError as exc:
                click.echo(f"error: {flag_message(exc, names)}", err=True)
                sys.exit(exc.exit_code)
            finally:
                echo_warnings(caught)

    return wrapper


def echo_warnings(caught: list[warnings.WarningMessage]) -> None:
    """Each distinct GuideoptWarning once, as one line on stderr."""
    for text in dict.fromkeys(str(w.message) for w in caught if issubclass(w.category, GuideoptWarning)):
        click.echo(f"warning: {text}", err=True)


def calibration_option(func: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--calibration",
        "calibration_file",
        type=click.Path(dir_okay=False),
        default=None,
        help="Calibration overlay written by `guideopt calibrate` (your own measurements).",
    )(func)


def catalog_with(calibration_file: str | None) -> Any:
    """The bundled catalog, with a user's calibration overlay laid over it when given
    (the overlay reader is imported only then: plain commands stay fast to start)."""
    from guideopt.catalog import load_catalog

    if calibration_file is None:
        return load_catalog()
    from guideopt.calibration.overlay import with_overlay

    return with_overlay(load_catalog(), calibration_file)


def json_option(func: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")(func)


def objective_terms(value: str | None) -> list[str]:
    if not value:
        return [t.value for t in DEFAULT_OBJECTIVE]
    terms = [t.strip() for t in value.split(",") if t.strip()]
    if len(terms) == 1:  # one leading term; the rest of the default order breaks ties
        terms += [t.value for t in DEFAULT_OBJECTIVE if t.value != terms[0]]
    return terms


def clean_request(request: dict[str, Any]) -> dict[str, Any]:
    """Drop unset (None) leaves so that the request's defaults apply."""
    out: dict[str, Any] = {}
    for key, value in request.items():
        if isinstance(value, dict) and key != "gpus":
            value = {k: v for k, v in value.items() if v is not None}
        if key == "gpus":
            value = {k: dict(v or {}) for k, v in value.items()}
        out[key] = value
    return out


def priced_gpus(source: str, only: list[str]) -> dict[str, dict[str, float]]:
    """The request's GPU allowances for a price source: its GPUs (those of ``only`` when
    given) at its prices."""
    from guideopt.catalog import load_price_set

    prices = load_price_set(source).prices()
    missing = [g for g in only if g.lower() not in prices]
    if missing:
        raise InvalidRequestError(f"{missing[0]} is not sold in price set {source!r} (it has {', '.join(sorted(prices))})", field="gpus")
    wanted = {g.lower() for g in only} or set(prices)
    return {g: {"usd_per_hour": p.usd_per_hour} for g, p in sorted(prices.items()) if g in wanted}


def price_notes(result: Any) -> list[str]:
    """A note for each plan GPU priced from a weak source (catalog price, not overridden)."""
    from guideopt.catalog import load_catalog

    cat = load_catalog()
    notes: dict[str, str] = {}
    for plan in result.plans:
        for group in plan.groups:
            gpu = cat.gpus.get(group.gpu)
            at_catalog_price = gpu is not None and abs(group.usd_per_hour - group.num_gpus * gpu.usd_per_hour) < PRICE_MATCH_TOL_USD
            if gpu is not None and at_catalog_price and gpu.price_grade.is_weak:
                notes[gpu.id] = (
                    f"price note: {gpu.id} is priced at ${gpu.usd_per_hour}/h from a source graded {gpu.price_grade.value} "
                    "(check it, or give --prices PROVIDER|FILE)"
                )
    return list(notes.values())


def emit_plan(result: Any, as_json: bool) -> None:
    if as_json:
        echo_json(result.model_dump())
    else:
        click.echo(plan_text(result))
        for note in price_notes(result):
            click.echo(fit_lines(note))


MODEL_HELP = "Hugging Face id from the catalog, or a path to a config.json."
EMIT_HELP = "Also write launch scripts and PLAN.md into this folder."
PLOT_HELP = "Also draw the Pareto fronts to this .png or .svg."

# (flag, destination, click keyword arguments, required by `plan`): the request flags of
# `plan`, `pareto` and `launch`.
PLAN_REQUEST_FLAGS: tuple[tuple[str, str, dict[str, Any], bool], ...] = (
    ("--model", "model", {"help": MODEL_HELP}, True),
    ("--budget", "budget", {"type": float, "help": "Ceiling in USD per hour for the whole deployment."}, True),
    ("--input-len", "input_len", {"type": WHOLE, "help": "Prompt tokens per request (required unless --lengths)."}, False),
    ("--output-len", "output_len", {"type": WHOLE, "help": "Generated tokens per request (required unless --lengths)."}, False),
    ("--batch", "batch", {"type": WHOLE, "help": "Fixed batch per replica (default: the solver picks)."}, False),
    (
        "--objective",
        "objective",
        {"help": "throughput, latency, ttft, tpot, cost or usd_per_million_output_tokens; a comma list is lexicographic."},
        False,
    ),
    ("--gpu", "gpus", {"multiple": True, "help": "Allowed GPU type (repeatable; default: the whole catalog)."}, False),
    ("--max-gpus", "max_gpus", {"type": WHOLE, "help": "At most this many GPUs in all."}, False),
    ("--max-nodes", "max_nodes", {"type": WHOLE, "help": "At most this many nodes in all (gpus_per_node GPUs of one type each)."}, False),
    ("--framework", "frameworks", {"multiple": True, "help": "Allowed engine (repeatable, or 'any'; default vllm)."}, False),
    ("--dtype", "dtypes", {"multiple": True, "help": "Allowed weight precision (repeatable; default fp16)."}, False),
    ("--tp", "tps", {"multiple": True, "type": WHOLE, "help": "Allowed TP sizes (repeatable; default 1,2,4,8)."}, False),
    ("--pp", "pps", {"multiple": True, "type": WHOLE, "help": "Allowed PP sizes (repeatable; default 1,2,4)."}, False),
    (
        "--ep",
        "eps",
        {
            "multiple": True,
            "type": WHOLE,
            "help": "MoE: allowed expert-parallel sizes (repeatable; default 1 or the whole stage: TP, TEP, DEP).",
        },
        False,
    ),
    (
        "--attention-dp",
        "attention_dps",
        {"multiple": True, "type": WHOLE, "help": "MoE: allowed attention data-parallel ranks per replica (repeatable; default 1-64)."},
        False,
    ),
    (
        "--prices",
        "prices",
        {
            "help": "Plan with this price source: a provider set (lambda, runpod, nebius, aws; on-demand), a tier set (spot, reserved_1y: "
            "the cheapest such price per GPU), SET:TIER for one tier of a set (aws:capacity_block, nebius:spot; tiers on_demand, spot, "
            "reserved_1y, reserved_3y, capacity_block), or a YAML/JSON file of {gpu id: usd_per_hour}."
        },
        False,
    ),
    ("--ttft-ms", "ttft_ms", {"type": float, "help": "SLO: TTFT at most this."}, False),
    ("--tpot-ms", "tpot_ms", {"type": float, "help": "SLO: TPOT at most this."}, False),
    ("--min-throughput", "min_throughput", {"type": float, "help": "SLO: at least this many output tokens/s."}, False),
    (
        "--rate",
        "rate_rps",
        {
            "type": LOAD,
            "help": "Plan for a stream of this many requests/s (Poisson) instead of a static batch; max: the most the budget serves.",
        },
        False,
    ),
    (
        "--concurrency",
        "concurrency",
        {"type": LOAD_INT, "help": "Plan for this many closed-loop clients instead of a static batch; max: the most the budget serves."},
        False,
    ),
    ("--lengths", "lengths", {"help": "Stream lengths: a length-mix id or a CSV/JSONL trace (input_len,output_len)."}, False),
    (
        "--burstiness",
        "burstiness",
        {"type": float, "help": "Stream: coefficient of variation of inter-arrival times (1 = Poisson)."},
        False,
    ),
    ("--percentile", "percentile", {"type": float, "help": "Stream: the percentile --ttft-ms/--tpot-ms bound (default 90)."}, False),
    (
        "--time-limit-s",
        "time_limit_s",
        {"type": float, "help": "Wall-clock safety net of the search, in seconds (default 60; searches are bounded by work)."},
        False,
    ),
)
REQUIRED_FLAGS = tuple((dest, flag) for flag, dest, _, required in PLAN_REQUEST_FLAGS if required)


def stream_lengths_value(text: str) -> dict[str, Any]:
    """``--lengths``: a trace file (read into weighted buckets) or a length-mix id."""
    from guideopt.model.request import TRACE_SUFFIXES

    if not text.lower().endswith(TRACE_SUFFIXES):
        return {"mix": text}
    from guideopt.io.traces import trace_length_buckets

    return trace_length_buckets(text)


def plan_request_options(*, required: bool) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Attach the request flags; ``required`` makes the four essential ones mandatory (`plan`)."""

    def decorate(func: Callable[..., Any]) -> Callable[..., Any]:
        for flag, dest, kwargs, needed in reversed(PLAN_REQUEST_FLAGS):
            func = click.option(flag, dest, required=required and needed, **kwargs)(func)
        return func

    return decorate


def flags_request(flags: Mapping[str, Any]) -> dict[str, Any]:
    """The request the plan flags describe (unset flags leave the request's defaults)."""
    for key, name in REQUIRED_FLAGS:
        if flags.get(key) is None:
            raise click.UsageError(f"{name} is required (or give --file FILE)")
    if not flags.get("lengths"):
        for key, name in (("input_len", "--input-len"), ("output_len", "--output-len")):
            if flags.get(key) is None:
                raise click.UsageError(f"{name} is required (or give --lengths MIX|FILE with --rate, or --file FILE)")
    stream = flags.get("rate_rps") is not None or flags.get("concurrency") is not None
    for key, name in (("burstiness", "--burstiness"), ("percentile", "--percentile")):
        if flags.get(key) is not None and not stream:  # a stream's knob: silently ignored otherwise
            raise click.UsageError(f"{name} describes a request stream: give --rate R or --concurrency C with it")
    workload = {k: flags.get(k) for k in ("input_len", "output_len", "batch", "rate_rps", "concurrency", "burstiness")}
    if flags.get("lengths"):
        workload["lengths"] = stream_lengths_value(flags["lengths"])
    request: dict[str, Any] = {
        "model": flags["model"],
        "workload": workload,
        "budget": {"usd_per_hour": flags["budget"]},
        "top": DEFAULT_TOP if flags.get("top") is None else flags["top"],
        "slo": {
            "ttft_ms": flags.get("ttft_ms"),
            "tpot_ms": flags.get("tpot_ms"),
            "min_output_throughput_tok_s": flags.get("min_throughput"),
            "percentile": flags.get("percentile"),
        },
        "parallelism": {
            k: v
            for k, v in (
                ("tp", list(flags.get("tps") or ())),
                ("pp", list(flags.get("pps") or ())),
                ("ep", list(flags.get("eps") or ())),
                ("attention_dp", list(flags.get("attention_dps") or ())),
                ("max_gpus", flags.get("max_gpus")),
                ("max_nodes", flags.get("max_nodes")),
            )
            if v is not None and v != []  # --max-gpus 0 is checked, not dropped
        },
    }
    if flags.get("objective") or not stream:  # a stream with no --objective: the request's stream default
        request["objective"] = objective_terms(flags.get("objective"))
    if flags.get("time_limit_s") is not None:
        request["time_limit_s"] = flags["time_limit_s"]
    if "heterogeneous" in flags:  # only `plan` has the flag
        request["heterogeneous"] = bool(flags["heterogeneous"])
    if flags.get("disaggregated"):  # only `plan` has the flag
        request["disaggregation"] = flags["disaggregated"]
    if flags.get("robust"):
        request["robust"] = True
    if flags.get("gpus"):
        request["gpus"] = {g: {} for g in flags["gpus"]}
    if flags.get("prices"):
        request["gpus"] = priced_gpus(flags["prices"], list(flags.get("gpus") or ()))
    frameworks = flags.get("frameworks")
    if frameworks:
        request["framework"] = "any" if "any" in frameworks else list(frameworks)
    if flags.get("dtypes"):
        request["precision"] = list(flags["dtypes"])
    return clean_request(request)
