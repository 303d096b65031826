"""``guideopt pareto`` and ``guideopt launch``: outputs people act on.

Both commands
take the same inputs as ``guideopt plan`` (flags) or a constraints file (``--file``).
``pareto`` prints the (cost, throughput) and (latency, throughput) fronts and can draw
them; ``launch`` solves and writes one launch script per plan group plus a PLAN.md.
``write_outputs`` does the writing for any command that already has a plan.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import click

from guideopt import api
from guideopt.commands.common import flags_request, handle_errors, json_option, plan_request_options
from guideopt.commands.params import WHOLE
from guideopt.io.render import fit_lines, plan_text, table
from guideopt.model.plan import PlanResult
from guideopt.model.request import DEFAULT_TOP, PlanRequest

FRONT_COLUMNS = ["", "gpu", "gpus", "layout", "engine", "dtype", "batch", "split", "$/h", "out tok/s", "batch s", "ttft ms", "tpot ms"]
CHOSEN_MARK = "*"
FRONT_KEY_COLUMNS = 4  # the chosen mark, gpu, gpus, layout: repeated in each part of a folded front table


def plan_inputs(with_top: bool = False) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """The ``plan`` command's request flags, all optional here, plus ``--file``."""

    def decorate(func: Callable[..., Any]) -> Callable[..., Any]:
        if with_top:
            func = click.option("--top", type=WHOLE, default=None, help=f"How many distinct plans (default {DEFAULT_TOP}).")(func)
        func = plan_request_options(required=False)(func)
        return click.option(
            "--file",
            "file",
            type=click.Path(dir_okay=False),
            default=None,
            help="A constraints file (YAML, JSON or TOML) instead of the flags below.",
        )(func)

    return decorate


def request_from_inputs(file: str | None, **flags: Any) -> PlanRequest:
    """A validated PlanRequest from ``--file`` or from the plan flags (not both)."""
    given = [k for k, v in flags.items() if v not in (None, (), [])]
    if file is not None:
        if given:
            raise click.UsageError(f"give either --file or plan options, not both (got --file and --{given[0].replace('_', '-')})")
        from guideopt.io.constraints_file import load_request

        return load_request(file)
    return api.validated(PlanRequest, flags_request(flags))


def write_outputs(
    result: PlanResult,
    request: PlanRequest | Mapping[str, Any],
    emit_dir: str | None = None,
    plot_path: str | None = None,
    echo: bool = True,
) -> list[Path]:
    """Write launch scripts + PLAN.md (``emit_dir``) and the Pareto chart (``plot_path``)
    for a plan already solved; each written path is reported on stderr."""
    from guideopt.analyses.pareto import pareto_plans
    from guideopt.io.launch import emit
    from guideopt.io.plots import check_plot_path, plot_pareto

    if plot_path:
        check_plot_path(plot_path)  # a bad name fails before anything is written
    paths: list[Path] = []
    if emit_dir:
        paths += emit(result, emit_dir, request=request)
    if plot_path:
        paths.append(plot_pareto(pareto_plans(request), plot_path))
    if echo:
        for path in paths:
            click.echo(f"wrote {path}", err=True)
    return paths


# ----------------------------------------------------------------------------- pareto


def _front_rows(points: list[Any]) -> list[list[Any]]:
    return [
        [
            CHOSEN_MARK if p.chosen else "",
            p.gpu,
            p.num_gpus,
            f"{p.replicas}x(tp{p.tp}·pp{p.pp})",
            p.framework,
            p.dtype,
            p.batch,
            p.split,
            p.usd_per_hour,
            p.output_throughput_tok_s,
            p.batch_latency_s,
            p.ttft_ms,
            p.tpot_ms,
        ]
        for p in points
    ]


def pareto_text(result: Any) -> str:
    chosen = result.chosen
    lines = [f"model: {result.model}   objective: {' > '.join(result.objective)}   feasible deployments: {result.num_candidates:,}"]
    if chosen is not None:
        lines.append(
            f"chosen ({CHOSEN_MARK}, rank 1): {chosen.label}, batch {chosen.batch}, split {chosen.split}: "
            f"${chosen.usd_per_hour:.2f}/h, {chosen.output_throughput_tok_s:,.0f} tok/s, "
            f"batch latency {chosen.batch_latency_s:.2f} s"
        )
    lines += [
        "",
        f"cost vs throughput front ({len(result.cost_front)} points, cheapest first)",
        table(FRONT_COLUMNS, _front_rows(result.cost_front), key=FRONT_KEY_COLUMNS),
        "",
        f"latency vs throughput front ({len(result.latency_front)} points, fastest first)",
        table(FRONT_COLUMNS, _front_rows(result.latency_front), key=FRONT_KEY_COLUMNS),
        "",
        "All figures are predictions (see docs/accuracy.md).",
    ]
    return fit_lines("\n".join(lines))


@click.command()
@plan_inputs()
@click.option("--plot", "plot_path", type=click.Path(dir_okay=False), default=None, help="Also draw both fronts to this .png or .svg file.")
@json_option
@handle_errors
def pareto(file: str | None, plot_path: str | None, as_json: bool, **flags: Any) -> None:
    """Show the cost-vs-throughput and latency-vs-throughput Pareto fronts of the feasible deployments.

    Example: guideopt pareto --model meta-llama/Llama-2-7b-hf --budget 12 --input-len 512 --output-len 256 --plot pareto.png
    """
    from guideopt.analyses.pareto import pareto_plans
    from guideopt.io.plots import check_plot_path, plot_pareto

    request = request_from_inputs(file, **flags)
    if plot_path:
        check_plot_path(plot_path)
    result = pareto_plans(request)
    written = plot_pareto(result, plot_path) if plot_path else None
    if as_json:
        click.echo(json.dumps({**result.as_dict(), "plot": str(written) if written else None}, indent=2))
        return
    click.echo(pareto_text(result))
    if written:
        click.echo(f"wrote {written}")


# ----------------------------------------------------------------------------- launch


@click.command()
@plan_inputs(with_top=True)
@click.option(
    "--emit",
    "emit_dir",
    type=click.Path(file_okay=False),
    required=True,
    help="Folder for the launch scripts (one per plan group) and PLAN.md.",
)
@click.option(
    "--plot", "plot_path", type=click.Path(dir_okay=False), default=None, help="Also draw the Pareto fronts to this .png or .svg file."
)
@json_option
@handle_errors
def launch(file: str | None, emit_dir: str, plot_path: str | None, as_json: bool, **flags: Any) -> None:
    """Plan a deployment and write the scripts that start it, with a PLAN.md to hand over.

    Example: guideopt launch --model meta-llama/Llama-2-7b-hf --budget 12 --input-len 512 --output-len 256 --emit deploy/
    """
    request = request_from_inputs(file, **flags)
    if plot_path:
        from guideopt.io.plots import check_plot_path

        check_plot_path(plot_path)
    result = api.plan(request)
    paths = write_outputs(result, request, emit_dir, plot_path, echo=False)
    if as_json:
        click.echo(json.dumps({**result.model_dump(), "files": [str(p) for p in paths]}, indent=2, default=float))
        return
    click.echo(plan_text(result))
    click.echo("")
    for path in paths:
        click.echo(f"wrote {path}")
