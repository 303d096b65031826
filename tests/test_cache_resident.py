"""Kernel timings that run from L2 say nothing about HBM bandwidth: the device fit leaves
them out (guideopt.calibration.kernels.cache_resident)."""

from __future__ import annotations

import numpy as np
import pytest

from guideopt.calibration.kernels import BYTES_PER_MB, KernelRow, cache_resident, fit_device
from guideopt.model.dtype import Dtype

L40S = "l40s"


def _gemm(line: int, gpu, m: int, n: int, k: int, eff_mem: float, eff_flop: float, l2_speedup: float = 1.0) -> KernelRow:
    flops, nbytes = 2.0 * m * n * k, 2.0 * (n * k + m * k + m * n)
    t = max(flops / (gpu.tensor_flops_per_s(Dtype.BF16) * eff_flop), nbytes / (gpu.hbm_bw_bytes_per_s * eff_mem))
    if nbytes <= gpu.l2_cache_mb * BYTES_PER_MB and flops / nbytes < gpu.tensor_flops_per_s(Dtype.BF16) / gpu.hbm_bw_bytes_per_s:
        t /= l2_speedup  # the timing loop keeps a small working set in L2
    return KernelRow(line, gpu.id, "gemm", flops, nbytes, t + 2e-6, m=m)


def test_small_memory_bound_kernels_are_cache_resident(catalog):
    gpu = catalog.gpu(L40S)
    assert gpu.l2_cache_mb is not None
    small = _gemm(1, gpu, 1, 4096, 4096, 0.8, 0.6)  # 33 MB of weights, m = 1: memory-bound
    large = _gemm(2, gpu, 1, 16384, 8192, 0.8, 0.6)  # 268 MB: streams from HBM
    compute = _gemm(3, gpu, 8192, 2048, 2048, 0.8, 0.6)  # small but compute-bound
    assert cache_resident(gpu, small) and not cache_resident(gpu, large) and not cache_resident(gpu, compute)
    unknown = gpu.model_copy(update={"l2_cache_mb": None})
    assert not cache_resident(unknown, small)


def test_fit_recovers_hbm_efficiency_despite_cache_resident_rows(catalog):
    """Rows from a GPU whose small GEMMs run 3x faster from L2: with them left out the fit
    finds the true HBM fraction; a fit that kept them would be pulled to the cap."""
    gpu = catalog.gpu(L40S)
    rows = []
    i = 0
    for n, k in ((4096, 4096), (6144, 4096), (16384, 8192), (28672, 8192), (8192, 28672)):
        for m in (1, 16, 128, 1024, 8192):
            i += 1
            rows.append(_gemm(i, gpu, m, n, k, eff_mem=0.7, eff_flop=0.6, l2_speedup=3.0))
    assert sum(cache_resident(gpu, r) for r in rows) >= 2
    fit = fit_device(gpu, rows)
    assert fit is not None and fit.mem_eff == pytest.approx(0.7, rel=0.05)
    assert np.isfinite(fit.compute_eff)
