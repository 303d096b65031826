"""Fit the engines' serving terms of MoE models on measured MoE serving rows (closed-loop TPOT).

Two terms per engine (``FrameworkEfficiency``), both costs outside the kernel timings the
fused-MoE model is fitted on (``fit_moe.py``):

* ``async_decode_step_overhead_ms``: the decode-step CPU cost of versions that schedule step
  n+1 while step n runs (catalog ``async_scheduling``: vLLM from 0.14). The dense rows that fix
  ``decode_step_overhead_ms`` are of older versions.
* ``moe_layer_overhead_us``: per MoE layer and forward pass, what the engine's MoE path costs
  beyond the fused-MoE kernel (routing, permutation, launch gaps between its kernels).

A row's predicted TPOT is linear in both (each adds to every decode step), so three
predictions per row (both terms 0, then each at a probe value) give its value at any pair; the
fit is then a grid search per engine for the pair with the least median absolute log error.
``fit_terms(..., keep=...)`` fits on a subset, so leave-one-model-out needs no new predictions.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from guideopt.calibration.cases import Case
from guideopt.calibration.fit_moe import moe_shape
from guideopt.calibration.results import Report
from guideopt.catalog import Catalog

ASYNC = "async_decode_step_overhead_ms"
MOE_LAYER = "moe_layer_overhead_us"
# Probe value and search grid of each term (ms per decode step; µs per MoE layer and pass).
PROBES = {ASYNC: 1.0, MOE_LAYER: 50.0}
GRIDS = {ASYNC: np.round(np.arange(0.0, 4.0001, 0.05), 3), MOE_LAYER: np.arange(0.0, 150.0001, 1.0)}
METRIC, WORKLOAD = "tpot_ms", "closed_loop"
Terms = dict[str, dict[str, float | None]]  # engine -> term -> value (ASYNC None: the engine's synchronous overhead)


@dataclass(frozen=True)
class Probed:
    """Each row's TPOT with both terms 0 and its change per unit of each term."""

    cases: list[Case]
    engine: np.ndarray  # calibration id of the row's engine
    model: np.ndarray
    unit: np.ndarray  # what a fold holds out: the model's fused-MoE shape (DeepSeek-R1 and -V3 share theirs and their rows)
    measured: np.ndarray
    base: np.ndarray
    slope: dict[str, np.ndarray]
    sync_ms: dict[str, float]  # per engine, the decode-step overhead asynchronous rows paid before (the dense fit's)

    def before(self, rows: np.ndarray) -> np.ndarray:
        """Without the terms: asynchronous versions at the engine's (synchronous) decode-step overhead, no MoE-layer cost."""
        return self.base[rows] + np.array([self.sync_ms[e] for e in self.engine[rows]]) * self.slope[ASYNC][rows]

    def predicted(self, values: dict[str, float], rows: np.ndarray) -> np.ndarray:
        return self.base[rows] + sum(values.get(t, 0.0) * self.slope[t][rows] for t in PROBES)


def with_terms(cat: Catalog, terms: Terms) -> Catalog:
    """``cat`` with the engines' serving terms replaced (``{engine: {term: value}}``)."""
    frameworks = dict(cat.calibration.frameworks)
    for key, update in terms.items():  # the NVIDIA entry only: a vendor's own entry ("vllm@amd") has no such rows
        if key in frameworks and update:
            frameworks[key] = frameworks[key].model_copy(update=update)
    return dataclasses.replace(cat, calibration=cat.calibration.model_copy(update={"frameworks": frameworks}))


def serving_rows(cases: list) -> list[Case]:
    return [c for c in cases if isinstance(c, Case) and c.workload == WORKLOAD and c.metric == METRIC]


def probe(cases: list[Case], cat: Catalog, run: Callable[[list[Case], Catalog], Report]) -> Probed:
    """Predictions of ``cases`` at both terms 0 and at each probe value (``run``: e.g. ``validate`` with ``predict``)."""
    engines = {cat.frameworks[c.request["framework"]].calibration_id for c in cases}
    # The asynchronous overhead is a term of its own only where the engine's calibration rows ran synchronously
    # (its family entry has no async_scheduling): otherwise decode_step_overhead_ms already is that cost.
    zero: Terms = {e: {ASYNC: None if cat.frameworks[e].async_scheduling else 0.0, MOE_LAYER: 0.0} for e in engines}

    def predictions(terms) -> dict[tuple[int, str], float]:
        report = run(cases, with_terms(cat, terms))
        return {(r.case.line, r.case.metric): r.predicted for r in report.results}

    base = predictions(zero)
    probed = {t: predictions({e: {**v, t: None if v[t] is None else step} for e, v in zero.items()}) for t, step in PROBES.items()}
    kept = [c for c in cases if (c.line, c.metric) in base and all((c.line, c.metric) in p for p in probed.values())]
    key = [(c.line, c.metric) for c in kept]
    b = np.array([base[k] for k in key])
    return Probed(
        cases=kept,
        engine=np.array([cat.frameworks[c.request["framework"]].calibration_id for c in kept]),
        model=np.array([c.request["model"] for c in kept]),
        unit=np.array([held_out_unit(cat, c.request["model"]) for c in kept]),
        measured=np.array([c.measured for c in kept]),
        base=b,
        slope={t: (np.array([probed[t][k] for k in key]) - b) / PROBES[t] for t in PROBES},
        sync_ms={e: cat.calibration.frameworks[e].decode_step_overhead_ms for e in engines},
    )


def _error(p: Probed, rows: np.ndarray, a: np.ndarray, m: np.ndarray) -> np.ndarray:
    """Median |log(pred / measured)| of ``rows`` for every (async, moe-layer) pair of the grids (a × m)."""
    pred = p.base[rows][None, None, :] + a[:, None, None] * p.slope[ASYNC][rows] + m[None, :, None] * p.slope[MOE_LAYER][rows]
    return np.median(np.abs(np.log(np.maximum(pred, 1e-9) / p.measured[rows])), axis=-1)


def fit_terms(p: Probed, keep: np.ndarray | None = None, fitted: dict[str, tuple[str, ...]] | None = None) -> Terms:
    """Per engine, the grid pair with the least median absolute log error on the ``keep`` rows. ``fitted``
    names the terms each engine fits (default both); the others stay out (ASYNC None, MOE_LAYER 0), as does a
    term no kept row depends on (no asynchronous version among them)."""
    keep = np.ones(len(p.cases), dtype=bool) if keep is None else keep
    out: Terms = {}
    for engine in sorted(set(p.engine[keep])):
        rows = np.nonzero(keep & (p.engine == engine))[0]
        which = (fitted or {}).get(engine, tuple(PROBES))
        has_async = ASYNC in which and bool(np.any(p.slope[ASYNC][rows] > 0))
        a = GRIDS[ASYNC] if has_async else np.array([p.sync_ms.get(engine, 0.0)])
        m = GRIDS[MOE_LAYER] if MOE_LAYER in which else np.zeros(1)
        err = _error(p, rows, a, m)
        i, j = np.unravel_index(int(np.argmin(err)), err.shape)  # first minimum: the smallest terms among ties
        out[str(engine)] = {ASYNC: float(a[i]) if has_async else None, MOE_LAYER: float(m[j])}
    return out


def held_out_terms(p: Probed, fitted: dict[str, tuple[str, ...]] | None = None, units: np.ndarray | None = None) -> dict[str, Terms]:
    """For each unit, the terms fitted without its rows (``fitted``: as in ``fit_terms``; ``units``: what a fold
    holds out, default the model's ``p.unit``, e.g. each row's GPU for leave-one-system-out)."""
    units = p.unit if units is None else units
    return {str(u): fit_terms(p, units != u, fitted) for u in sorted(set(units))}


def held_out_predicted(p: Probed, fitted: dict[str, tuple[str, ...]] | None = None, units: np.ndarray | None = None) -> np.ndarray:
    """Each row predicted with the terms fitted without its unit (``held_out_terms``)."""
    units = p.unit if units is None else units
    out = p.before(np.arange(len(p.cases)))  # an engine no other unit ran keeps its terms out
    for unit, terms in held_out_terms(p, fitted, units).items():
        for engine, values in terms.items():
            rows = np.nonzero((units == unit) & (p.engine == engine))[0]
            async_ms = values[ASYNC]
            out[rows] = p.predicted({ASYNC: p.sync_ms[engine] if async_ms is None else async_ms, MOE_LAYER: values[MOE_LAYER] or 0.0}, rows)
    return out


def chosen_terms(p: Probed) -> dict[str, tuple[str, ...]]:
    """Per engine, the terms kept: of none, the asynchronous overhead alone and both, the set whose
    leave-one-model-out predictions have the least median absolute error on the engine's rows."""
    variants: tuple[tuple[str, ...], ...] = ((), (ASYNC,), (ASYNC, MOE_LAYER))
    held = {v: held_out_predicted(p, dict.fromkeys(set(p.engine), v)) for v in variants}
    out = {}
    for engine in sorted(set(p.engine)):
        rows = p.engine == engine
        errs = [float(np.median(np.abs(held[v][rows] / p.measured[rows] - 1.0))) for v in variants]
        out[str(engine)] = variants[int(np.argmin(errs))]  # first minimum: the fewest terms among ties
    return out


def held_out_unit(cat: Catalog, model: str) -> str:
    arch = cat.models[model]
    return repr(moe_shape(arch.hidden_size, arch.moe)) if arch.moe else model
