"""LLM architecture: the fields of a Hugging Face ``config.json`` that decide cost.

``catalogs/models/*.yaml`` hold ``hf_config`` exactly as in the model's ``config.json``
(the keys differ between families: Llama/Mistral/Qwen2/Mixtral, OPT, ChatGLM);
:func:`arch_from_hf_config` maps them onto one normalised :class:`ModelArch`.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field, model_validator

from guideopt.errors import CatalogError
from guideopt.model.base import StrictModel


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
    source: str = ""

    @model_validator(mode="after")
    def _check_heads(self) -> ModelArch:
        if self.num_heads % self.num_kv_heads:
            raise ValueError(f"num_attention_heads {self.num_heads} is not a multiple of num_key_value_heads {self.num_kv_heads}")
        if self.experts_per_token > self.num_experts:
            raise ValueError(f"experts_per_token {self.experts_per_token} exceeds num_experts {self.num_experts}")
        return self

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


def _first(cfg: dict[str, Any], *keys: str, default: Any = None) -> Any:
    for key in keys:
        if key in cfg and cfg[key] is not None:
            return cfg[key]
    return default


def arch_from_hf_config(cfg: dict[str, Any], model_id: str, source: str = "") -> ModelArch:
    """Normalise a Hugging Face ``config.json`` dict (Llama, Mistral, Qwen2, Mixtral, OPT, ChatGLM)."""
    model_type = str(cfg.get("model_type", "")).lower()
    try:
        if model_type == "chatglm" or "multi_query_group_num" in cfg:
            return _chatglm(cfg, model_id, source)
        if model_type == "opt" or "ffn_dim" in cfg:
            return _opt(cfg, model_id, source)
        return _llama_like(cfg, model_id, source)
    except KeyError as exc:
        raise CatalogError(f"model {model_id}: config.json lacks {exc.args[0]!r} (needed to size the model)") from None
    except ValueError as exc:
        raise CatalogError(f"model {model_id}: {_one_line(exc)}") from None


def _one_line(exc: Exception) -> str:
    errors = getattr(exc, "errors", None)
    if callable(errors):
        first = errors()[0]
        loc = ".".join(str(p) for p in first.get("loc", ()))
        return f"{loc}: {first.get('msg')}" if loc else str(first.get("msg"))
    return str(exc).splitlines()[0]


def _llama_like(cfg: dict[str, Any], model_id: str, source: str) -> ModelArch:
    hidden = int(cfg["hidden_size"])
    heads = int(cfg["num_attention_heads"])
    experts = int(_first(cfg, "num_local_experts", "num_experts", "n_routed_experts", default=1))
    act = str(_first(cfg, "hidden_act", "hidden_activation", default="silu")).lower()
    return ModelArch(
        id=model_id,
        num_layers=int(cfg["num_hidden_layers"]),
        hidden_size=hidden,
        intermediate_size=int(
            _first(cfg, "moe_intermediate_size", default=cfg["intermediate_size"]) if experts > 1 else cfg["intermediate_size"]
        ),
        num_heads=heads,
        num_kv_heads=int(_first(cfg, "num_key_value_heads", default=heads)),
        head_dim=int(_first(cfg, "head_dim", default=hidden // heads)),
        vocab_size=int(cfg["vocab_size"]),
        max_position_embeddings=int(_first(cfg, "max_position_embeddings", default=4096)),
        tie_word_embeddings=bool(cfg.get("tie_word_embeddings", False)),
        gated_mlp=act not in _PLAIN_MLP_ACTIVATIONS or str(cfg.get("model_type", "")).startswith(_ALWAYS_GATED_TYPES),
        num_experts=experts,
        experts_per_token=int(_first(cfg, "num_experts_per_tok", default=1)),
        qkv_bias=bool(cfg.get("attention_bias", False) or str(cfg.get("model_type", "")).startswith("qwen2")),
        source=source,
    )


def _opt(cfg: dict[str, Any], model_id: str, source: str) -> ModelArch:
    hidden = int(cfg["hidden_size"])
    heads = int(cfg["num_attention_heads"])
    return ModelArch(
        id=model_id,
        num_layers=int(cfg["num_hidden_layers"]),
        hidden_size=hidden,
        intermediate_size=int(cfg["ffn_dim"]),
        num_heads=heads,
        num_kv_heads=heads,
        head_dim=hidden // heads,
        vocab_size=int(cfg["vocab_size"]),
        max_position_embeddings=int(_first(cfg, "max_position_embeddings", default=2048)),
        tie_word_embeddings=bool(cfg.get("tie_word_embeddings", True)),
        gated_mlp=False,
        qkv_bias=bool(cfg.get("enable_bias", True)),
        learned_positions=int(_first(cfg, "max_position_embeddings", default=2048)) + 2,
        source=source,
    )


def _chatglm(cfg: dict[str, Any], model_id: str, source: str) -> ModelArch:
    hidden = int(cfg["hidden_size"])
    heads = int(cfg["num_attention_heads"])
    mqa = bool(cfg.get("multi_query_attention", False))
    return ModelArch(
        id=model_id,
        num_layers=int(cfg["num_layers"]),
        hidden_size=hidden,
        intermediate_size=int(cfg["ffn_hidden_size"]),
        num_heads=heads,
        num_kv_heads=int(cfg["multi_query_group_num"]) if mqa else heads,
        head_dim=int(_first(cfg, "kv_channels", default=hidden // heads)),
        vocab_size=int(_first(cfg, "padded_vocab_size", "vocab_size")),
        max_position_embeddings=int(_first(cfg, "seq_length", "max_position_embeddings", default=8192)),
        tie_word_embeddings=False,
        gated_mlp=True,
        qkv_bias=bool(cfg.get("add_qkv_bias", False)),
        source=source,
    )
