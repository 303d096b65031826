"""Every bundled catalog file loads; model sizes match their published counts."""

from __future__ import annotations

import json
import re

import pytest
import yaml
from conftest import CATALOG_DIR, LLAMA2_7B, MIXTRAL_8X7B, REPO_ROOT

from guideopt.catalog import _read_yaml, load_model_config
from guideopt.errors import CatalogError
from guideopt.model.framework import Framework
from guideopt.model.gpu import Gpu
from guideopt.model.hf_config import arch_from_hf_config
from guideopt.model.model_ids import quantized_suffix_dtype

GPU_FILES = sorted((CATALOG_DIR / "gpus").glob("*.yaml"))
MODEL_FILES = sorted((CATALOG_DIR / "models").glob("*.yaml"))
FRAMEWORK_FILES = sorted((CATALOG_DIR / "frameworks").glob("*.yaml"))

CONTRACT = REPO_ROOT.parent / "shared" / "docs" / "CONTRACT.md"
# The contract's "GPUs: lower-case ids. At least: ..." list, copied so the test runs without shared/.
CONTRACT_GPU_IDS = (
    "v100-sxm2-32gb",
    "v100-pcie-32gb",
    "t4",
    "a10g",
    "a10",
    "l4",
    "l40s",
    "a40",
    "rtx-a6000",
    "rtx-6000-ada",
    "rtx-4090",
    "rtx-3090",
    "a100-sxm4-40gb",
    "a100-sxm4-80gb",
    "a100-pcie-80gb",
    "h100-sxm",
    "h100-pcie",
    "h100-nvl",
    "h200-sxm",
    "h200-nvl",
    "h20",
    "gh200",
    "b200",
    "b300",
    "gb200",
    "gb300",
    "rtx-pro-6000",
    "mi250",
    "mi250x",
    "mi300x",
    "mi325x",
    "mi350x",
    "mi355x",
)
CONTRACT_FRAMEWORK_IDS = ("vllm", "fastgen", "trtllm", "sglang")
NUM_PARAMS_RTOL = 0.01  # the brief: computed parameter count within 1% of the published one
LLAMA2_7B_KV_BYTES_PER_TOKEN_FP16 = 2 * 32 * 4096 * 2  # K and V × 32 layers × 4096 wide × 2 bytes = 0.5 MiB


def test_globs_are_not_empty():
    assert len(GPU_FILES) >= len(CONTRACT_GPU_IDS)
    assert MODEL_FILES and FRAMEWORK_FILES


@pytest.mark.parametrize("path", GPU_FILES, ids=lambda p: p.stem)
def test_gpu_file_loads(path, catalog):
    gpu = Gpu.model_validate(_read_yaml(path))
    assert gpu.id == path.stem
    assert catalog.gpus[gpu.id] == gpu
    assert gpu.memory_gib > 0 and gpu.usd_per_hour > 0 and gpu.hbm_bw_gb_s > 0


@pytest.mark.parametrize("path", MODEL_FILES, ids=lambda p: p.stem)
def test_model_file_loads_and_num_params_matches(path, catalog):
    data = _read_yaml(path)
    arch = arch_from_hf_config(data["hf_config"], data["id"])
    # a quantized repository whose config.json leaves the precision to hf_quant_config.json takes it from its id
    assert catalog.models[data["id"]].model_dump(exclude={"source", "checkpoint_dtype"}) == arch.model_dump(
        exclude={"source", "checkpoint_dtype"}
    )
    assert catalog.models[data["id"]].checkpoint_dtype == (arch.checkpoint_dtype or quantized_suffix_dtype(data["id"]))
    # Files are named after the HF id with "/" -> "--".
    assert path.stem == data["id"].replace("/", "--")
    stored = data["num_params"]
    assert arch.num_params == pytest.approx(stored, rel=NUM_PARAMS_RTOL)
    assert arch.num_active_params <= arch.num_params


@pytest.mark.parametrize("path", FRAMEWORK_FILES, ids=lambda p: p.stem)
def test_framework_file_loads(path, catalog):
    fw = Framework.model_validate(_read_yaml(path))
    assert fw.id == path.stem
    assert catalog.frameworks[fw.id] == fw
    assert fw.calibration_id in catalog.calibration.frameworks, "every framework (or its engine family) needs fitted efficiencies"


def test_calibration_covers_every_link_class(catalog):
    for gpu in catalog.gpus.values():
        assert gpu.link.value in catalog.calibration.links
    assert "pcie" in catalog.calibration.links


@pytest.mark.parametrize("gpu_id", CONTRACT_GPU_IDS)
def test_contract_gpu_ids_exist(gpu_id, catalog):
    assert catalog.gpu(gpu_id).id == gpu_id


@pytest.mark.parametrize("fw_id", CONTRACT_FRAMEWORK_IDS)
def test_contract_framework_ids_exist(fw_id, catalog):
    assert catalog.framework(fw_id).id == fw_id


@pytest.mark.skipif(not CONTRACT.is_file(), reason="shared/docs/CONTRACT.md not present")
def test_contract_gpu_list_is_the_one_tested():
    text = CONTRACT.read_text()
    line = next(ln for ln in text.splitlines() if "**GPUs**" in ln)
    ids = re.findall(r"`([a-z0-9-]+)`", line.split("At least:", 1)[1].split(". ", 1)[0])  # the list, not the NVL72 note after it
    assert tuple(ids) == CONTRACT_GPU_IDS


def test_chatglm3_has_two_kv_heads(catalog):
    attn = catalog.model("THUDM/chatglm3-6b").layer_groups[0].attention
    assert attn.num_kv_heads == 2
    assert attn.num_heads == 32


def test_llama2_7b_kv_bytes_per_token(catalog):
    arch = catalog.model(LLAMA2_7B)
    assert arch.kv_bytes_per_token(2.0) == LLAMA2_7B_KV_BYTES_PER_TOKEN_FP16 == 524288


def test_mixtral_active_params(catalog):
    arch = catalog.model(MIXTRAL_8X7B)
    assert arch.is_moe and arch.num_experts == 8 and arch.experts_per_token == 2
    assert arch.num_active_params == pytest.approx(12.9e9, rel=0.01)
    assert arch.num_params == pytest.approx(46.7e9, rel=0.01)


def test_model_from_local_config_json(tmp_path, catalog):
    hf_config = yaml.safe_load((CATALOG_DIR / "models" / "meta-llama--Llama-2-7b-hf.yaml").read_text())["hf_config"]
    model_dir = tmp_path / "my-llama"
    model_dir.mkdir()
    path = model_dir / "config.json"
    path.write_text(json.dumps(hf_config))
    expected = catalog.model(LLAMA2_7B).model_dump(exclude={"id", "source"})
    for ref in (str(path), str(model_dir)):
        arch = catalog.model(ref)
        assert arch.model_dump(exclude={"id", "source"}) == expected
    assert load_model_config(path).num_params == catalog.model(LLAMA2_7B).num_params


def test_local_config_json_missing_file(tmp_path, catalog):
    with pytest.raises(CatalogError, match="does not exist"):
        catalog.model(str(tmp_path / "nope" / "config.json"))


def test_local_config_json_missing_key(tmp_path, catalog):
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"model_type": "llama", "hidden_size": 4096}))
    with pytest.raises(CatalogError, match="lacks"):
        catalog.model(str(path))


def test_unknown_gpu_suggests_close_id(catalog):
    with pytest.raises(CatalogError, match="did you mean 'h100-sxm'"):
        catalog.gpu("h100-sx")


def test_unknown_model_raises_catalog_error(catalog):
    with pytest.raises(CatalogError, match="model: unknown model"):
        catalog.model("nobody/no-such-model")


def test_gpu_lookup_is_case_insensitive(catalog):
    assert catalog.gpu("H100-SXM").id == "h100-sxm"


@pytest.mark.parametrize(
    "variant, base",
    [
        ("meta-llama/Llama-2-7b-chat-hf", "meta-llama/Llama-2-7b-hf"),
        ("mistralai/Mistral-7B-Instruct-v0.2", "mistralai/Mistral-7B-v0.1"),
        ("meta-llama/Meta-Llama-3-8B-Instruct", "meta-llama/Meta-Llama-3-8B"),
        ("meta-llama/Meta-Llama-3.1-70B-Instruct", "meta-llama/Llama-3.1-70B"),
        ("Qwen/Qwen2-7B-Instruct", "Qwen/Qwen2-7B"),
        ("meta-llama/Llama-2-7b", "meta-llama/Llama-2-7b-hf"),
    ],
)
def test_fine_tuned_variants_resolve_to_their_base_architecture(catalog, variant, base):
    assert catalog.model(variant) is catalog.model(base)


def test_unknown_model_still_fails_with_a_hint(catalog):
    from guideopt.errors import CatalogError

    with pytest.raises(CatalogError, match="model: unknown model"):
        catalog.model("acme/NotAModel-7B-Instruct")
