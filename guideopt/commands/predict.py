"""``guideopt predict``: metrics and memory of one configuration, or of every row of a CSV."""

from __future__ import annotations

import os
import sys
from typing import Any

import click

from guideopt import api
from guideopt.commands.common import calibration_option, catalog_with, echo_json, handle_errors, json_option
from guideopt.commands.params import WHOLE, layout_options
from guideopt.errors import GuideoptError
from guideopt.io.render import prediction_text


@click.command()
@click.option("--model", help="Hugging Face id from the catalog, or a path to a config.json.")
@click.option("--gpu", help="GPU id (see `guideopt catalog gpus`).")
@click.option("--num-gpus", type=WHOLE, default=None, help="All GPUs; replicas = num_gpus / (tp·pp).")
@click.option("--tp", type=WHOLE, default=None, help="Tensor-parallel size (default: num_gpus / pp).")
@click.option("--pp", type=WHOLE, default=1, show_default=True, help="Pipeline-parallel size.")
@click.option("--framework", default="vllm", show_default=True)
@click.option("--dtype", default=None, help="Weight precision (default: the checkpoint's, e.g. fp8 for DeepSeek-R1; else fp16).")
@click.option("--kv-dtype", default=None, help="KV-cache precision (default: 16-bit).")
@layout_options
@click.option("--batch", type=WHOLE, default=None, help="Requests submitted together (default 1; or give --concurrency).")
@click.option("--input-len", type=WHOLE, help="Prompt tokens per request.")
@click.option("--output-len", type=WHOLE, help="Generated tokens per request.")
@click.option("--split", type=WHOLE, default=None, help="Token budget per forward pass (default: the engine's).")
@click.option("--concurrency", type=WHOLE, default=None, help="Closed-loop clients instead of a static batch.")
@click.option("--h2o-keep", type=float, default=1.0, show_default=True, help="H2O KV keep ratio.")
@click.option("--no-flash-attention", is_flag=True, help="Materialise the attention score matrix.")
@click.option("--csv", "csv_path", type=click.Path(dir_okay=False, allow_dash=True), help="Predict every row of this CSV.")
@click.option(
    "--intervals",
    is_flag=True,
    help="With --csv: add each metric's prediction interval (<metric>_low, <metric>_high columns, after error).",
)
@calibration_option
@json_option
@handle_errors
def predict(
    model: str | None,
    gpu: str | None,
    num_gpus: int | None,
    tp: int | None,
    pp: int,
    framework: str,
    dtype: str,
    kv_dtype: str | None,
    attention_dp: int | None,
    moe_tp: int | None,
    moe_ep: int | None,
    batch: int | None,
    input_len: int | None,
    output_len: int | None,
    split: int | None,
    concurrency: int | None,
    h2o_keep: float,
    no_flash_attention: bool,
    csv_path: str | None,
    intervals: bool,
    calibration_file: str | None,
    as_json: bool,
) -> None:
    """Predict TTFT, TPOT, throughput and memory for one configuration (or a CSV of them).

    Example: guideopt predict --model meta-llama/Llama-2-7b-hf --gpu a100-sxm4-80gb --batch 16 --input-len 512 --output-len 128
    """
    if csv_path:
        _predict_csv(csv_path, catalog_with(calibration_file), intervals)
        return
    if intervals:
        raise click.UsageError("--intervals goes with --csv (a single prediction always shows its intervals)")
    for name, value in (("--model", model), ("--gpu", gpu), ("--input-len", input_len), ("--output-len", output_len)):
        if value is None:
            raise click.UsageError(f"{name} is required (or give --csv FILE)")
    request = {
        "model": model,
        "gpu": gpu,
        "num_gpus": num_gpus,
        "tp": tp,
        "pp": pp,
        "framework": framework,
        "dtype": dtype,
        "kv_dtype": kv_dtype,
        "attention_dp": attention_dp,
        "moe_tp": moe_tp,
        "moe_ep": moe_ep,
        "batch": batch,
        "input_len": input_len,
        "output_len": output_len,
        "split": split,
        "concurrency": concurrency,
        "h2o_keep": h2o_keep,
        "flash_attention": not no_flash_attention,
    }
    pred = api.predict({k: v for k, v in request.items() if v is not None}, catalog_with(calibration_file)).as_dict()
    if as_json:
        echo_json(pred)
    else:
        click.echo(prediction_text(pred))


def _predict_csv(csv_path: str, catalog: Any, intervals: bool = False) -> None:
    """Stream the predictions of every row to stdout; one line on stderr counts the bad rows and names the first."""
    try:
        report = _stream_csv(csv_path, catalog, intervals)
    except BrokenPipeError:
        # The reader stopped early (`... | head`): not an error; silence the final flush too.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return
    if report.first_bad:
        line, error = report.first_bad[0]
        click.echo(
            f"{report.source}: {report.bad_rows} of {report.rows} row(s) could not be predicted (see the error column); "
            f"first, line {line}: {error}",
            err=True,
        )


def _stream_csv(csv_path: str, catalog: Any, intervals: bool) -> api.CsvReport:
    source = "<stdin>" if csv_path == "-" else csv_path
    if csv_path == "-":
        stdin = getattr(sys.stdin, "buffer", None)  # a test runner's stdin may be text only
        lines = stdin if stdin is not None else (line.encode("utf-8") for line in sys.stdin)
        report = api.predict_csv_stream(lines, sys.stdout, catalog, source=source, intervals=intervals)
    else:
        try:
            fh = open(csv_path, "rb")  # noqa: SIM115 (closed below; a read error names the file)
        except OSError as exc:
            raise GuideoptError(f"csv: cannot read {csv_path} ({exc.strerror})") from None
        with fh:
            report = api.predict_csv_stream(fh, sys.stdout, catalog, source=source, intervals=intervals)
    return report
