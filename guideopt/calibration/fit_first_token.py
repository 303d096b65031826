"""Fit each engine's first-token path cost (``first_token_us_per_layer``) on measured closed-loop TTFT rows.

The term is the online server's time on a request's path to its first token outside the GPU
steps, per model layer (``costs.metrics.first_token_path_s``). It adds to TTFT, and so to the
closed loop's cycle; the cycle's share is small, so a row's TTFT is linear in it to within the
probe's reading: two predictions per row (0 and ``PROBE_US``) give its value at any other.
Per engine the fit is the value of ``GRID_US`` with the least median absolute log error,
refitted without each held-out unit (leave-one-model-out: ``fit_moe_serving.held_out_unit``;
leave-one-system-out: the GPU); the term is kept only where the held-out error is lower than
without it (``chosen``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np

from guideopt.calibration.cases import Case
from guideopt.calibration.fit_moe_serving import held_out_unit, with_terms
from guideopt.calibration.results import Report
from guideopt.catalog import Catalog

TERM = "first_token_us_per_layer"
PROBE_US = 1000.0
GRID_US = np.arange(0.0, 8000.0 + 1.0, 25.0)
METRIC, WORKLOAD = "ttft_ms", "closed_loop"
Values = dict[str, float]  # engine (calibration id) -> µs per layer


@dataclass(frozen=True)
class Probed:
    """Each row's TTFT without the term and its change per µs of it."""

    cases: list[Case]
    engine: np.ndarray
    unit: np.ndarray  # leave-one-model-out unit
    gpu: np.ndarray
    moe: np.ndarray  # the row's model has MoE layers
    measured: np.ndarray
    base: np.ndarray
    slope: np.ndarray  # ms of TTFT per µs per layer

    def at(self, values: Values, rows: np.ndarray) -> np.ndarray:
        v = np.array([values.get(str(e), 0.0) for e in self.engine[rows]])
        return self.base[rows] + v * self.slope[rows]


def with_term(cat: Catalog, values: Values) -> Catalog:
    """``cat`` with each named engine's term set (``fit_moe_serving.with_terms``)."""
    return with_terms(cat, {key: {TERM: value} for key, value in values.items()})


def ttft_rows(cases: list) -> list[Case]:
    return [c for c in cases if isinstance(c, Case) and c.workload == WORKLOAD and c.metric == METRIC]


def probe(cases: list[Case], cat: Catalog, run: Callable[[list[Case], Catalog], Report], mapper=map) -> Probed:
    """Predictions of ``cases`` with the term at 0 and at ``PROBE_US`` for every engine (``mapper``: e.g. a pool's map)."""
    engines = sorted({cat.frameworks[c.request["framework"]].calibration_id for c in cases})
    cats = [with_term(cat, dict.fromkeys(engines, v)) for v in (0.0, PROBE_US)]
    found = [{r.case.line: r.predicted for r in rep.results} for rep in mapper(run, [cases, cases], cats)]
    kept = [c for c in cases if all(c.line in f for f in found)]
    base = np.array([found[0][c.line] for c in kept])
    return Probed(
        cases=kept,
        engine=np.array([cat.frameworks[c.request["framework"]].calibration_id for c in kept]),
        unit=np.array([held_out_unit(cat, c.request["model"]) for c in kept]),
        gpu=np.array([c.request["gpu"] for c in kept]),
        moe=np.array([cat.models[c.request["model"]].moe is not None for c in kept]),
        measured=np.array([c.measured for c in kept]),
        base=base,
        slope=(np.array([found[1][c.line] for c in kept]) - base) / PROBE_US,
    )


def fit_values(p: Probed, keep: np.ndarray | None = None) -> Values:
    """Per engine, the grid value with the least median absolute log error on the ``keep`` rows (the first
    minimum: the smallest value among ties)."""
    keep = np.ones(len(p.cases), dtype=bool) if keep is None else keep
    out: Values = {}
    for engine in sorted(set(p.engine[keep])):
        rows = np.nonzero(keep & (p.engine == engine))[0]
        pred = p.base[rows][None, :] + GRID_US[:, None] * p.slope[rows][None, :]
        err = np.median(np.abs(np.log(np.maximum(pred, 1e-9) / p.measured[rows])), axis=-1)
        out[str(engine)] = float(GRID_US[int(np.argmin(err))])
    return out


def held_out_values(p: Probed, units: np.ndarray | None = None) -> dict[str, Values]:
    """For each unit (default the model's), the values fitted without its rows."""
    units = p.unit if units is None else units
    return {str(u): fit_values(p, units != u) for u in sorted(set(units))}


def held_out_predicted(p: Probed, units: np.ndarray | None = None, engines: Iterable[str] | None = None) -> np.ndarray:
    """Each row with its engine's value fitted without its unit; engines not in ``engines`` (default all) at 0."""
    units = p.unit if units is None else units
    fitted = set(p.engine) if engines is None else set(engines)
    out = p.base.copy()
    for unit, values in held_out_values(p, units).items():
        rows = np.nonzero(units == unit)[0]
        out[rows] = p.at({e: v for e, v in values.items() if e in fitted}, rows)
    return out


def chosen(p: Probed) -> list[str]:
    """Engines whose leave-one-model-out TTFT error is lower with the term than without."""
    held = held_out_predicted(p)
    out = []
    for engine in sorted(set(p.engine)):
        rows = p.engine == engine
        without = float(np.median(np.abs(p.base[rows] / p.measured[rows] - 1.0)))
        if float(np.median(np.abs(held[rows] / p.measured[rows] - 1.0))) < without:
            out.append(str(engine))
    return out


def fit_user_first_token(catalog: Catalog, key: str, fw, cases: list[Case]) -> tuple[float, int] | None:
    """``guideopt calibrate``: the term fitted on a user's closed-loop TTFT rows of engine key ``key`` (its
    fitted entry ``fw`` otherwise), as (µs per layer, rows used); None with fewer than ``MIN_CASES`` rows
    guideopt predicts. The rows' TTFT is read at 0 and ``PROBE_US`` (``predictions.predict_requests``)."""
    from guideopt.calibration.fit_engines import MIN_CASES
    from guideopt.calibration.predictions import predict_requests

    rows = [c for c in ttft_rows(cases) if not c.framework_proxy]
    if len(rows) < MIN_CASES:
        return None
    preds: list[dict[tuple, float]] = []
    for value in (0.0, PROBE_US):
        frameworks = {**catalog.calibration.frameworks, key: fw.model_copy(update={TERM: value})}
        cat = dataclasses.replace(catalog, calibration=catalog.calibration.model_copy(update={"frameworks": frameworks}))
        outcomes = predict_requests([c.request for c in rows], cat)
        preds.append({k: float(o[METRIC]) for k, o in outcomes.items() if isinstance(o, dict) and o.get(METRIC)})
    kept = [c for c in rows if all(c.config_key in p for p in preds)]
    if len(kept) < MIN_CASES:
        return None
    base = np.array([preds[0][c.config_key] for c in kept])
    n = len(kept)
    probed = Probed(
        cases=kept,
        engine=np.array([key] * n),
        unit=np.array([c.request["model"] for c in kept]),
        gpu=np.array([c.request["gpu"] for c in kept]),
        moe=np.zeros(n, dtype=bool),
        measured=np.array([c.measured for c in kept]),
        base=base,
        slope=(np.array([preds[1][c.config_key] for c in kept]) - base) / PROBE_US,
    )
    return fit_values(probed)[key], n
