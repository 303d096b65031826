"""``guideopt validate``: prediction error against a measured-data CSV."""

from __future__ import annotations

import click

from guideopt.commands.common import catalog_with, echo_json, handle_errors, json_option


@click.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.option(
    "--calibration",
    default="fitted",
    show_default=True,
    help="fitted: catalogs/calibration.yaml; prior: the uncalibrated generic efficiencies; or an overlay FILE from `guideopt calibrate`.",
)
@click.option("--leave-one-gpu-out", is_flag=True, help="Score each measured GPU with its own device fit left out.")
@click.option(
    "--serving",
    is_flag=True,
    help="Score the request-stream models (analytic and simulated) on the open-loop and closed-loop serving rows instead.",
)
@click.option(
    "--max-configs",
    type=click.IntRange(1, 1000),
    default=40,
    show_default=True,
    help="With --serving: closed-loop configurations sampled evenly.",
)
@json_option
@handle_errors
def validate(file: str, calibration: str, leave_one_gpu_out: bool, serving: bool, max_configs: int, as_json: bool) -> None:
    """Predict every row of a measured-data CSV and report the error per metric (GUIDE Table 2 style).

    Example: guideopt validate ../shared/data/measured/e2e.csv   (add --serving for the request-stream models)
    """
    if serving:
        from guideopt.calibration.serving import serving_errors, serving_markdown, serving_rows

        result = serving_errors(file, max_configs)
        if as_json:
            echo_json(
                {
                    "configurations": result["configurations"],
                    "skipped": result["skipped"],
                    "rows": serving_rows(result),
                    "capacity": result["capacity"],
                }
            )
        else:
            click.echo(serving_markdown(result))
        return
    from guideopt.calibration import accuracy
    from guideopt.calibration.validate import report_dict, report_markdown

    if calibration not in ("fitted", "prior"):
        report = accuracy.validate_with(file, "fitted", catalog_with(calibration))
    elif leave_one_gpu_out:
        report = accuracy.leave_one_gpu_out(file)
    else:
        report = accuracy.validate_with(file, calibration)
    if as_json:
        echo_json(report_dict(report))
    else:
        click.echo(report_markdown(report))
