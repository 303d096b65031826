#!/usr/bin/env python3
"""Write docs/accuracy.md: guideopt's prediction error against published measurements.

    python scripts/accuracy_report.py [--data ../shared/data/measured/e2e.csv]

Runs the same comparison as `guideopt validate` three times: with the uncalibrated priors,
with the fitted calibration, and leave-one-GPU-out (each measured GPU scored with its own
device fit removed), and writes the tables with the commands that reproduce them.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from guideopt.calibration.accuracy import leave_one_gpu_out, validate_with  # noqa: E402
from guideopt.calibration.validate import per_metric, report_markdown  # noqa: E402


def _summary(reports: dict[str, object]) -> str:
    lines = ["| metric | " + " | ".join(f"{k}: n / median APE / MAPE" for k in reports) + " |", "|---|" + "---|" * len(reports)]
    metrics = sorted({m for r in reports.values() for m in per_metric(r.results)})
    for metric in metrics:
        cells = []
        for r in reports.values():
            s = per_metric(r.results).get(metric)
            cells.append(f"{s.count} / {s.median_ape:.1%} / {s.mean_ape:.1%}" if s else "–")
        lines.append(f"| {metric} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "measured" / "e2e.csv")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "accuracy.md")
    args = parser.parse_args()
    reports = {
        "prior (uncalibrated)": validate_with(args.data, "prior"),
        "fitted": validate_with(args.data, "fitted"),
        "leave-one-GPU-out": leave_one_gpu_out(args.data),
    }
    text = f"""# Prediction accuracy

How far guideopt's predictions are from published measurements, reported per metric the
way GUIDE's Table 2 does (median and mean absolute percentage error). GUIDE reports
25–55 %.

Reproduce: `python scripts/accuracy_report.py` (this file), or one run at a time with
`guideopt validate ../shared/data/measured/e2e.csv [--calibration prior] [--leave-one-gpu-out]`.
The calibration itself is refitted by `python scripts/fit_calibration.py`.

## Summary

{_summary(reports)}

* **prior**: plain roofline with round generic efficiencies (`catalogs/calibration-prior.yaml`).
* **fitted**: `catalogs/calibration.yaml` — per-GPU achieved fractions of peak FLOP/s and HBM
  bandwidth from kernel timings, all-reduce latency and bus bandwidth per link class, and per
  engine fixed step costs and kernel speed from end-to-end rows.
* **leave-one-GPU-out**: each measured GPU scored with its own device fit removed (it falls back
  to its family's or all other GPUs' median, as an unmeasured GPU does). Engine parameters are
  shared by all GPUs and stay fitted.

### What the numbers cover, and what they do not
* Rows of models, GPUs or precisions guideopt does not model (DeepSeek/MiniMax/gpt-oss MoE
  models, B300/GB200, fp4) and open-loop request-rate runs are skipped; the counts are below.
* `ttft_ms` mixes static-batch TTFT (well predicted) with closed-loop serving TTFT from the
  aiconfigurator sample, whose values fall as concurrency rises from 8 to 32 (e.g. 550 → 225 ms
  for Llama-3.1-8B on one H100 at 1024/512): a benchmark warm-up burst, not steady state. Those
  rows are not used for fitting and dominate the TTFT error; see the breakdown by batch below.
* Static batches that do not fit in the KV cache at once run in waves; LMDeploy reports per-step
  latencies of whatever runs, which guideopt's whole-batch metrics do not mirror (breakdown by waves).

## Fitted calibration, full breakdown

{report_markdown(reports["fitted"])}
"""
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(_summary(reports))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
