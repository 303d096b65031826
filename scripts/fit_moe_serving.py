#!/usr/bin/env python3
"""Fit the engines' MoE serving terms (catalogs/calibration.yaml ``frameworks.<engine>``:
``async_decode_step_overhead_ms`` and ``moe_layer_overhead_us``) on the measured MoE
closed-loop TPOT rows, and print their leave-one-model-out effect.

    python scripts/fit_moe_serving.py [--data ../shared/data/measured/e2e.csv] [--out catalogs/calibration.yaml] [--dry-run]

About five minutes (three predictions of every row; ``guideopt.calibration.fit_moe_serving``).
For each model the terms are refitted on the other models' rows and its rows predicted with
them; the table compares that held-out error with the terms at 0 and with the shipped values.
Per engine, a term is kept only where the leave-one-model-out error is lower with it (``chosen_terms``).
"""

from __future__ import annotations

import argparse
import json
import pickle
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from guideopt.api import predict  # noqa: E402
from guideopt.calibration.calibration_file import edit_calibration_file  # noqa: E402
from guideopt.calibration.fit_moe_serving import (  # noqa: E402
    ASYNC,
    MOE_LAYER,
    Probed,
    chosen_terms,
    fit_terms,
    held_out_predicted,
    held_out_terms,
    probe,
    serving_rows,
)
from guideopt.calibration.mapping import cases_from_file  # noqa: E402
from guideopt.calibration.validate import validate  # noqa: E402
from guideopt.catalog import load_catalog  # noqa: E402


def _median_ape(pred: np.ndarray, meas: np.ndarray) -> float:
    return float(np.median(np.abs(pred / meas - 1.0))) if len(pred) else float("nan")


def report(p: Probed, chosen: dict[str, tuple[str, ...]]) -> list[str]:
    """Median error per engine and model: before (no serving terms), terms 0, and with the chosen terms held out by
    model (leave-one-model-out) and by GPU (leave-one-system-out)."""
    held = held_out_predicted(p, chosen)
    by_gpu = held_out_predicted(p, chosen, np.array([c.request["gpu"] for c in p.cases]))
    lines = [
        "| engine | model | rows | before | terms 0 | held out by model | held out by GPU |",
        "|---|---|---|---|---|---|---|",
    ]
    for engine in [*sorted(set(p.engine)), "all"]:
        for model in [*sorted(set(p.model[p.engine == engine])), "all"]:
            rows = np.nonzero(((p.engine == engine) | (engine == "all")) & ((p.model == model) | (model == "all")))[0]
            errs = [_median_ape(x[rows], p.measured[rows]) for x in (p.before(np.arange(len(p.cases))), p.base, held, by_gpu)]
            lines.append(f"| {engine} | {model} | {len(rows)} | " + " | ".join(f"{e:.1%}" for e in errs) + " |")
    return lines


def probed_rows(data: Path, cache: Path | None) -> Probed:
    if cache is not None and cache.is_file():
        return pickle.loads(cache.read_bytes())
    cat = load_catalog()
    p = probe(serving_rows(cases_from_file(data, cat, family="moe")), cat, lambda cs, c: validate(cs, lambda r: predict(r, c)))
    if cache is not None:
        cache.write_bytes(pickle.dumps(p))
    return p


def write_terms(path: Path, terms: dict, note: str) -> None:
    def edit(data: dict) -> None:
        for key, values in terms.items():  # vendor entries ("vllm@amd") keep theirs: no MoE serving row of theirs
            entry = data["frameworks"][key]
            entry[ASYNC] = values[ASYNC]
            entry[MOE_LAYER] = values[MOE_LAYER]
            entry["serving_terms_from"] = note

    edit_calibration_file(path, edit)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "measured" / "e2e.csv")
    parser.add_argument("--out", type=Path, default=ROOT / "catalogs" / "calibration.yaml")
    parser.add_argument("--probed", type=Path, default=None, help="cache of the rows' three predictions (read if present, else written)")
    parser.add_argument("--dry-run", action="store_true", help="print the fit and the held-out table; write nothing")
    parser.add_argument(
        "--folds", type=Path, default=None, help="write each held-out unit's terms (JSON) for disagg_accuracy.py --serving-folds"
    )
    args = parser.parse_args()
    p = probed_rows(args.data, args.probed)
    chosen = chosen_terms(p)
    print("\n".join(report(p, chosen)))
    terms = fit_terms(p, fitted=chosen)
    print("kept per engine:", chosen, "fitted on every row:", terms)
    if args.folds is not None:
        folds = {"model": held_out_terms(p, chosen), "system": held_out_terms(p, chosen, np.array([c.request["gpu"] for c in p.cases]))}
        args.folds.write_text(json.dumps(folds, indent=1, sort_keys=True))
        print(f"wrote the held-out terms of {len(folds['model'])} models and {len(folds['system'])} GPUs to {args.folds}")
    if not args.dry_run:
        lines = sorted({c.line for c in p.cases})
        note = (
            f"scripts/fit_moe_serving.py: {len(p.cases)} MoE closed-loop TPOT rows of e2e.csv (lines {lines[0]}-{lines[-1]}), "
            "median |log error|, grid search; each term kept only where its leave-one-model-out error is lower (docs/accuracy-moe.md)"
        )
        write_terms(args.out, terms, note)
        print(f"wrote the serving terms of {sorted(terms)} to {args.out}")


if __name__ == "__main__":
    main()
