"""Fit device and link efficiencies from achieved-rate rows (GEMM TFLOPS, HBM TB/s, all-reduce
bus GB/s) where no per-kernel timings exist: AMD Instinct rows of ``kernels.csv``.

Each value is a ratio of a measured rate to the catalog's datasheet peak, so it stays
physical; the rows it came from are returned with it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import least_squares

from guideopt.calibration.kernels import MAX_STREAM_EFF, KernelRow
from guideopt.model.dtype import Dtype
from guideopt.model.gpu import Gpu

# Rate rows at unknown shapes (hipBLASLt tuning sweeps over 16-2560 tokens) mix small and
# large m; their upper decile stands for the large-GEMM rate.
UNKNOWN_SHAPE_QUANTILE = 0.9
# Square GEMMs at or above this size run at the large-m rate (rocBLAS/hipBLASLt sweeps flatten there).
LARGE_SQUARE_M = 4096


@dataclass(frozen=True)
class RateFit:
    compute_eff: float | None  # bf16
    compute_eff_fp8: float | None
    gemm_m_half: float | None
    mem_eff: float | None
    rows: list[int]


def _large_m_rate(rows: list[KernelRow]) -> float:
    shaped = [r.rate for r in rows if r.m >= LARGE_SQUARE_M]
    if shaped:
        return float(np.median(shaped))
    return float(np.quantile([r.rate for r in rows], UNKNOWN_SHAPE_QUANTILE))


def fit_rates(gpu: Gpu, rows: list[KernelRow]) -> RateFit | None:
    bf16 = [r for r in rows if r.kind == "gemm_rate"]
    fp8 = [r for r in rows if r.kind == "gemm_rate_fp8"]
    hbm = [r for r in rows if r.kind == "hbm_rate"]
    if not (bf16 or fp8 or hbm):
        return None
    ce = _large_m_rate(bf16) / gpu.tensor_flops_per_s(Dtype.BF16) if bf16 else None
    fp8_peak = gpu.tensor_flops_per_s(Dtype.FP8)
    ce8 = _large_m_rate(fp8) / fp8_peak if fp8 and fp8_peak else None
    me = min(float(np.median([r.rate for r in hbm])) / gpu.hbm_bw_bytes_per_s, MAX_STREAM_EFF) if hbm else None
    # Square GEMMs shrink n and k with m, so they do not isolate the m-dependence: no m_half here.
    return RateFit(ce, ce8, None, me, [r.line for r in bf16 + fp8 + hbm])


@dataclass(frozen=True)
class MeshLinkFit:
    allreduce_latency_us: float
    busbw_fraction: float
    rows: list[int]
    median_ape: float


def fit_mesh_busbw(gpus: dict[str, Gpu], rows: list[KernelRow]) -> MeshLinkFit | None:
    """All-reduce on a fully connected mesh (xGMI): a group of n drives n−1 peer links of
    link_bw/(node−1) each. From bus-bandwidth rows at message size S: time = S·2(n−1)/n / busbw,
    fitted by α + 2(n−1)/n·S / ((n−1)·peer_bw·f)."""
    use = [r for r in rows if r.kind == "busbw" and r.ranks > 1 and r.message_bytes > 0]
    if len(use) < 3:
        return None
    n = np.array([float(r.ranks) for r in use])
    size = np.array([r.message_bytes for r in use])
    peer = np.array([gpus[r.gpu].link_bw_bytes_per_s() / max(gpus[r.gpu].gpus_per_node - 1, 1) for r in use])
    measured = 2 * (n - 1) / n * size / np.array([r.rate for r in use])

    def predict(p):
        alpha_us, frac = p
        return alpha_us * 1e-6 + 2 * (n - 1) / n * size / ((n - 1) * peer * frac)

    fit = least_squares(lambda p: np.log(predict(p) / measured), x0=[20.0, 0.7], bounds=([0.5, 0.05], [500.0, 1.0]), loss="soft_l1")
    ape = np.abs(predict(fit.x) / measured - 1)
    return MeshLinkFit(float(fit.x[0]), float(fit.x[1]), [r.line for r in use], float(np.median(ape)))
