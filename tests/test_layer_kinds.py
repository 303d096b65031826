"""Layer kinds as data (issue 20): KV bytes per token and state bytes per sequence against
hand calculations from each model's config.json, parameter counts against the published
sizes, and one-line refusals naming the key."""

from __future__ import annotations

import numpy as np
import pytest

from guideopt.costs.memory import kv_bytes_per_token_per_gpu, weights_per_gpu_bytes
from guideopt.costs.tables import tp_is_valid
from guideopt.errors import CatalogError
from guideopt.model.hf_config import arch_from_hf_config
from guideopt.model.layers import DeltaNetAttention, GqaAttention, MambaMixer, MlaAttention, MoeFfn

BF16 = 2.0


def test_deepseek_v3_caches_61_latents_of_512_plus_64(catalog):
    arch = catalog.model("deepseek-ai/DeepSeek-V3")
    assert arch.kv_bytes_per_token(BF16) == 61 * (512 + 64) * BF16
    # the latent is shared by all heads: TP does not split it
    assert arch.kv_bytes_per_token(BF16, tp=8) == arch.kv_bytes_per_token(BF16)
    assert arch.state_bytes_per_seq() == 0


def test_deepseek_v32_adds_the_indexer_keys(catalog):
    arch = catalog.model("deepseek-ai/DeepSeek-V3.2")
    indexer = 128 * 1 + 4  # an FP8 key of index_head_dim 128 and one fp32 scale
    assert arch.kv_bytes_per_token(BF16) == 61 * ((512 + 64) * BF16 + indexer)


def test_gpt_oss_120b_full_and_sliding_layers(catalog):
    arch = catalog.model("openai/gpt-oss-120b")
    per_layer_token = 2 * 8 * 64 * BF16  # K and V, 8 KV heads of 64
    assert arch.kv_bytes_per_token(BF16) == 18 * per_layer_token  # 18 full layers grow with the context
    tokens = 10_000
    assert arch.kv_bytes_per_seq(tokens, BF16) == 18 * per_layer_token * tokens + 18 * per_layer_token * 128
    assert arch.kv_bytes_per_seq(100, BF16) == 36 * per_layer_token * 100  # within the window every layer holds all


def test_qwen35_397b_full_layers_plus_deltanet_state(catalog):
    arch = catalog.model("Qwen/Qwen3.5-397B-A17B")
    assert arch.kv_bytes_per_token(BF16) == 15 * 2 * 2 * 256 * BF16  # 15 full layers, 2 KV heads of 256
    state = 64 * 128 * 128 * 4  # value heads x key dim x value dim, fp32
    conv = (2 * 16 * 128 + 64 * 128) * (4 - 1) * 2  # conv window of the q, k and v streams, 16-bit
    assert arch.state_bytes_per_seq() == 45 * (state + conv)
    assert arch.state_bytes_per_seq(tp=4) == 45 * (state + conv) / 4


def test_nemotron3_super_attention_plus_mamba_state(catalog):
    arch = catalog.model("nvidia/NVIDIA-Nemotron-3-Super-120B-A12B-FP8")
    pattern = "MEMEMEM*EMEMEMEM*EMEMEMEM*EMEMEMEMEM*EMEMEMEMEM*EMEMEMEMEM*EMEMEMEMEM*EMEMEMEM*EMEMEMEME"
    attn, mamba = pattern.count("*"), pattern.count("M")
    assert arch.kv_bytes_per_token(BF16) == attn * 2 * 2 * 128 * BF16
    d_inner = 128 * 64
    per_layer = 128 * 64 * 128 * 4 + (d_inner + 2 * 8 * 128) * 3 * 2
    assert arch.state_bytes_per_seq() == mamba * per_layer


@pytest.mark.parametrize(
    ("model", "total_b", "active_b"),
    [
        ("deepseek-ai/DeepSeek-R1", 671, 37),
        ("Qwen/Qwen3-235B-A22B", 235, 22),
        ("Qwen/Qwen3.5-397B-A17B", 397, 17),
        ("zai-org/GLM-5", 743, 41),
        ("MiniMaxAI/MiniMax-M2.5", 229, 11),
        ("openai/gpt-oss-120b", 117, 5.1),
        ("moonshotai/Kimi-K2.5", 1026, 32),
        ("meta-llama/Llama-4-Maverick-17B-128E-Instruct", 400, 17),
        ("nvidia/NVIDIA-Nemotron-3-Super-120B-A12B-FP8", 120, 12),
    ],
)
def test_parameter_counts_match_the_published_sizes(catalog, model, total_b, active_b):
    arch = catalog.model(model)
    assert arch.num_params / 1e9 == pytest.approx(total_b, rel=0.02)
    # active counts include the embeddings and LM head, which some publishers leave out
    assert active_b * 0.98 <= arch.num_active_params / 1e9 <= active_b * 1.25


def test_layer_kinds_are_read_from_each_family(catalog):
    kinds = lambda m: {(type(g.attention).__name__, type(g.ffn).__name__) for g in catalog.model(m).layer_groups}  # noqa: E731
    assert kinds("deepseek-ai/DeepSeek-R1") == {("MlaAttention", "DenseFfn"), ("MlaAttention", "MoeFfn")}
    assert ("DeltaNetAttention", "MoeFfn") in kinds("Qwen/Qwen3.5-397B-A17B")
    assert {("MambaMixer", "NoneType"), ("NoneType", "MoeFfn"), ("GqaAttention", "NoneType")} == kinds(
        "nvidia/NVIDIA-Nemotron-3-Super-120B-A12B-FP8"
    )
    r1 = catalog.model("deepseek-ai/DeepSeek-R1")
    assert [g.count for g in r1.layer_groups] == [3, 58]
    moe = r1.moe
    assert isinstance(moe, MoeFfn) and (moe.num_experts, moe.experts_per_token, moe.shared_intermediate_size) == (256, 8, 2048)
    assert isinstance(r1.layer_groups[0].attention, MlaAttention)
    assert isinstance(catalog.model("Qwen/Qwen3.5-397B-A17B").layer_groups[0].attention, DeltaNetAttention | GqaAttention)
    assert any(isinstance(g.attention, MambaMixer) for g in catalog.model("nvidia/NVIDIA-Nemotron-3-Super-120B-A12B-FP8").layer_groups)


def test_checkpoint_precisions_come_from_quantization_config(catalog):
    assert catalog.model("openai/gpt-oss-120b").checkpoint_dtype == "fp4"  # MXFP4 experts
    assert catalog.model("deepseek-ai/DeepSeek-R1").checkpoint_dtype == "fp8"
    assert catalog.model("moonshotai/Kimi-K2.5").checkpoint_dtype == "int4"  # compressed-tensors int4 experts


def test_memory_uses_the_same_kv_function(catalog):
    arch = catalog.model("deepseek-ai/DeepSeek-R1")
    per_gpu = kv_bytes_per_token_per_gpu(arch, tp=np.array([8.0]), pp=np.array([1.0]), kv_bytes=np.array([BF16]))
    assert float(per_gpu[0]) == arch.kv_bytes_per_token(BF16, tp=8)
    seq = kv_bytes_per_token_per_gpu(arch, tp=1.0, pp=1.0, kv_bytes=BF16, seq_tokens=1000.0)
    assert float(seq) * 1000 == pytest.approx(arch.kv_bytes_per_seq(1000, BF16))


def test_moe_weights_split_over_tp_add_up_to_the_model(catalog):
    arch = catalog.model("Qwen/Qwen3-30B-A3B")
    one = float(weights_per_gpu_bytes(arch, tp=1, pp=1, w_bytes=2.0))
    four = float(weights_per_gpu_bytes(arch, tp=4, pp=1, w_bytes=2.0))
    assert 4 * four >= one > 3.5 * four  # routers and KV projections replicated, the rest split


def test_tp_that_does_not_divide_the_latent_heads_is_invalid(catalog):
    arch = catalog.model("deepseek-ai/DeepSeek-R1")
    assert bool(tp_is_valid(arch, np.array([8]))[0]) and not bool(tp_is_valid(arch, np.array([3]))[0])
    assert arch.tp_problem(3) == "num_attention_heads 128"
    assert catalog.model("Qwen/Qwen3.5-397B-A17B").tp_problem(4) is None  # KV heads (2) are replicated beyond their count
    assert catalog.model("Qwen/Qwen3.5-397B-A17B").tp_problem(3) is not None


@pytest.mark.parametrize(
    ("cfg", "key"),
    [
        ({"model_type": "deepseek_v3", "kv_lora_rank": 512}, "'qk_nope_head_dim'"),
        ({"model_type": "qwen3_moe", "num_experts": 8, "num_experts_per_tok": 9, "moe_intermediate_size": 64}, "'num_experts_per_tok'"),
        ({"model_type": "qwen3_moe", "num_experts": 8, "num_experts_per_tok": 2, "intermediate_size": None}, "'intermediate_size'"),
        ({"model_type": "nemotron_h", "hybrid_override_pattern": "MX"}, "'hybrid_override_pattern'"),
        ({"layer_types": ["full_attention", "linear_attention"]}, "'linear_num_key_heads'"),
    ],
)
def test_bad_configs_name_the_key(cfg, key):
    base = {"model_type": "llama", "hidden_size": 256, "num_attention_heads": 4, "num_hidden_layers": 2}
    base.update(intermediate_size=512, vocab_size=1000, max_position_embeddings=4096)
    base.update(qk_rope_head_dim=64, v_head_dim=64, num_key_value_heads=4)
    merged = {k: v for k, v in {**base, **cfg}.items() if v is not None}
    with pytest.raises(CatalogError) as err:
        arch_from_hf_config(merged, "m")
    assert key in str(err.value) and len(str(err.value).splitlines()) == 1


@pytest.mark.parametrize(
    ("name", "base", "dtype"),
    [
        ("Qwen/Qwen3-235B-A22B-FP8", "Qwen/Qwen3-235B-A22B", "fp8"),
        ("nvidia/DeepSeek-R1-NVFP4", "deepseek-ai/DeepSeek-R1", "fp4"),
        ("nvidia/Qwen3-235B-A22B-NVFP4", "Qwen/Qwen3-235B-A22B", "fp4"),
        ("nvidia/NVIDIA-Nemotron-3-Super-120B-A12B-FP8", "nvidia/NVIDIA-Nemotron-3-Super-120B-A12B-FP8", "fp8"),
    ],
)
def test_a_quantized_repository_is_its_architecture_in_that_precision(catalog, name, base, dtype):
    arch = catalog.model(name)
    assert arch.id == base and arch.checkpoint_dtype == dtype


def test_plans_default_to_the_checkpoint_precision(catalog):
    from guideopt.api import predict

    p = predict(dict(model="Qwen/Qwen3-235B-A22B-FP8", gpu="h200-sxm", tp=4, input_len=512, output_len=128), catalog)
    assert p.request.dtype.value == "fp8"


def _r1(**layout):
    base = dict(model="deepseek-ai/DeepSeek-R1", gpu="h200-sxm", framework="trtllm", input_len=1024, output_len=256, concurrency=64)
    return {**base, **layout}


def test_dep_replicates_attention_and_splits_experts(catalog):
    from guideopt.api import predict

    tep = predict(_r1(tp=8, moe_ep=8), catalog)
    dep = predict(_r1(tp=1, attention_dp=8, moe_ep=8), catalog)
    tp8 = predict(_r1(tp=8), catalog)
    assert tep.as_dict()["num_gpus"] == dep.as_dict()["num_gpus"] == 8
    assert dep.memory.weights_gb > tep.memory.weights_gb  # attention weights on every rank
    assert tep.memory.weights_gb == pytest.approx(tp8.memory.weights_gb)  # experts over the same 8 GPUs either way
    assert dep.as_dict()["attention_dp"] == 8 and dep.as_dict()["moe_ep"] == 8 and dep.as_dict()["moe_tp"] == 1


@pytest.mark.parametrize(
    ("layout", "words"),
    [
        (dict(tp=8, moe_ep=3), "moe_ep"),
        (dict(tp=8, moe_tp=2, moe_ep=2), "moe_tp × moe_ep must equal tp × attention_dp = 8"),
        (dict(tp=4, attention_dp=2, num_gpus=12), "num_gpus: 12 is not a multiple of tp·attention_dp·pp = 8"),
    ],
)
def test_bad_layouts_name_the_field(catalog, layout, words):
    from guideopt.api import predict
    from guideopt.errors import GuideoptError

    with pytest.raises(GuideoptError) as err:
        predict(_r1(**layout), catalog)
    assert words in str(err.value)


def test_expert_parallelism_needs_experts(catalog):
    from guideopt.api import predict
    from guideopt.errors import InvalidRequestError

    with pytest.raises(InvalidRequestError, match="has no experts"):
        predict(dict(model="meta-llama/Llama-3.1-8B", gpu="h100-sxm", tp=2, moe_ep=2, input_len=128, output_len=16), catalog)


def test_a_huge_layer_count_is_refused_before_any_per_layer_list():
    """Per-layer lists (layer_types, MoE interleaving) must not be built for 2^31 layers (fuzzing found it)."""
    import time

    cfg = {"model_type": "qwen3_moe", "hidden_size": 256, "num_attention_heads": 4, "num_hidden_layers": 2**31 - 1}
    cfg.update(vocab_size=1000, num_experts=8, num_experts_per_tok=2, moe_intermediate_size=64, intermediate_size=128)
    start = time.perf_counter()
    with pytest.raises(CatalogError, match="'num_hidden_layers': must be between 1 and 10,000"):
        arch_from_hf_config(cfg, "m")
    assert time.perf_counter() - start < 1.0


def test_csv_rows_with_moe_layouts_equal_single_predictions(catalog):
    from guideopt.api import predict, predict_rows

    base = dict(model="deepseek-ai/DeepSeek-R1", gpu="h200-sxm", num_gpus="8", pp="1", framework="trtllm", batch="")
    base.update(concurrency="64", input_len="1024", output_len="256")
    rows = [{**base, "tp": "1", "attention_dp": "8", "moe_ep": "8"}, {**base, "tp": "8", "attention_dp": "", "moe_ep": "8"}]
    out = predict_rows(rows, catalog)
    for row, got in zip(rows, out):
        layout = {k: int(v) for k, v in row.items() if k in ("tp", "attention_dp", "moe_ep") and v}
        single = predict(_r1(num_gpus=8, **layout), catalog)
        assert not got["error"] and float(got["tpot_ms"]) == pytest.approx(single.metrics.tpot_ms, rel=1e-5)
    assert float(out[0]["tpot_ms"]) != pytest.approx(float(out[1]["tpot_ms"]), rel=1e-3)  # DEP and TEP differ


def test_a_checkpoint_already_in_the_planned_precision_launches_as_is(tmp_path):
    from click.testing import CliRunner

    from guideopt.cli import main

    common = ["--budget", "10", "--input-len", "1000", "--output-len", "500", "--gpu", "h100-sxm", "--top", "1"]
    res = CliRunner().invoke(main, ["launch", "--model", "openai/gpt-oss-120b", *common, "--emit", str(tmp_path / "oss")])
    assert res.exit_code == 0, res.output
    script = next((tmp_path / "oss").glob("launch-*.sh")).read_text()
    assert "DEFAULT_MODEL=openai/gpt-oss-120b" in script  # it ships MXFP4: no other checkpoint needed
    res = CliRunner().invoke(
        main, ["launch", "--model", "meta-llama/Llama-3.1-8B", *common, "--dtype", "fp4", "--emit", str(tmp_path / "l")]
    )
    assert res.exit_code == 0, res.output
    assert 'MODEL="${MODEL:?set MODEL to an' in next((tmp_path / "l").glob("launch-*.sh")).read_text()  # a 16-bit release needs an FP4 one


def test_robust_planning_uses_the_moe_error_bands(catalog):
    from guideopt.costs.intervals import error_band, pessimistic_factor, regime_keys

    bands = catalog.calibration.intervals
    keys = regime_keys("tpot_ms", "blackwell", "trtllm", 32, 8, closed_loop=True, moe=True)
    moe_band = error_band(bands, keys)
    dense_band = error_band(bands, regime_keys("tpot_ms", "blackwell", "trtllm", 32, 8, closed_loop=True))
    assert moe_band is not None and moe_band is not dense_band
    assert pessimistic_factor("tpot_ms", moe_band) != pessimistic_factor("tpot_ms", dense_band)
