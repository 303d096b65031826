"""``guideopt calibrate``: fit the engine terms to your own measurements and write an overlay."""

from __future__ import annotations

import dataclasses
import sys
import time
from typing import Any

import click

from guideopt.commands.common import echo_json, handle_errors, json_option
from guideopt.commands.params import WHOLE
from guideopt.errors import GuideoptError, InvalidRequestError


def _stats(report) -> dict[str, dict[str, float]]:
    from guideopt.calibration.aggregate import per_metric

    return {m: s.as_dict() for m, s in per_metric(report.results).items()}


def check_run_context(context: dict[str, Any], catalog: Any) -> None:
    """The flags that describe JSON runs, checked before any file is read or fit: a typo
    would otherwise surface as "too few comparable rows" after the whole fit."""
    from guideopt.model.dtype import Dtype

    for key in ("tp", "pp", "batch", "input_len", "output_len"):
        value = context.get(key)
        if value is not None and value < 1:
            raise InvalidRequestError(f"--{key.replace('_', '-')}: must be >= 1 (got {value})")
    if context.get("dtype") not in {d.value for d in Dtype}:
        raise InvalidRequestError(f"--dtype: {context.get('dtype')!r} is not a precision (one of {', '.join(d.value for d in Dtype)})")
    for key, check in (("model", catalog.model), ("gpu", catalog.gpu), ("framework", catalog.framework)):
        if context.get(key):
            try:
                check(context[key])
            except GuideoptError as exc:
                raise InvalidRequestError(f"--{key}: {str(exc).split(': ', 1)[-1]}") from None
    if context.get("model") and (problem := catalog.model(context["model"]).tp_problem(int(context.get("tp") or 1))):
        raise InvalidRequestError(f"--tp: {context.get('tp')} does not divide {context['model']}'s {problem} (use a divisor of it)")


@click.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("--out", "out_path", default="calibration-overlay.yaml", show_default=True, type=click.Path(dir_okay=False))
@click.option("--model", default=None, help="Model of the JSON runs (vLLM serving results carry model_id).")
@click.option("--gpu", default=None, help="GPU id the JSON runs used.")
@click.option("--framework", default=None, help="Engine id of the JSON runs (vllm, sglang, trtllm, fastgen).")
@click.option("--dtype", default="fp16", show_default=True, help="Weight precision of the JSON runs.")
@click.option("--tp", type=WHOLE, default=1, show_default=True)
@click.option("--pp", type=WHOLE, default=1, show_default=True)
@click.option("--batch", type=WHOLE, default=None, help="benchmark_latency JSON: the batch size it ran.")
@click.option("--input-len", type=WHOLE, default=None, help="benchmark_latency JSON: prompt tokens.")
@click.option("--output-len", type=WHOLE, default=None, help="benchmark_latency JSON: generated tokens.")
@click.option("--engine-version", default="", help="Engine version to record with the fit.")
@json_option
@handle_errors
def calibrate(files: tuple[str, ...], out_path: str, engine_version: str, as_json: bool, **context: Any) -> None:
    """Fit guideopt's engine terms to your measurements; write an overlay for --calibration.

    FILES are measured-data CSVs (shared/data/measured format) or the JSON results of vLLM's
    `vllm bench serve` / benchmark_serving (closed loop with --max-concurrency, open loop with
    --request-rate) and benchmark_latency, and SGLang's bench_serving. Runs it does not
    compare are listed on stderr with the reason; a file or run given twice counts once.

    Example: guideopt calibrate serve.json --gpu h100-sxm --framework vllm --dtype bf16 --out mine.yaml
    """
    from guideopt.calibration.overlay import write_overlay
    from guideopt.calibration.user_data import RunContext, load_user_files
    from guideopt.calibration.user_report import skip_lines, skipped_runs
    from guideopt.catalog import load_catalog

    _check_out(files, out_path)
    catalog = load_catalog()
    check_run_context(context, catalog)
    data = load_user_files(list(files), RunContext(version=engine_version, **context), catalog)
    unread = skipped_runs(data.skipped)
    for line in data.duplicates + skip_lines(unread):
        click.echo(line, err=True)
    _need_rows(files[0], data.cases, len(unread))
    progress = _Progress()
    try:
        overlay, summary = _fit_and_score(data, catalog, progress, files[0])
    finally:
        progress.close()
    write_overlay(overlay, out_path)
    summary = {"overlay": out_path, **summary}
    if as_json:
        echo_json(summary)
    else:
        _echo_text(summary)


def _fit_and_score(data: Any, catalog: Any, progress: _Progress, first: str) -> tuple[Any, dict[str, Any]]:
    """Score the shipped calibration, fit, score the fit; every skipped run and fit note on stderr."""
    from guideopt.calibration.overlay import apply_overlay
    from guideopt.calibration.user_fit import PASSES_PER_KEY, fit_user_overlay
    from guideopt.calibration.user_report import skip_lines, skipped_runs

    before = _score(data.cases, catalog, progress, "scoring the shipped calibration")
    for line in skip_lines(skipped_runs(before.skipped)):
        click.echo(line, err=True)
    runs = skipped_runs(data.skipped + before.skipped)
    compared = [r.case for r in before.results]
    _need_rows(first, compared, len(runs))
    progress.offset, progress.total = progress.done, progress.done + PASSES_PER_KEY * len({_key(c, catalog) for c in compared}) + 1
    fit = fit_user_overlay(catalog, compared, data.files, progress)
    for line in fit.notes:
        click.echo(line, err=True)
    if not fit.overlay.frameworks:
        raise InvalidRequestError(f"{first}: too few comparable rows to fit (at least 5 per engine and vendor)")
    fitted = dataclasses.replace(catalog, calibration=apply_overlay(catalog.calibration, fit.overlay))
    after = _score(compared, fitted, progress, "scoring the fit")
    return fit.overlay, {
        "fitted": {k: v.model_dump(exclude={"fitted_from"}) for k, v in fit.overlay.frameworks.items()},
        "fitted_on": [f.model_dump() for f in fit.overlay.fitted_on],
        "rows": len(compared),
        "skipped": {"runs": len(runs), "list": runs},
        "duplicates": data.duplicates,
        "notes": fit.notes,
        "before": _stats(before),
        "after": _stats(after),
    }


def _check_out(files: tuple[str, ...], out_path: str) -> None:
    from pathlib import Path

    if any(Path(f).resolve() == Path(out_path).resolve() for f in files):
        raise InvalidRequestError(f"--out: {out_path} is one of the input files (write the overlay to another file)")
    if not Path(out_path).resolve().parent.is_dir():
        raise InvalidRequestError(f"--out: the folder of {out_path} does not exist (create it, or write elsewhere)")


def _need_rows(first: str, compared: list, runs: int) -> None:
    if not compared:
        why = f"{runs} runs or rows skipped: see above" if runs else "check GPU, model and engine ids"
        raise InvalidRequestError(f"{first}: no row can be compared ({why})")


def _key(case: Any, catalog: Any) -> str:
    from guideopt.calibration.fit_engines import engine_key

    return engine_key(case, lambda g: catalog.gpus[g].vendor.value)


def _score(cases: list, catalog: Any, progress: _Progress, what: str) -> Any:
    """Every case predicted in one go, compared with its measurement."""
    from guideopt.calibration.predictions import PredictionTable
    from guideopt.calibration.validate import validate

    progress.stage(what)
    report = validate(cases, PredictionTable((c.request for c in cases), catalog))
    progress.step()
    return report


def _echo_text(summary: dict[str, Any]) -> None:
    out = summary["overlay"]
    skipped, dups = summary["skipped"]["runs"], len(summary["duplicates"])
    runs = f"{skipped} run{'s' if skipped != 1 else ''} or row{'s' if skipped != 1 else ''} skipped"
    parts = ([runs] if skipped else []) + ([f"{dups} given twice, counted once"] if dups else [])
    extra = f"; {', '.join(parts)} (listed on stderr)" if parts else ""
    click.echo(f"{summary['rows']} rows{extra}; fitted {', '.join(summary['fitted'])}; wrote {out} (use with --calibration {out})")
    for metric, a in summary["after"].items():
        b = summary["before"].get(metric)
        was = f"{b['median_ape']:.1%} before, " if b else ""
        click.echo(f"  {metric}: median error {was}{a['median_ape']:.1%} after ({a['count']} rows)")


class _Progress:
    """The fit's progress on stderr, never on stdout: a bar on a terminal, else a line per stage."""

    def __init__(self) -> None:
        self.terminal = sys.stderr.isatty()
        self.total, self.done, self.offset, self.what = 1, 0, 0, ""
        self.bar: Any = None
        self.task: Any = None
        self.start = time.perf_counter()

    def stage(self, what: str) -> None:
        if what != self.what and not self.terminal:
            click.echo(f"calibrate: {what} ({time.perf_counter() - self.start:.0f} s)", err=True)
        self.what = what
        self._draw()

    def step(self) -> None:
        self.done += 1
        self._draw()

    def __call__(self, what: str, done: int, total: int) -> None:  # the fit's passes
        self.done = self.offset + done
        self.stage(what)

    def _draw(self) -> None:
        if not self.terminal:
            return
        if self.bar is None:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
            self.bar = Progress(*columns, console=Console(stderr=True), transient=True)
            self.bar.start()
            self.task = self.bar.add_task(self.what, total=self.total)
        self.bar.update(self.task, description=self.what, completed=self.done, total=max(self.total, self.done))

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()
