"""Map a Hugging Face ``config.json`` onto layer groups, per family (``model_type``).

Families: Llama-like dense and MoE (llama, mistral, qwen2/3, gemma, phi3, mixtral,
qwen2_moe/qwen3_moe, glm4_moe, minimax_m2, gpt_oss, llama4), MLA (deepseek_v2/v3/v32,
kimi_k2, glm_moe_dsa), Gated-DeltaNet hybrids (qwen3_next, qwen3_5_moe), Mamba hybrids
(nemotron_h), OPT and ChatGLM. Multimodal configs are read from their ``text_config``.
Other linear-attention / state-space families are refused, naming the key.
"""

from __future__ import annotations

from typing import Any

from guideopt.errors import CatalogError
from guideopt.model.hf_fields import REQUIRED, BadField, first_key, flag, heads, layer_count, one_line, string_list, text, whole
from guideopt.model.layers import DeltaNetAttention, DenseFfn, GqaAttention, LayerGroup, MambaMixer, MlaAttention, MoeFfn
from guideopt.model.llm import ModelArch

# Activations of non-gated (two-matrix) MLPs; every other activation in a Llama-like config is gated.
_PLAIN_MLP_ACTIVATIONS = ("relu", "gelu", "gelu_new", "relu2")
# Families whose MLP is gated whatever their config's activation name (Gemma v1 declares
# hidden_act "gelu" but uses GeGLU).
_ALWAYS_GATED_TYPES = ("gemma",)
# Linear-attention or state-space families guideopt has no layer kind for (Hugging Face
# ``model_type`` values): refused rather than priced as attention.
_UNMODELLED_TYPES = (
    "mamba", "mamba2", "falcon_mamba", "rwkv", "rwkv5", "rwkv6", "rwkv7", "jamba", "zamba", "zamba2", "bamba",
    "recurrent_gemma", "minimax", "minimax_m1", "lfm2", "granitemoehybrid", "retnet", "falcon_h1",
)  # fmt: skip
_UNMODELLED_KEYS = ("ssm_cfg", "block_types")
# MiniMax ``attn_type_list``: 1 = softmax attention, 0 = lightning (linear) attention (MiniMax-M1 modelling code).
_MINIMAX_SOFTMAX = 1
# ``layer_types`` values: softmax attention over the context or a window, or Gated DeltaNet.
_FULL, _SLIDING, _LINEAR = ("full_attention", "attention"), ("sliding_attention", "chunked_attention"), ("linear_attention",)
_TEXT_KEYS = ("hidden_size", "num_hidden_layers")
# Keys a family's transformers config class fills in when config.json leaves them out: the
# multimodal Gemma 3 configs omit these from text_config (transformers Gemma3TextConfig's
# defaults; every sliding_window_pattern-th layer attends globally, the others locally).
_FAMILY_DEFAULTS: dict[str, dict[str, Any]] = {
    "gemma3_text": {
        "vocab_size": 262_208,
        "max_position_embeddings": 131_072,
        "tie_word_embeddings": True,
        "sliding_window": 4096,
        "sliding_window_pattern": 6,
    },
}


def arch_from_hf_config(cfg: dict[str, Any], model_id: str, source: str = "") -> ModelArch:
    """One ModelArch, or a CatalogError naming the config.json key and the fix."""
    where = f"model: {source or model_id}"
    try:
        cfg = _text_config(cfg)
        model_type = text(cfg, "model_type", "")
        cfg = {**_FAMILY_DEFAULTS.get(model_type, {}), **cfg}
        _refuse_unmodelled(cfg, model_type)
        if model_type == "chatglm" or "multi_query_group_num" in cfg:
            groups, common = _chatglm(cfg)
        elif model_type == "opt" or "ffn_dim" in cfg:
            groups, common = _opt(cfg)
        elif cfg.get("kv_lora_rank") is not None:
            groups, common = _mla(cfg)
        elif model_type == "nemotron_h" or "hybrid_override_pattern" in cfg:
            groups, common = _nemotron_h(cfg)
        else:
            groups, common = _llama_like(cfg, model_type)
        mtp = whole(cfg, first_key(cfg, "num_nextn_predict_layers", "mtp_num_hidden_layers", "num_mtp_modules"), default=0, minimum=0)
        return ModelArch(id=model_id, layer_groups=groups, checkpoint_dtype=_checkpoint_dtype(cfg), mtp_layers=mtp, source=source, **common)
    except ValueError as exc:  # BadField and the schemas' own checks
        raise CatalogError(f"{where}: {one_line(exc)}") from None


def _text_config(cfg: dict[str, Any]) -> dict[str, Any]:
    """Multimodal configs (Llama 4, Kimi-K2.5, Qwen3.5, Gemma 3) keep the language model's sizes under text_config."""
    inner = cfg.get("text_config")
    if isinstance(inner, dict) and not all(k in cfg for k in _TEXT_KEYS):
        merged = {k: v for k, v in cfg.items() if k in ("tie_word_embeddings", "quantization_config")}
        return {**merged, **inner}
    return cfg


def _refuse_unmodelled(cfg: dict[str, Any], model_type: str) -> None:
    key = next((k for k in _UNMODELLED_KEYS if k in cfg), None)
    kinds = cfg.get("attn_type_list")
    if isinstance(kinds, list) and any(k != _MINIMAX_SOFTMAX for k in kinds):
        key = "attn_type_list"
    if model_type in _UNMODELLED_TYPES or key:
        what = f"model_type {model_type!r}" if model_type in _UNMODELLED_TYPES else repr(key)
        raise ValueError(
            f"config.json {what}: this linear-attention / state-space family has no layer kind in guideopt "
            "(modelled: GQA/MQA, sliding window, MLA, DSA, Gated DeltaNet, Mamba-2 hybrids)"
        )


def _checkpoint_dtype(cfg: dict[str, Any]) -> str | None:
    """The weight precision a quantized checkpoint ships in (its ``quantization_config``)."""
    q = cfg.get("quantization_config")
    if not isinstance(q, dict):
        return None
    method = str(q.get("quant_method", "")).lower()
    algo = str(q.get("quant_algo", "")).lower()
    if method == "mxfp4" or "fp4" in algo:
        return "fp4"
    if method == "fp8" or algo.startswith("fp8"):
        return "fp8"
    if method in ("awq", "gptq") and q.get("bits") == 4:
        return "int4"
    if method == "compressed-tensors":
        found = q.get("config_groups")
        groups: dict[str, Any] = found if isinstance(found, dict) else {}
        weights = [g["weights"] for g in groups.values() if isinstance(g, dict) and isinstance(g.get("weights"), dict)]
        bits = {(w.get("num_bits"), w.get("type")) for w in weights}
        if (4, "int") in bits:
            return "int4"
        if (8, "float") in bits:
            return "fp8"
    return None


def _common(cfg: dict[str, Any], *, tie_default: bool = False, context_default: int = 4096) -> dict[str, Any]:
    return {
        "hidden_size": whole(cfg, "hidden_size"),
        "vocab_size": whole(cfg, "vocab_size"),
        "max_position_embeddings": whole(cfg, "max_position_embeddings", default=context_default),
        "tie_word_embeddings": flag(cfg, "tie_word_embeddings", tie_default),
    }


def _grouped(layers: list[tuple[Any, Any]]) -> list[LayerGroup]:
    """Identical (mixer, FFN) layers counted together, in order of first appearance."""
    counts: dict[tuple[Any, Any], list[Any]] = {}
    for attn, ffn in layers:
        key = (attn, ffn)  # frozen schemas hash by value
        if key in counts:
            counts[key][0] += 1
        else:
            counts[key] = [1, attn, ffn]
    return [LayerGroup(count=n, attention=a, ffn=f) for n, a, f in counts.values()]


def _gated(cfg: dict[str, Any], model_type: str) -> bool:
    act = text(cfg, first_key(cfg, "hidden_act", "hidden_activation", "mlp_hidden_act"), "silu")
    return act not in _PLAIN_MLP_ACTIVATIONS or model_type.startswith(_ALWAYS_GATED_TYPES)


def _windows(cfg: dict[str, Any], model_type: str, layers: int, context: int) -> list[int | None]:
    """Each layer's attention window (None: the whole context)."""
    kinds = string_list(cfg, "layer_types")
    if kinds is not None:
        if len(kinds) != layers:
            raise BadField("layer_types", f"lists {len(kinds)} layers, num_hidden_layers is {layers}")
        bad = next((k for k in kinds if k not in _FULL + _SLIDING + _LINEAR), None)
        if bad:
            raise BadField(
                "layer_types", f"layer kind {bad!r} has no layer kind in guideopt (full_attention, sliding_attention, linear_attention)"
            )
        window = _window_size(cfg, context)
        return [window if k in _SLIDING else None for k in kinds]
    if cfg.get("attention_chunk_size") is not None and model_type.startswith("llama4"):
        # Llama 4: chunked local attention on RoPE layers, global attention on every 4th (NoPE) layer
        # (transformers Llama4TextConfig: no_rope_layers default, interval 4).
        chunk = whole(cfg, "attention_chunk_size")
        return [None if (i + 1) % 4 == 0 else chunk for i in range(layers)]
    window = _window_size(cfg, context)
    if window is None:
        return [None] * layers
    if model_type == "gemma2":  # alternating local/global, local first (Gemma 2 report §2)
        return [window if i % 2 == 0 else None for i in range(layers)]
    if cfg.get("sliding_window_pattern") is not None:  # Gemma 3: global every pattern-th layer
        every = whole(cfg, "sliding_window_pattern")
        return [None if (i + 1) % every == 0 else window for i in range(layers)]
    return [window] * layers


def _window_size(cfg: dict[str, Any], context: int) -> int | None:
    if cfg.get("use_sliding_window") is False or cfg.get("sliding_window") is None:
        return None
    window = whole(cfg, "sliding_window")
    return window if window < context else None


def _moe_layers(cfg: dict[str, Any], layers: int) -> list[bool]:
    """Which layers route to experts: dense first layers, MLP-only layers and interleave steps."""
    first_dense = whole(cfg, "first_k_dense_replace", default=0, minimum=0)
    freq = cfg.get("moe_layer_freq")
    if isinstance(freq, list):  # one 0/1 per layer (MiMo-V2, MiniMax-M3)
        if len(freq) != layers or any(f not in (0, 1) for f in freq):
            raise BadField("moe_layer_freq", f"expected one 0 or 1 per layer, {layers} in all")
        return [i >= first_dense and bool(f) for i, f in enumerate(freq)]
    step = whole(cfg, first_key(cfg, "interleave_moe_layer_step", "decoder_sparse_step", "moe_layer_freq"), default=1)
    mlp_only = cfg.get("mlp_only_layers") or []
    if not isinstance(mlp_only, list):
        raise BadField("mlp_only_layers", "expected a list of layer indices")
    return [i >= first_dense and (i + 1) % step == 0 and i not in mlp_only for i in range(layers)]


def _ffns(cfg: dict[str, Any], model_type: str, layers: int) -> list[DenseFfn | MoeFfn]:
    gated = _gated(cfg, model_type)
    experts_key = first_key(cfg, "num_local_experts", "num_experts", "n_routed_experts")
    experts = whole(cfg, experts_key, default=1)
    if experts <= 1:
        return [_dense(cfg, gated)] * layers
    k = whole(cfg, first_key(cfg, "num_experts_per_tok", "experts_per_token"), default=1)
    if k > experts:
        raise BadField("num_experts_per_tok", f"{k} exceeds the {experts} experts ({experts_key})")
    expert_size = whole(cfg, first_key(cfg, "moe_intermediate_size", "intermediate_size"))
    moe = MoeFfn(
        num_experts=experts,
        experts_per_token=k,
        expert_intermediate_size=expert_size,
        shared_intermediate_size=_shared_size(cfg, model_type, expert_size),
        gated=gated,
    )
    routed = _moe_layers(cfg, layers)
    dense = _dense(cfg, gated) if not all(routed) else None
    return [moe if r or dense is None else dense for r in routed]


def _dense(cfg: dict[str, Any], gated: bool) -> DenseFfn:
    return DenseFfn(intermediate_size=whole(cfg, first_key(cfg, "intermediate_size_mlp", "intermediate_size")), gated=gated)


def _shared_size(cfg: dict[str, Any], model_type: str, expert_size: int) -> int:
    if cfg.get("shared_expert_intermediate_size") is not None:  # qwen2_moe, qwen3_next, qwen3_5_moe
        return whole(cfg, "shared_expert_intermediate_size", minimum=0)
    if cfg.get("n_shared_experts") is not None:  # deepseek, glm4_moe, kimi
        return whole(cfg, "n_shared_experts", minimum=0) * expert_size
    if cfg.get("shared_intermediate_size") is not None:  # minimax_m2
        return whole(cfg, "shared_intermediate_size", minimum=0)
    return expert_size if model_type.startswith("llama4") else 0  # Llama 4: one shared expert


def _gqa(cfg: dict[str, Any], model_type: str, hidden: int, window: int | None) -> GqaAttention:
    n, head_dim = heads(cfg, hidden, "num_attention_heads")
    kv = whole(cfg, "num_key_value_heads", default=n)
    if n % kv:
        raise BadField("num_key_value_heads", f"{kv} does not divide num_attention_heads {n}")
    bias = flag(cfg, "attention_bias", False) or model_type.startswith("qwen2")
    return GqaAttention(
        num_heads=n, num_kv_heads=kv, head_dim=head_dim, qkv_bias=bias, output_gate=flag(cfg, "attn_output_gate", False), window=window
    )


def _llama_like(cfg: dict[str, Any], model_type: str) -> tuple[list[LayerGroup], dict[str, Any]]:
    common = _common(cfg)
    layers = layer_count(cfg)
    windows = _windows(cfg, model_type, layers, common["max_position_embeddings"])
    kinds = string_list(cfg, "layer_types") or []
    ffns = _ffns(cfg, model_type, layers)
    mixers: list[Any] = []
    for i, window in enumerate(windows):
        if kinds and kinds[i] in _LINEAR:
            mixers.append(_deltanet(cfg))
        else:
            mixers.append(_gqa(cfg, model_type, common["hidden_size"], window))
    return _grouped(list(zip(mixers, ffns))), common


def _deltanet(cfg: dict[str, Any]) -> DeltaNetAttention:
    return DeltaNetAttention(
        num_key_heads=whole(cfg, "linear_num_key_heads"),
        num_value_heads=whole(cfg, "linear_num_value_heads"),
        key_head_dim=whole(cfg, "linear_key_head_dim"),
        value_head_dim=whole(cfg, "linear_value_head_dim"),
        conv_kernel=whole(cfg, "linear_conv_kernel_dim", default=4),
    )


def _mla(cfg: dict[str, Any]) -> tuple[list[LayerGroup], dict[str, Any]]:
    """DeepSeek-V2/V3/V3.2, Kimi-K2, GLM-5: MLA (with DSA where ``index_topk`` is set), MoE after dense first layers."""
    common = _common(cfg)
    layers = layer_count(cfg)
    q_lora = cfg.get("q_lora_rank")
    sparse = cfg.get("index_topk") is not None
    attn = MlaAttention(
        num_heads=whole(cfg, "num_attention_heads"),
        q_lora_rank=whole(cfg, "q_lora_rank") if q_lora is not None else None,
        kv_lora_rank=whole(cfg, "kv_lora_rank"),
        qk_nope_head_dim=whole(cfg, "qk_nope_head_dim"),
        qk_rope_head_dim=whole(cfg, "qk_rope_head_dim"),
        v_head_dim=whole(cfg, "v_head_dim"),
        index_topk=whole(cfg, "index_topk") if sparse else None,
        index_n_heads=whole(cfg, "index_n_heads") if sparse else 0,
        index_head_dim=whole(cfg, "index_head_dim") if sparse else 0,
    )
    ffns = _ffns(cfg, text(cfg, "model_type", ""), layers)
    return _grouped([(attn, f) for f in ffns]), common


# Nemotron-H ``hybrid_override_pattern``: one character per layer.
_NEMOTRON_MAMBA, _NEMOTRON_ATTENTION, _NEMOTRON_MLP, _NEMOTRON_MOE = "M", "*", "-", "E"


def _nemotron_h(cfg: dict[str, Any]) -> tuple[list[LayerGroup], dict[str, Any]]:
    """Nemotron-H / Nemotron-3: Mamba-2, attention, MLP and MoE layers, each its own layer."""
    common = _common(cfg)
    pattern = cfg.get("hybrid_override_pattern")
    layers = layer_count(cfg, default=len(pattern) if isinstance(pattern, str) and pattern else REQUIRED)
    if not isinstance(pattern, str) or len(pattern) != layers:
        raise BadField("hybrid_override_pattern", f"expected one character (M, *, -, E) per layer, {layers} in all")
    gated = _gated(cfg, "nemotron_h")
    odd = next((c for c in pattern if c not in "M*-E"), None)
    if odd:
        raise BadField("hybrid_override_pattern", f"layer kind {odd!r} is not M (Mamba), * (attention), - (MLP) or E (MoE)")
    built: dict[str, tuple[Any, Any]] = {}
    for char in sorted(set(pattern)):
        if char == _NEMOTRON_MAMBA:
            built[char] = (_mamba(cfg), None)
        elif char == _NEMOTRON_ATTENTION:
            built[char] = (_gqa(cfg, "nemotron_h", common["hidden_size"], None), None)
        elif char == _NEMOTRON_MLP:
            built[char] = (None, DenseFfn(intermediate_size=whole(cfg, "intermediate_size"), gated=gated))
        elif char == _NEMOTRON_MOE:
            built[char] = (None, _latent_moe(cfg, gated))
        else:
            raise BadField("hybrid_override_pattern", f"layer kind {char!r} is not M (Mamba), * (attention), - (MLP) or E (MoE)")
    return _grouped([built[c] for c in pattern]), common


def _mamba(cfg: dict[str, Any]) -> MambaMixer:
    return MambaMixer(
        num_heads=whole(cfg, "mamba_num_heads"),
        head_dim=whole(cfg, "mamba_head_dim"),
        state_size=whole(cfg, "ssm_state_size"),
        n_groups=whole(cfg, "n_groups", default=1),
        conv_kernel=whole(cfg, "conv_kernel", default=4),
    )


def _latent_moe(cfg: dict[str, Any], gated: bool) -> MoeFfn:
    experts = whole(cfg, "n_routed_experts")
    k = whole(cfg, "num_experts_per_tok")
    if k > experts:
        raise BadField("num_experts_per_tok", f"{k} exceeds the {experts} experts (n_routed_experts)")
    latent = cfg.get("moe_latent_size")
    return MoeFfn(
        num_experts=experts,
        experts_per_token=k,
        expert_intermediate_size=whole(cfg, "moe_intermediate_size"),
        shared_intermediate_size=whole(cfg, "moe_shared_expert_intermediate_size", default=0, minimum=0),
        gated=gated,
        latent_size=whole(cfg, "moe_latent_size") if latent is not None else None,
    )


def _opt(cfg: dict[str, Any]) -> tuple[list[LayerGroup], dict[str, Any]]:
    hidden = whole(cfg, "hidden_size")
    n, head_dim = heads(cfg, hidden, "num_attention_heads", head_dim_key="__no_head_dim__")
    positions = whole(cfg, "max_position_embeddings", default=2048)
    attn = GqaAttention(num_heads=n, num_kv_heads=n, head_dim=head_dim, qkv_bias=flag(cfg, "enable_bias", True))
    ffn = DenseFfn(intermediate_size=whole(cfg, "ffn_dim"), gated=False)
    common = {**_common(cfg, tie_default=True, context_default=2048), "learned_positions": positions + 2}
    return [LayerGroup(count=layer_count(cfg), attention=attn, ffn=ffn)], common


def _chatglm(cfg: dict[str, Any]) -> tuple[list[LayerGroup], dict[str, Any]]:
    hidden = whole(cfg, "hidden_size")
    n, head_dim = heads(cfg, hidden, "num_attention_heads", head_dim_key="kv_channels")
    kv = whole(cfg, "multi_query_group_num") if flag(cfg, "multi_query_attention", False) else n
    if n % kv:
        raise BadField("multi_query_group_num", f"{kv} does not divide num_attention_heads {n}")
    attn = GqaAttention(num_heads=n, num_kv_heads=kv, head_dim=head_dim, qkv_bias=flag(cfg, "add_qkv_bias", False))
    ffn = DenseFfn(intermediate_size=whole(cfg, "ffn_hidden_size"), gated=True)
    common = {
        "hidden_size": hidden,
        "vocab_size": whole(cfg, first_key(cfg, "padded_vocab_size", "vocab_size")),
        "max_position_embeddings": whole(cfg, first_key(cfg, "seq_length", "max_position_embeddings"), default=8192),
        "tie_word_embeddings": False,
    }
    return [LayerGroup(count=layer_count(cfg, "num_layers"), attention=attn, ffn=ffn)], common
