#!/usr/bin/env python3
"""Fit the engines' first-token path cost (catalogs/calibration.yaml ``frameworks.<engine>.first_token_us_per_layer``)
on the measured closed-loop TTFT rows of e2e.csv, and print its held-out effect.

    python scripts/fit_first_token.py [--data ../shared/data/measured/e2e.csv] [--out catalogs/calibration.yaml]
        [--cache PROBED.pkl] [--folds FOLDS.json] [--jobs 2] [--dry-run]

About five minutes on two cores (every row predicted twice; ``guideopt.calibration.fit_first_token``).
Per engine the term is fitted on all rows, and refitted without each model (leave-one-model-out)
and each GPU (leave-one-system-out) for the table; it is kept only where the leave-one-model-out
error is lower with it. ``--folds`` adds each held-out unit's value to a folds file of
``fit_moe_serving.py --folds`` (read by moe_accuracy.py and disagg_accuracy.py ``--serving-folds``); run it after
that script, which writes the file anew.
"""

from __future__ import annotations

import argparse
import json
import pickle
import sys
import warnings
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from guideopt.api import predict  # noqa: E402
from guideopt.calibration.calibration_file import edit_calibration_file  # noqa: E402
from guideopt.calibration.fit_first_token import TERM, Probed, chosen, fit_values, held_out_predicted, held_out_values, probe, ttft_rows  # noqa: E402
from guideopt.calibration.mapping import cases_from_file  # noqa: E402
from guideopt.calibration.validate import validate  # noqa: E402
from guideopt.catalog import load_catalog  # noqa: E402


def _run(cases, cat):
    with warnings.catch_warnings():  # each model's notes once per row would flood the log
        warnings.simplefilter("ignore")
        return validate(cases, lambda r: predict(r, cat))


def _median_ape(pred: np.ndarray, meas: np.ndarray) -> float:
    return float(np.median(np.abs(pred / meas - 1.0))) if len(pred) else float("nan")


def probed_rows(data: Path, cache: Path | None, jobs: int) -> Probed:
    if cache is not None and cache.is_file():
        return pickle.loads(cache.read_bytes())
    cat = load_catalog()
    cases = ttft_rows(cases_from_file(data, cat))
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        p = probe(cases, cat, _run, pool.map)
    if cache is not None:
        cache.write_bytes(pickle.dumps(p))
    return p


def report(p: Probed, kept: list[str]) -> list[str]:
    """Median TTFT error per engine and model kind: without the term, and with it held out by model and by GPU."""
    by_model = held_out_predicted(p, engines=kept)
    by_gpu = held_out_predicted(p, p.gpu, engines=kept)
    lines = ["| rows | n | without | held out by model | held out by GPU | pred/meas (by model) |", "|---|---|---|---|---|---|"]
    for engine in [*sorted(set(p.engine)), "all"]:
        for kind, mask in (("", np.ones(len(p.moe), dtype=bool)), (", MoE", p.moe), (", dense", ~p.moe)):
            rows = np.nonzero(((p.engine == engine) | (engine == "all")) & mask)[0]
            if not len(rows):
                continue
            errs = [_median_ape(x[rows], p.measured[rows]) for x in (p.base, by_model, by_gpu)]
            ratio = float(np.median(by_model[rows] / p.measured[rows]))
            lines.append(f"| {engine}{kind} | {len(rows)} | " + " | ".join(f"{e:.1%}" for e in errs) + f" | {ratio:.2f} |")
    return lines


def fold_spans(p: Probed) -> str:
    spans = []
    for by, units in (("model", p.unit), ("GPU", p.gpu)):
        folds = held_out_values(p, units).values()
        for engine in sorted(set(p.engine)):
            vals = [f[engine] for f in folds if engine in f]
            spans.append(f"{engine} by {by}: {min(vals):g}-{max(vals):g}")
    return "; ".join(spans)


def write_values(path: Path, values: dict[str, float], note: str) -> None:
    def edit(data: dict) -> None:
        for key, value in values.items():
            entry = data["frameworks"][key]
            entry[TERM] = value
            entry["serving_terms_from"] = f"{entry.get('serving_terms_from', '').split('; ' + TERM)[0]}; {TERM}: {note}".lstrip("; ")

    edit_calibration_file(path, edit)


def add_to_folds(path: Path, p: Probed, kept: list[str]) -> None:
    folds = json.loads(path.read_text()) if path.is_file() else {"model": {}, "system": {}}
    for by, units in (("model", p.unit), ("system", p.gpu)):
        for unit, values in held_out_values(p, units).items():
            entry = folds[by].setdefault(unit, {})
            for engine, value in values.items():
                entry.setdefault(engine, {})[TERM] = value if engine in kept else 0.0
    path.write_text(json.dumps(folds, indent=1, sort_keys=True))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "measured" / "e2e.csv")
    parser.add_argument("--out", type=Path, default=ROOT / "catalogs" / "calibration.yaml")
    parser.add_argument("--cache", type=Path, default=None, help="cache of the rows' two predictions (read if present, else written)")
    parser.add_argument("--folds", type=Path, default=None, help="add each held-out unit's value to this folds JSON")
    parser.add_argument("--jobs", type=int, default=2, help="processes predicting the two probes")
    parser.add_argument("--dry-run", action="store_true", help="print the fit and the held-out table; write nothing")
    args = parser.parse_args()
    p = probed_rows(args.data, args.cache, args.jobs)
    kept = chosen(p)
    print("\n".join(report(p, kept)))
    print("fold values (µs per layer):", fold_spans(p))
    values = {e: (v if e in kept else 0.0) for e, v in fit_values(p).items()}
    print("kept:", kept, "fitted on every row (µs per layer):", values)
    if args.folds is not None:
        add_to_folds(args.folds, p, kept)
        print(f"added the held-out values to {args.folds}")
    if not args.dry_run:
        lines = sorted({c.line for c in p.cases})
        note = (
            f"scripts/fit_first_token.py: {len(p.cases)} closed-loop TTFT rows of e2e.csv (lines {lines[0]}-{lines[-1]}), "
            "median |log error|; kept only where its leave-one-model-out error is lower (docs/serving-model.md)"
        )
        write_values(args.out, values, note)
        print(f"wrote {TERM} of {sorted(values)} to {args.out}")


if __name__ == "__main__":
    main()
