"""guideopt's command line: a thin click layer over ``guideopt.api``."""

from __future__ import annotations

import csv
import importlib
import importlib.util
import json
import sys
from functools import wraps
from typing import Any, Callable

import click

from guideopt import api
from guideopt.catalog import load_catalog
from guideopt.errors import GuideoptError, NoFeasiblePlanError
from guideopt.model.request import DEFAULT_OBJECTIVE
from guideopt.render import plan_text, prediction_text, table


def _json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, default=float))


def handle_errors(func: Callable[..., Any]) -> Callable[..., Any]:
    """Expected failures become one line on stderr and the contract's exit code."""

    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        as_json = kwargs.get("as_json", False)
        try:
            return func(*args, **kwargs)
        except NoFeasiblePlanError as exc:
            click.echo(f"error: no feasible plan: {exc}", err=True)
            if as_json:
                objective = _objective(kwargs["objective"]) if "objective" in kwargs else kwargs.get("objective_terms") or []
                _json({"status": "infeasible", "objective": objective, "solve_time_s": 0.0,
                       "plans": [], "explanation": str(exc), "conflicts": exc.conflicts})
            sys.exit(exc.exit_code)
        except GuideoptError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(exc.exit_code)

    return wrapper


def json_option(func: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")(func)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="guideopt")
def main() -> None:
    """Plan LLM deployments: GPU type and count, DP/TP/PP, batch and split size under budget and SLOs."""


def _objective(value: str | None) -> list[str]:
    if not value:
        return [t.value for t in DEFAULT_OBJECTIVE]
    terms = [t.strip() for t in value.split(",") if t.strip()]
    if len(terms) == 1:  # one leading term; the rest of the default order breaks ties
        terms += [t.value for t in DEFAULT_OBJECTIVE if t.value != terms[0]]
    return terms


@main.command()
@click.option("--model", required=True, help="Hugging Face id from the catalog, or a path to a config.json.")
@click.option("--budget", type=float, required=True, help="Ceiling in USD per hour for the whole deployment.")
@click.option("--input-len", type=int, required=True, help="Prompt tokens per request.")
@click.option("--output-len", type=int, required=True, help="Generated tokens per request.")
@click.option("--batch", type=int, default=None, help="Fixed batch per replica (default: the solver picks).")
@click.option("--objective", default=None, help="throughput, latency, ttft, tpot or cost; a comma list is lexicographic.")
@click.option("--top", type=int, default=3, show_default=True, help="How many distinct plans.")
@click.option("--gpu", "gpus", multiple=True, help="Allowed GPU type (repeatable; default: the whole catalog).")
@click.option("--max-gpus", type=int, default=None, help="At most this many GPUs in all.")
@click.option("--framework", "frameworks", multiple=True, help="Allowed engine (repeatable, or 'any'; default vllm).")
@click.option("--dtype", "dtypes", multiple=True, help="Allowed weight precision (repeatable; default fp16).")
@click.option("--tp", "tps", multiple=True, type=int, help="Allowed TP sizes (repeatable; default 1,2,4,8).")
@click.option("--pp", "pps", multiple=True, type=int, help="Allowed PP sizes (repeatable; default 1,2,4).")
@click.option("--ttft-ms", type=float, default=None, help="SLO: TTFT at most this.")
@click.option("--tpot-ms", type=float, default=None, help="SLO: TPOT at most this.")
@click.option("--min-throughput", type=float, default=None, help="SLO: at least this many output tokens/s.")
@click.option("--heterogeneous", is_flag=True, help="Allow plans that mix GPU types (one group per type).")
@click.option("--emit", "emit_dir", type=click.Path(file_okay=False), default=None, help="Also write launch scripts and PLAN.md into this folder.")
@click.option("--plot", "plot_path", type=click.Path(dir_okay=False), default=None, help="Also draw the Pareto fronts to this .png or .svg.")
@json_option
@handle_errors
def plan(model: str, budget: float, input_len: int, output_len: int, batch: int | None, objective: str | None, top: int,
         gpus: tuple[str, ...], max_gpus: int | None, frameworks: tuple[str, ...], dtypes: tuple[str, ...],
         tps: tuple[int, ...], pps: tuple[int, ...], ttft_ms: float | None, tpot_ms: float | None,
         min_throughput: float | None, heterogeneous: bool, emit_dir: str | None, plot_path: str | None, as_json: bool) -> None:
    """Find the best deployments under a budget.

    Example: guideopt plan --model meta-llama/Llama-2-7b-hf --budget 12 --input-len 512 --output-len 256
    """
    request: dict[str, Any] = {
        "model": model,
        "workload": {"input_len": input_len, "output_len": output_len, "batch": batch},
        "budget": {"usd_per_hour": budget},
        "objective": _objective(objective),
        "top": top,
        "slo": {"ttft_ms": ttft_ms, "tpot_ms": tpot_ms, "min_output_throughput_tok_s": min_throughput},
        "parallelism": {k: v for k, v in (("tp", list(tps)), ("pp", list(pps)), ("max_gpus", max_gpus)) if v},
        "heterogeneous": heterogeneous,
    }
    if gpus:
        request["gpus"] = {g: None for g in gpus}
    if frameworks:
        request["framework"] = "any" if "any" in frameworks else list(frameworks)
    if dtypes:
        request["precision"] = list(dtypes)
    result = api.plan(_clean(request))
    _emit_plan(result, as_json)
    if emit_dir or plot_path:
        from guideopt.cli_outputs import write_outputs  # cli_outputs imports this module

        write_outputs(result, _clean(request), emit_dir, plot_path)


def _clean(request: dict[str, Any]) -> dict[str, Any]:
    """Drop unset (None) leaves so that the request's defaults apply."""
    out: dict[str, Any] = {}
    for key, value in request.items():
        if isinstance(value, dict) and key != "gpus":
            value = {k: v for k, v in value.items() if v is not None}
        if key == "gpus":
            value = {k: {} for k in value}
        out[key] = value
    return out


def _emit_plan(result: Any, as_json: bool) -> None:
    if as_json:
        _json(result.model_dump())
    else:
        click.echo(plan_text(result))


@main.command()
@click.option("--model", help="Hugging Face id from the catalog, or a path to a config.json.")
@click.option("--gpu", help="GPU id (see `guideopt catalog gpus`).")
@click.option("--num-gpus", type=int, default=None, help="All GPUs; replicas = num_gpus / (tp·pp).")
@click.option("--tp", type=int, default=None, help="Tensor-parallel size (default: num_gpus / pp).")
@click.option("--pp", type=int, default=1, show_default=True, help="Pipeline-parallel size.")
@click.option("--framework", default="vllm", show_default=True)
@click.option("--dtype", default="fp16", show_default=True, help="Weight precision.")
@click.option("--kv-dtype", default=None, help="KV-cache precision (default: 16-bit).")
@click.option("--batch", type=int, default=1, show_default=True, help="Requests submitted together.")
@click.option("--input-len", type=int, help="Prompt tokens per request.")
@click.option("--output-len", type=int, help="Generated tokens per request.")
@click.option("--split", type=int, default=None, help="Token budget per forward pass (default: the engine's).")
@click.option("--concurrency", type=int, default=None, help="Closed-loop clients instead of a static batch.")
@click.option("--h2o-keep", type=float, default=1.0, show_default=True, help="H2O KV keep ratio.")
@click.option("--no-flash-attention", is_flag=True, help="Materialise the attention score matrix.")
@click.option("--csv", "csv_path", type=click.Path(dir_okay=False, allow_dash=True), help="Predict every row of this CSV.")
@json_option
@handle_errors
def predict(model: str | None, gpu: str | None, num_gpus: int | None, tp: int | None, pp: int, framework: str, dtype: str,
            kv_dtype: str | None, batch: int, input_len: int | None, output_len: int | None, split: int | None,
            concurrency: int | None, h2o_keep: float, no_flash_attention: bool, csv_path: str | None, as_json: bool) -> None:
    """Predict TTFT, TPOT, throughput and memory for one configuration (or a CSV of them).

    Example: guideopt predict --model meta-llama/Llama-2-7b-hf --gpu a100-sxm4-80gb --batch 16 --input-len 512 --output-len 128
    """
    if csv_path:
        text = sys.stdin.read() if csv_path == "-" else _read(csv_path)
        click.echo(api.predict_csv_text(text), nl=False)
        return
    for name, value in (("--model", model), ("--gpu", gpu), ("--input-len", input_len), ("--output-len", output_len)):
        if value is None:
            raise click.UsageError(f"{name} is required (or give --csv FILE)")
    request = {
        "model": model, "gpu": gpu, "num_gpus": num_gpus, "tp": tp, "pp": pp, "framework": framework, "dtype": dtype,
        "kv_dtype": kv_dtype, "batch": batch, "input_len": input_len, "output_len": output_len, "split": split,
        "concurrency": concurrency, "h2o_keep": h2o_keep, "flash_attention": not no_flash_attention,
    }
    pred = api.predict({k: v for k, v in request.items() if v is not None}).as_dict()
    if as_json:
        _json(pred)
    else:
        click.echo(prediction_text(pred))


def _read(path: str) -> str:
    try:
        with open(path) as fh:
            return fh.read()
    except OSError as exc:
        raise GuideoptError(f"csv: cannot read {path} ({exc.strerror})") from None


CAPACITY_COLUMNS = ("input_len", "output_len", "fits", "max_batch", "kv_cache_tokens", "max_seq_len", "replicas", "num_gpus", "usd_per_hour")
PROGRESS_MIN_ROWS = 20


@main.command()
@click.option("--model", required=True, help="Hugging Face id from the catalog, or a path to a config.json.")
@click.option("--gpu", required=True, help="GPU id (see `guideopt catalog gpus`).")
@click.option("--tp", type=int, default=None, help="Tensor-parallel size (default: num_gpus / pp, or 1).")
@click.option("--pp", type=int, default=1, show_default=True)
@click.option("--num-gpus", type=int, default=None, help="GPUs per replica when --tp is not given.")
@click.option("--framework", default="vllm", show_default=True)
@click.option("--dtype", default="fp16", show_default=True)
@click.option("--kv-dtype", default=None)
@click.option("--input-len", required=True, help="Prompt length: 512, a list 512,1024 or a range 128:8192:x2.")
@click.option("--output-len", required=True, help="Output length: same forms as --input-len.")
@click.option("--batch", type=int, default=None, help="A batch to check; too large a batch is split into sub-batches.")
@click.option("--split", type=int, default=None, help="Token budget per pass (default: the engine's).")
@click.option("--rate", type=float, default=None, help="Requests/s to size the deployment for.")
@click.option("--ttft-ms", type=float, default=None, help="SLO for --rate sizing.")
@click.option("--tpot-ms", type=float, default=None, help="SLO for --rate sizing.")
@click.option("--csv", "as_csv", is_flag=True, help="Print CSV rows instead of a table.")
@json_option
@handle_errors
def capacity(model: str, gpu: str, tp: int | None, pp: int, num_gpus: int | None, framework: str, dtype: str,
             kv_dtype: str | None, input_len: str, output_len: str, batch: int | None, split: int | None,
             rate: float | None, ttft_ms: float | None, tpot_ms: float | None, as_csv: bool, as_json: bool) -> None:
    """How many requests fit, how long a sequence can be, and how many replicas a load needs.

    Example: guideopt capacity --model meta-llama/Llama-2-7b-hf --gpu a100-sxm4-80gb --input-len 512,1024,2048 --output-len 256 --rate 4
    """
    from guideopt.capacity import CapacityRequest
    from guideopt.capacity import capacity as run_capacity
    from guideopt.sweep import parse_lengths

    combos = [(i, o) for i in parse_lengths(input_len, "input_len") for o in parse_lengths(output_len, "output_len")]
    base = {"model": model, "gpu": gpu, "tp": tp, "pp": pp, "num_gpus": num_gpus, "framework": framework, "dtype": dtype,
            "kv_dtype": kv_dtype, "batch": batch, "split": split, "rate": rate, "ttft_ms": ttft_ms, "tpot_ms": tpot_ms}
    base = {k: v for k, v in base.items() if v is not None}
    cat = load_catalog()
    results: list[dict[str, Any]] = []
    show_bar = len(combos) >= PROGRESS_MIN_ROWS and not as_json and not as_csv
    with click.progressbar(combos, label="sweep", file=sys.stderr) if show_bar else _plain(combos) as items:
        for i, o in items:
            req = api.validated(CapacityRequest, {**base, "input_len": i, "output_len": o})
            results.append(run_capacity(req, cat).as_dict())
    if as_json:
        _json(results[0] if len(results) == 1 else results)
    elif as_csv:
        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow(CAPACITY_COLUMNS)
        for r in results:
            writer.writerow([r.get(c, "") for c in CAPACITY_COLUMNS])
    else:
        click.echo(table(CAPACITY_COLUMNS, [[r.get(c, "") for c in CAPACITY_COLUMNS] for r in results]))
        if len(results) == 1:
            click.echo(table(["memory per GPU", "GB"], [[k, v] for k, v in results[0]["memory"].items()]))
            _capacity_notes(results[0])


class _plain:
    """A context manager yielding the items, standing in for a progress bar."""

    def __init__(self, items: list[Any]) -> None:
        self.items = items

    def __enter__(self) -> list[Any]:
        return self.items

    def __exit__(self, *exc: object) -> None:
        return None


def _capacity_notes(r: dict[str, Any]) -> None:
    if r.get("reason"):
        click.echo(f"does not fit: {r['reason']}")
    elif not r["fits"]:
        hint = f"; tp={r['fitting_tp']} would fit" if r.get("fitting_tp") else "; no TP up to 8 fits on this GPU"
        click.echo(f"does not fit: short by {r['shortfall_gb']:.1f} GB per GPU{hint}")
    if r.get("sub_batches") and len(r["sub_batches"]) > 1:
        click.echo(f"batch {r['requested_batch']} does not fit at once: run as sub-batches {r['sub_batches']}")
    if r.get("metrics"):
        m = r["metrics"]
        click.echo(f"at {r['rate']:g} req/s: {r['replicas']} replica(s), {r['concurrency_per_replica']} in flight each, "
                   f"TTFT {m['ttft_ms']:.0f} ms, TPOT {m['tpot_ms']:.1f} ms, ${r['usd_per_hour']:.2f}/h")


@main.command()
@click.argument("kind", type=click.Choice(["gpus", "models", "frameworks"]))
@json_option
@handle_errors
def catalog(kind: str, as_json: bool) -> None:
    """List the bundled GPUs, models or frameworks.

    Example: guideopt catalog gpus --json
    """
    cat = load_catalog()
    if kind == "gpus":
        rows = [{"id": g.id, "name": g.name, "arch": g.arch, "memory_gb": round(g.memory_gb, 2), "memory_gib": g.memory_gib,
                 "hbm_bw_gb_s": g.hbm_bw_gb_s, "fp16_tflops": g.peak_tflops.fp16, "link": g.link.value,
                 "usd_per_hour": g.usd_per_hour, "price_source": g.price_source} for g in cat.gpus.values()]
        cols = ["id", "arch", "memory_gib", "hbm_bw_gb_s", "fp16_tflops", "link", "usd_per_hour"]
    elif kind == "models":
        rows = [{"id": m.id, "num_params": m.num_params, "num_active_params": m.num_active_params, "layers": m.num_layers,
                 "hidden_size": m.hidden_size, "heads": m.num_heads, "kv_heads": m.num_kv_heads,
                 "kv_bytes_per_token_fp16": int(m.kv_bytes_per_token(2.0)), "experts": m.num_experts} for m in cat.models.values()]
        cols = ["id", "num_params", "layers", "heads", "kv_heads", "kv_bytes_per_token_fp16", "experts"]
    else:
        rows = [{"id": f.id, "name": f.name, "version": f.version, "memory_fraction": f.memory_fraction,
                 "memory_fraction_of": f.memory_fraction_of.value, "kv_block_tokens": f.kv_block_tokens,
                 "max_num_batched_tokens": f.max_num_batched_tokens, "chunked_prefill": f.chunked_prefill} for f in cat.frameworks.values()]
        cols = ["id", "version", "memory_fraction", "memory_fraction_of", "kv_block_tokens", "max_num_batched_tokens"]
    if as_json:
        _json(rows)
    else:
        click.echo(table(cols, [[r[c] for c in cols] for r in rows]))


@main.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.option("--calibration", type=click.Choice(["fitted", "prior"]), default="fitted", show_default=True,
              help="fitted: catalogs/calibration.yaml; prior: the uncalibrated generic efficiencies.")
@click.option("--leave-one-gpu-out", is_flag=True, help="Score each measured GPU with its own device fit left out.")
@json_option
@handle_errors
def validate(file: str, calibration: str, leave_one_gpu_out: bool, as_json: bool) -> None:
    """Predict every row of a measured-data CSV and report the error per metric (GUIDE Table 2 style).

    Example: guideopt validate ../shared/data/measured/e2e.csv
    """
    from guideopt import accuracy
    from guideopt.validate import report_dict, report_markdown

    report = accuracy.leave_one_gpu_out(file) if leave_one_gpu_out else accuracy.validate_with(file, calibration)
    if as_json:
        _json(report_dict(report))
    else:
        click.echo(report_markdown(report))


# Commands that live in their own modules; each attaches itself to `main` when imported.
OPTIONAL_COMMAND_MODULES = ("guideopt.cli_solve", "guideopt.cli_outputs", "guideopt.cli_serve")


def _register_optional_commands() -> None:
    for name in OPTIONAL_COMMAND_MODULES:
        if importlib.util.find_spec(name) is not None:
            importlib.import_module(name)


_register_optional_commands()


if __name__ == "__main__":
    main()
