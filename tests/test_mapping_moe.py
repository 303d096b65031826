"""Measured MoE / FP4 / Blackwell rows -> predict requests: labels, precision and the parallel layout.

The rows are copies of aiconfigurator silicon-sample rows of shared/data/measured/e2e.csv (notes
shortened to the fields the mapping reads). A stub catalog holds the ids, so the mapping is
tested whatever the real catalog holds today.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from guideopt.calibration.cases import Case, Skip
from guideopt.calibration.labels import gpu_id, model_id
from guideopt.calibration.layouts import Layout, checked
from guideopt.calibration.mapping import to_case
from guideopt.calibration.measurements import Measurement

AIC = "NVIDIA aiconfigurator silicon_sample (real e2e measurements used to validate aiconfigurator)"
MODELS = (
    "deepseek-ai/DeepSeek-R1",
    "deepseek-ai/DeepSeek-V3",
    "openai/gpt-oss-120b",
    "Qwen/Qwen3-235B-A22B",
    "zai-org/GLM-5",
    "MiniMaxAI/MiniMax-M2.5",
    "moonshotai/Kimi-K2.5",
    "meta-llama/Llama-3.1-8B",
)
GPUS = ("h100-sxm", "h200-sxm", "b200", "b300", "gb200", "gb300")
CATALOG = SimpleNamespace(gpus=dict.fromkeys(GPUS), models=dict.fromkeys(MODELS))


def aic_row(notes: str, **kw) -> Measurement:
    base = dict(
        line=2,
        source=AIC,
        source_locator="loc",
        framework="TensorRT-LLM",
        framework_version="1.2.0rc6.post3",
        gpu="B200-SXM",
        num_gpus=None,
        tp=1.0,
        pp=1.0,
        model="deepseek-ai/DeepSeek-R1",
        dtype="fp4",
        quant="nvfp4",
        batch_or_concurrency=256.0,
        input_len=8192.0,
        output_len=1024.0,
        metric="tpot",
        value=29.67,
        unit="ms",
        notes="aggregated (non-disaggregated) serving; " + notes,
    )
    base.update(kw)
    return Measurement(**base)


def case_of(m: Measurement) -> Case:
    result = to_case(m, CATALOG)
    assert isinstance(result, Case), result
    return result


def layout_keys(request: dict) -> dict:
    keys = ("num_gpus", "tp", "pp", "attention_dp", "moe_tp", "moe_ep")
    return {k: request[k] for k in keys if k in request}


# --- labels ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "label, gpu",
    [("B300-SXM", "b300"), ("GB200", "gb200"), ("GB300", "gb300"), ("B200-SXM", "b200"), ("AMD Instinct MI250X", None)],
)
def test_blackwell_gpu_labels(label, gpu):
    assert gpu_id(label, CATALOG) == gpu


def test_gpu_label_of_a_gpu_the_catalog_lacks_is_none():
    assert gpu_id("B300-SXM", SimpleNamespace(gpus={"b200": None}, models={})) is None


@pytest.mark.parametrize(
    "name, expected",
    [
        ("deepseek-ai/DeepSeek-R1", ("deepseek-ai/DeepSeek-R1", None)),
        ("zhipuai/GLM-5", ("zai-org/GLM-5", None)),  # Zhipu AI's Hugging Face org is zai-org
        ("Qwen/Qwen3-235B-A22B-FP8", ("Qwen/Qwen3-235B-A22B", "fp8")),  # quantized checkpoint: its architecture
        ("nvidia/DeepSeek-R1-NVFP4", ("deepseek-ai/DeepSeek-R1", "fp4")),
        ("nvidia/DeepSeek-V3.1-NVFP4", ("deepseek-ai/DeepSeek-V3", "fp4")),  # V3.1 has V3's shapes
        ("RedHatAI/MiniMax-M2.5-FP8", ("MiniMaxAI/MiniMax-M2.5", "fp8")),  # any org: by the suffix rule
        ("openai/gpt-oss-120b", ("openai/gpt-oss-120b", "fp4")),  # MXFP4 experts are the only release
        ("Qwen/Qwen3-30B-A3B-FP8", None),  # not in this catalog
    ],
)
def test_moe_model_names(name, expected):
    assert model_id(name, CATALOG) == expected


# --- precision -------------------------------------------------------------------------


def test_fp4_row_is_predicted_with_fp4_weights():
    m = aic_row("client concurrency=8; aic batch_size=8; moe_tp=8 moe_ep=1; gemm_quant=nvfp4 moe_quant=nvfp4", tp=8.0)
    case = case_of(m)
    assert case.request["dtype"] == "fp4" and "kv_dtype" not in case.request and case.assumptions == ()


def test_gpt_oss_fp8_label_keeps_its_mxfp4_weights():
    notes = "client concurrency=4; aic batch_size=4; moe_tp=4 moe_ep=1; gemm_quant=fp8 moe_quant=fp8"
    case = case_of(aic_row(notes, model="openai/gpt-oss-120b", gpu="H100-SXM", tp=4.0, dtype="fp8", quant="fp8"))
    assert case.request["dtype"] == "fp4" and "checkpoint stores fp4" in case.assumptions[0]


def test_mixed_gemm_and_moe_quant_takes_the_experts_precision():
    notes = "client concurrency=4; aic batch_size=4; moe_tp=8 moe_ep=1; gemm_quant=fp8 moe_quant=mxfp4"
    case = case_of(aic_row(notes, tp=8.0, dtype="", quant=""))
    assert case.request["dtype"] == "fp4" and "one weight precision per model" in case.assumptions[0]


def test_fp8_block_and_int4_weight_only():
    notes = "client concurrency=16; aic batch_size=16; moe_tp=8 moe_ep=1; gemm_quant=fp8 moe_quant=fp8_block"
    assert case_of(aic_row(notes, tp=8.0, dtype="fp8", quant="fp8")).request["dtype"] == "fp8"
    notes = "client concurrency=16; aic batch_size=16; moe_tp=8 moe_ep=1; gemm_quant=int4_wo moe_quant=int4_wo"
    kimi = aic_row(notes, tp=8.0, model="moonshotai/Kimi-K2.5", dtype="int4", quant="int4_wo", framework="vLLM")
    assert case_of(kimi).request["dtype"] == "int4"


# --- layouts ---------------------------------------------------------------------------

DEP8_NATIVE = (
    "client concurrency=256 (from silicon_data_source); aic batch_size=32; attention_dp_size=8; moe_tp=1 moe_ep=8; "
    "gemm_quant=nvfp4 moe_quant=nvfp4; row id 2026_03_25_deepseek_r1_b200_sxm_trtllm_fp4_agg_8192x1024_c256_tp8_0_ep8_0_974"
)
# The same DEP8 engine layout as the converted export writes it (its TPOT equals the native run's).
DEP8_CONVERTED = (
    "client concurrency=128 (from silicon_data_source); aic batch_size=2; attention_dp_size=64; moe_tp=8 moe_ep=8; "
    "gemm_quant=nvfp4 moe_quant=nvfp4; row id dsr1_b200_trtllm_fp4_agg_8192x1024_c128_cfg191"
)
DEP8 = {"num_gpus": 8, "tp": 1, "pp": 1, "attention_dp": 8, "moe_tp": 1, "moe_ep": 8}


def test_deepseek_dep_row_runs_attention_dp_with_expert_parallel():
    case = case_of(aic_row(DEP8_NATIVE))
    assert layout_keys(case.request) == DEP8
    # The client concurrency is the whole worker's (batch 32 per rank x 8 ranks), not the per-rank batch.
    assert case.request["concurrency"] == 256 and case.measured == pytest.approx(29.67)


def test_converted_dep_encoding_decodes_to_the_same_eight_gpus():
    case = case_of(aic_row(DEP8_CONVERTED, batch_or_concurrency=128.0))
    assert layout_keys(case.request) == DEP8 and case.request["concurrency"] == 128


def test_deepseek_tep_row_tp_attention_with_expert_parallel():
    native = "client concurrency=8; aic batch_size=8; moe_tp=1 moe_ep=8; row id 2026_03_25_deepseek_r1_h200_sxm_trtllm_fp8_agg_1024x1024_c8_tp8_0_ep8_0_1262"
    converted = "client concurrency=8; aic batch_size=8; moe_tp=8 moe_ep=8; row id 2026_04_06_deepseek_r1_h200_sxm_trtllm_fp8_agg_1024x1024_c8_tp8_ep8_957"
    tep8 = {"num_gpus": 8, "tp": 8, "pp": 1, "moe_tp": 1, "moe_ep": 8}
    assert layout_keys(case_of(aic_row(native, tp=8.0, num_gpus=8.0, gpu="H200-SXM")).request) == tep8
    assert layout_keys(case_of(aic_row(converted, tp=64.0, num_gpus=64.0, gpu="H200-SXM")).request) == tep8


def test_vllm_expert_parallel_keeps_tp_attention():
    notes = "client concurrency=32; aic batch_size=8; attention_dp_size=4; moe_tp=1 moe_ep=16; row id 2026_04_06_kimi_k2_5_b200_sxm_vllm_fp4_agg_8192x1024_c32_tp4_ep4_1306"
    case = case_of(aic_row(notes, tp=4.0, model="moonshotai/Kimi-K2.5", framework="vLLM"))
    assert layout_keys(case.request) == {"num_gpus": 4, "tp": 4, "pp": 1, "moe_tp": 1, "moe_ep": 4}


def test_b300_tp_row_has_no_moe_keys():
    notes = "client concurrency=128; aic batch_size=128; moe_tp=4 moe_ep=1; gemm_quant=fp8 moe_quant=fp8; row id minimaxm2_5_b300_vllm_fp8_agg_8192x1024_c128_cfg733"
    m = aic_row(
        notes,
        gpu="B300-SXM",
        tp=4.0,
        num_gpus=4.0,
        model="MiniMaxAI/MiniMax-M2.5",
        framework="vLLM",
        dtype="fp8",
        quant="fp8",
        batch_or_concurrency=128.0,
    )
    case = case_of(m)
    assert case.request["gpu"] == "b300" and case.request["dtype"] == "fp8"
    assert layout_keys(case.request) == {"num_gpus": 4, "tp": 4, "pp": 1}
    assert case.request["concurrency"] == 128


def test_dense_rows_without_an_moe_split_keep_the_tp_default():
    notes = "client concurrency=32; aic batch_size=32; moe_tp=1 moe_ep=1; gemm_quant= moe_quant=; row id x_h100_sxm_trtllm_agg_1024x256_c32_tp4_epnone_107"
    case = case_of(aic_row(notes, tp=4.0, num_gpus=4.0, model="meta-llama/Llama-3.1-8B-Instruct", dtype="", quant="", gpu="H100-SXM"))
    assert layout_keys(case.request) == {"num_gpus": 4, "tp": 4, "pp": 1} and case.request["dtype"] == "bf16"


@pytest.mark.parametrize(
    "notes, tp, reason, detail",
    [
        (  # Qwen3-235B on one H200 with experts over two GPUs: the invariant fails
            "client concurrency=8; aic batch_size=8; moe_tp=2 moe_ep=1; row id q_h200_sxm_vllm_agg_1000x100_c8_tp1_epnone_2",
            1.0,
            "MoE layout breaks moe_tp × moe_ep = tp × attention_dp",
            "tp=1 attention_dp=1 moe_tp=2 moe_ep=1",
        ),
        (
            "client concurrency=8; aic batch_size=8; moe_tp=2 moe_ep=2; row id x_b200_sxm_trtllm_fp4_agg_1024x1024_c8_tp8_ep8_9",
            4.0,
            "layout fields disagree with the row id",
            "tp=4 attention_dp_size=1 moe_tp=2 moe_ep=2",
        ),
        (
            "client concurrency=224 (from silicon_data_source); aic batch_size=56; moe_tp=1 moe_ep=4; row id r_trtllm_agg_4000x1000_c224_tp4_epnone_1",
            4.0,
            "per-rank batch and client concurrency disagree",
            "client concurrency=224 aic batch_size=56 attention_dp_size=1",
        ),
        (
            "concurrency not recorded; batch_or_concurrency = aic batch_size; aic batch_size=28; moe_tp=1 moe_ep=8",
            8.0,
            "client concurrency not recorded",
            "aic batch_size=28",
        ),
        (
            "client concurrency=448; aic batch_size=448; moe_tp=72 moe_ep=1; row id 2026_04_06_deepseek_r1_gb200_sglang_fp8_agg_8192x1024_c448_tp72_ep1_106",
            72.0,
            "wide TP-N layout not recoverable",
            "tp=72 moe_ep=1 on GB200",
        ),
    ],
)
def test_layouts_that_are_skipped_name_their_fields(notes, tp, reason, detail):
    result = to_case(aic_row(notes, tp=tp, gpu="GB200" if tp == 72.0 else "H200-SXM"), CATALOG)
    assert isinstance(result, Skip) and result.reason == reason and detail in result.detail and result.line == 2


def test_layout_contract():
    assert checked(Layout(num_gpus=16, tp=1, attention_dp=8, moe_tp=1, moe_ep=8)).request_fields() == {
        "num_gpus": 16,  # two replicas of DEP8
        "tp": 1,
        "pp": 1,
        "attention_dp": 8,
        "moe_tp": 1,
        "moe_ep": 8,
    }
    assert checked(Layout(num_gpus=8, tp=8, moe_tp=8)).request_fields() == {"num_gpus": 8, "tp": 8, "pp": 1}
    assert isinstance(checked(Layout(num_gpus=12, tp=8)), Skip)
    assert isinstance(checked(Layout(num_gpus=8, tp=4, attention_dp=2, moe_tp=2, moe_ep=2)), Skip)
