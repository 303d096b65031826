"""``guideopt plan``: the best deployments under a budget, from flags."""

from __future__ import annotations

from typing import Any

import click

from guideopt import api
from guideopt.commands.common import (
    EMIT_HELP,
    PLOT_HELP,
    calibration_option,
    catalog_with,
    emit_plan,
    flags_request,
    handle_errors,
    json_option,
    plan_request_options,
)
from guideopt.commands.params import WHOLE
from guideopt.commands.progress import Progress
from guideopt.errors import InvalidRequestError
from guideopt.model.request import DEFAULT_TOP


@click.command()
@plan_request_options(required=True)
@click.option("--top", type=WHOLE, default=DEFAULT_TOP, show_default=True, help="How many distinct plans.")
@click.option("--heterogeneous", is_flag=True, help="Allow plans that mix GPU types (one group per type).")
@click.option(
    "--disaggregated",
    type=click.Choice(["never", "allow", "only"]),
    default=None,
    help="Plans with separate prefill and decode pools: never (default), allow (ranked with aggregated plans) or only.",
)
@click.option("--robust", is_flag=True, help="Meet SLOs and budget at the pessimistic end of the prediction intervals.")
@click.option("--emit", "emit_dir", type=click.Path(file_okay=False), default=None, help=EMIT_HELP)
@click.option("--plot", "plot_path", type=click.Path(dir_okay=False), default=None, help=PLOT_HELP)
@calibration_option
@json_option
@handle_errors
def plan(emit_dir: str | None, plot_path: str | None, as_json: bool, calibration_file: str | None, **flags: Any) -> None:
    """Find the best deployments under a budget.

    Example: guideopt plan --model meta-llama/Llama-2-7b-hf --budget 12 --input-len 512 --output-len 256

    Table columns: layout Rx(tpT·ppP) is R replicas, each on tp·pp GPUs (MoE: TEP8, DEP8, tp4·DEP8,
    tp1·DP8 with the layout in words below; tp·attention_dp·pp GPUs); batch is requests per replica
    (per attention-DP rank);
    split is tokens per forward pass; batch s is the time until the batch is done; GiB/gpu of
    GiB is memory used per GPU of its capacity (GiB = 2^30 bytes, the unit of a GPU's "80 GB").
    """
    for value, name in ((emit_dir, "--emit"), (plot_path, "--plot")):
        if value is not None and not value.strip():
            raise InvalidRequestError(f"{name}: an empty path (give a folder for --emit, a file for --plot)")
    request = flags_request(flags)
    catalog = catalog_with(calibration_file)
    with Progress("plan"):  # stderr, only once the search runs long
        result = api.plan(request, catalog)
    emit_plan(result, as_json)
    if emit_dir or plot_path:
        from guideopt.commands.outputs import write_outputs

        write_outputs(result, request, emit_dir, plot_path)
