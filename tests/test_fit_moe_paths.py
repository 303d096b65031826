"""Fused-MoE kernel terms per engine (native precisions) and per weight-only kernel path:
``fit_moe.fit_kernels`` and the lookup ``MoeEfficiency.kernels`` / ``costs.hardware.moe_kernel_path``."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from guideopt.calibration.fit_moe import BALANCED, MIN_PATH_ROWS, MoeKernelRow, fit_kernels, predicted_all, predicted_s, prepare
from guideopt.costs.hardware import hardware_arrays, moe_kernel_path
from guideopt.model.calibration import MoeEfficiency, MoeKernelEfficiency
from guideopt.model.dtype import Dtype

TRUE = {
    "fp8": MoeKernelEfficiency(compute_fraction=0.45, m_half_tokens=30.0, n_half_columns=200.0, bandwidth_fraction=0.75, overhead_us=40.0),
    "fp4-weight-only": MoeKernelEfficiency(
        compute_fraction=0.6, m_half_tokens=50.0, n_half_columns=20.0, bandwidth_fraction=0.55, overhead_us=70.0
    ),
}


def _rows(catalog, gpu: str, dtype: Dtype, count: int) -> list[MoeKernelRow]:
    shapes = itertools.cycle(
        itertools.product((1, 4, 16, 64, 256, 1024, 4096), ((4096, 1024, 64, 4), (2880, 2880, 128, 4), (7168, 2048, 256, 8)))
    )
    rows = []
    for _ in range(count):
        tokens, (hidden, inter, experts, topk) = next(shapes)
        rows.append(MoeKernelRow(gpu, "vllm", dtype, tokens, hidden, inter, experts, topk, 1, 1, True, BALANCED, 1.0, "synthetic"))
    return rows


def _timed(catalog, rows: list[MoeKernelRow]) -> list[MoeKernelRow]:
    """The rows with the latency the true terms of their path give."""
    p = prepare(catalog, rows)
    out = []
    for r, path in zip(rows, p.paths, strict=True):
        one = prepare(catalog, [r])
        latency_ms = float(predicted_s(one, TRUE[str(path)], 0.0)[0]) * 1e3
        out.append(MoeKernelRow(**{**r.__dict__, "latency_ms": latency_ms}))
    return out


def test_each_path_with_enough_timings_gets_its_own_terms(catalog) -> None:
    rows = _timed(catalog, _rows(catalog, "h200-sxm", Dtype.FP8, 420) + _rows(catalog, "h200-sxm", Dtype.FP4, MIN_PATH_ROWS + 21))
    p = prepare(catalog, rows)
    kernels = fit_kernels(p)
    assert set(kernels) == {"vllm", "vllm:fp4-weight-only"}  # native precisions share the engine's terms
    fitted = predicted_all(p, MoeEfficiency(engines=kernels))
    for path in TRUE:
        sel = p.paths == path
        assert np.median(np.abs(fitted[sel] / p.measured_s[sel] - 1.0)) < 0.03, path
    one_for_all = predicted_all(p, MoeEfficiency(engines={"vllm": kernels["vllm"]}))
    assert np.median(np.abs(fitted / p.measured_s - 1)) < np.median(np.abs(one_for_all / p.measured_s - 1))


def test_a_path_with_few_timings_takes_its_engines_terms(catalog) -> None:
    rows = _timed(catalog, _rows(catalog, "h200-sxm", Dtype.FP8, 420) + _rows(catalog, "h200-sxm", Dtype.FP4, MIN_PATH_ROWS - 1))
    kernels = fit_kernels(prepare(catalog, rows))
    assert set(kernels) == {"vllm"}
    moe = MoeEfficiency(engines=kernels)
    assert moe.kernels("vllm", "fp4-weight-only") == kernels["vllm"]
    assert moe.kernels("sglang", "fp8") == MoeKernelEfficiency()


@pytest.mark.parametrize(
    ("gpu", "dtype", "path"),
    [("h200-sxm", Dtype.FP4, "fp4-weight-only"), ("b200", Dtype.FP4, "fp4"), ("a100-sxm4-80gb", Dtype.FP8, "fp8-weight-only"),
     ("h100-sxm", Dtype.FP8, "fp8"), ("h100-sxm", Dtype.BF16, "bf16"), ("h100-sxm", Dtype.INT4, "int4-weight-only")],
)  # fmt: skip
def test_kernel_paths(catalog, gpu: str, dtype: Dtype, path: str) -> None:
    assert moe_kernel_path(catalog.gpu(gpu), dtype) == path


def test_the_cost_model_reads_the_kernels_of_its_path(catalog) -> None:
    cal = catalog.calibration
    hw = hardware_arrays([catalog.gpu("h200-sxm"), catalog.gpu("b200")], [catalog.framework("vllm")] * 2, [Dtype.FP4] * 2, cal)
    expected = [cal.moe.kernels("vllm", "fp4-weight-only").compute_fraction, cal.moe.kernels("vllm", "fp4").compute_fraction]
    assert hw.moe_compute_fraction.tolist() == expected
