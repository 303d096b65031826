#!/usr/bin/env python3
"""Fit the fused-MoE kernel terms of catalogs/calibration.yaml (``moe:``) to the measured MoE
kernel tables of the aiconfigurator-core 0.12.0 package (Apache-2.0).

    pip download --no-deps aiconfigurator-core==0.12.0 -d /tmp/aic && unzip -q /tmp/aic/*.whl -d /tmp/aic
    pip install pandas pyarrow          # to read the package's parquet tables (this script only)
    python scripts/fit_moe_kernels.py /tmp/aic/aiconfigurator_core/systems/data [--out catalogs/calibration.yaml]

Per system (H100/H200/B200/B300/GB200/GB300 SXM, A100, L40S) and engine (vLLM, SGLang,
TensorRT-LLM) it reads the broadest version's ``moe/<engine>/<version>/moe_perf.parquet`` (most shapes), keeps
the precisions guideopt plans (bf16, fp8 and fp8 block-scaled, nvfp4 on Blackwell, MXFP4
weight-only on Hopper, int4 weight-only) and, where an engine ships several kernels for one
shape, the fastest (the one its autotuner picks). It prints the error per engine and GPU,
fitted and with that GPU held out, and rewrites only the ``moe`` block of the calibration.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from guideopt.calibration.calibration_file import edit_calibration_file  # noqa: E402
from guideopt.calibration.fit_moe import BALANCED, SKEWED, MoeKernelRow, fit_moe  # noqa: E402
from guideopt.catalog import load_catalog  # noqa: E402
from guideopt.model.dtype import Dtype  # noqa: E402

SYSTEMS = {
    "h100_sxm": "h100-sxm",
    "h200_sxm": "h200-sxm",
    "b200_sxm": "b200",
    "b300_sxm": "b300",
    "gb200": "gb200",
    "gb300": "gb300",
    "a100_sxm": "a100-sxm4-80gb",
    "l40s": "l40s",
}
ENGINES = ("vllm", "sglang", "trtllm")
# Package precision -> guideopt weight precision, and the architectures where that kernel is
# the path guideopt prices (w4a16 MXFP4 is the weight-only path of Hopper; Blackwell runs FP4 natively).
DTYPES = {
    "bfloat16": (Dtype.BF16, None),
    "fp8": (Dtype.FP8, None),
    "fp8_block": (Dtype.FP8, None),
    "nvfp4": (Dtype.FP4, "blackwell"),
    "w4a16_mxfp4": (Dtype.FP4, "hopper"),
    "int4_wo": (Dtype.INT4, None),
}
MAX_ROWS_PER_TABLE = 6000  # a deterministic thinning keeps the fit to a minute


def _broadest(folder: Path) -> Path | None:
    """The version whose table covers most shapes (later collections are often one model's)."""
    versions = [p for p in folder.iterdir() if (p / "moe_perf.parquet").is_file()] if folder.is_dir() else []
    return max(versions, key=lambda p: ((p / "moe_perf.parquet").stat().st_size, p.name), default=None)


def read_rows(data: Path, catalog) -> list[MoeKernelRow]:
    import pandas as pd

    rows: list[MoeKernelRow] = []
    for system, gpu in SYSTEMS.items():
        arch = catalog.gpu(gpu).arch
        for engine in ENGINES:
            version = _broadest(data / system / "moe" / engine)
            if version is None:
                continue
            df = pd.read_parquet(version / "moe_perf.parquet")
            df = df[df.distribution.isin([BALANCED, SKEWED]) & df.moe_dtype.isin(list(DTYPES))]
            df = df[[DTYPES[d][1] in (None, arch) for d in df.moe_dtype]]
            keys = [
                "moe_dtype",
                "num_tokens",
                "hidden_size",
                "inter_size",
                "topk",
                "num_experts",
                "moe_tp_size",
                "moe_ep_size",
                "distribution",
            ]
            gated = ~df.kernel_source.str.contains("nongated") if "kernel_source" in df else True
            df = df.assign(gated=gated)
            df = df.groupby([*keys, "gated"], as_index=False)["latency"].min()
            if len(df) > MAX_ROWS_PER_TABLE:
                df = df.iloc[:: -(-len(df) // MAX_ROWS_PER_TABLE)]
            source = f"aiconfigurator-core 0.12.0 systems/data/{system}/moe/{engine}/{version.name}/moe_perf.parquet"
            for r in df.itertuples(index=False):
                rows.append(
                    MoeKernelRow(
                        gpu=gpu,
                        engine=engine,
                        dtype=DTYPES[r.moe_dtype][0],
                        tokens=int(r.num_tokens),
                        hidden=int(r.hidden_size),
                        inter=int(r.inter_size),
                        experts=int(r.num_experts),
                        topk=int(r.topk),
                        moe_tp=int(r.moe_tp_size),
                        moe_ep=int(r.moe_ep_size),
                        gated=bool(r.gated),
                        distribution=str(r.distribution),
                        latency_ms=float(r.latency),
                        source=source,
                    )
                )
            print(f"{system} {engine} {version.name}: {len(df)} rows")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", type=Path, help="aiconfigurator_core/systems/data of the unpacked package")
    parser.add_argument("--out", type=Path, default=ROOT / "catalogs" / "calibration.yaml")
    args = parser.parse_args()
    catalog = load_catalog()
    rows = read_rows(args.data, catalog)
    moe, errors = fit_moe(catalog, rows)
    for key, e in sorted(errors.items()):
        held = f"{e['held_out_gpu']:.1%}" if "held_out_gpu" in e else "-"
        print(f"{key:28s} rows {int(e['rows']):5d}  fitted {e['fitted']:.1%}  GPU held out {held}")
    print("moe:", moe.model_dump())
    edit_calibration_file(args.out, lambda data: data.update(moe=moe.model_dump()))
    print(f"wrote the moe block of {args.out}")


if __name__ == "__main__":
    main()
