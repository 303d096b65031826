#!/usr/bin/env python3
"""Fit guideopt's calibration from published measurements and write catalogs/calibration.yaml.

Usage (from the repository root, with shared/ beside it):

    python scripts/fit_calibration.py [--data ../shared/data/measured] [--out catalogs/calibration.yaml]

Stage 1 — kernels (kernels.csv, guideopt/calibration/fit_devices.py): per GPU with timings,
the achieved fraction of dense peak FLOP/s (BF16 and FP8) with its growth in the token
count m, of HBM bandwidth, and of decode-attention bandwidth with its growth in the KV
length; per GPU with only achieved rates (AMD Instinct: hipBLASLt TFLOPS, HBM TB/s), the
ratios to the datasheet; per link class the all-reduce latency per call (and per rank)
and bus-bandwidth fraction (NVSwitch, PCIe, the xGMI mesh from RCCL rows).
Stage 2 — end to end (e2e.csv, guideopt/calibration/fit_engines.py): per engine and GPU
vendor, the CPU cost per decode step, per prefill pass, per sequence and per token in a
step, and the kernel speed, with the stage-1 values held fixed; the versions of the rows
are recorded.
Stage 3 — closed loop (guideopt/calibration/fit_closed_loop.py): the share of the lockstep
wait (clients that start together and send equal lengths stay in step) that the simulator
shows on the closed-loop configurations of the rows under their benchmark's protocol (the
shapes only; no measured value enters). Every value lists the rows it came
from. Nothing here looks up an expected answer: the fitted quantities are a handful of
physical rates and latencies shared by all rows.
"""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from guideopt.calibration.accuracy import prior_calibration  # noqa: E402
from guideopt.calibration.fit_closed_loop import fit_closed_loop  # noqa: E402
from guideopt.calibration.fit_devices import fit_devices, fit_links  # noqa: E402
from guideopt.calibration.fit_engines import engine_key, fit_engine  # noqa: E402
from guideopt.calibration.mapping import Case, cases_from_file  # noqa: E402
from guideopt.catalog import load_catalog  # noqa: E402
from guideopt.model.calibration import Calibration  # noqa: E402


def fit_frameworks(catalog, cal: Calibration, cases: list[Case], prior: Calibration) -> Calibration:
    by_key: dict[str, list[Case]] = defaultdict(list)
    for c in cases:
        by_key[engine_key(c, lambda g: catalog.gpus[g].vendor.value)].append(c)
    frameworks = dict(cal.frameworks)
    for key in sorted(by_key):
        result = fit_engine(catalog, cal, key, by_key[key], prior)
        if result is not None:
            frameworks[key] = result[0]
            print("stage 2:", key, result[0].model_dump(exclude={"fitted_from"}))
    return cal.model_copy(update={"frameworks": frameworks})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "measured")
    parser.add_argument("--out", type=Path, default=ROOT / "catalogs" / "calibration.yaml")
    parser.add_argument("--skip-e2e", action="store_true", help="fit kernels only")
    args = parser.parse_args()
    catalog = load_catalog()
    prior = catalog.calibration
    gpus, arch, default = fit_devices(catalog, args.data / "kernels.csv")
    cal = Calibration(
        version="fitted",
        generated_by="scripts/fit_calibration.py",
        default_device=default,
        arch=arch,
        gpus=gpus,
        links=fit_links(catalog, args.data / "kernels.csv", prior.links),
        frameworks=dict(prior.frameworks),
        moe=prior.moe,  # fitted on MoE kernel tables by scripts/fit_moe_kernels.py
        disaggregation=prior.disaggregation,  # fitted on disaggregated runs by scripts/fit_disagg.py
    )
    print("stage 1: devices", sorted(gpus))
    if not args.skip_e2e:
        # Dense models only: MoE rows are scored apart and never fitted (docs/accuracy-moe.md).
        cases = [c for c in cases_from_file(args.data / "e2e.csv", catalog, family="dense") if isinstance(c, Case)]
        cal = fit_frameworks(catalog, cal, cases, prior_calibration())
        cal = cal.model_copy(update={"closed_loop": fit_closed_loop(catalog, cal, cases)})
        print("stage 3: closed loop", cal.closed_loop.model_dump())
    header = "# Written by scripts/fit_calibration.py from shared/data/measured; rerun it to refit.\n"
    args.out.write_text(header + yaml.safe_dump(cal.model_dump(), sort_keys=False, width=200))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
