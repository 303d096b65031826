"""Engine capabilities (catalogs/frameworks/*.yaml `capabilities`): the option tables, the
solver, ``predict`` and the infeasibility explanation refuse what an engine cannot run."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from guideopt import api
from guideopt.catalog import load_catalog
from guideopt.costs.capability import option_reason
from guideopt.costs.pipeline_table import build_pipeline_table
from guideopt.costs.tables import OptionSpace, build_option_table
from guideopt.errors import CatalogError, InvalidRequestError, NoFeasiblePlanError
from guideopt.model.dtype import Dtype
from tests.conftest import CATALOG_DIR, LLAMA2_7B, plan_request, predict_request

CAT = load_catalog()
GPU_IDS = sorted(CAT.gpus)
FW_IDS = sorted(CAT.frameworks)
PRE_AMPERE = {"volta", "turing"}


def _space(gpus, frameworks, dtypes, kv=None, pp=(1,)) -> OptionSpace:
    return OptionSpace(
        gpus=gpus, frameworks=frameworks, dtypes=dtypes, tp=[1, 2], pp=list(pp), batch=[1], input_len=256, output_len=64, kv_dtype=kv
    )


@given(st.sampled_from(GPU_IDS), st.sampled_from(FW_IDS), st.sampled_from(list(Dtype)), st.sampled_from([None, *Dtype]))
def test_option_table_has_rows_exactly_where_the_engine_runs(gpu_id, fw_id, dtype, kv):
    gpu, fw = CAT.gpu(gpu_id), CAT.framework(fw_id)
    table = build_option_table(CAT.model(LLAMA2_7B), _space([gpu], [fw], [dtype], kv), CAT.calibration)
    kv_dtype = kv or (dtype if dtype.is_float16 else Dtype.FP16)
    assert (len(table) > 0) == (option_reason(fw, gpu, dtype, kv_dtype) is None)


@pytest.mark.parametrize(
    ("fw_id", "allowed"),
    [
        ("fastgen", lambda g: g.vendor.value == "nvidia" and g.arch in {"ampere", "ada", "hopper"}),
        # sm_120 (RTX PRO 6000 Blackwell) is not verified for TRT-LLM 1.0 or SGLang 0.5.3 (frameworks/*.yaml)
        ("trtllm", lambda g: g.vendor.value == "nvidia" and g.arch not in {*PRE_AMPERE, "blackwell-rtx"}),
        ("sglang", lambda g: g.arch not in {"volta", "cdna2", "blackwell-rtx"}),
        ("vllm", lambda g: True),
    ],
)
def test_engines_run_only_on_their_gpus(fw_id, allowed):
    fw = CAT.framework(fw_id)
    for gpu in CAT.gpus.values():
        table = build_option_table(CAT.model(LLAMA2_7B), _space([gpu], [fw], [Dtype.FP16]), CAT.calibration)
        assert (len(table) > 0) == allowed(gpu), (fw_id, gpu.id)


def test_gpu_precisions_the_hardware_lacks_are_never_planned():
    """Issue 14 item 2: T4 has no bf16, V100 no fp8 (catalog peak_tflops null)."""
    for gpu_id, dtype in (("t4", "bf16"), ("v100-sxm2-32gb", "fp8"), ("v100-pcie-32gb", "bf16")):
        req = plan_request(gpus={gpu_id: {}}, precision=[dtype], framework="any", budget=100)
        with pytest.raises(NoFeasiblePlanError):
            api.plan(req)
        with pytest.raises(InvalidRequestError, match="dtype: "):
            api.predict(predict_request(gpu=gpu_id, dtype=dtype))


def test_fastgen_kv_cache_follows_the_weights():
    fw, gpu = CAT.framework("fastgen"), CAT.gpu("h100-sxm")
    assert len(build_option_table(CAT.model(LLAMA2_7B), _space([gpu], [fw], [Dtype.FP16], Dtype.FP8), CAT.calibration)) == 0
    with pytest.raises(InvalidRequestError, match=r"kv_dtype: fastgen: fp8 KV cache not supported; allowed: the weights' dtype"):
        api.predict(predict_request(framework="fastgen", kv_dtype="fp8"))


@pytest.mark.parametrize(
    ("extra", "reason"),
    [
        ({"gpus": {"mi300x": {}}, "framework": "trtllm"}, "trtllm does not run on AMD GPUs (mi300x)"),
        (
            {"gpus": {"h100-sxm": {}}, "framework": "fastgen", "kv_dtype": "fp8"},
            "fastgen: fp8 KV cache not supported; allowed: the weights' dtype",
        ),
        ({"gpus": {"mi250": {}}, "framework": "sglang"}, "sglang does not run on cdna2 GPUs (mi250)"),
        ({"gpus": {"t4": {}}, "framework": "vllm", "precision": ["bf16"]}, "t4 (turing) has no bf16 support"),
    ],
)
def test_infeasibility_names_the_real_reason(extra, reason):
    """Issue 14 item 4: not "none of [1, 2, 4, 8] divides 32 heads"."""
    with pytest.raises(NoFeasiblePlanError) as info:
        api.plan(plan_request(**extra))
    assert reason in str(info.value)
    assert "divides" not in str(info.value)


def test_no_plan_uses_an_unsupported_engine_gpu_pair():
    req = plan_request(gpus={g: {} for g in ("mi300x", "mi250", "v100-sxm2-32gb", "t4", "a100-sxm4-80gb")}, framework="any", budget=40)
    req["top"] = 10
    for plan in api.plan(req).plans:
        for group in plan.groups:
            for gpu_id in [s["gpu"] for s in group.stages] if group.stages else [group.gpu]:
                gpu = CAT.gpu(gpu_id)
                assert option_reason(CAT.framework(group.framework), gpu, Dtype(group.dtype), Dtype(group.kv_dtype)) is None


def test_cross_type_pipelines_never_pair_amd_and_nvidia_or_unequal_tp():
    gpus = [CAT.gpu(g) for g in ("mi300x", "h100-sxm", "a100-sxm4-80gb")]
    space = OptionSpace(
        gpus=gpus,
        frameworks=list(CAT.frameworks.values()),
        dtypes=[Dtype.FP16],
        tp=[1, 2, 4],
        pp=[2],
        batch=[8],
        input_len=512,
        output_len=128,
    )
    pt = build_pipeline_table(
        CAT.model("meta-llama/Llama-2-70b-hf"), space, CAT.calibration, CAT.network_link, [g.usd_per_hour for g in gpus]
    )
    assert pt is not None and len(pt) > 0
    vendors = np.array([g.vendor.value for g in gpus])
    assert (vendors[pt.gpu_a] == vendors[pt.gpu_b]).all()
    assert (pt.tp_a == pt.tp_b).all()
    assert {space.frameworks[i].calibration_id for i in pt.fw_idx} == {"vllm"}  # every vLLM version


def _catalog_copy(tmp_path: Path) -> Path:
    root = tmp_path / "catalogs"
    shutil.copytree(CATALOG_DIR, root)
    return root


def test_catalog_refuses_an_unknown_architecture(tmp_path):
    root = _catalog_copy(tmp_path)
    path = root / "frameworks" / "fastgen.yaml"
    data = yaml.safe_load(path.read_text())
    data["capabilities"]["weight_dtypes"]["fp16"].append("rdna9")
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(CatalogError, match=r"fastgen.yaml: capabilities: unknown architecture\(s\) \['rdna9'\]"):
        load_catalog(str(root))


def test_catalog_checks_engine_vendors_against_architectures(tmp_path):
    root = _catalog_copy(tmp_path)
    path = root / "frameworks" / "trtllm.yaml"
    data = yaml.safe_load(path.read_text())
    data["capabilities"]["vendors"] = ["nvidia", "amd"]
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(CatalogError, match=r"capabilities.vendors: must be \['nvidia'\]"):
        load_catalog(str(root))


def test_sglang_memory_rule_reproduces_its_server_args() -> None:
    """sglang 0.5.3 server_args.py:637-676: an 80 GiB card with 16,384-token chunks keeps
    about 25 GiB outside the static pool (0.88 kept 9.6 GiB)."""
    from guideopt.costs.engine_defaults import default_split, memory_fraction
    from guideopt.units import BYTES_PER_GIB

    fw = CAT.framework("sglang")
    gib80 = 80 * BYTES_PER_GIB
    frac = float(memory_fraction(fw, gpu_memory_bytes=gib80, tp=1, pp=1, split=16384))
    assert frac == round((81920 - (512 + 16384 * 1.5 + 256 * 2 + 128)) / 81920, 3) == 0.686
    assert 25 < (1 - frac) * 80 < 25.5
    assert [default_split(fw, g * BYTES_PER_GIB) for g in (16, 24, 40, 80, 141, 192)] == [2048, 2048, 4096, 8192, 8192, 16384]
    # 8 GPUs of 192 GiB: the reserve grows with the parallel size (tp x pp / 8 x 1 GiB)
    assert float(memory_fraction(fw, gpu_memory_bytes=192 * BYTES_PER_GIB, tp=8, pp=1, split=16384)) == 0.862
    vllm = CAT.framework("vllm")
    assert float(memory_fraction(vllm, gpu_memory_bytes=gib80, tp=1, pp=1, split=16384)) == vllm.memory_fraction


def test_a_newer_engine_version_is_a_catalog_entry(tmp_path):
    """A new version (its own defaults, capabilities and launch template) needs no code change."""
    from guideopt.io.launch import emit

    root = _catalog_copy(tmp_path)
    data = yaml.safe_load((root / "frameworks" / "vllm.yaml").read_text())
    data.update(id="vllm-0-12", engine="vllm", version="0.12.0")
    data["launch"].update(version="0.12.0", command=data["launch"]["command"] + " --async-scheduling")
    (root / "frameworks" / "vllm-0-12.yaml").write_text(yaml.safe_dump(data))
    cat = load_catalog(str(root))
    req = plan_request(gpus={"h100-sxm": 2}, framework="vllm-0-12", top=1)
    result = api.plan(req, cat)
    script = emit(result, tmp_path / "out", request=req, catalog=cat)[0].read_text()
    assert "vLLM 0.12.0" in script and "--async-scheduling" in script


def test_catalog_requires_one_version_per_entry_and_a_calibrated_engine(tmp_path):
    root = _catalog_copy(tmp_path)
    path = root / "frameworks" / "sglang.yaml"
    data = yaml.safe_load(path.read_text())
    data["launch"]["version"] = "0.5.4"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(CatalogError, match=r"launch.version '0.5.4' must equal version '0.5.3'"):
        load_catalog(str(root))
    data["launch"]["version"], data["id"], data["engine"] = "0.5.3", "sglang-x", "nosuch"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(CatalogError, match=r"no entry for engine 'nosuch' of frameworks/sglang-x.yaml"):
        load_catalog(str(root))


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"gpu": "mi300x", "framework": "trtllm"}, "framework: trtllm does not run on AMD GPUs (mi300x)"),
        ({"gpu": "t4", "dtype": "bf16"}, "dtype: t4 (turing) has no bf16 support"),
        ({"gpu": "h100-sxm", "framework": "fastgen", "kv_dtype": "fp8"}, "kv_dtype: fastgen: fp8 KV cache not supported"),
    ],
)
def test_capacity_refuses_what_the_engine_cannot_run(extra, message):
    """One verdict for predict, capacity and plan (no IndexError on an empty option table)."""
    req = {"model": LLAMA2_7B, "input_len": 512, "output_len": 128, **extra}
    with pytest.raises(InvalidRequestError, match=re.escape(message)):
        api.capacity(req)
    with pytest.raises(InvalidRequestError, match=re.escape(message)):
        api.predict({**req, "batch": 1})
