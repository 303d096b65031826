"""Kernel time of one layer of each kind on one GPU, vectorised over options.

A layer is a mixer (``GqaAttention``, ``MlaAttention``, ``DeltaNetAttention``,
``MambaMixer``) and an FFN (``DenseFfn``, ``MoeFfn``); each is priced as operators
``max(FLOPs / achieved FLOP/s, bytes / achieved bandwidth) + per-kernel cost``.

Layouts: attention runs tensor-parallel over ``tp`` GPUs inside each of ``dp``
attention-data-parallel ranks; MoE experts are split over ``ep`` ranks and each expert
over ``moe_tp = tp·dp/ep`` GPUs. ``shape`` is what one attention rank processes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from guideopt.costs.hardware import HardwareArrays
from guideopt.costs.ops import ACT_BYTES, PassShape, gemm_s
from guideopt.model.layers import DeltaNetAttention, DenseFfn, GqaAttention, MambaMixer, MlaAttention, MoeFfn
from guideopt.units import FLOPS_PER_MAC

# Without FlashAttention the score matrix is written and read back twice (QKᵀ, softmax).
UNFUSED_SCORE_PASSES = 4
# A pass whose new tokens per sequence exceed this runs MLA in its prefill (MHA) form; at or
# below it the absorbed decode form over the compressed cache (DeepSeek-V2 §2.1.2; vLLM and
# SGLang pick the form per batch the same way: decode tokens absorbed, prompts expanded).
MLA_PREFILL_TOKENS_PER_SEQ = 1.5
# Kernels of a linear-attention / SSM mixer besides its projections (conv, gating, scan, norm).
RECURRENT_KERNELS = 4


@dataclass(frozen=True)
class LayerLayout:
    """Arrays broadcast per option: attention TP, attention DP and expert parallelism."""

    tp: np.ndarray
    dp: np.ndarray
    ep: np.ndarray

    @property
    def moe_tp(self) -> np.ndarray:
        return self.tp * self.dp / self.ep


def windowed(shape: PassShape, window: float | None) -> tuple[np.ndarray, np.ndarray]:
    """(attention pairs, KV tokens read) when each query sees at most ``window`` cached tokens."""
    if not window:
        return shape.attn_pairs, shape.kv_read_tokens
    return np.minimum(shape.attn_pairs, shape.new_tokens * window), np.minimum(shape.kv_read_tokens, shape.seqs * window)


def _kv_rate(shape: PassShape, kv_read, hw: HardwareArrays) -> np.ndarray:
    # Decode attention streams each sequence's KV; short contexts leave the GPU under-occupied:
    # eff(L) = eff·L/(L + L_half), L the KV length per sequence (fitted from kernel timings).
    kv_len = np.maximum(kv_read / np.maximum(shape.seqs, 1.0), 1.0)
    return hw.kv_bytes_per_s * kv_len / (kv_len + hw.kv_len_half)


def gqa_s(a: GqaAttention, h: int, shape: PassShape, lay: LayerLayout, w_bytes, kv_bytes, hw: HardwareArrays, flash: bool):
    m, tp = shape.new_tokens, lay.tp
    q_cols = a.q_dim / tp
    kv_heads = np.ceil(a.num_kv_heads / tp)
    kv_cols = 2 * kv_heads * a.head_dim
    gate = q_cols if a.output_gate else 0.0
    linear = gemm_s(m, h, q_cols + kv_cols + gate, h * (q_cols + kv_cols + gate), w_bytes, hw) + gemm_s(
        m, q_cols, h, q_cols * h, w_bytes, hw
    )
    pairs, kv_read = windowed(shape, a.window)
    q_heads = a.num_heads / tp
    flops = 2 * FLOPS_PER_MAC * a.head_dim * q_heads * pairs
    kv_stream = kv_read * 2 * kv_heads * a.head_dim * kv_bytes
    qo_io = m * (2 * q_heads + 2 * kv_heads) * a.head_dim * ACT_BYTES
    scores = 0.0 if flash else UNFUSED_SCORE_PASSES * q_heads * pairs * ACT_BYTES
    memory_s = kv_stream / _kv_rate(shape, kv_read, hw) + (qo_io + scores) / hw.mem_bytes_per_s
    return linear + np.maximum(flops / hw.attn_flops_per_s, memory_s) + hw.kernel_overhead_s


def mla_s(a: MlaAttention, h: int, shape: PassShape, lay: LayerLayout, w_bytes, kv_bytes, hw: HardwareArrays):
    """MLA: down-projections replicated over TP, head projections split; the cache is the latent."""
    m, tp = shape.new_tokens, lay.tp
    heads = a.num_heads / tp
    q_in = a.q_lora_rank or h
    linear = gemm_s(m, h, a.latent_dim, h * a.latent_dim, w_bytes, hw)
    if a.q_lora_rank:
        linear = linear + gemm_s(m, h, a.q_lora_rank, h * a.q_lora_rank, w_bytes, hw)
    linear = linear + gemm_s(m, q_in, heads * a.qk_head_dim, q_in * heads * a.qk_head_dim, w_bytes, hw)
    kv_b = a.kv_lora_rank * heads * (a.qk_nope_head_dim + a.v_head_dim)
    linear = linear + gemm_s(m, a.kv_lora_rank, heads * (a.qk_nope_head_dim + a.v_head_dim), kv_b, w_bytes, hw)
    linear = linear + gemm_s(m, heads * a.v_head_dim, h, heads * a.v_head_dim * h, w_bytes, hw)
    pairs, kv_read = windowed(shape, a.index_topk)
    prefill_form = m / np.maximum(shape.seqs, 1.0) > MLA_PREFILL_TOKENS_PER_SEQ
    per_pair = np.where(prefill_form, a.qk_head_dim + a.v_head_dim, a.latent_dim + a.kv_lora_rank)
    flops = FLOPS_PER_MAC * heads * per_pair * pairs
    kv_stream = kv_read * a.latent_dim * kv_bytes
    memory_s = kv_stream / _kv_rate(shape, kv_read, hw) + m * heads * (a.qk_head_dim + a.v_head_dim) * ACT_BYTES / hw.mem_bytes_per_s
    core = np.maximum(flops / hw.attn_flops_per_s, memory_s) + hw.kernel_overhead_s
    return linear + core + _indexer_s(a, h, shape, w_bytes, hw)


def _indexer_s(a: MlaAttention, h: int, shape: PassShape, w_bytes, hw: HardwareArrays):
    """DSA's lightning indexer: scores every cached token in FP8, then attention reads the top-k."""
    if not a.index_topk:
        return 0.0
    m = shape.new_tokens
    q_in = a.q_lora_rank or h
    proj = gemm_s(m, q_in, a.index_n_heads * a.index_head_dim, q_in * a.index_n_heads * a.index_head_dim, w_bytes, hw)
    proj = proj + gemm_s(m, h, a.index_head_dim + a.index_n_heads, h * (a.index_head_dim + a.index_n_heads), w_bytes, hw)
    flops = FLOPS_PER_MAC * a.index_n_heads * a.index_head_dim * shape.attn_pairs
    reads = shape.kv_read_tokens * a.indexer_bytes_per_token()
    return proj + np.maximum(flops / hw.gemm_flops_per_s, reads / hw.mem_bytes_per_s) + 2 * hw.kernel_overhead_s


def recurrent_s(a: DeltaNetAttention | MambaMixer, h: int, shape: PassShape, lay: LayerLayout, w_bytes, hw: HardwareArrays):
    """Linear attention / SSM: projections, then the recurrence reads and writes each sequence's state once."""
    m, tp = shape.new_tokens, lay.tp
    if isinstance(a, DeltaNetAttention):
        in_cols, out_in = (2 * a.key_dim + 2 * a.value_dim + 2 * a.num_value_heads) / tp, a.value_dim / tp
    else:
        in_cols, out_in = (2 * a.d_inner + 2 * a.n_groups * a.state_size + a.num_heads) / tp, a.d_inner / tp
    linear = gemm_s(m, h, in_cols, h * in_cols, w_bytes, hw) + gemm_s(m, out_in, h, out_in * h, w_bytes, hw)
    flops = m * a.state_update_flops_per_token(1) / tp
    state = 2.0 * shape.seqs * a.state_bytes_per_seq(1) / tp + m * in_cols * ACT_BYTES
    return linear + np.maximum(flops / hw.attn_flops_per_s, state / hw.mem_bytes_per_s) + RECURRENT_KERNELS * hw.kernel_overhead_s


def dense_ffn_s(f: DenseFfn, h: int, m, tp, w_bytes, hw: HardwareArrays):
    ffn = f.intermediate_size / tp
    up = (f.mats - 1) * ffn
    return gemm_s(m, h, up, h * up, w_bytes, hw) + gemm_s(m, ffn, h, ffn * h, w_bytes, hw)


def expected_active_experts(experts: int, k: int, tokens) -> np.ndarray:
    """Distinct experts hit by ``tokens`` tokens routed uniformly (k of E per token)."""
    miss = (1.0 - k / experts) ** np.asarray(tokens, dtype=float)
    return experts * (1.0 - miss)


def moe_s(f: MoeFfn, h: int, shape: PassShape, lay: LayerLayout, w_bytes, hw: HardwareArrays):
    """Router, shared experts and the routed experts' grouped GEMMs on one expert rank.

    The tokens of all ``dp`` attention ranks meet at the experts; an expert rank holds
    E/ep experts, each split over moe_tp GPUs. A step of n tokens touches
    E·(1 − (1 − k/E)^n) experts, whose weights it reads; the grouped GEMM runs at the
    rate its tokens per expert allow (``hw.moe_m_half``), and the busiest rank sets the
    time (``hw.moe_imbalance`` grows with ep).
    """
    m_rank, tp = shape.new_tokens, lay.tp
    m_all = m_rank * lay.dp  # tokens of every attention rank reach the experts
    router = gemm_s(m_rank, h, f.num_experts, h * f.num_experts, w_bytes, hw)
    fixed = router
    if f.shared_intermediate_size:
        fixed = fixed + dense_ffn_s(DenseFfn(intermediate_size=f.shared_intermediate_size, gated=f.gated), h, m_rank, tp, w_bytes, hw)
    if f.latent_size:
        fixed = fixed + 2 * gemm_s(m_rank, h, f.latent_size / tp, h * f.latent_size / tp, w_bytes, hw)
    flops, bytes_moved, per_expert, cols = routed_expert_work(f, h, m_all, lay.ep, lay.moe_tp, w_bytes)
    return fixed + grouped_moe_s(flops, bytes_moved, per_expert, cols, lay.ep, hw)


def routed_expert_work(f: MoeFfn, h: int, tokens, ep, moe_tp, w_bytes) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(FLOPs, bytes, tokens per active expert, expert width per GPU) of the routed experts on one expert rank, for
    ``tokens`` tokens entering the layer: the experts they touch (of this rank's E/ep) are read
    once, each routed token runs up (gate and up) and down projections."""
    width = f.latent_size or h
    active = expected_active_experts(f.num_experts, f.experts_per_token, tokens) / ep
    routed = tokens * f.experts_per_token / ep
    per_expert = np.maximum(routed / np.maximum(active, 1e-9), 1.0)
    inter = f.expert_intermediate_size / moe_tp
    up = (f.mats - 1) * inter
    flops = FLOPS_PER_MAC * routed * width * (up + inter)
    # Routing, permutation and finalisation touch every token entering the layer, whatever the rank's share.
    permute = tokens * 2 * width * ACT_BYTES
    bytes_moved = active * width * (up + inter) * w_bytes + routed * (2 * width + up + inter) * ACT_BYTES + permute
    return flops, bytes_moved, per_expert, np.asarray(inter, dtype=float)


def grouped_moe_s(flops, bytes_moved, tokens_per_expert, width, ep, hw: HardwareArrays):
    """The fused-MoE kernels of one layer on the busiest expert rank (``MoeKernelEfficiency``):
    FLOP/s grow with the tokens per expert (rows of each GEMM) and with the expert's width on
    this GPU (its columns: moe_intermediate_size / moe_tp; narrow tiles leave SMs idle)."""
    occupancy = tokens_per_expert / (tokens_per_expert + hw.moe_m_half) * width / (width + hw.moe_n_half)
    rate = hw.gemm_flops_per_s * hw.moe_compute_fraction * occupancy
    imbalance = 1.0 + hw.moe_imbalance_per_rank * np.log2(np.maximum(ep, 1.0))
    return imbalance * np.maximum(flops / rate, bytes_moved / (hw.mem_bytes_per_s * hw.moe_bandwidth_fraction)) + hw.moe_overhead_s


def ffn_active_width(f: DenseFfn | MoeFfn | None) -> float:
    """FFN-wide elements an activation function touches per token (all TP ranks)."""
    if f is None:
        return 0.0
    if isinstance(f, DenseFfn):
        return float(f.intermediate_size)
    return float(f.experts_per_token * f.expert_intermediate_size + f.shared_intermediate_size)
