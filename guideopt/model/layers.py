"""Layer kinds of a model, as typed variants: a model is a list of layer groups, each with
one attention (token mixer) kind and one FFN kind.

Every size here is for the whole layer (all TP ranks together). KV bytes per token and
state bytes per sequence are computed here and nowhere else (``kv_elems_per_token``,
``state_bytes_per_seq``); the cost model and the memory model both read them.

Sources of the formulas (each family's modelling code):
- GQA/MQA/MHA and sliding windows: Hugging Face ``LlamaAttention``, ``GptOssAttention``
  (``sliding_attention`` layers keep ``sliding_window`` tokens).
- MLA: DeepSeek-V2 paper §2.1 and ``DeepseekV3Attention``: the cache holds the compressed
  latent (``kv_lora_rank``) plus the decoupled rope key (``qk_rope_head_dim``) per token,
  shared by all heads, so TP ranks each hold all of it.
- DSA (DeepSeek-V3.2, GLM-5): the lightning indexer keeps an FP8 key of ``index_head_dim``
  per token and layer plus a 4-byte scale (vLLM ``DeepseekV32IndexerCache``), and attention
  reads at most ``index_topk`` cached tokens per query.
- Gated DeltaNet (Qwen3-Next/Qwen3.5): a recurrent state of value_heads × key_dim × value_dim
  per sequence (``mamba_ssm_dtype`` float32) plus a causal-conv state of
  (2·key_dim·key_heads + value_dim·value_heads) × (kernel − 1) in 16-bit.
- Mamba-2 (Nemotron-H): state heads × head_dim × state_size (``mamba_ssm_cache_dtype``
  float32) plus a conv state of (d_inner + 2·groups·state_size) × (kernel − 1) in 16-bit.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from guideopt.model.base import StrictModel

# Bytes of a recurrent state element: both families keep it in fp32 (config.json
# ``mamba_ssm_dtype`` / ``mamba_ssm_cache_dtype`` "float32"); the conv window is 16-bit.
STATE_ELEM_BYTES = 4.0
CONV_ELEM_BYTES = 2.0
# DSA indexer key cache: an FP8 key per token plus one fp32 scale per 128 elements
# (vLLM DeepseekV32IndexerCache: head_dim + head_dim // 128 * 4 bytes).
INDEXER_KEY_BYTES = 1.0
INDEXER_SCALE_BYTES_PER_128 = 4.0


class GqaAttention(StrictModel):
    """Softmax attention over the whole context (or a sliding window of it): MHA, GQA or MQA."""

    kind: Literal["gqa"] = "gqa"
    num_heads: int = Field(gt=0)
    num_kv_heads: int = Field(gt=0)
    head_dim: int = Field(gt=0)
    qkv_bias: bool = False
    output_gate: bool = False  # Qwen3-Next/3.5 ``attn_output_gate``: q_proj also emits a gate per query element
    window: int | None = Field(default=None, gt=0, description="sliding window in tokens (None: full context)")

    @property
    def q_dim(self) -> int:
        return self.num_heads * self.head_dim

    @property
    def kv_dim(self) -> int:
        return self.num_kv_heads * self.head_dim

    def params(self, hidden: int) -> int:
        bias = (self.q_dim + 2 * self.kv_dim) if self.qkv_bias else 0
        gate = hidden * self.q_dim if self.output_gate else 0
        return hidden * (self.q_dim + 2 * self.kv_dim) + bias + self.q_dim * hidden + gate

    def kv_elems_per_token(self, tp: int = 1) -> float:
        """K and V elements one token adds per GPU (KV heads split by TP, replicated beyond)."""
        return 2.0 * -(-self.num_kv_heads // tp) * self.head_dim

    def tp_problem(self, tp: int) -> str | None:
        if self.num_heads % tp:
            return f"num_attention_heads {self.num_heads}"
        if self.num_kv_heads % tp and tp % self.num_kv_heads:
            return f"num_key_value_heads {self.num_kv_heads}"
        return None


class MlaAttention(StrictModel):
    """Multi-head latent attention (DeepSeek-V2/V3, Kimi-K2, GLM-5); with ``index_topk`` the
    DeepSeek sparse attention (DSA) that reads at most top-k cached tokens per query."""

    kind: Literal["mla"] = "mla"
    num_heads: int = Field(gt=0)
    q_lora_rank: int | None = Field(default=None, gt=0)
    kv_lora_rank: int = Field(gt=0)
    qk_nope_head_dim: int = Field(gt=0)
    qk_rope_head_dim: int = Field(gt=0)
    v_head_dim: int = Field(gt=0)
    index_topk: int | None = Field(default=None, gt=0, description="DSA: cached tokens each query attends to")
    index_n_heads: int = Field(default=0, ge=0)
    index_head_dim: int = Field(default=0, ge=0)

    @property
    def latent_dim(self) -> int:
        return self.kv_lora_rank + self.qk_rope_head_dim

    @property
    def qk_head_dim(self) -> int:
        return self.qk_nope_head_dim + self.qk_rope_head_dim

    def params(self, hidden: int) -> int:
        h, q = self.num_heads, self.qk_head_dim
        q_proj = hidden * self.q_lora_rank + self.q_lora_rank * h * q + self.q_lora_rank if self.q_lora_rank else hidden * h * q
        kv_a = hidden * self.latent_dim + self.kv_lora_rank
        kv_b = self.kv_lora_rank * h * (self.qk_nope_head_dim + self.v_head_dim)
        out = h * self.v_head_dim * hidden
        return q_proj + kv_a + kv_b + out + self.indexer_params(hidden)

    def indexer_params(self, hidden: int) -> int:
        if not self.index_topk:
            return 0
        q_in = self.q_lora_rank or hidden
        return q_in * self.index_n_heads * self.index_head_dim + hidden * self.index_head_dim + hidden * self.index_n_heads

    def kv_elems_per_token(self, tp: int = 1) -> float:
        """The latent and rope key: one copy per GPU whatever the TP (all heads share it)."""
        return float(self.latent_dim)

    def indexer_bytes_per_token(self) -> float:
        if not self.index_topk:
            return 0.0
        return self.index_head_dim * INDEXER_KEY_BYTES + -(-self.index_head_dim // 128) * INDEXER_SCALE_BYTES_PER_128

    def tp_problem(self, tp: int) -> str | None:
        return f"num_attention_heads {self.num_heads}" if self.num_heads % tp else None


class DeltaNetAttention(StrictModel):
    """Gated DeltaNet linear attention (Qwen3-Next, Qwen3.5): a fixed state per sequence."""

    kind: Literal["gated_deltanet"] = "gated_deltanet"
    num_key_heads: int = Field(gt=0)
    num_value_heads: int = Field(gt=0)
    key_head_dim: int = Field(gt=0)
    value_head_dim: int = Field(gt=0)
    conv_kernel: int = Field(default=4, gt=0)

    @property
    def key_dim(self) -> int:
        return self.num_key_heads * self.key_head_dim

    @property
    def value_dim(self) -> int:
        return self.num_value_heads * self.value_head_dim

    @property
    def conv_dim(self) -> int:
        return 2 * self.key_dim + self.value_dim

    def params(self, hidden: int) -> int:
        qkvz = hidden * (2 * self.key_dim + 2 * self.value_dim)
        ba = hidden * 2 * self.num_value_heads
        conv = self.conv_dim * self.conv_kernel
        return qkvz + ba + conv + self.value_dim * hidden + 2 * self.num_value_heads + self.value_head_dim

    def state_bytes_per_seq(self, tp: int = 1) -> float:
        state = self.num_value_heads * self.key_head_dim * self.value_head_dim * STATE_ELEM_BYTES
        conv = self.conv_dim * (self.conv_kernel - 1) * CONV_ELEM_BYTES
        return (state + conv) / tp

    def state_update_flops_per_token(self, tp: int = 1) -> float:
        """Delta-rule recurrence: decay, k·S, outer-product update and q·S, ~4 MACs per state element."""
        return 4 * 2.0 * self.num_value_heads * self.key_head_dim * self.value_head_dim / tp

    def kv_elems_per_token(self, tp: int = 1) -> float:
        return 0.0

    def tp_problem(self, tp: int) -> str | None:
        if self.num_value_heads % tp:
            return f"linear_num_value_heads {self.num_value_heads}"
        if self.num_key_heads % tp:
            return f"linear_num_key_heads {self.num_key_heads}"
        return None


class MambaMixer(StrictModel):
    """Mamba-2 state-space layer (Nemotron-H): a fixed state per sequence."""

    kind: Literal["mamba2"] = "mamba2"
    num_heads: int = Field(gt=0)
    head_dim: int = Field(gt=0)
    state_size: int = Field(gt=0)
    n_groups: int = Field(default=1, gt=0)
    conv_kernel: int = Field(default=4, gt=0)

    @property
    def d_inner(self) -> int:
        return self.num_heads * self.head_dim

    @property
    def conv_dim(self) -> int:
        return self.d_inner + 2 * self.n_groups * self.state_size

    def params(self, hidden: int) -> int:
        in_proj = hidden * (2 * self.d_inner + 2 * self.n_groups * self.state_size + self.num_heads)
        return in_proj + self.conv_dim * self.conv_kernel + self.d_inner * hidden + 3 * self.num_heads + self.d_inner

    def state_bytes_per_seq(self, tp: int = 1) -> float:
        state = self.num_heads * self.head_dim * self.state_size * STATE_ELEM_BYTES
        conv = self.conv_dim * (self.conv_kernel - 1) * CONV_ELEM_BYTES
        return (state + conv) / tp

    def state_update_flops_per_token(self, tp: int = 1) -> float:
        """SSD recurrence: decay, B·x outer product and C·h readout, ~3 MACs per state element."""
        return 3 * 2.0 * self.num_heads * self.head_dim * self.state_size / tp

    def kv_elems_per_token(self, tp: int = 1) -> float:
        return 0.0

    def tp_problem(self, tp: int) -> str | None:
        if self.num_heads % tp:
            return f"mamba_num_heads {self.num_heads}"
        if self.n_groups % tp and tp % self.n_groups:
            return f"n_groups {self.n_groups}"
        return None


Attention = Annotated[GqaAttention | MlaAttention | DeltaNetAttention | MambaMixer, Field(discriminator="kind")]


class DenseFfn(StrictModel):
    kind: Literal["dense"] = "dense"
    intermediate_size: int = Field(gt=0)
    gated: bool = True  # SwiGLU/GeGLU: gate, up and down

    @property
    def mats(self) -> int:
        return 3 if self.gated else 2

    def params(self, hidden: int) -> int:
        return self.mats * hidden * self.intermediate_size

    def active_params(self, hidden: int) -> int:
        return self.params(hidden)

    def tp_problem(self, tp: int) -> str | None:
        return f"intermediate_size {self.intermediate_size}" if self.intermediate_size % tp else None


class MoeFfn(StrictModel):
    """Mixture of experts: ``num_experts`` routed experts, ``experts_per_token`` per token,
    plus always-on shared experts (``shared_intermediate_size`` in all)."""

    kind: Literal["moe"] = "moe"
    num_experts: int = Field(gt=1)
    experts_per_token: int = Field(gt=0)
    expert_intermediate_size: int = Field(gt=0)
    shared_intermediate_size: int = Field(default=0, ge=0)
    gated: bool = True
    latent_size: int | None = Field(default=None, gt=0, description="experts run on a projection of this size (Nemotron-3 latent MoE)")

    @property
    def mats(self) -> int:
        return 3 if self.gated else 2

    def expert_params(self, hidden: int) -> int:
        return self.mats * (self.latent_size or hidden) * self.expert_intermediate_size

    def fixed_params(self, hidden: int) -> int:
        """Router, shared experts and latent projections: used by every token."""
        latent = 2 * hidden * self.latent_size if self.latent_size else 0
        return hidden * self.num_experts + self.mats * hidden * self.shared_intermediate_size + latent

    def params(self, hidden: int) -> int:
        return self.num_experts * self.expert_params(hidden) + self.fixed_params(hidden)

    def active_params(self, hidden: int) -> int:
        return self.experts_per_token * self.expert_params(hidden) + self.fixed_params(hidden)

    def tp_problem(self, tp: int) -> str | None:
        return f"moe_intermediate_size {self.expert_intermediate_size}" if self.expert_intermediate_size % tp else None


Ffn = Annotated[DenseFfn | MoeFfn, Field(discriminator="kind")]


class LayerGroup(StrictModel):
    """``count`` identical layers; a layer may have only a mixer or only an FFN (Nemotron-H)."""

    count: int = Field(gt=0)
    attention: Attention | None = None
    ffn: Ffn | None = None

    def params(self, hidden: int) -> int:
        norms = hidden * ((self.attention is not None) + (self.ffn is not None))
        return (self.attention.params(hidden) if self.attention else 0) + (self.ffn.params(hidden) if self.ffn else 0) + norms

    def active_params(self, hidden: int) -> int:
        norms = hidden * ((self.attention is not None) + (self.ffn is not None))
        attn = self.attention.params(hidden) if self.attention else 0
        return attn + (self.ffn.active_params(hidden) if self.ffn else 0) + norms

    def kv_growth_bytes_per_token(self, kv_bytes: float, tp: int = 1) -> float:
        """Bytes one more token of a long context adds in one layer (windows and states are full)."""
        a = self.attention
        if isinstance(a, GqaAttention) and not a.window:
            return a.kv_elems_per_token(tp) * kv_bytes
        if isinstance(a, MlaAttention):
            return a.kv_elems_per_token(tp) * kv_bytes + a.indexer_bytes_per_token()
        return 0.0

    def kv_bytes_per_seq(self, tokens: float, kv_bytes: float, tp: int = 1) -> float:
        """Cache bytes one sequence of ``tokens`` tokens holds in one layer on one GPU."""
        a = self.attention
        if a is None:
            return 0.0
        if isinstance(a, DeltaNetAttention | MambaMixer):
            return a.state_bytes_per_seq(tp)
        kept = min(tokens, a.window) if isinstance(a, GqaAttention) and a.window else tokens
        index = a.indexer_bytes_per_token() if isinstance(a, MlaAttention) else 0.0
        return kept * (a.kv_elems_per_token(tp) * kv_bytes + index)
