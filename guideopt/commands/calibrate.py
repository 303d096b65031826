"""``guideopt calibrate``: fit the engine terms to your own measurements and write an overlay."""

from __future__ import annotations

import dataclasses
from typing import Any

import click

from guideopt.commands.common import echo_json, handle_errors, json_option
from guideopt.errors import GuideoptError


def _stats(report) -> dict[str, dict[str, float]]:
    from guideopt.calibration.aggregate import per_metric

    return {m: s.as_dict() for m, s in per_metric(report.results).items()}


def check_run_context(context: dict[str, Any], catalog: Any) -> None:
    """The flags that describe JSON runs, checked before any file is read or fit: a typo
    would otherwise surface as "too few comparable rows" after the whole fit."""
    from guideopt.errors import InvalidRequestError
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
@click.option("--tp", type=int, default=1, show_default=True)
@click.option("--pp", type=int, default=1, show_default=True)
@click.option("--batch", type=int, default=None, help="benchmark_latency JSON: the batch size it ran.")
@click.option("--input-len", type=int, default=None, help="benchmark_latency JSON: prompt tokens.")
@click.option("--output-len", type=int, default=None, help="benchmark_latency JSON: generated tokens.")
@click.option("--engine-version", default="", help="Engine version to record with the fit.")
@json_option
@handle_errors
def calibrate(files: tuple[str, ...], out_path: str, engine_version: str, as_json: bool, **context: Any) -> None:
    """Fit guideopt's engine terms to your measurements; write an overlay for --calibration.

    FILES are measured-data CSVs (shared/data/measured format) or the JSON results of vLLM's
    benchmark_serving / benchmark_latency and SGLang's bench_serving.

    Example: guideopt calibrate serve.json --gpu h100-sxm --framework vllm --dtype bf16 --out mine.yaml
    """
    from pathlib import Path

    from guideopt.api import predict
    from guideopt.calibration.mapping import Case
    from guideopt.calibration.overlay import apply_overlay, fit_overlay, write_overlay
    from guideopt.calibration.user_data import RunContext, load_user_files
    from guideopt.calibration.validate import validate
    from guideopt.catalog import load_catalog
    from guideopt.errors import InvalidRequestError

    if any(Path(f).resolve() == Path(out_path).resolve() for f in files):
        raise InvalidRequestError(f"--out: {out_path} is one of the input files (write the overlay to another file)")
    if not Path(out_path).resolve().parent.is_dir():
        raise InvalidRequestError(f"--out: the folder of {out_path} does not exist (create it, or write elsewhere)")
    catalog = load_catalog()
    check_run_context(context, catalog)
    items = load_user_files(list(files), RunContext(version=engine_version, **context), catalog)
    cases = [c for c in items if isinstance(c, Case)]
    if not cases:
        raise InvalidRequestError(f"{files[0]}: no row can be compared (check GPU, model and engine ids)")
    overlay = fit_overlay(catalog, items)
    if not overlay.frameworks:
        raise InvalidRequestError(f"{files[0]}: too few comparable rows to fit (at least 5 per engine and vendor)")
    after = dataclasses.replace(catalog, calibration=apply_overlay(catalog.calibration, overlay))
    before_report = validate(cases, lambda r: predict(r, catalog))
    after_report = validate(cases, lambda r: predict(r, after))
    write_overlay(overlay, out_path)
    summary = {
        "overlay": out_path,
        "fitted": {k: v.model_dump(exclude={"fitted_from"}) for k, v in overlay.frameworks.items()},
        "rows": len(cases),
        "before": _stats(before_report),
        "after": _stats(after_report),
    }
    if as_json:
        echo_json(summary)
        return
    click.echo(f"{len(cases)} rows; fitted {', '.join(overlay.frameworks)}; wrote {out_path} (use with --calibration {out_path})")
    before, after_stats = _stats(before_report), _stats(after_report)
    for metric in after_stats:
        b, a = before[metric], after_stats[metric]
        click.echo(f"  {metric}: median error {b['median_ape']:.1%} before, {a['median_ape']:.1%} after ({a['count']} rows)")
