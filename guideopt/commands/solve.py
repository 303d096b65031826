"""``guideopt solve FILE`` and ``guideopt schema``: constraints files on the command line.

File errors are
one ``FILE:LINE: key.path: what is wrong (what would be right)`` line on stderr (exit 1);
a valid file with no feasible plan exits 3 with the explanation on stderr (and in the
JSON with ``--json``).
"""

from __future__ import annotations

import json
import sys
import time

import click

from guideopt import api
from guideopt.commands.common import emit_plan, handle_errors, infeasible_json, json_option
from guideopt.commands.progress import Progress
from guideopt.errors import GuideoptError, NoFeasiblePlanError


def _fail(message: str, code: int) -> None:
    click.echo(message, err=True)
    sys.exit(code)


def _leading_key(message: str) -> str | None:
    """The key path a library message starts with (``gpus.l4: ...``), if any."""
    from guideopt.io.constraints_file import parse_path

    head, sep, _ = message.partition(": ")
    if sep and head and " " not in head and parse_path(head):
        return head
    return None


@click.command()
@click.argument("file", type=click.Path(dir_okay=False, allow_dash=False))
@click.option(
    "--emit", "emit_dir", type=click.Path(file_okay=False), default=None, help="Also write launch scripts and PLAN.md into this folder."
)
@click.option(
    "--plot", "plot_path", type=click.Path(dir_okay=False), default=None, help="Also draw the Pareto fronts to this .png or .svg."
)
@json_option
@handle_errors
def solve(file: str, as_json: bool, emit_dir: str | None = None, plot_path: str | None = None) -> None:
    """Plan from a constraints file (YAML, JSON or TOML; see `guideopt schema`).

    Example: guideopt solve examples/chat-tight-ttft.yaml --json

    Table columns: layout RxT·P is R replicas, each on tp·pp GPUs; batch is requests per replica;
    split is tokens per forward pass; batch s is the time until the batch is done; GiB/gpu of
    GiB is memory used per GPU of its capacity (GiB = 2^30 bytes, the unit of a GPU's "80 GB").
    """
    from guideopt.io.constraints_file import ConstraintsFileError, load

    start = time.perf_counter()
    try:
        loaded = load(file)
    except ConstraintsFileError as exc:
        _fail(str(exc), exc.exit_code)
        return
    request = loaded.request
    try:
        with Progress("solve"):  # stderr, only once the search runs long
            result = api.plan(request)
    except NoFeasiblePlanError as exc:
        conflicts = list(exc.conflicts)
        line = next((loaded.line_of(c) for c in conflicts if loaded.line_of(c) > 1), 1)
        click.echo(f"{loaded.path}:{line}: no feasible plan: {exc}", err=True)
        if as_json:
            click.echo(
                json.dumps(
                    infeasible_json([t.value for t in request.objective], str(exc), conflicts, round(time.perf_counter() - start, 6)),
                    indent=2,
                )
            )
        sys.exit(exc.exit_code)
    except GuideoptError as exc:
        message = str(exc)
        key = _leading_key(message)
        if key is not None:
            message = f"{loaded.path}:{loaded.line_of(key)}: {message}"
        else:
            message = f"{loaded.path}: {message}"
        _fail(message, exc.exit_code)
        return
    emit_plan(result, as_json)
    if emit_dir or plot_path:
        from guideopt.commands.outputs import write_outputs

        write_outputs(result, request, emit_dir, plot_path)


@click.command()
def schema() -> None:
    """Print the JSON Schema of constraints files (for editors and validators).

    Example: guideopt schema > guideopt-constraints.schema.json
    """
    from guideopt.io.constraints_file import json_schema

    click.echo(json.dumps(json_schema(), indent=2))
