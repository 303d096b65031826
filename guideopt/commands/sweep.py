"""``guideopt sweep FILE``: plan many scenarios, one row per (scenario, plan), resumable.

A thin layer over ``guideopt.io.sweep_*``: reads the scenarios, runs them (local processes
or Ray), shows progress on a terminal, writes the results and the chart, prints a summary.
Errors are one line with exit 1 (a scenario's own bad value or lack of a plan is its row,
not an error); Ctrl-C keeps what is done for the next run (exit 130).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import click

from guideopt.commands.common import handle_errors
from guideopt.errors import InvalidRequestError

# Library fields of the sweep's own options, as the command line names them.
SWEEP_FLAGS = {"out": "--out", "ray": "--ray", "workers": "--workers"}
EXIT_INTERRUPTED = 130


@click.command()
@click.argument("scenarios_file", metavar="FILE", type=click.Path(dir_okay=False))
@click.option(
    "--out",
    "out_path",
    required=True,
    type=click.Path(dir_okay=False),
    help="Results: .csv or .parquet (by the suffix). Scenarios already in it are not planned again.",
)
@click.option(
    "--workers", type=click.IntRange(min=1), default=None, help="Local processes (default: one per CPU, at most one per scenario)."
)
@click.option(
    "--ray",
    "ray_address",
    metavar="ADDRESS",
    default=None,
    help="Run on a Ray cluster instead: auto, local or an address (pip install 'guideopt[ray]').",
)
@click.option(
    "--plot", "plot_path", type=click.Path(dir_okay=False), default=None, help="Also draw cheapest $/h against load per model (.png/.svg)."
)
@click.option("--progress/--no-progress", "show_progress", default=None, help="Progress bar on stderr (default: on a terminal).")
@handle_errors
def sweep(
    scenarios_file: str, out_path: str, workers: int | None, ray_address: str | None, plot_path: str | None, show_progress: bool | None
) -> None:
    """Plan many scenarios: a grid file (a constraints file plus `grid:` lists) or a CSV, one scenario a row.

    Example: guideopt sweep examples/sweeps/llama-small-gpus.yaml --out results.csv --plot sweep.png

    Each row of the output is one plan of one scenario (`top` plans each), after the
    scenario's number, id (a hash of its request) and swept values; a scenario with no plan
    has one row with status infeasible or invalid and the reason in `error`. Rerun with the
    same --out to finish an interrupted sweep: scenarios already in it are skipped.
    """
    from guideopt.io.sweep_run import run_sweep
    from guideopt.io.sweep_scenarios import load_scenarios
    from guideopt.io.sweep_table import check_out_path, journal_path

    with _as_flags():
        if plot_path is not None:
            from guideopt.io.plots import check_plot_path

            check_plot_path(plot_path)
        out = check_out_path(out_path)
        scenarios = load_scenarios(scenarios_file)
        bar = _Bar(sys.stderr.isatty() if show_progress is None else show_progress)
        try:
            report = run_sweep(scenarios, out, workers, ray_address, bar)
        except KeyboardInterrupt:
            bar.close()
            click.echo(f"interrupted: finished scenarios are kept in {journal_path(out)}; rerun the same command to go on", err=True)
            sys.exit(EXIT_INTERRUPTED)
        bar.close()
        if plot_path is not None:
            from guideopt.io.sweep_plot import plot_sweep

            plot_sweep(scenarios, report.rows, plot_path)
    click.echo(_summary(report, plot_path))


@contextmanager
def _as_flags() -> Iterator[None]:
    """Name the sweep's options as flags in their errors (``--out: ...``)."""
    try:
        yield
    except InvalidRequestError as exc:
        flag = SWEEP_FLAGS.get(exc.field or "")
        if flag is None:
            raise
        raise InvalidRequestError(f"{flag}: {exc.problem}") from None


class _Bar:
    """A rich progress bar on stderr, started at the first report (after the workers exist)."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.progress: Any = None
        self.task: Any = None

    def __call__(self, done: int, total: int) -> None:
        if not self.enabled:
            return
        if self.progress is None:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

            columns = (TextColumn("planning"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn())
            self.progress = Progress(*columns, console=Console(stderr=True))
            self.progress.start()
            self.task = self.progress.add_task("sweep", total=total)
        self.progress.update(self.task, completed=done)

    def close(self) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None


def _summary(report: Any, plot_path: str | None) -> str:
    if not report.written:
        return f"sweep: all {report.scenarios:,} scenarios are already in {report.out} (nothing to plan; remove it to start over)"
    statuses = ", ".join(f"{n:,} {status}" for status, n in report.statuses.items())
    text = (
        f"sweep: {report.scenarios:,} scenarios ({report.planned:,} planned now, {report.reused:,} already done): {statuses}; "
        f"wrote {len(report.rows):,} rows to {report.out}"
    )
    if report.kept_other:
        text += f" (with {report.kept_other:,} rows of scenarios not in this sweep, at the end)"
    return text + (f"; chart {plot_path}" if plot_path else "")
