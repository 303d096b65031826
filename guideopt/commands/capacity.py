"""``guideopt capacity``: how many requests fit, how long a sequence can be, and how many replicas a load needs."""

from __future__ import annotations

import csv
import sys
from typing import Any

import click

from guideopt import api
from guideopt.commands.common import calibration_option, catalog_with, echo_json, handle_errors, json_option
from guideopt.commands.params import WHOLE, layout_options
from guideopt.errors import NoFeasiblePlanError
from guideopt.io.render import memory_table, table

CAPACITY_COLUMNS = (
    "input_len",
    "output_len",
    "fits",
    "max_batch",
    "kv_cache_tokens",
    "max_seq_len",
    "replicas",
    "num_gpus",
    "usd_per_hour",
    "reason",
)


@click.command()
@click.option("--model", required=True, help="Hugging Face id from the catalog, or a path to a config.json.")
@click.option("--gpu", required=True, help="GPU id (see `guideopt catalog gpus`).")
@click.option("--tp", type=WHOLE, default=None, help="Tensor-parallel size (default: num_gpus / pp, or 1).")
@click.option("--pp", type=WHOLE, default=1, show_default=True)
@click.option("--num-gpus", type=WHOLE, default=None, help="GPUs per replica when --tp is not given (tp = num-gpus / (pp x attention-dp)).")
@click.option("--framework", default="vllm", show_default=True)
@click.option("--dtype", default=None, help="Weight precision (default: the checkpoint's, e.g. fp8 for DeepSeek-R1; else fp16).")
@click.option("--kv-dtype", default=None)
@layout_options
@click.option("--input-len", required=True, help="Prompt length: 512, a list 512,1024 or a range 128:8192:x2.")
@click.option("--output-len", required=True, help="Output length: same forms as --input-len.")
@click.option("--batch", type=WHOLE, default=None, help="A batch to check; too large a batch is split into sub-batches.")
@click.option("--split", type=WHOLE, default=None, help="Token budget per pass (default: the engine's).")
@click.option("--rate", type=float, default=None, help="Requests/s to size the deployment for.")
@click.option("--ttft-ms", type=float, default=None, help="SLO for --rate sizing.")
@click.option("--tpot-ms", type=float, default=None, help="SLO for --rate sizing.")
@click.option("--percentile", type=float, default=None, help="The percentile --ttft-ms/--tpot-ms bound (default 90), as in plan --rate.")
@click.option(
    "--running-cap",
    type=WHOLE,
    default=None,
    help="Max running requests per replica (per attention-DP rank) for --rate (default: the engine's).",
)
@click.option("--csv", "as_csv", is_flag=True, help="Print CSV rows instead of a table.")
@calibration_option
@json_option
@handle_errors
def capacity(
    model: str,
    gpu: str,
    tp: int | None,
    pp: int,
    num_gpus: int | None,
    framework: str,
    dtype: str,
    kv_dtype: str | None,
    attention_dp: int | None,
    moe_tp: int | None,
    moe_ep: int | None,
    input_len: str,
    output_len: str,
    batch: int | None,
    split: int | None,
    rate: float | None,
    ttft_ms: float | None,
    tpot_ms: float | None,
    percentile: float | None,
    running_cap: int | None,
    as_csv: bool,
    as_json: bool,
    calibration_file: str | None,
) -> None:
    """How many requests fit, how long a sequence can be, and how many replicas a load needs.

    Example: guideopt capacity --model meta-llama/Llama-2-7b-hf --gpu a100-sxm4-80gb --input-len 512,1024,2048 --output-len 256 --rate 4
    """
    from guideopt.analyses.capacity import CapacityRequest, capacities
    from guideopt.analyses.sweep import check_cases, parse_lengths

    inputs, outputs = parse_lengths(input_len, "input_len"), parse_lengths(output_len, "output_len")
    check_cases(len(inputs), len(outputs), field="input_len")
    combos = [(i, o) for i in inputs for o in outputs]
    base = {
        "model": model,
        "gpu": gpu,
        "tp": tp,
        "pp": pp,
        "num_gpus": num_gpus,
        "framework": framework,
        "dtype": dtype,
        "kv_dtype": kv_dtype,
        "attention_dp": attention_dp,
        "moe_tp": moe_tp,
        "moe_ep": moe_ep,
        "batch": batch,
        "split": split,
        "rate": rate,
        "ttft_ms": ttft_ms,
        "tpot_ms": tpot_ms,
        "percentile": percentile,
        "running_cap": running_cap,
    }
    base = {k: v for k, v in base.items() if v is not None}
    cat = catalog_with(calibration_file)
    reqs = [api.validated(CapacityRequest, {**base, "input_len": i, "output_len": o}) for i, o in combos]
    results = [c.as_dict() for c in capacities(reqs, cat)]  # the cases priced together, as arrays
    if as_json:
        echo_json(results[0] if len(results) == 1 else results)
    elif as_csv:
        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow(CAPACITY_COLUMNS)
        for r in results:
            writer.writerow([r.get(c, "") for c in CAPACITY_COLUMNS])
    else:
        click.echo(table(CAPACITY_COLUMNS, [[r.get(c, "") for c in CAPACITY_COLUMNS] for r in results], key=2))  # input_len, output_len
        if len(results) == 1:
            click.echo(memory_table(results[0]["memory"]))
            _capacity_notes(results[0])
    if len(results) == 1 and not results[0]["fits"]:  # a single case that does not fit: the contract's 3
        click.echo(f"error: does not fit: {_not_fit_reason(results[0])}", err=True)
        sys.exit(NoFeasiblePlanError.exit_code)


def _not_fit_reason(r: dict[str, Any]) -> str:
    return str(r.get("reason") or "does not fit in memory")


def _capacity_notes(r: dict[str, Any]) -> None:
    if r["attention_dp"] > 1:
        click.echo(
            f"attention DP {r['attention_dp']} (moe_tp {r['moe_tp']}, moe_ep {r['moe_ep']}, {r['gpus_per_replica']} GPUs per replica): "
            f"each rank holds its own {r['kv_cache_tokens']:,} KV tokens and {r['max_batch_per_rank']:,} requests"
        )
    if not r["fits"]:
        click.echo(f"does not fit: {_not_fit_reason(r)}")
    if r.get("sub_batch_count", 0) > 1:
        sizes = r.get("sub_batches") or " + ".join(f"{n:,} x {size}" for size, n in r["sub_batch_sizes"].items())
        click.echo(f"batch {r['requested_batch']:,} does not fit at once: run as {r['sub_batch_count']:,} sub-batches {sizes}")
    if r.get("metrics"):
        m = r["metrics"]
        click.echo(
            f"at {r['rate']:g} req/s: {r['replicas']} replica(s), {r['concurrency_per_replica']} in flight each, "
            f"TTFT {m['ttft_ms']:.0f} ms, TPOT {'n/a' if m['tpot_ms'] is None else format(m['tpot_ms'], '.1f') + ' ms'}, ${r['usd_per_hour']:.2f}/h"
        )
