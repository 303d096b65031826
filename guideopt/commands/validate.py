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
@json_option
@handle_errors
def validate(file: str, calibration: str, leave_one_gpu_out: bool, as_json: bool) -> None:
    """Predict every row of a measured-data CSV and report the error per metric (GUIDE Table 2 style).

    Example: guideopt validate ../shared/data/measured/e2e.csv
    """
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
