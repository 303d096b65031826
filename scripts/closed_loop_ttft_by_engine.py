#!/usr/bin/env python3
"""Closed-loop TTFT error by engine, and what a per-request cost outside the GPU would do to it.

    python scripts/closed_loop_ttft_by_engine.py [--data ../shared/data/measured/e2e.csv]

Issue 22, item 1 ("per-request and per-token CPU costs outside the GPU"): the analytic closed
loop (``guideopt.api.predict`` at the row's concurrency, the shipped calibration) is compared
with every closed-loop TTFT row of e2e.csv, grouped by engine, prompt length and model kind.
Two candidate per-request costs are then added to each prediction after the fact (the closed
loop's feedback, a longer cycle and so a lower rate, is left out: it only lowers the
prediction a little at these loads):

* a constant per request (front end, tokenisation, routing), and
* a CPU dispatch cost per layer of the prefill pass, the form aiconfigurator-core 0.12.0 uses
  for vLLM (``sdk/backends/vllm_backend.py``, ``_prefill_dispatch_overhead_ms``: 0.8 ms per layer).

Each is fitted per engine leave-one-model-out (the value minimising the other models' median
APE on a grid) and scored on the held-out model's rows. Writes a markdown table to stdout;
nothing here changes the model.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from collections import defaultdict
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from guideopt.api import predict  # noqa: E402
from guideopt.calibration.mapping import Case, cases_from_file  # noqa: E402
from guideopt.calibration.validate import validate  # noqa: E402
from guideopt.catalog import load_catalog  # noqa: E402

CONSTANT_MS = np.arange(0.0, 601.0, 10.0)  # grid of the per-request constant
PER_LAYER_MS = np.arange(0.0, 10.01, 0.1)  # grid of the per-layer dispatch cost


def _rows(data: Path) -> list[dict]:
    cat = load_catalog()
    cases = [c for c in cases_from_file(data, cat) if isinstance(c, Case) and c.workload == "closed_loop" and c.metric == "ttft_ms"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        report = validate(cases, lambda r: predict(r, cat))
    out = []
    for r in report.results:
        q = r.case.request
        arch = cat.models[q["model"]]
        out.append(
            {
                "pred": r.predicted,
                "meas": r.measured,
                "model": q["model"],
                "engine": cat.frameworks[q["framework"]].calibration_id,
                "moe": "MoE" if arch.moe else "dense",
                "isl": int(q.get("input_len") or 0),
                "layers": sum(g.count for g in arch.layer_groups),
            }
        )
    return out


def _ape(rows: list[dict], add) -> np.ndarray:
    return np.array([abs((r["pred"] + add(r)) / r["meas"] - 1.0) for r in rows])


def _held_out(rows: list[dict], grid: np.ndarray, term) -> tuple[float, dict[str, float]]:
    """Median held-out APE of ``term(r, value)`` fitted leave-one-model-out, and each fold's value."""
    by_model: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        by_model[r["model"]].append(r)
    errors, fitted = [], {}
    for model, held in by_model.items():
        rest = [r for r in rows if r["model"] != model]
        if not rest:
            continue
        best = min(grid, key=lambda v: float(np.median(_ape(rest, lambda r, v=v: term(r, v)))))
        fitted[model] = float(best)
        errors.extend(_ape(held, lambda r, v=best: term(r, v)))
    return (float(np.median(errors)) if errors else float("nan")), fitted


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "measured" / "e2e.csv")
    args = parser.parse_args()
    rows = _rows(args.data)
    groups: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        groups[f"{r['engine']}"].append(r)
        groups[f"{r['engine']}, {r['moe']}"].append(r)
        groups[f"{r['engine']}, prompt {r['isl']}"].append(r)
    print("| rows | n | median APE | pred/meas | + constant, held out (fold values, ms) | + per layer, held out (fold values, ms/layer) |")
    print("|---|---|---|---|---|---|")
    for name in sorted(groups):
        g = groups[name]
        if len(g) < 20 or len({r["model"] for r in g}) < 2:
            continue
        ratio = np.median([r["pred"] / r["meas"] for r in g])
        const, cv = _held_out(g, CONSTANT_MS, lambda r, v: v)
        layer, lv = _held_out(g, PER_LAYER_MS, lambda r, v: v * r["layers"])
        span = lambda d: f"{min(d.values()):g}-{max(d.values()):g}" if d else "-"  # noqa: E731
        print(
            f"| {name} | {len(g)} | {np.median(_ape(g, lambda r: 0.0)):.1%} | {ratio:.2f} | {const:.1%} ({span(cv)}) | {layer:.1%} ({span(lv)}) |"
        )


if __name__ == "__main__":
    main()
