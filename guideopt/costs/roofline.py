"""Per-operator roofline time of one forward pass (GUIDE §3.2), vectorised over options.

Every operator costs ``max(FLOPs / achieved FLOP/s, bytes / achieved bandwidth)`` plus a
fixed per-kernel overhead. Inputs are numpy arrays broadcast together; the model
architecture is a scalar.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from guideopt.costs.comm import pipeline_send_s, ring_allreduce_s
from guideopt.costs.hardware import HardwareArrays
from guideopt.model.dtype import ACTIVATION_DTYPE, LOGIT_BYTES
from guideopt.model.llm import ModelArch
from guideopt.units import FLOPS_PER_MAC

ACT_BYTES = ACTIVATION_DTYPE.bytes
# Kernels per transformer layer besides the four GEMMs and attention: two RMSNorms,
# rotary embedding and the gated activation (fused residual adds), as in vLLM's Llama.
ELEMENTWISE_KERNELS_PER_LAYER = 4
GEMM_KERNELS_PER_LAYER = 4  # qkv, o, gate_up, down
# Elementwise traffic per token: each norm reads and writes h, residual adds read 2h and
# write h, twice per layer: (2 + 2) + (3 + 3) = 10 hidden-size vectors.
ELEMENTWISE_HIDDEN_VECTORS = 10
# The gated activation reads gate and up and writes one ffn-wide vector.
ACTIVATION_FFN_VECTORS = 3
# Without FlashAttention the score matrix is written and read back twice (QKᵀ, softmax).
UNFUSED_SCORE_PASSES = 4
ALLREDUCES_PER_LAYER = 2  # after attention and after the MLP (Megatron-style TP)


@dataclass(frozen=True)
class PassShape:
    """What one forward pass processes, per replica (arrays broadcast together)."""

    new_tokens: np.ndarray  # tokens whose activations are computed in this pass
    seqs: np.ndarray  # sequences touched (decode: one token each)
    attn_pairs: np.ndarray  # Σ over new tokens of the KV length each attends to
    kv_read_tokens: np.ndarray  # KV-cache tokens streamed from memory
    logit_tokens: np.ndarray  # tokens whose next-token logits are computed


def kv_heads_per_gpu(arch: ModelArch, tp: np.ndarray) -> np.ndarray:
    """KV heads held per GPU: split by TP, replicated when TP exceeds the KV head count."""
    return np.ceil(arch.num_kv_heads / np.asarray(tp, dtype=float))


def expected_active_experts(arch: ModelArch, tokens: np.ndarray) -> np.ndarray:
    """Distinct experts hit by ``tokens`` tokens routed uniformly (k of E per token)."""
    if not arch.is_moe:
        return np.ones_like(np.asarray(tokens, dtype=float))
    miss = (1.0 - arch.experts_per_token / arch.num_experts) ** np.asarray(tokens, dtype=float)
    return arch.num_experts * (1.0 - miss)


def _gemm_s(m, k, n, weight_count, w_bytes, hw: HardwareArrays):
    """One GEMM of an (m×k) activation by weights totalling ``weight_count`` parameters.

    Achieved FLOP/s grows with the row count m (tile occupancy, wave quantisation):
    eff(m) = eff·m/(m + m_half), fitted per GPU from kernel timings.
    """
    flops = FLOPS_PER_MAC * m * k * n
    bytes_moved = weight_count * w_bytes + (m * k + m * n) * ACT_BYTES
    rate = hw.gemm_flops_per_s * m / (m + hw.gemm_m_half)
    return np.maximum(flops / rate, bytes_moved / hw.mem_bytes_per_s) + hw.kernel_overhead_s


def layer_linear_s(arch: ModelArch, shape: PassShape, tp, w_bytes, hw: HardwareArrays) -> np.ndarray:
    """QKV, output projection and MLP (dense or MoE) GEMMs of one layer on one GPU."""
    m = shape.new_tokens
    h = arch.hidden_size
    q_cols = arch.q_dim / tp
    kv_cols = 2 * kv_heads_per_gpu(arch, tp) * arch.head_dim
    qkv = _gemm_s(m, h, q_cols + kv_cols, h * (q_cols + kv_cols), w_bytes, hw)
    out = _gemm_s(m, q_cols, h, q_cols * h, w_bytes, hw)
    ffn = arch.intermediate_size / tp
    up_mats = 2 if arch.gated_mlp else 1
    routed = m * arch.experts_per_token if arch.is_moe else m
    experts = expected_active_experts(arch, m)
    up = _gemm_s(routed, h, up_mats * ffn, experts * h * up_mats * ffn, w_bytes, hw)
    down = _gemm_s(routed, ffn, h, experts * ffn * h, w_bytes, hw)
    return qkv + out + up + down


def layer_attention_s(arch: ModelArch, shape: PassShape, tp, kv_bytes, hw: HardwareArrays, *, flash: bool) -> np.ndarray:
    """Attention (QKᵀ, softmax, PV) of one layer on one GPU, GQA/MQA aware."""
    q_heads = arch.num_heads / tp
    kv_heads = kv_heads_per_gpu(arch, tp)
    d = arch.head_dim
    flops = 2 * FLOPS_PER_MAC * d * q_heads * shape.attn_pairs
    kv_stream = shape.kv_read_tokens * 2 * kv_heads * d * kv_bytes
    qo_io = shape.new_tokens * (2 * q_heads + 2 * kv_heads) * d * ACT_BYTES
    scores = 0.0 if flash else UNFUSED_SCORE_PASSES * q_heads * shape.attn_pairs * ACT_BYTES
    # Decode attention streams each sequence's KV; short contexts leave the GPU under-occupied:
    # eff(L) = eff·L/(L + L_half), L the KV length per sequence (fitted from kernel timings).
    kv_len = np.maximum(shape.kv_read_tokens / np.maximum(shape.seqs, 1.0), 1.0)  # ≥ 1: no 0/0 in an empty pass
    kv_rate = hw.kv_bytes_per_s * kv_len / (kv_len + hw.kv_len_half)
    memory_s = kv_stream / kv_rate + (qo_io + scores) / hw.mem_bytes_per_s
    return np.maximum(flops / hw.attn_flops_per_s, memory_s) + hw.kernel_overhead_s


def layer_elementwise_s(arch: ModelArch, shape: PassShape, tp, hw: HardwareArrays) -> np.ndarray:
    """Norms, rotary embedding, residual adds and the MLP activation (memory-bound)."""
    ffn_active = arch.intermediate_size * (arch.experts_per_token if arch.is_moe else 1)
    vectors = ELEMENTWISE_HIDDEN_VECTORS * arch.hidden_size + ACTIVATION_FFN_VECTORS * ffn_active / tp
    bytes_moved = shape.new_tokens * vectors * ACT_BYTES
    return bytes_moved / hw.mem_bytes_per_s + ELEMENTWISE_KERNELS_PER_LAYER * hw.kernel_overhead_s


def layer_comm_s(arch: ModelArch, shape: PassShape, tp, hw: HardwareArrays) -> np.ndarray:
    message = shape.new_tokens * arch.hidden_size * ACT_BYTES
    return ALLREDUCES_PER_LAYER * ring_allreduce_s(message_bytes=message, tp=tp, hw=hw)


def layer_s(arch: ModelArch, shape: PassShape, tp, w_bytes, kv_bytes, hw: HardwareArrays, *, flash: bool) -> np.ndarray:
    """One transformer layer on one GPU of a TP group."""
    return (
        layer_linear_s(arch, shape, tp, w_bytes, hw)
        + layer_attention_s(arch, shape, tp, kv_bytes, hw, flash=flash)
        + layer_elementwise_s(arch, shape, tp, hw)
        + layer_comm_s(arch, shape, tp, hw)
    )


def lm_head_s(arch: ModelArch, shape: PassShape, tp, hw: HardwareArrays) -> np.ndarray:
    """Logits for the tokens that sample (vocab-parallel over TP; weights kept in 16-bit)."""
    vocab = arch.vocab_size / tp
    flops = FLOPS_PER_MAC * shape.logit_tokens * arch.hidden_size * vocab
    bytes_moved = arch.hidden_size * vocab * ACT_BYTES + shape.logit_tokens * vocab * LOGIT_BYTES
    return np.maximum(flops / hw.gemm_flops_per_s, bytes_moved / hw.mem_bytes_per_s) + hw.kernel_overhead_s


def _scaled(shape: PassShape, factor) -> PassShape:
    return PassShape(
        *(
            np.asarray(v, dtype=float) * factor
            for v in (shape.new_tokens, shape.seqs, shape.attn_pairs, shape.kv_read_tokens, shape.logit_tokens)
        )
    )


def forward_pass_s(
    arch: ModelArch,
    shape: PassShape,
    *,
    tp,
    pp,
    w_bytes,
    kv_bytes,
    hw: HardwareArrays,
    flash: bool = True,
) -> np.ndarray:
    """Kernel time of one forward pass over all layers (no framework overhead).

    With PP the batch is cut into m = min(pp, seqs) micro-batches kept in flight, so a
    step costs max(m, pp) stage-times of one micro-batch plus the stage-to-stage sends.
    """
    tp = np.asarray(tp, dtype=float)
    pp = np.asarray(pp, dtype=float)
    micro = np.maximum(np.minimum(pp, np.maximum(shape.seqs, 1.0)), 1.0)
    mb = _scaled(shape, 1.0 / micro)
    layers_per_stage = arch.num_layers / pp
    stage = layers_per_stage * layer_s(arch, mb, tp, w_bytes, kv_bytes, hw, flash=flash)
    head = lm_head_s(arch, mb, tp, hw) / pp  # one stage carries it; spread for the steady state
    sends = pipeline_send_s(message_bytes=mb.new_tokens * arch.hidden_size * ACT_BYTES, pp=pp, hw=hw)
    return np.maximum(micro, pp) * (stage + head) + sends
