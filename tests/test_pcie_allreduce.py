"""The engine's achieved all-reduce bus bandwidth over PCIe (``pcie_busbw_fraction``): where it
applies, and that the engine fit recovers it from rows generated at a known value."""

from __future__ import annotations

import pytest
from conftest import LLAMA2_7B, model_cases, predict_request, with_engine_terms

from guideopt import api
from guideopt.calibration.fit_engines import fit_engine
from guideopt.costs.hardware import hardware_arrays
from guideopt.model.dtype import Dtype
from guideopt.units import BYTES_PER_S_PER_GB_S

L40S = "l40s"
H100 = "h100-sxm"


def _hw(catalog, gpu):
    return hardware_arrays([catalog.gpu(gpu)], [catalog.framework("vllm")], [Dtype.BF16], catalog.calibration)


def test_engine_pcie_fraction_sets_pcie_bus_bandwidth_only_on_pcie_gpus(catalog):
    cat = with_engine_terms(catalog, pcie_busbw_fraction=0.5)
    pcie = _hw(cat, L40S)
    expected = catalog.gpu(L40S).pcie_bw_unidir_gb_s * BYTES_PER_S_PER_GB_S * 0.5
    assert float(pcie.link_bytes_per_s[0]) == pytest.approx(expected)
    assert float(pcie.pcie_bytes_per_s[0]) == pytest.approx(expected)
    # NVSwitch GPUs keep their link's fit; without the engine term PCIe keeps the kernel fit.
    assert float(_hw(cat, H100).link_bytes_per_s[0]) == pytest.approx(float(_hw(catalog, H100).link_bytes_per_s[0]))
    plain = with_engine_terms(catalog, pcie_busbw_fraction=None)
    kernel_fit = catalog.calibration.links["pcie"].busbw_fraction
    assert float(_hw(plain, L40S).link_bytes_per_s[0]) == pytest.approx(
        catalog.gpu(L40S).pcie_bw_unidir_gb_s * BYTES_PER_S_PER_GB_S * kernel_fit
    )


def test_faster_pcie_all_reduce_never_slows_a_tp4_batch(catalog):
    req = predict_request(LLAMA2_7B, L40S, framework="vllm", batch=64, input_len=512, output_len=128, tp=4)
    slow = api.predict(req, with_engine_terms(catalog, pcie_busbw_fraction=0.1)).metrics
    fast = api.predict(req, with_engine_terms(catalog, pcie_busbw_fraction=0.6)).metrics
    assert fast.batch_latency_s < slow.batch_latency_s and fast.tpot_ms < slow.tpot_ms


def _cases(cat, gpu, tps):
    shapes = [(1, 128, 128), (16, 512, 64), (64, 128, 256), (128, 1024, 32), (32, 2048, 16), (256, 64, 64)]
    reqs = [
        predict_request(LLAMA2_7B, gpu, framework="vllm", batch=b, input_len=i, output_len=o, tp=tp) for b, i, o in shapes for tp in tps
    ]
    return model_cases(cat, reqs)


def test_engine_fit_recovers_pcie_fraction_from_multi_gpu_pcie_rows(catalog):
    truth = with_engine_terms(catalog, pcie_busbw_fraction=0.45)
    cases = _cases(truth, L40S, (1, 2, 4))
    start = with_engine_terms(catalog, pcie_busbw_fraction=None)
    fitted, _ = fit_engine(start, start.calibration, "vllm", cases)
    assert fitted.pcie_busbw_fraction == pytest.approx(0.45, rel=0.1)


def test_engine_without_pcie_multi_gpu_rows_keeps_the_kernel_fit(catalog):
    start = with_engine_terms(catalog, pcie_busbw_fraction=None)
    cases = _cases(start, H100, (1, 2)) + _cases(start, L40S, (1,))
    fitted, _ = fit_engine(start, start.calibration, "vllm", cases)
    assert fitted.pcie_busbw_fraction is None
