"""The 2026 GPU catalog (issue 20 part 4) and FP4 (part 3): schema values read back, FP4 rates
and bytes, the scale-up domain in the cost arrays, the calibration fallback of new families,
the engines' FP4 capability and its refusals."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import LLAMA2_7B, predict_request

from guideopt import api
from guideopt.cli import main
from guideopt.costs.capability import weights_reason
from guideopt.costs.comm import ring_allreduce_s
from guideopt.costs.hardware import hardware_arrays
from guideopt.errors import InvalidRequestError, NoFeasiblePlanError
from guideopt.model.dtype import FP4_BYTES_PER_WEIGHT, MXFP4_BYTES_PER_WEIGHT, NVFP4_BYTES_PER_WEIGHT, Dtype
from guideopt.model.gpu import Gpu, LinkClass
from guideopt.units import BYTES_PER_S_PER_GB_S, FLOPS_PER_TFLOPS

PREDICT = ("predict", "--model", LLAMA2_7B, "--gpu", "h100-sxm", "--dtype", "fp4", "--batch", "1", "--input-len", "64", "--output-len", "8")
NEW_GPUS = ("b300", "gb200", "gb300", "rtx-pro-6000", "mi355x", "mi350x", "h20", "h20-3e", "h200-nvl")


def run(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def test_the_new_gpus_are_catalogued_with_labels_and_priced(catalog) -> None:
    for gpu_id in NEW_GPUS:
        gpu = catalog.gpu(gpu_id)
        assert gpu.id in catalog.kubernetes.products and gpu.usd_per_hour > 0 and gpu.price_source
        assert gpu.arch in catalog.architectures


@pytest.mark.parametrize(
    ("gpu_id", "arch", "fp4", "domain", "node", "nic_gb_s", "link"),
    [
        ("b200", "blackwell", 9000, 8, 8, 50, LinkClass.NVSWITCH),
        ("b300", "blackwell", 14000, 8, 8, 100, LinkClass.NVSWITCH),
        ("gb200", "blackwell", 10000, 72, 4, 50, LinkClass.NVSWITCH),
        ("gb300", "blackwell", 15000, 72, 4, 100, LinkClass.NVSWITCH),
        ("rtx-pro-6000", "blackwell-rtx", 2000, 1, 8, 25, LinkClass.PCIE),
        ("mi355x", "cdna4", 10066.3, 8, 8, 50, LinkClass.XGMI),
        ("mi350x", "cdna4", 9227.4, 8, 8, None, LinkClass.XGMI),
        ("h20", "hopper", None, 8, 8, None, LinkClass.NVSWITCH),
        ("h20-3e", "hopper", None, 8, 8, 50, LinkClass.NVSWITCH),
        ("h200-nvl", "hopper", None, 2, 8, None, LinkClass.NVLINK_BRIDGE),
    ],
)
def test_schema_values_read_back(catalog, gpu_id, arch, fp4, domain, node, nic_gb_s, link) -> None:
    gpu = catalog.gpu(gpu_id)
    assert (gpu.arch, gpu.peak_tflops.fp4, gpu.scale_up_domain_gpus, gpu.gpus_per_node) == (arch, fp4, domain, node)
    assert (gpu.scale_out_nic_gb_s_per_gpu, gpu.link) == (nic_gb_s, link)


def test_an_absent_domain_is_the_links_usual_one(catalog) -> None:
    """Entries without the key: the node on NVSwitch/xGMI, a bridged pair, 1 on PCIe only."""
    assert catalog.gpu("h100-sxm").scale_up_domain_gpus == 8 and catalog.gpu("mi300x").scale_up_domain_gpus == 8
    assert catalog.gpu("h100-nvl").scale_up_domain_gpus == 2 and catalog.gpu("l40s").scale_up_domain_gpus == 1
    data = catalog.gpu("h100-sxm").model_dump(exclude={"scale_up_domain_gpus"})
    with pytest.raises(ValueError, match="scale_up_domain_gpus must be >= gpus_per_node"):
        Gpu.model_validate({**data, "scale_up_domain_gpus": 4})


def test_fp4_bytes_carry_the_block_scales() -> None:
    assert NVFP4_BYTES_PER_WEIGHT == 0.5 + 1 / 16 and MXFP4_BYTES_PER_WEIGHT == 0.5 + 1 / 32
    assert Dtype.FP4.bytes == FP4_BYTES_PER_WEIGHT == NVFP4_BYTES_PER_WEIGHT  # the larger, NVFP4's
    assert Dtype.INT4.bytes < Dtype.FP4.bytes < Dtype.FP8.bytes and not Dtype.FP4.is_float16


def test_fp4_flops_native_on_blackwell_and_cdna4_weight_only_elsewhere(catalog) -> None:
    for gpu_id in ("b200", "gb300", "mi355x", "rtx-pro-6000"):
        gpu = catalog.gpu(gpu_id)
        assert gpu.tensor_flops_per_s(Dtype.FP4) == gpu.peak_tflops.fp4 * FLOPS_PER_TFLOPS
        assert gpu.tensor_flops_per_s(Dtype.FP4) > gpu.tensor_flops_per_s(Dtype.FP8)
    for gpu_id in ("h100-sxm", "h20", "mi300x", "a100-sxm4-80gb"):  # no FP4 tensor cores: 16-bit math, like int4
        gpu = catalog.gpu(gpu_id)
        assert gpu.peak_tflops.fp4 is None
        assert gpu.tensor_flops_per_s(Dtype.FP4) == gpu.tensor_flops_per_s(Dtype.FP16) == gpu.tensor_flops_per_s(Dtype.INT4)


def _hw(catalog, gpu_ids, dtype=Dtype.BF16):
    gpus = [catalog.gpu(g) for g in gpu_ids]
    return hardware_arrays(gpus, [catalog.framework("vllm")] * len(gpus), [dtype] * len(gpus), catalog.calibration)


def test_fp4_gemm_rate_in_the_cost_arrays(catalog) -> None:
    fp4, fp8, fp16 = (_hw(catalog, ["b200", "h100-sxm"], d).gemm_flops_per_s for d in (Dtype.FP4, Dtype.FP8, Dtype.FP16))
    assert fp4[0] == pytest.approx(2 * fp8[0])  # B200: FP4 rate twice FP8's, at the low-precision GEMM efficiency
    assert fp4[1] == pytest.approx(fp16[1])  # H100: weight-only, the 16-bit GEMM


def test_gb200_tp16_stays_on_nvlink_and_b200_tp16_does_not(catalog) -> None:
    hw = _hw(catalog, ["gb200", "b200"])
    assert list(hw.link_group_max) == [72, 8]
    tp16 = ring_allreduce_s(message_bytes=np.array([64e6, 64e6]), tp=np.array([16, 16]), hw=hw)
    tp8 = ring_allreduce_s(message_bytes=np.array([64e6, 64e6]), tp=np.array([8, 8]), hw=hw)
    assert tp16[0] < 1.5 * tp8[0]  # NVLink all the way across two compute trays
    assert tp16[1] > 5 * tp8[1]  # two HGX boards: the ring crosses the 400 Gb/s NIC
    # Beyond the domain the bus bandwidth is the NIC's where it is slower than PCIe.
    b200 = catalog.gpu("b200")
    fraction = catalog.calibration.framework("vllm", "nvidia").pcie_busbw_fraction or catalog.calibration.links["pcie"].busbw_fraction
    assert hw.pcie_bytes_per_s[1] == pytest.approx(min(b200.pcie_bw_unidir_gb_s, 50) * BYTES_PER_S_PER_GB_S * fraction)


def test_new_families_take_their_nearest_familys_efficiencies(catalog) -> None:
    cal = catalog.calibration
    cdna4, source = cal.device("mi355x", "cdna4")
    assert source == "arch:cdna4" and cdna4.compute_eff == cal.arch["cdna3"].compute_eff and "cdna3" in cdna4.fitted_from
    assert cal.device("rtx-pro-6000", "blackwell-rtx")[0].mem_eff == cal.arch["ada"].mem_eff
    assert cal.device("gb200", "blackwell")[0] == cal.arch["blackwell"]


def test_engines_fp4_capability(catalog) -> None:
    runs = {
        ("vllm", "h100-sxm"): True,  # MXFP4/NVFP4 weight-only (Marlin/Triton)
        ("vllm", "mi300x"): True,  # MXFP4 MoE on the ROCm Triton backend
        ("vllm", "mi355x"): True,
        ("vllm", "rtx-pro-6000"): True,
        ("vllm", "mi250"): False,
        ("sglang", "b200"): True,
        ("sglang", "h100-sxm"): True,
        ("sglang", "mi300x"): False,  # MX types on gfx95 only
        ("trtllm", "gb200"): True,
        ("trtllm", "h100-sxm"): True,  # MXFP4 (gpt-oss) weight-only: TRT-LLM 1.3's w4a16_mxfp4 MoE kernels on Hopper
        ("trtllm", "l40s"): False,
        ("fastgen", "h100-sxm"): False,
    }
    for (fw_id, gpu_id), ok in runs.items():
        assert (weights_reason(catalog.framework(fw_id), catalog.gpu(gpu_id), Dtype.FP4) is None) == ok, (fw_id, gpu_id)


def test_fp4_refusals_name_the_flag_and_the_fix(catalog) -> None:
    refused = r"fp4 weights not supported on cdna2 GPUs \(mi250\).*a precision vllm serves on mi250: fp16"
    with pytest.raises(InvalidRequestError, match=refused):
        api.predict(predict_request(gpu="mi250", dtype="fp4"), catalog)
    line = run(*PREDICT[:4], "l40s", *PREDICT[5:], "--framework", "trtllm")
    assert line.exit_code == 1 and "Traceback" not in line.output
    text = line.stderr.strip()
    assert len(text.splitlines()) == 1 and text.startswith("error: --dtype: trtllm: fp4 weights not supported on ada")
    assert "allowed on hopper, blackwell" in text and "fp8" in text  # the fix: another GPU, or a precision it serves here
    fastgen = run(*PREDICT, "--framework", "fastgen")
    assert fastgen.exit_code == 1 and "--dtype: fastgen: fp4 weights not supported; allowed: fp16, bf16 (or another" in fastgen.stderr


def test_fp4_weights_take_nvfp4_bytes_and_plan_on_blackwell(catalog) -> None:
    dtypes = (Dtype.FP8, Dtype.FP4, Dtype.INT4)
    weights = {d: api.predict(predict_request(gpu="b200", dtype=d.value), catalog).memory.weights_gb for d in dtypes}
    # The quantized weights (all but what stays 16-bit) scale with the bytes per weight, block scales included.
    quantized = (weights[Dtype.FP8] - weights[Dtype.FP4]) / (Dtype.FP8.bytes - Dtype.FP4.bytes)
    assert weights[Dtype.FP4] - weights[Dtype.INT4] == pytest.approx(quantized * (Dtype.FP4.bytes - Dtype.INT4.bytes), rel=1e-6)
    plan = api.plan({"model": LLAMA2_7B, "workload": {"input_len": 512, "output_len": 128}, "budget": {"usd_per_hour": 20},
                     "gpus": {"b200": {}}, "precision": ["fp4"]}, catalog)  # fmt: skip
    assert plan.plans and all(g.dtype == "fp4" for p in plan.plans for g in p.groups)


def test_catalog_gpus_shows_fp4_and_domain() -> None:
    rows = {r["id"]: r for r in json.loads(run("catalog", "gpus", "--json").output)}
    assert rows["gb300"]["fp4_tflops"] == 15000 and rows["gb300"]["scale_up_domain_gpus"] == 72
    assert rows["h100-sxm"]["fp4_tflops"] is None and rows["h100-sxm"]["scale_up_domain_gpus"] == 8
    table = run("catalog", "gpus").output
    assert "fp4_tflops" in table.splitlines()[0] and "scale_up_domain_gpus" in table.splitlines()[0]


def test_the_planner_runs_tp_across_nvl72_trays_but_not_across_hgx_boards(catalog) -> None:
    req = {"model": LLAMA2_7B, "workload": {"input_len": 512, "output_len": 128}, "budget": {"usd_per_hour": 300}}
    plan = api.plan({**req, "gpus": {"gb200": {}}, "parallelism": {"tp": [16]}}, catalog)
    group = plan.plans[0].groups[0]
    assert (group.gpu, group.tp) == ("gb200", 16)
    with pytest.raises(NoFeasiblePlanError):
        api.plan({**req, "gpus": {"b200": {}}, "parallelism": {"tp": [16]}}, catalog)
