"""LLM architecture: a list of layer groups (``model/layers.py``) read from a Hugging Face
``config.json``.

``catalogs/models/*.yaml`` hold ``hf_config`` exactly as in the model's ``config.json``;
:func:`arch_from_hf_config` (in ``model/hf_config.py``) maps each family's keys onto one
:class:`ModelArch`. Every cost and memory function reads the layer groups, so a new layer
kind is a variant in ``layers.py`` plus its parser, not an edit across the cost model.
"""

from __future__ import annotations

from pydantic import Field, model_validator

from guideopt.model.base import StrictModel
from guideopt.model.layers import DeltaNetAttention, GqaAttention, LayerGroup, MambaMixer, MlaAttention, MoeFfn


class ModelArch(StrictModel):
    id: str
    hidden_size: int = Field(gt=0)
    vocab_size: int = Field(gt=0)
    max_position_embeddings: int = Field(gt=0)
    layer_groups: tuple[LayerGroup, ...] = Field(min_length=1)
    tie_word_embeddings: bool = False
    learned_positions: int = Field(default=0, ge=0, description="rows of a learned position table (OPT)")
    checkpoint_dtype: str | None = Field(default=None, description="weight precision the checkpoint ships in, when quantized")
    mtp_layers: int = Field(default=0, ge=0, description="multi-token-prediction (speculative) layers the checkpoint adds")
    source: str = ""

    @model_validator(mode="after")
    def _check_groups(self) -> ModelArch:
        if not any(g.attention is not None for g in self.layer_groups):
            raise ValueError("the model has no attention or mixer layer")
        return self

    # ---- shape ----
    @property
    def num_layers(self) -> int:
        return sum(g.count for g in self.layer_groups)

    @property
    def moe(self) -> MoeFfn | None:
        """The routed-expert FFN (the first MoE group's; every MoE model here has one kind)."""
        return next((g.ffn for g in self.layer_groups if isinstance(g.ffn, MoeFfn)), None)

    @property
    def is_moe(self) -> bool:
        return self.moe is not None

    @property
    def num_experts(self) -> int:
        return self.moe.num_experts if self.moe else 1

    @property
    def experts_per_token(self) -> int:
        return self.moe.experts_per_token if self.moe else 1

    @property
    def attention_kinds(self) -> list[str]:
        """The distinct mixer kinds, in words (``catalog models``)."""
        names = [_mixer_name(g.attention) for g in self.layer_groups if g.attention is not None]
        return list(dict.fromkeys(names))

    @property
    def caveats(self) -> list[str]:
        """What the cost model does not capture for this architecture (shown as warnings)."""
        if not self.mtp_layers:
            return []
        return [
            f"its {self.mtp_layers} multi-token-prediction layer(s) are not counted: predictions are for decoding without "
            "MTP speculative decoding (with it, TPOT falls by the acceptance length and memory grows by those layers)"
        ]

    # ---- parameter counts (all TP ranks together) ----
    @property
    def embedding_params(self) -> int:
        return (self.vocab_size + self.learned_positions) * self.hidden_size

    @property
    def lm_head_params(self) -> int:
        return self.vocab_size * self.hidden_size

    def _edge_params(self) -> int:
        head = 0 if self.tie_word_embeddings else self.lm_head_params
        return self.embedding_params + head + self.hidden_size

    @property
    def num_params(self) -> int:
        return sum(g.count * g.params(self.hidden_size) for g in self.layer_groups) + self._edge_params()

    @property
    def num_active_params(self) -> int:
        return sum(g.count * g.active_params(self.hidden_size) for g in self.layer_groups) + self._edge_params()

    # ---- cache: the one place KV and state bytes are summed over layers ----
    def kv_bytes_per_seq(self, tokens: float, kv_bytes: float, tp: int = 1) -> float:
        """Cache bytes one sequence of ``tokens`` tokens holds on one GPU over all layers: the
        KV of softmax layers (capped at the window of sliding ones, latent for MLA, plus the
        DSA indexer keys) and the fixed state of linear-attention / state-space layers."""
        return sum(g.count * g.kv_bytes_per_seq(tokens, kv_bytes, tp) for g in self.layer_groups)

    def kv_bytes_per_token(self, kv_bytes: float, tp: int = 1, tokens: float | None = None) -> float:
        """Cache bytes per token: what one more token of context adds (``tokens`` None), or the
        mean over a sequence of ``tokens`` tokens (windows and fixed states amortised)."""
        if tokens is None:
            return sum(g.count * g.kv_growth_bytes_per_token(kv_bytes, tp) for g in self.layer_groups)
        return self.kv_bytes_per_seq(tokens, kv_bytes, tp) / max(tokens, 1.0)

    def state_bytes_per_seq(self, tp: int = 1) -> float:
        """Fixed per-sequence state of linear-attention and state-space layers on one GPU."""
        return sum(
            g.count * g.attention.state_bytes_per_seq(tp)
            for g in self.layer_groups
            if isinstance(g.attention, DeltaNetAttention | MambaMixer)
        )

    # ---- layouts ----
    def tp_problem(self, tp: int) -> str | None:
        """The config.json size a TP degree does not divide (None when it divides them all)."""
        for g in self.layer_groups:
            for part in (g.attention, g.ffn):
                problem = part.tp_problem(tp) if part is not None else None
                if problem:
                    return problem
        return None


def _mixer_name(a: GqaAttention | MlaAttention | DeltaNetAttention | MambaMixer) -> str:
    if isinstance(a, GqaAttention):
        return f"sliding {a.window}" if a.window else "GQA"
    if isinstance(a, MlaAttention):
        return "MLA+DSA" if a.index_topk else "MLA"
    return "DeltaNet" if isinstance(a, DeltaNetAttention) else "Mamba2"
