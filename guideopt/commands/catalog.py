"""``guideopt catalog``: what is bundled."""

from __future__ import annotations

import click

from guideopt.commands.common import echo_json, handle_errors, json_option
from guideopt.io.render import table


@click.command()
@click.argument("kind", type=click.Choice(["gpus", "models", "frameworks", "mixes", "protocols"]))
@json_option
@handle_errors
def catalog(kind: str, as_json: bool) -> None:
    """List the bundled GPUs, models, frameworks, request-length mixes (``--lengths MIX``) or
    benchmark protocols (``simulate --protocol ID``).

    Example: guideopt catalog gpus --json
    """
    from guideopt.catalog import load_catalog

    if kind == "mixes":
        _echo(_mix_rows(), ["id", "input_mean", "input_median", "output_mean", "output_median", "percentiles"], as_json)
        return
    cat = load_catalog()
    if kind == "protocols":
        rows = [p.model_dump(mode="json") for p in cat.protocols.values()]
        for row in rows:
            row["lengths"] = _lengths_in_words(row)
        _echo(
            rows,
            ["id", "arrival", "client_start", "lengths", "warmup_requests_per_client", "requests_per_client", "tpot_definition"],
            as_json,
        )
        return
    if kind == "gpus":
        rows = [
            {
                "id": g.id,
                "name": g.name,
                "arch": g.arch,
                "memory_gb": round(g.memory_gb, 2),
                "memory_gib": g.memory_gib,
                "hbm_bw_gb_s": g.hbm_bw_gb_s,
                "fp16_tflops": g.peak_tflops.fp16,
                "fp8_tflops": g.peak_tflops.fp8,
                "fp4_tflops": g.peak_tflops.fp4,
                "link": g.link.value,
                "gpus_per_node": g.gpus_per_node,
                "scale_up_domain_gpus": g.scale_up_domain_gpus,
                "scale_out_nic_gb_s_per_gpu": g.scale_out_nic_gb_s_per_gpu,
                "usd_per_hour": g.usd_per_hour,
                "price_grade": g.price_grade.value,
                "price_source": g.price_source,
            }
            for g in cat.gpus.values()
        ]
        cols = [
            "id",
            "arch",
            "memory_gib",
            "hbm_bw_gb_s",
            "fp16_tflops",
            "fp4_tflops",
            "link",
            "scale_up_domain_gpus",
            "usd_per_hour",
            "price_grade",
        ]
    elif kind == "models":
        rows = [
            {
                "id": m.id,
                "num_params": m.num_params,
                "num_active_params": m.num_active_params,
                "layers": m.num_layers,
                "hidden_size": m.hidden_size,
                "attention": "+".join(m.attention_kinds),
                "kv_bytes_per_token_fp16": int(m.kv_bytes_per_token(2.0)),
                "state_bytes_per_seq": int(m.state_bytes_per_seq()),
                "experts": m.num_experts,
                "experts_per_token": m.experts_per_token,
                "checkpoint_dtype": m.checkpoint_dtype,
            }
            for m in cat.models.values()
        ]
        cols = ["id", "num_params", "num_active_params", "layers", "attention", "kv_bytes_per_token_fp16", "experts"]
    else:
        rows = [
            {
                "id": f.id,
                "name": f.name,
                "version": f.version,
                "memory_fraction": f.memory_fraction,
                "memory_fraction_of": f.memory_fraction_of.value,
                "kv_block_tokens": f.kv_block_tokens,
                "max_num_batched_tokens": f.max_num_batched_tokens,
                "chunked_prefill": f.chunked_prefill,
                "async_scheduling": f.async_scheduling,
            }
            for f in cat.frameworks.values()
        ]
        cols = ["id", "version", "memory_fraction", "memory_fraction_of", "kv_block_tokens", "max_num_batched_tokens", "async_scheduling"]
    _echo(rows, cols, as_json)


def _echo(rows: list[dict], cols: list[str], as_json: bool) -> None:
    if as_json:
        echo_json(rows)
    else:
        click.echo(table(cols, [[r[c] for c in cols] for r in rows]))


def _mix_rows() -> list[dict]:
    """The bundled length mixes: tokens per side, and whether they follow published percentiles (else a log-normal)."""
    from guideopt.catalog import length_mix_ids, load_length_mix

    mixes = [load_length_mix(i) for i in length_mix_ids()]
    return [
        {
            "id": mix.id,
            "name": mix.name,
            **{f"{side}_{key}": getattr(getattr(mix, side), key) for side in ("input", "output") for key in ("mean", "median", "max")},
            "percentiles": mix.input.percentiles is not None or mix.output.percentiles is not None,
            "sources": mix.sources,
        }
        for mix in mixes
    ]


def _lengths_in_words(row: dict) -> str:
    """A protocol's length sampling in a few words (``uniform_range below r=0.8``, ``dataset mlperf-openorca``)."""
    if row["length_sampling"] == "uniform_range":
        return f"uniform_range {row['range_form']} r={row['range_ratio']:g}"
    return f"dataset {row['length_mix']}" if row["length_sampling"] == "dataset" else row["length_sampling"]
