"""An engine's speed on compute-bound work (``compute_efficiency``) apart from its memory-bound
work (``kernel_efficiency``): where each applies, and that the engine fit separates them."""

from __future__ import annotations

import pytest
from conftest import LLAMA2_7B, model_cases, predict_request, with_engine_terms

from guideopt.calibration.fit_engines import fit_engine
from guideopt.costs.hardware import hardware_arrays
from guideopt.model.dtype import Dtype

H100 = "h100-sxm"


def _hw(catalog):
    return hardware_arrays([catalog.gpu(H100)], [catalog.framework("vllm")], [Dtype.BF16], catalog.calibration)


def test_compute_efficiency_scales_flops_and_kernel_efficiency_scales_bytes(catalog):
    base = _hw(with_engine_terms(catalog, kernel_efficiency=1.0, compute_efficiency=None))
    split = _hw(with_engine_terms(catalog, kernel_efficiency=0.8, compute_efficiency=0.5))
    assert float(split.gemm_flops_per_s[0]) == pytest.approx(0.5 * float(base.gemm_flops_per_s[0]))
    assert float(split.attn_flops_per_s[0]) == pytest.approx(0.5 * float(base.attn_flops_per_s[0]))
    assert float(split.mem_bytes_per_s[0]) == pytest.approx(0.8 * float(base.mem_bytes_per_s[0]))
    assert float(split.kv_bytes_per_s[0]) == pytest.approx(0.8 * float(base.kv_bytes_per_s[0]))


def test_engine_fit_separates_compute_and_memory_speed(catalog):
    """Rows from prompt-heavy (compute-bound) and decode-heavy (memory-bound) runs generated at
    known, different speeds are fitted back."""
    truth = with_engine_terms(catalog, kernel_efficiency=0.9, compute_efficiency=0.55, per_token_step_us=0.0)
    shapes = [(1, 128, 256), (4, 64, 512), (1, 4000, 2), (8, 2048, 4), (64, 1024, 2), (32, 128, 128), (128, 512, 32), (2, 3000, 16)]
    reqs = [predict_request(LLAMA2_7B, H100, framework="vllm", batch=b, input_len=i, output_len=o) for b, i, o in shapes]
    cases = model_cases(truth, reqs)
    start = with_engine_terms(catalog, kernel_efficiency=0.7, compute_efficiency=None, per_token_step_us=0.0)
    fitted, _ = fit_engine(start, start.calibration, "vllm", cases)
    assert fitted.compute_efficiency == pytest.approx(0.55, rel=0.15)
    assert fitted.kernel_efficiency == pytest.approx(0.9, rel=0.15)
