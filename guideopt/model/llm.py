"""LLM architecture: the fields of a Hugging Face ``config.json`` that decide cost.

``catalogs/models/*.yaml`` hold ``hf_config`` exactly as in the model's ``config.json``
(the keys differ between families: Llama/Mistral/Qwen2/Mixtral, OPT, ChatGLM);
:func:`arch_from_hf_config` maps them onto one normalised :class:`ModelArch`.
"""

from __future__ import annotations

import json
import math
from typing import Any

from pydantic import Field, model_validator

from guideopt.errors import CatalogError
from guideopt.model.base import StrictModel
from guideopt.model.limits import MAX_CONFIG_INT


class ModelArch(StrictModel):
    id: str
    num_layers: int = Field(gt=0)
    hidden_size: int = Field(gt=0)
    intermediate_size: int = Field(gt=0, description="dense MLP width (per expert for MoE)")
    num_heads: int = Field(gt=0)
    num_kv_heads: int = Field(gt=0)
    head_dim: int = Field(gt=0)
    vocab_size: int = Field(gt=0)
    max_position_embeddings: int = Field(gt=0)
    tie_word_embeddings: bool = False
    gated_mlp: bool = True  # SwiGLU/GeGLU: gate, up and down projections
    num_experts: int = Field(default=1, ge=1)
    experts_per_token: int = Field(default=1, ge=1)
    qkv_bias: bool = False
    learned_positions: int = Field(default=0, ge=0, description="rows of a learned position table (OPT)")
    sliding_window: int | None = Field(default=None, gt=0, description="attention window, when shorter than the context")
    source: str = ""

    @model_validator(mode="after")
    def _check_heads(self) -> ModelArch:
        if self.num_heads % self.num_kv_heads:
            raise ValueError(f"num_attention_heads {self.num_heads} is not a multiple of num_key_value_heads {self.num_kv_heads}")
        if self.experts_per_token > self.num_experts:
            raise ValueError(f"experts_per_token {self.experts_per_token} exceeds num_experts {self.num_experts}")
        return self

    @property
    def caveats(self) -> list[str]:
        """What the cost model does not capture for this architecture (shown as warnings)."""
        if self.sliding_window is None:
            return []
        return [
            f"sliding-window attention ({self.sliding_window:,} tokens) is sized as full attention: "
            f"memory and attention time are overstated for sequences longer than the window"
        ]

    # ---- parameter counts (one layer, all TP ranks together) ----
    @property
    def is_moe(self) -> bool:
        return self.num_experts > 1

    @property
    def q_dim(self) -> int:
        return self.num_heads * self.head_dim

    @property
    def kv_dim(self) -> int:
        return self.num_kv_heads * self.head_dim

    @property
    def attn_params(self) -> int:
        qkv = self.hidden_size * (self.q_dim + 2 * self.kv_dim)
        bias = (self.q_dim + 2 * self.kv_dim) if self.qkv_bias else 0
        return qkv + bias + self.q_dim * self.hidden_size

    @property
    def expert_params(self) -> int:
        mats = 3 if self.gated_mlp else 2
        return mats * self.hidden_size * self.intermediate_size

    @property
    def router_params(self) -> int:
        return self.hidden_size * self.num_experts if self.is_moe else 0

    @property
    def layer_params(self) -> int:
        norms = 2 * self.hidden_size
        return self.attn_params + self.num_experts * self.expert_params + self.router_params + norms

    @property
    def layer_active_params(self) -> int:
        norms = 2 * self.hidden_size
        return self.attn_params + self.experts_per_token * self.expert_params + self.router_params + norms

    @property
    def embedding_params(self) -> int:
        return (self.vocab_size + self.learned_positions) * self.hidden_size

    @property
    def lm_head_params(self) -> int:
        return self.vocab_size * self.hidden_size

    @property
    def num_params(self) -> int:
        head = 0 if self.tie_word_embeddings else self.lm_head_params
        return self.num_layers * self.layer_params + self.embedding_params + head + self.hidden_size

    @property
    def num_active_params(self) -> int:
        head = 0 if self.tie_word_embeddings else self.lm_head_params
        return self.num_layers * self.layer_active_params + self.embedding_params + head + self.hidden_size

    def kv_bytes_per_token(self, kv_bytes: float) -> float:
        """KV-cache bytes per token for the whole model (all layers, K and V)."""
        return 2.0 * self.num_layers * self.kv_dim * kv_bytes


# Activations of non-gated (two-matrix) MLPs; every other activation in a Llama-like config is gated.
_PLAIN_MLP_ACTIVATIONS = ("relu", "gelu", "gelu_new")
# Families whose MLP is gated whatever their config's activation name (Gemma v1 declares
# hidden_act "gelu" but uses GeGLU).
_ALWAYS_GATED_TYPES = ("gemma",)
# Families built of linear-attention or state-space layers (all or some): their memory is
# not a KV cache that grows with the sequence, which is what guideopt models. Names are
# the Hugging Face ``model_type`` values of those architectures.
_RECURRENT_TYPES = (
    "mamba", "mamba2", "falcon_mamba", "rwkv", "rwkv5", "rwkv6", "rwkv7", "jamba", "zamba", "zamba2", "bamba",
    "recurrent_gemma", "qwen3_next", "minimax", "minimax_m1", "lfm2", "nemotron_h", "granitemoehybrid", "retnet",
)  # fmt: skip
# Keys that only linear-attention / state-space configs carry.
_RECURRENT_KEYS = ("ssm_cfg", "mamba_d_state", "state_size", "linear_num_key_heads", "linear_key_head_dim", "attn_type_list")
_REQUIRED = object()


class _BadField(ValueError):
    """A config.json field that is missing or not what a size must be (named as written)."""

    def __init__(self, key: str, problem: str) -> None:
        super().__init__(f"config.json lacks {key!r} {problem}" if problem.startswith("(") else f"config.json {key!r}: {problem}")


def _whole(cfg: dict[str, Any], key: str, default: Any = _REQUIRED, minimum: int = 1) -> int:
    """A size field: a whole number in [minimum, MAX_CONFIG_INT]; null or absent takes ``default``."""
    value = cfg.get(key)
    if value is None:
        if default is _REQUIRED:
            raise _BadField(key, "(needed to size the model; copy it from the model's config.json)")
        return int(default)
    ok_float = isinstance(value, float) and math.isfinite(value) and value.is_integer()
    if isinstance(value, bool) or not (isinstance(value, int) or ok_float):
        shown = "a list" if isinstance(value, list) else "a mapping" if isinstance(value, dict) else json.dumps(value)[:40]
        raise _BadField(key, f"expected a whole number, got {shown} (write it as in the model's config.json, e.g. 4096)")
    number = int(value)
    if not minimum <= number <= MAX_CONFIG_INT:
        raise _BadField(key, f"must be between {minimum} and {MAX_CONFIG_INT:,}, got {number:,}")
    return number


def _first_key(cfg: dict[str, Any], *keys: str) -> str:
    """The first of ``keys`` the config sets (not null); the last one when none is set."""
    return next((k for k in keys if cfg.get(k) is not None), keys[-1])


def _flag(cfg: dict[str, Any], key: str, default: bool) -> bool:
    value = cfg.get(key)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise _BadField(key, f"expected true or false, got {json.dumps(value)[:40]}")
    return value


def _text(cfg: dict[str, Any], key: str, default: str) -> str:
    value = cfg.get(key)
    return value.lower() if isinstance(value, str) else default


def arch_from_hf_config(cfg: dict[str, Any], model_id: str, source: str = "") -> ModelArch:
    """Normalise a Hugging Face ``config.json`` dict (Llama, Mistral, Qwen2, Mixtral, OPT, ChatGLM).

    Architectures whose memory guideopt does not model (multi-head latent attention,
    linear attention, state-space layers) are refused rather than priced wrongly; a bad
    field is one line naming it as the config.json writes it.
    """
    where = f"model: {source or model_id}"
    model_type = _text(cfg, "model_type", "")
    try:
        _refuse_unmodelled(cfg, model_type)
        if model_type == "chatglm" or "multi_query_group_num" in cfg:
            return _chatglm(cfg, model_id, source)
        if model_type == "opt" or "ffn_dim" in cfg:
            return _opt(cfg, model_id, source)
        return _llama_like(cfg, model_id, source)
    except ValueError as exc:  # _BadField and ModelArch's own checks
        raise CatalogError(f"{where}: {_one_line(exc)}") from None


def _refuse_unmodelled(cfg: dict[str, Any], model_type: str) -> None:
    if cfg.get("kv_lora_rank") is not None:
        sizes = [cfg.get(k) for k in ("num_attention_heads", "hidden_size", "kv_lora_rank")]
        rope = cfg.get("qk_rope_head_dim") or 0
        ratio = ""
        if all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in sizes) and isinstance(rope, int):
            heads, hidden, rank = (int(v) for v in sizes if v is not None)
            given = cfg.get("num_key_value_heads")
            kv_heads = given if isinstance(given, int) and given > 0 else heads
            ratio = f" about {2 * kv_heads * (hidden // heads) / (rank + rope):.0f}x"
        raise ValueError(
            f"multi-head latent attention (config.json 'kv_lora_rank', DeepSeek-V2/V3) is not modelled: "
            f"sizing it as plain attention would overstate its KV cache{ratio} "
            "(guideopt models multi-head and grouped-query attention only)"
        )
    layer_kinds = cfg.get("layer_types") or cfg.get("layers_block_type") or []
    odd_layers = isinstance(layer_kinds, list) and any(
        str(k) not in ("full_attention", "sliding_attention", "attention") for k in layer_kinds
    )
    recurrent_key = next((k for k in _RECURRENT_KEYS if k in cfg), None)
    if model_type in _RECURRENT_TYPES or odd_layers or recurrent_key:
        what = f"model_type {model_type!r}" if model_type in _RECURRENT_TYPES else f"'{recurrent_key or 'layer_types'}'"
        raise ValueError(
            f"linear-attention / state-space layers (config.json {what}) are not modelled: their memory is not a "
            "growing KV cache (guideopt models transformer attention only)"
        )


def _one_line(exc: Exception) -> str:
    errors = getattr(exc, "errors", None)
    if callable(errors):
        first = errors()[0]
        loc = ".".join(str(p) for p in first.get("loc", ()))
        return f"{loc}: {first.get('msg')}" if loc else str(first.get("msg"))
    return str(exc).splitlines()[0]


def _heads(cfg: dict[str, Any], hidden: int, heads_key: str, head_dim_key: str = "head_dim") -> tuple[int, int]:
    """(num_heads, head_dim); a missing head_dim is hidden / heads, which must be whole."""
    heads = _whole(cfg, heads_key)
    if cfg.get(head_dim_key) is not None:
        return heads, _whole(cfg, head_dim_key)
    if heads > hidden:
        raise _BadField(heads_key, f"{heads} heads exceed hidden_size {hidden} (head_dim would be 0; give head_dim)")
    return heads, hidden // heads


def _sliding_window(cfg: dict[str, Any], context: int) -> int | None:
    """The attention window when it is shorter than the context and in use."""
    if cfg.get("use_sliding_window") is False or cfg.get("sliding_window") is None:
        return None
    window = _whole(cfg, "sliding_window")
    return window if window < context else None


def _llama_like(cfg: dict[str, Any], model_id: str, source: str) -> ModelArch:
    hidden = _whole(cfg, "hidden_size")
    heads, head_dim = _heads(cfg, hidden, "num_attention_heads")
    experts_key = _first_key(cfg, "num_local_experts", "num_experts", "n_routed_experts")
    experts = _whole(cfg, experts_key, default=1)
    act = _text(cfg, _first_key(cfg, "hidden_act", "hidden_activation"), "silu")
    ffn_key = "moe_intermediate_size" if experts > 1 and cfg.get("moe_intermediate_size") is not None else "intermediate_size"
    context = _whole(cfg, "max_position_embeddings", default=4096)
    model_type = _text(cfg, "model_type", "")
    return _arch(
        cfg,
        id=model_id,
        num_layers=_whole(cfg, "num_hidden_layers"),
        hidden_size=hidden,
        intermediate_size=_whole(cfg, ffn_key),
        num_heads=heads,
        num_kv_heads=_whole(cfg, "num_key_value_heads", default=heads),
        head_dim=head_dim,
        vocab_size=_whole(cfg, "vocab_size"),
        max_position_embeddings=context,
        tie_word_embeddings=_flag(cfg, "tie_word_embeddings", False),
        gated_mlp=act not in _PLAIN_MLP_ACTIVATIONS or model_type.startswith(_ALWAYS_GATED_TYPES),
        num_experts=experts,
        experts_per_token=_whole(cfg, "num_experts_per_tok", default=1),
        qkv_bias=_flag(cfg, "attention_bias", False) or model_type.startswith("qwen2"),
        sliding_window=_sliding_window(cfg, context),
        source=source,
    )


def _opt(cfg: dict[str, Any], model_id: str, source: str) -> ModelArch:
    hidden = _whole(cfg, "hidden_size")
    heads, head_dim = _heads(cfg, hidden, "num_attention_heads", head_dim_key="__no_head_dim__")
    positions = _whole(cfg, "max_position_embeddings", default=2048)
    return _arch(
        cfg,
        id=model_id,
        num_layers=_whole(cfg, "num_hidden_layers"),
        hidden_size=hidden,
        intermediate_size=_whole(cfg, "ffn_dim"),
        num_heads=heads,
        num_kv_heads=heads,
        head_dim=head_dim,
        vocab_size=_whole(cfg, "vocab_size"),
        max_position_embeddings=positions,
        tie_word_embeddings=_flag(cfg, "tie_word_embeddings", True),
        gated_mlp=False,
        qkv_bias=_flag(cfg, "enable_bias", True),
        learned_positions=positions + 2,
        source=source,
    )


def _chatglm(cfg: dict[str, Any], model_id: str, source: str) -> ModelArch:
    hidden = _whole(cfg, "hidden_size")
    heads, head_dim = _heads(cfg, hidden, "num_attention_heads", head_dim_key="kv_channels")
    mqa = _flag(cfg, "multi_query_attention", False)
    return _arch(
        cfg,
        id=model_id,
        num_layers=_whole(cfg, "num_layers"),
        hidden_size=hidden,
        intermediate_size=_whole(cfg, "ffn_hidden_size"),
        num_heads=heads,
        num_kv_heads=_whole(cfg, "multi_query_group_num") if mqa else heads,
        head_dim=head_dim,
        vocab_size=_whole(cfg, _first_key(cfg, "padded_vocab_size", "vocab_size")),
        max_position_embeddings=_whole(cfg, _first_key(cfg, "seq_length", "max_position_embeddings"), default=8192),
        tie_word_embeddings=False,
        gated_mlp=True,
        qkv_bias=_flag(cfg, "add_qkv_bias", False),
        source=source,
    )


def _arch(cfg: dict[str, Any], **fields: Any) -> ModelArch:
    """ModelArch with its cross-field checks worded in the config.json's own key names."""
    heads, kv_heads = fields["num_heads"], fields["num_kv_heads"]
    if heads % kv_heads:
        kv_key = "multi_query_group_num" if "multi_query_group_num" in cfg else "num_key_value_heads"
        raise _BadField(kv_key, f"{kv_heads} does not divide num_attention_heads {heads}")
    if fields.get("experts_per_token", 1) > fields.get("num_experts", 1):
        raise _BadField("num_experts_per_tok", f"{fields['experts_per_token']} exceeds the {fields.get('num_experts', 1)} experts")
    return ModelArch(**fields)
