#!/usr/bin/env python3
"""Write docs/accuracy-moe.md: guideopt's error on the measured mixture-of-experts rows.

    python scripts/moe_accuracy.py [--data ../shared/data/measured/e2e.csv] [--out docs/accuracy-moe.md]

No MoE row enters any fit: the engine terms are fitted on dense models
(scripts/fit_calibration.py) and the fused-MoE kernel terms on kernel timings
(scripts/fit_moe_kernels.py). Every figure here is therefore out of sample for each model,
each source and each system at once (leave-one-model-out, leave-one-system-out and
leave-one-source-out coincide with the fitted figures). Breakdowns: model family, system,
precision, layout family (TP, TEP, DEP, attention DP with TP experts), expert-parallel size,
batch band and engine, per workload and metric.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from guideopt.api import predict  # noqa: E402
from guideopt.calibration.aggregate import batch_bucket, cases_by, stats  # noqa: E402
from guideopt.calibration.intervals_fit import HIGH_Q, LOW_Q  # noqa: E402
from guideopt.calibration.mapping import Case, cases_from_file  # noqa: E402
from guideopt.calibration.results import Report  # noqa: E402
from guideopt.calibration.validate import validate  # noqa: E402
from guideopt.catalog import load_catalog  # noqa: E402
from guideopt.costs.intervals import MIN_RESIDUALS, MIN_SOURCES, MOE_PREFIX, regime_engine, regime_keys  # noqa: E402
from guideopt.model.calibration import ErrorBand  # noqa: E402

METRICS = ("tpot_ms", "ttft_ms", "output_throughput_tok_s", "batch_latency_s")


def layout_family(c: Case) -> str:
    r = c.request
    dp, ep = r.get("attention_dp", 1), r.get("moe_ep", 1)
    if dp > 1:
        return "DEP" if ep > 1 else "attention DP, TP experts"
    return "TEP" if ep > 1 else "TP"


def family(c: Case) -> str:
    name = c.request["model"].split("/")[-1]
    for prefix in ("DeepSeek", "Kimi", "GLM", "Qwen3.5", "Qwen3", "MiniMax", "gpt-oss", "Mixtral", "Llama-4", "Nemotron"):
        if name.startswith(prefix) or prefix in name:
            return prefix
    return name


KEYS: dict[str, Callable[[Case], str]] = {
    "model family": family,
    "system": lambda c: c.request["gpu"],
    "precision": lambda c: c.request["dtype"],
    "layout family": layout_family,
    "expert-parallel size": lambda c: f"ep {c.request.get('moe_ep', 1)}",
    "batch band (clients)": lambda c: batch_bucket(c.request),
    "engine": lambda c: c.request["framework"],
}


def _row(name: str, results) -> str:
    s = stats(results)
    return f"| {name} | {s.count} | {s.median_ape:.1%} | {s.median_ratio:.2f} |"


def markdown(report: Report) -> str:
    lines = [
        "# Accuracy on mixture-of-experts models",
        "",
        "Written by `python scripts/moe_accuracy.py` (about five minutes). Median absolute error and median predicted ÷ measured.",
        "No MoE row enters a fit (engine terms: dense rows; fused-MoE terms: kernel timings), so each figure is held out by",
        "model, by system and by source at once.",
        f"{len(report.results)} MoE rows compared ({report.distinct_configs} configurations, {report.seconds:.0f} s).",
        "",
    ]
    by_workload = cases_by(report.results, lambda c: c.workload)
    for workload in sorted(by_workload):
        for metric in METRICS:
            rows = [r for r in by_workload[workload] if r.case.metric == metric]
            if not rows:
                continue
            lines += [f"## {workload}: {metric}", "", "| group | n | median error | pred/meas |", "|---|---|---|---|", _row("all", rows)]
            for title, key in KEYS.items():
                groups = cases_by(rows, key)
                lines += [_row(f"{title}: {g}", groups[g]) for g in sorted(groups)]
            lines.append("")
    return "\n".join(lines) + "\n"


def moe_bands(report: Report, cat) -> dict[str, ErrorBand]:
    """Error bands of MoE regimes ("moe:" keys, same back-off as the dense ones): 10th and 90th
    percentiles of log(measured / predicted). No MoE row is fitted, so the residuals are out of
    sample as they stand (no widening); ``sources`` counts distinct models behind a band."""
    members: dict[str, list[tuple[float, str]]] = defaultdict(list)
    for r in report.results:
        if r.predicted <= 0:
            continue
        q = r.case.request
        ranks = max(int(q.get("num_gpus", 1)) // (int(q.get("tp", 1)) * int(q.get("pp", 1))), 1)  # attention-DP ranks x replicas
        load = (q.get("concurrency") or q.get("batch") or 1) / ranks
        gpu = cat.gpus[q["gpu"]]
        engine = regime_engine(cat.frameworks[q["framework"]].calibration_id, gpu.vendor.value)
        keys = regime_keys(r.case.metric, gpu.arch, engine, load, q.get("tp", 1), r.case.workload == "closed_loop", moe=True)
        for key in keys:
            if key.startswith(MOE_PREFIX):
                members[key].append((math.log(r.measured / r.predicted), q["model"]))
    out = {}
    for key, rows in sorted(members.items()):
        models = len({m for _, m in rows})
        if len(rows) >= MIN_RESIDUALS and models >= MIN_SOURCES:
            q10, q90 = np.quantile([x for x, _ in rows], (LOW_Q, HIGH_Q))
            out[key] = ErrorBand(q10=round(float(q10), 4), q90=round(float(q90), 4), n=len(rows), sources=models)
    return out


def _write_bands(found: dict[str, ErrorBand], path: Path) -> None:
    text = path.read_text()
    header = "".join(line for line in text.splitlines(keepends=True) if line.startswith("#"))
    data = yaml.safe_load(text)
    kept = {k: v for k, v in (data.get("intervals") or {}).items() if not k.startswith(MOE_PREFIX)}
    data["intervals"] = {**kept, **{k: v.model_dump() for k, v in found.items()}}
    path.write_text(header + yaml.safe_dump(data, sort_keys=False, width=200))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "measured" / "e2e.csv")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "accuracy-moe.md")
    args = parser.parse_args()
    cat = load_catalog()
    start = time.perf_counter()
    report = validate(cases_from_file(args.data, cat, family="moe"), lambda r: predict(r, cat))
    report.seconds = time.perf_counter() - start
    args.out.write_text(markdown(report))
    found = moe_bands(report, cat)
    _write_bands(found, ROOT / "catalogs" / "calibration.yaml")
    print(f"wrote {args.out}: {len(report.results)} rows; {len(found)} MoE error bands in catalogs/calibration.yaml")


if __name__ == "__main__":
    main()
