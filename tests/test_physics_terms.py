"""The fitted physical terms of issue 11: each checked by hand at its defining point, as a
monotone property, and (for the fits) by recovering known values from synthetic data."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from conftest import LLAMA2_7B, LLAMA3_8B, model_cases, predict_request, with_engine_terms
from hypothesis import given
from hypothesis import strategies as st

from guideopt import api
from guideopt.calibration.fit_engines import TERMS, engine_key, fit_engine
from guideopt.calibration.kernels import KernelRow
from guideopt.calibration.rates import fit_mesh_busbw, fit_rates
from guideopt.costs.comm import ring_allreduce_s
from guideopt.costs.hardware import hardware_arrays
from guideopt.costs.layer_ops import LayerLayout, gqa_s
from guideopt.costs.ops import PassShape
from guideopt.costs.ops import gemm_s as _gemm_s
from guideopt.model.calibration import FrameworkEfficiency
from guideopt.model.dtype import Dtype

H100 = "h100-sxm"


def _hw(catalog, gpu=H100, fw="vllm", dtype=Dtype.BF16, **updates):
    hw = hardware_arrays([catalog.gpu(gpu)], [catalog.framework(fw)], [dtype], catalog.calibration)
    return dataclasses.replace(hw, **{k: np.array([v], dtype=float) for k, v in updates.items()})


# ---------------------------------------------------------------- GEMM efficiency vs m


def test_gemm_compute_time_doubles_at_m_half(catalog):
    """A compute-bound GEMM at m = m_half runs at half the large-m rate: twice the time."""
    m, k, n = 4096.0, 8192.0, 8192.0  # compute-bound on every GPU (arithmetic intensity ≈ 2000)
    flat = _hw(catalog, gemm_m_half=0.0, kernel_overhead_s=0.0)
    bent = _hw(catalog, gemm_m_half=m, kernel_overhead_s=0.0)
    t_flat = float(_gemm_s(m, k, n, k * n, 2.0, flat)[0])
    t_bent = float(_gemm_s(m, k, n, k * n, 2.0, bent)[0])
    assert t_bent == pytest.approx(2 * t_flat, rel=1e-9)


@given(m=st.floats(1, 8192), more=st.floats(1, 8192), m_half=st.floats(0, 512))
def test_gemm_flops_rate_never_falls_as_m_grows(catalog, m, more, m_half):
    hw = _hw(catalog, gemm_m_half=m_half, kernel_overhead_s=0.0)
    k = n = 8192.0
    rate = [2 * x * k * n / float(_gemm_s(x, k, n, k * n, 2.0, hw)[0]) for x in (m, m + more)]
    assert rate[1] >= rate[0] * (1 - 1e-12)


# ---------------------------------------------------------------- decode attention vs KV length


def test_kv_stream_time_doubles_at_l_half(catalog):
    arch = catalog.model(LLAMA3_8B)
    length = 1000.0
    shape = PassShape(
        new_tokens=np.array([1.0]),
        seqs=np.array([1.0]),
        attn_pairs=np.array([length]),
        kv_read_tokens=np.array([length]),
        logit_tokens=np.array([1.0]),
    )
    base = dict(kernel_overhead_s=0.0, mem_bytes_per_s=1e30, attn_flops_per_s=1e30, gemm_flops_per_s=1e30)  # isolate the KV stream
    attn = arch.layer_groups[0].attention
    one = LayerLayout(np.array([1.0]), np.array([1.0]), np.array([1.0]))
    t0 = float(gqa_s(attn, arch.hidden_size, shape, one, 2.0, 2.0, _hw(catalog, kv_len_half=0.0, **base), True)[0])
    t1 = float(gqa_s(attn, arch.hidden_size, shape, one, 2.0, 2.0, _hw(catalog, kv_len_half=length, **base), True)[0])
    assert t1 == pytest.approx(2 * t0, rel=1e-9)


# ---------------------------------------------------------------- all-reduce per call


@pytest.mark.parametrize("tp", [2, 4, 8])
def test_allreduce_latency_grows_by_rank_beyond_two(catalog, tp):
    hw = _hw(catalog, allreduce_latency_s=5e-6, allreduce_latency_per_rank_s=1e-6)
    t = float(ring_allreduce_s(message_bytes=np.array([0.0]), tp=np.array([float(tp)]), hw=hw)[0])
    assert t == pytest.approx(5e-6 + (tp - 2) * 1e-6)


def test_engine_allreduce_latency_applies_only_on_its_link(catalog):
    cal = catalog.calibration
    fw = cal.frameworks["vllm"].model_copy(update={"allreduce_latency_us": 77.0, "allreduce_link": "nvswitch"})
    cat = dataclasses.replace(catalog, calibration=cal.model_copy(update={"frameworks": {**cal.frameworks, "vllm": fw}}))
    on = hardware_arrays([cat.gpu(H100)], [cat.framework("vllm")], [Dtype.BF16], cat.calibration)
    off = hardware_arrays([cat.gpu("l40s")], [cat.framework("vllm")], [Dtype.BF16], cat.calibration)
    assert float(on.allreduce_latency_s[0]) == pytest.approx(77e-6)
    assert float(off.allreduce_latency_s[0]) == pytest.approx(cal.links["pcie"].allreduce_latency_us * 1e-6)


# ---------------------------------------------------------------- engine step costs


def test_per_sequence_cost_adds_batch_times_steps_to_decode(catalog):
    """Each of the O−1 decode steps of a batch of B pays B·per_seq more: TPOT grows by B·per_seq."""
    batch, per_seq_us = 32, 50.0
    req = predict_request(LLAMA2_7B, H100, framework="vllm", batch=batch, input_len=128, output_len=64)
    base = api.predict(req, with_engine_terms(catalog, per_seq_step_us=0.0, per_token_step_us=0.0)).metrics
    more = api.predict(req, with_engine_terms(catalog, per_seq_step_us=per_seq_us, per_token_step_us=0.0)).metrics
    assert more.tpot_ms - base.tpot_ms == pytest.approx(batch * per_seq_us / 1000, rel=1e-6)


def test_vendor_specific_engine_entry_is_used_on_that_vendor_only(catalog):
    cal = catalog.calibration
    amd = cal.frameworks["vllm"].model_copy(update={"decode_step_overhead_ms": 9.0})
    cal2 = cal.model_copy(update={"frameworks": {**cal.frameworks, "vllm@amd": amd}})
    assert cal2.framework("vllm", "amd").decode_step_overhead_ms == 9.0
    assert cal2.framework("vllm", "nvidia") == cal.frameworks["vllm"]


def test_kv_admission_by_current_usage_holds_more_requests(catalog):
    from guideopt.analyses.predict import serving_running_cap
    from guideopt.costs.tables import OptionSpace, build_option_table

    gpu, fw = catalog.gpu(H100), catalog.framework("vllm")
    arch = catalog.model(LLAMA2_7B)
    space = OptionSpace(
        gpus=[gpu],
        frameworks=[fw],
        dtypes=[Dtype.FP16],
        tp=[1],
        pp=[1],
        batch=[1],
        input_len=1000,
        output_len=1000,
        kv_dtype=None,
        split=[2048],
        h2o_keep=1.0,
        flash_attention=True,
        allow_waves=True,
        allow_multi_node_tp=True,
    )
    table = build_option_table(arch, space, catalog.calibration)
    req = api.PredictRequest(model=LLAMA2_7B, gpu=H100, input_len=1000, output_len=1000, concurrency=10**5, max_num_seqs=10**5)
    by_usage = serving_running_cap(req, table, catalog)
    reserve = with_engine_terms(catalog, kv_admission="full_length")
    by_reservation = serving_running_cap(req, table, reserve)
    assert by_reservation == pytest.approx(float(table.running_cap[0]))
    assert by_usage == pytest.approx(by_reservation * 2000 / 1500)


# ---------------------------------------------------------------- fits recover known values


def test_rate_fit_is_measured_over_datasheet(catalog):
    gpu = catalog.gpu("mi300x")
    peak = gpu.tensor_flops_per_s(Dtype.BF16)
    rows = [KernelRow(i, "mi300x", "gemm_rate", 0, 0, 0, rate=0.5 * peak) for i in range(3)]
    rows.append(KernelRow(9, "mi300x", "hbm_rate", 0, 0, 0, rate=0.75 * gpu.hbm_bw_bytes_per_s))
    fit = fit_rates(gpu, rows)
    assert fit.compute_eff == pytest.approx(0.5) and fit.mem_eff == pytest.approx(0.75) and fit.compute_eff_fp8 is None


def test_mesh_busbw_fit_recovers_latency_and_fraction(catalog):
    gpus = {"mi300x": catalog.gpu("mi300x")}
    g = gpus["mi300x"]
    peer = g.link_bw_bytes_per_s() / (g.gpus_per_node - 1)
    alpha, frac = 30e-6, 0.6
    rows = []
    for i, (n, size) in enumerate([(8, 1e3), (8, 1e5), (8, 1e7), (8, 1e9), (2, 4e9), (8, 4e9)]):
        t = alpha + 2 * (n - 1) / n * size / ((n - 1) * peer * frac)
        rows.append(KernelRow(i, "mi300x", "busbw", 0, 0, 0, ranks=n, message_bytes=size, rate=2 * (n - 1) / n * size / t))
    fit = fit_mesh_busbw(gpus, rows)
    assert fit.allreduce_latency_us == pytest.approx(30.0, rel=1e-3) and fit.busbw_fraction == pytest.approx(0.6, rel=1e-3)


def test_engine_fit_recovers_known_terms_from_synthetic_rows(catalog):
    """Rows generated by the model itself at known engine terms are fitted back (the solver
    checked against the answer it must find)."""
    truth = {
        "decode_step_overhead_ms": 3.0,
        "per_seq_step_us": 40.0,
        "kernel_efficiency": 0.8,
        "compute_efficiency": 0.6,
        "prefill_step_overhead_ms": 5.0,
    }
    true_cat = with_engine_terms(catalog, per_token_step_us=0.0, allreduce_latency_us=None, allreduce_link=None, **truth)
    # prompt-heavy shapes too, so the compute-bound speed (compute_efficiency) is told apart
    # from the memory-bound one and from the per-sequence cost
    shapes = [(1, 128, 128), (8, 512, 64), (32, 128, 256), (64, 1024, 32), (16, 2048, 16), (128, 64, 64), (4, 4000, 8)]
    shapes += [(1, 4000, 2), (32, 2048, 2), (256, 64, 128), (2, 64, 512)]
    reqs = [predict_request(LLAMA2_7B, H100, framework="vllm", batch=b, input_len=i, output_len=o) for b, i, o in shapes]
    cases = model_cases(true_cat, reqs)
    start = with_engine_terms(
        catalog,
        per_token_step_us=0.0,
        decode_step_overhead_ms=1.0,
        per_seq_step_us=0.0,
        kernel_efficiency=1.0,
        prefill_step_overhead_ms=1.0,
    )
    assert engine_key(cases[0], lambda g: catalog.gpu(g).vendor.value) == "vllm"
    fitted, _ = fit_engine(start, start.calibration, "vllm", cases)
    for term, value in truth.items():
        # 20 %: per-sequence cost and kernel time both grow with the batch, so the rows
        # separate them only partly and the weak prior pulls a little.
        assert getattr(fitted, term) == pytest.approx(value, rel=0.2), term
    assert set(TERMS) <= set(FrameworkEfficiency.model_fields)
