"""Fit the fused-MoE kernel terms (``MoeEfficiency``) to measured MoE kernel timings.

Each row is one fused-MoE call measured on one GPU with one engine's kernels: tokens in,
hidden and expert sizes, experts and top-k, moe_tp and moe_ep, the weight precision and the
routing distribution (balanced, or power-law skewed). The cost model prices it with the
same function the planner uses (``costs.layer_ops.routed_expert_work`` and
``grouped_moe_s``) on the dense GEMM and HBM rates of that GPU and engine; the fit finds,
per engine (native precisions) and per weight-only kernel path (``fit_kernels``), the fraction of the dense GEMM rate the grouped GEMM reaches, its tokens per
expert at half rate, its weight-streaming fraction and a fixed cost per layer (balanced
rows), then one imbalance growth per doubling of expert ranks (skewed rows with ep > 1).
The loss is the mean absolute log error: robust to outliers, yet every token range weighs in (a
median fitted the many small-token rows and left large calls ×0.65 of measured).
"""

from __future__ import annotations

import dataclasses
import math
from collections import defaultdict
from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize

from guideopt.catalog import Catalog
from guideopt.costs.hardware import WEIGHT_ONLY, HardwareArrays, hardware_arrays, moe_kernel_path
from guideopt.costs.layer_ops import grouped_moe_s, routed_expert_work
from guideopt.model.calibration import MoeEfficiency, MoeKernelEfficiency
from guideopt.model.dtype import Dtype
from guideopt.model.layers import MoeFfn
from guideopt.units import S_PER_MS, S_PER_US

# The skewed routing the engines' own planners assume (aiconfigurator collects balanced,
# power_law_1.01 and power_law_1.2; 1.01 is the mild skew of a trained router).
SKEWED = "power_law_1.01"
BALANCED = "balanced"
# A weight-only kernel path with fewer balanced timings than this takes its engine's terms: 300 spans
# the table's token counts on at least two expert shapes.
MIN_PATH_ROWS = 300


@dataclass(frozen=True)
class MoeKernelRow:
    gpu: str
    engine: str  # calibration id of the engine whose kernels ran (vllm, sglang, trtllm)
    dtype: Dtype
    tokens: int
    hidden: int
    inter: int
    experts: int
    topk: int
    moe_tp: int
    moe_ep: int
    gated: bool
    distribution: str
    latency_ms: float
    source: str


@dataclass
class _Prepared:
    rows: list[MoeKernelRow]
    flops: np.ndarray
    bytes_moved: np.ndarray
    per_expert: np.ndarray
    width: np.ndarray
    ep: np.ndarray
    measured_s: np.ndarray
    hw: HardwareArrays
    paths: np.ndarray  # each row's kernel path (``costs.hardware.moe_kernel_path``)


def prepare(catalog: Catalog, rows: list[MoeKernelRow]) -> _Prepared:
    hw = hardware_arrays(
        [catalog.gpu(r.gpu) for r in rows], [catalog.framework(r.engine) for r in rows], [r.dtype for r in rows], catalog.calibration
    )
    work = [
        routed_expert_work(
            MoeFfn(num_experts=r.experts, experts_per_token=r.topk, expert_intermediate_size=r.inter, gated=r.gated),
            r.hidden,
            float(r.tokens),
            float(r.moe_ep),
            float(r.moe_tp),
            r.dtype.bytes,
        )
        for r in rows
    ]
    col = lambda i: np.array([float(w[i]) for w in work])  # noqa: E731
    return _Prepared(
        rows,
        col(0),
        col(1),
        col(2),
        col(3),
        np.array([float(r.moe_ep) for r in rows]),
        np.array([r.latency_ms * S_PER_MS for r in rows]),
        hw,
        np.array([moe_kernel_path(catalog.gpu(r.gpu), r.dtype) for r in rows]),
    )


def _with(hw: HardwareArrays, k: MoeKernelEfficiency, imbalance: float) -> HardwareArrays:
    n = hw.gemm_flops_per_s.shape
    return dataclasses.replace(
        hw,
        moe_compute_fraction=np.full(n, k.compute_fraction),
        moe_m_half=np.full(n, k.m_half_tokens),
        moe_n_half=np.full(n, k.n_half_columns),
        moe_bandwidth_fraction=np.full(n, k.bandwidth_fraction),
        moe_overhead_s=np.full(n, k.overhead_us * S_PER_US),
        moe_imbalance_per_rank=np.full(n, imbalance),
    )


def predicted_s(p: _Prepared, k: MoeKernelEfficiency, imbalance: float) -> np.ndarray:
    return grouped_moe_s(p.flops, p.bytes_moved, p.per_expert, p.width, p.ep, _with(p.hw, k, imbalance))


def _subset(p: _Prepared, keep: np.ndarray) -> _Prepared:
    idx = np.nonzero(keep)[0]
    hw = HardwareArrays(**{f: getattr(p.hw, f)[idx] for f in HardwareArrays.__dataclass_fields__})
    return _Prepared(
        [p.rows[i] for i in idx],
        p.flops[idx],
        p.bytes_moved[idx],
        p.per_expert[idx],
        p.width[idx],
        p.ep[idx],
        p.measured_s[idx],
        hw,
        p.paths[idx],
    )


def _engine_rows(p: _Prepared, engine: str) -> np.ndarray:
    return np.array([r.engine == engine for r in p.rows], dtype=bool)


def predicted_all(p: _Prepared, moe: MoeEfficiency) -> np.ndarray:
    """Every row priced with the kernels of its engine and kernel path."""
    out = np.empty(len(p.rows))
    for engine in sorted({r.engine for r in p.rows}):
        for path in sorted(set(p.paths)):
            sel = _engine_rows(p, engine) & (p.paths == path)
            if sel.any():
                out[sel] = predicted_s(_subset(p, sel), moe.kernels(engine, path), moe.imbalance_per_rank)
    return out


def _loss(p: _Prepared, k: MoeKernelEfficiency, imbalance: float) -> float:
    return float(np.mean(np.abs(np.log(predicted_s(p, k, imbalance) / p.measured_s))))


def _kernels(x: np.ndarray) -> MoeKernelEfficiency:
    return MoeKernelEfficiency(
        compute_fraction=float(min(math.exp(x[0]), 2.0)),
        m_half_tokens=float(min(math.exp(x[1]), 100_000.0)),
        bandwidth_fraction=float(min(math.exp(x[2]), 2.0)),
        overhead_us=float(min(math.exp(x[3]), 10_000.0)),
        n_half_columns=float(min(math.exp(x[4]), 100_000.0)),
    )


def fit_engine_kernels(p: _Prepared) -> MoeKernelEfficiency:
    """The four kernel terms of one engine, on its balanced rows (Nelder-Mead in log space)."""
    starts = [np.log([0.5, m_half, 0.7, 20.0, 256.0]) for m_half in (4.0, 32.0, 256.0)]
    fits = [
        minimize(lambda x: _loss(p, _kernels(x), 0.0), x0, method="Nelder-Mead", options={"maxiter": 800, "xatol": 1e-3}) for x0 in starts
    ]
    k = _kernels(min(fits, key=lambda f: f.fun).x)
    return k.model_copy(update={k2: round(v, 4) for k2, v in k.model_dump(exclude={"fitted_from"}).items()})


def fit_imbalance(p: _Prepared, kernels: dict[str, MoeKernelEfficiency]) -> float:
    """One growth of the busiest rank's load per doubling of expert ranks, on skewed rows with ep > 1."""

    def loss(a: float) -> float:
        pred = predicted_all(p, MoeEfficiency(imbalance_per_rank=a, engines=kernels))
        return float(np.median(np.abs(np.log(pred / p.measured_s))))

    grid = np.linspace(0.0, 0.5, 51)
    return round(float(grid[int(np.argmin([loss(a) for a in grid]))]), 3)


def fit_kernels(p: _Prepared) -> dict[str, MoeKernelEfficiency]:
    """Per engine on its native-precision balanced rows, and per engine and weight-only path (a different
    kernel: dequantisation in the main loop) where the path has ``MIN_PATH_ROWS`` balanced timings:
    ``MoeEfficiency.engines``. Native precisions share the engine's terms, ratios to the dense GEMM
    rate of each precision (fitting them apart lowered the kernel error by 1-5 points but raised
    TensorRT-LLM's FP4 serving error, docs/serving-model.md)."""
    kernels: dict[str, MoeKernelEfficiency] = {}
    weight_only = np.char.endswith(p.paths.astype(str), WEIGHT_ONLY)
    for e in sorted({r.engine for r in p.rows}):
        native = _engine_rows(p, e) & ~weight_only
        groups = [(e, native if native.any() else _engine_rows(p, e))]
        groups += [(f"{e}:{path}", _engine_rows(p, e) & (p.paths == path)) for path in sorted(set(p.paths[weight_only]))]
        for key, sel in groups:
            if key != e and sel.sum() < MIN_PATH_ROWS:
                continue
            q = _subset(p, sel)
            gpus = sorted({r.gpu for r in q.rows})
            kernels[key] = fit_engine_kernels(q).model_copy(
                update={"fitted_from": f"{len(q.rows)} balanced fused-MoE timings on {', '.join(gpus)} ({_sources(q.rows)})"}
            )
    return kernels


def fit_moe(catalog: Catalog, rows: list[MoeKernelRow]) -> tuple[MoeEfficiency, dict[str, dict[str, float]]]:
    """The fitted terms and the median absolute error per engine and GPU (fitted, and with that GPU held out)."""
    p = prepare(catalog, rows)
    moe = _fit_terms(p)
    keep = np.array([r.distribution == BALANCED or (r.distribution == SKEWED and r.moe_ep > 1) for r in rows])
    return moe, report(catalog, p, moe, keep)


def _fit_terms(p: _Prepared) -> MoeEfficiency:
    balanced = np.array([r.distribution == BALANCED for r in p.rows])
    skewed = np.array([r.distribution == SKEWED and r.moe_ep > 1 for r in p.rows])
    kernels = fit_kernels(_subset(p, balanced))
    imbalance = fit_imbalance(_subset(p, skewed), kernels)
    return MoeEfficiency(
        imbalance_per_rank=imbalance,
        engines=kernels,
        fitted_from=f"imbalance: {int(skewed.sum())} {SKEWED} fused-MoE timings with moe_ep > 1; kernels: per engine and kernel path, "
        "see each entry",
    )


def _sources(rows: list[MoeKernelRow]) -> str:
    return "; ".join(sorted({r.source for r in rows}))


def report(catalog: Catalog, p: _Prepared, moe: MoeEfficiency, keep: np.ndarray) -> dict[str, dict[str, float]]:
    """Median absolute percentage error per (engine, GPU): fitted, and leave-that-GPU-out."""
    out: dict[str, dict[str, float]] = defaultdict(dict)
    groups = sorted({(r.engine, r.gpu) for r, k in zip(p.rows, keep) if k})
    for engine, gpu in groups:
        sel = keep & np.array([r.engine == engine and r.gpu == gpu for r in p.rows])
        q = _subset(p, sel)
        fitted = predicted_all(q, moe)
        out[f"{engine} {gpu}"]["fitted"] = float(np.median(np.abs(fitted / q.measured_s - 1.0)))
        others = _subset(p, keep & np.array([r.engine == engine and r.gpu != gpu and r.distribution == BALANCED for r in p.rows]))
        if others.rows:
            held = predicted_all(q, MoeEfficiency(imbalance_per_rank=moe.imbalance_per_rank, engines=fit_kernels(others)))
            out[f"{engine} {gpu}"]["held_out_gpu"] = float(np.median(np.abs(held / q.measured_s - 1.0)))
        out[f"{engine} {gpu}"]["rows"] = float(len(q.rows))
    return dict(out)


def moe_shape(hidden: int, f: MoeFfn) -> tuple[int, int, int, int]:
    """(hidden, expert width, experts, top-k): what identifies one model's fused-MoE kernel rows."""
    return hidden, f.expert_intermediate_size, f.num_experts, f.experts_per_token


def fit_moe_rows(catalog: Catalog, rows: list[MoeKernelRow]) -> MoeEfficiency:
    """The fused-MoE terms fitted on ``rows`` alone (e.g. without one GPU's timings: leave-one-system-out)."""
    return _fit_terms(prepare(catalog, rows))
