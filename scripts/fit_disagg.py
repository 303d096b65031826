#!/usr/bin/env python3
"""Fit the disaggregated-serving terms (``Calibration.disaggregation``) on the measured disaggregated runs, held out.

    python scripts/fit_disagg.py --sample .../aiconfigurator_core/systems/silicon_sample.csv [--write]

Two mechanisms the kernel-level model leaves out (``docs/accuracy-disagg.md``):

* ``handoff_s``: a fixed cost per request handed from a prefill to a decode worker (router
  hop, KV transfer setup and handshake, the decode side's scheduling of the arriving request),
  added to the link's latency (``costs.disagg_kv.kv_link``), so the planner, ``predict --csv``
  and the simulator all pay it through ``kv_transfer_s``.
* ``lockstep_share``: the measured runs are closed loops whose clients start together with one
  fixed length, so prompts reach the prefill ranks in waves; ``analyses.disagg_deploy`` adds
  this share of the wave wait (``costs.disagg_pools.wave_wait_s``) to closed-loop TTFT. The
  disaggregated simulator cannot run closed loops, so the share cannot come from it as the
  aggregated one does; variant ``agg-share`` keeps the aggregated (simulator) share and fits
  the hand-off alone, variant ``fitted`` fits both.

Rows: those ``scripts/disagg_accuracy.py`` predicts (its ``request_of``). Each is built once with
no hand-off cost and its closed loop tabulated over rates (TTFT, E2E, TPOT means of
``disagg_stream_metrics``), with its wave wait W at share 1. For (share, h) the rate solves
C = λ·(E2E(λ) + share·W + h) on the table and TTFT = TTFT(λ) + share·W + h (the hand-off is
additive in ``kv_transfer_s``); this is ``predict_disagg``'s closed loop, interpolated.

Fit: the (share, h) on a grid that minimises the mean |log(predicted / measured)| of TTFT over the
training rows (robust to the few warm-up-polluted runs; TPOT is not used). Held out: leave one
model out and leave one system out, each fold fitted on the other rows only. ``--write`` stores
the fit on all rows (variant ``--variant``) in ``catalogs/calibration.yaml``'s
``disaggregation`` block, naming its rows; ``scripts/disagg_accuracy.py`` re-runs the folds with
the exact ``predict_disagg`` for its held-out tables.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import sys
import warnings
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))
from guideopt.analyses.disagg_deploy import EDGE, build_deployment  # noqa: E402
from guideopt.calibration.calibration_file import edit_calibration_file  # noqa: E402
from guideopt.catalog import Catalog, load_catalog  # noqa: E402
from guideopt.costs.disagg import disagg_max_rate, disagg_stream_metrics  # noqa: E402
from guideopt.costs.disagg_pools import wave_wait_s  # noqa: E402
from guideopt.errors import GuideoptError  # noqa: E402
from guideopt.model.calibration import DisaggregationTerms  # noqa: E402
from guideopt.units import MS_PER_S  # noqa: E402

SAMPLE_SOURCE = "aiconfigurator-core 0.12.0 systems/silicon_sample.csv, mode disagg"
SHARES = np.round(np.arange(0.0, 1.0001, 0.01), 2)  # lockstep share grid
HANDOFFS_S = np.round(np.arange(0.0, 1.0001, 0.005), 3)  # hand-off grid, seconds
RATE_POINTS = 400  # rates tabulated per row: half linear, half closing on the stability edge
VARIANTS = ("agg-share", "fitted")


@dataclass(frozen=True)
class Tab:
    """One measured run and its tabulated closed loop."""

    row: dict
    model: str
    gpu: str
    clients: float
    rates: np.ndarray  # requests/s, increasing
    ttft_ms: np.ndarray  # at each rate, no wave, no hand-off
    e2e_ms: np.ndarray
    tpot_ms: np.ndarray
    wave_ms: float  # the wave wait at share 1
    measured: dict[str, float]


def bare(cat: Catalog) -> Catalog:
    """``cat`` without disaggregation terms: no hand-off, the aggregated share."""
    return with_terms(cat, DisaggregationTerms(fitted_from="none (before scripts/fit_disagg.py)"))


def with_terms(cat: Catalog, terms: DisaggregationTerms) -> Catalog:
    return dataclasses.replace(cat, calibration=cat.calibration.model_copy(update={"disaggregation": terms}))


def unfitted(cat: Catalog) -> Catalog:
    """The model as it was before these terms: no hand-off cost and no wave."""
    return with_terms(cat, DisaggregationTerms(lockstep_share=0.0, fitted_from="unfitted"))


def tabulate(req, row: dict, gpu: str, cat: Catalog) -> Tab:
    dep = build_deployment(req, bare(cat))
    clients = float(req.concurrency or 0)
    top = float(disagg_max_rate(dep.arch, dep.opts, dep.lengths)[0]) * EDGE
    u = np.unique(np.concatenate([np.linspace(1e-4, 0.9, RATE_POINTS // 2), 1.0 - np.geomspace(0.1, 1.0 - EDGE, RATE_POINTS // 2)]))
    rates = top * u
    m = disagg_stream_metrics(dep.arch, dep.opts.take(np.zeros(rates.size, dtype=np.int64)), dep.lengths, rates, percentiles=())
    wave = float(wave_wait_s(dep.arch, dep.opts.prefill, dep.opts.prefill_workers, dep.lengths.input_len[None, :], clients)[0, 0])
    measured = {"ttft_ms": float(row["silicon_ttft_ms"]), "tpot_ms": float(row["silicon_tpot_ms"])}
    return Tab(row, req.model, gpu, clients, rates, m.ttft_ms.mean, m.e2e_ms.mean, m.tpot_ms.mean, wave * MS_PER_S, measured)


def load_tabs(sample: Path, cat: Catalog) -> list[Tab]:
    from disagg_accuracy import request_of

    tabs = []
    for row in csv.DictReader(sample.open()):
        if row["mode"] != "disagg":
            continue
        got = request_of(row, cat)
        if isinstance(got, str):
            continue
        try:
            tabs.append(tabulate(got[0], row, got[1], cat))
        except GuideoptError:
            continue
    return tabs


def predict_tab(t: Tab, share: float, handoff_s: float) -> tuple[float, float]:
    """(TTFT ms, TPOT ms) of the run's closed loop at (share, hand-off)."""
    extra = share * t.wave_ms + handoff_s * MS_PER_S
    inside = t.rates * (t.e2e_ms + extra) / MS_PER_S - t.clients  # increasing in the rate
    rate = float(np.interp(0.0, inside, t.rates)) if inside[0] < 0 else float(t.rates[0])
    return float(np.interp(rate, t.rates, t.ttft_ms)) + extra, float(np.interp(rate, t.rates, t.tpot_ms))


def ttft_matrix(tabs: list[Tab], shares: np.ndarray) -> np.ndarray:
    """Predicted TTFT (ms) at no hand-off, rows × shares (``fit`` adds the hand-off per grid point)."""
    return np.array([[predict_tab(t, float(s), 0.0)[0] for s in shares] for t in tabs])


def fit(tabs: list[Tab], share: float | None) -> tuple[float, float]:
    """(share, hand-off s) minimising mean |log(pred/meas)| of TTFT over ``tabs`` (``share`` fixed if given).

    The hand-off's effect on the rate is second order (it adds h to an E2E of seconds), so the
    grid adds h to TTFT at the share's rate, then the chosen point is solved exactly."""
    shares = np.array([share]) if share is not None else SHARES
    base = ttft_matrix(tabs, shares)  # rows × shares, ms
    meas = np.array([t.measured["ttft_ms"] for t in tabs])
    pred = base[:, :, None] + HANDOFFS_S[None, None, :] * MS_PER_S
    loss = np.abs(np.log(pred / meas[:, None, None])).mean(axis=0)
    i, j = np.unravel_index(int(np.argmin(loss)), loss.shape)
    return float(shares[i]), float(HANDOFFS_S[j])


def folds(tabs: list[Tab], key: Callable[[Tab], str]) -> dict[str, list[Tab]]:
    groups: dict[str, list[Tab]] = defaultdict(list)
    for t in tabs:
        groups[key(t)].append(t)
    return dict(groups)


FOLD_KEYS: dict[str, Callable] = {"model": lambda t: t.model, "system": lambda t: t.gpu}


def fold_fits(tabs: list[Tab], by: str, share: float | None) -> dict[str, tuple[float, float]]:
    """Per held-out group of ``by``: the fit on every other row."""
    key = FOLD_KEYS[by]
    return {g: fit([t for t in tabs if key(t) != g], share) for g in folds(tabs, key)}


def report(pairs: list[tuple[Tab, float, float]], title: str) -> None:
    def line(name, ps):
        ttft = [abs(p / t.measured["ttft_ms"] - 1) for t, p, _ in ps]
        tpot = [abs(q / t.measured["tpot_ms"] - 1) for t, _, q in ps]
        ratio = np.median([p / t.measured["ttft_ms"] for t, p, _ in ps])
        print(f"  {name:34s} {len(ps):4d}  TTFT {np.median(ttft):6.1%} (pred/meas {ratio:.2f})  TPOT {np.median(tpot):6.1%}")

    print(title)
    line("all", pairs)
    for by, key in FOLD_KEYS.items():
        for g in sorted(folds([p[0] for p in pairs], key)):
            line(f"{by} {g}", [p for p in pairs if key(p[0]) == g])


def terms_of(share: float, handoff_s: float, variant: str, tabs: list[Tab], cat: Catalog) -> DisaggregationTerms:
    systems = ", ".join(sorted({t.gpu for t in tabs}))
    models = ", ".join(sorted({t.model for t in tabs}))
    rows = f"{len(tabs)} closed-loop runs of {SAMPLE_SOURCE} ({models}; {systems})"
    if variant == "agg-share":
        note = f"handoff_s fitted by scripts/fit_disagg.py on {rows}; lockstep share: closed_loop's (simulator)"
        return DisaggregationTerms(handoff_s=handoff_s, lockstep_share=None, fitted_from=note)
    note = f"handoff_s and lockstep_share fitted together by scripts/fit_disagg.py on {rows}"
    return DisaggregationTerms(handoff_s=handoff_s, lockstep_share=share, fitted_from=note)


def write_terms(path: Path, terms: DisaggregationTerms) -> None:
    edit_calibration_file(path, lambda data: data.update(disaggregation=terms.model_dump()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sample", type=Path, default=Path("/tmp/aic/aiconfigurator_core/systems/silicon_sample.csv"))
    parser.add_argument("--variant", choices=VARIANTS, default="fitted", help="what --write stores")
    parser.add_argument("--write", action="store_true", help="store the all-rows fit in catalogs/calibration.yaml")
    parser.add_argument("--out", type=Path, default=ROOT / "catalogs" / "calibration.yaml")
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    cat = load_catalog()
    tabs = load_tabs(args.sample, cat)
    print(f"{len(tabs)} runs tabulated")
    report([(t, *predict_tab(t, 0.0, 0.0)) for t in tabs], "unfitted (no wave, no hand-off)")
    chosen = (0.0, 0.0)
    for variant in VARIANTS:
        share = cat.calibration.closed_loop.lockstep_share if variant == "agg-share" else None
        every = fit(tabs, share)
        print(f"\n{variant}: all rows → share {every[0]:.2f}, handoff {every[1] * MS_PER_S:.0f} ms")
        for by in FOLD_KEYS:
            fits = fold_fits(tabs, by, share)
            print(f"  leave one {by} out: " + "; ".join(f"{g}: share {s:.2f}, {h * MS_PER_S:.0f} ms" for g, (s, h) in sorted(fits.items())))
            report([(t, *predict_tab(t, *fits[FOLD_KEYS[by](t)])) for t in tabs], f"  {variant}, leave one {by} out")
        if variant == args.variant:
            chosen = every
    if args.write:
        terms = terms_of(*chosen, args.variant, tabs, cat)
        write_terms(args.out, terms)
        print(f"wrote the disaggregation block of {args.out}: {terms.model_dump()}")


if __name__ == "__main__":
    main()
