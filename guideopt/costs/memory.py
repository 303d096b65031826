"""Memory per GPU: weights, KV cache, activation peak and framework overhead (GUIDE §3.3).

All functions are pure and vectorised; sizes are in bytes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from guideopt.costs.engine_defaults import memory_fraction
from guideopt.costs.layer_ops import ffn_active_width
from guideopt.costs.ops import ACT_BYTES
from guideopt.model.dtype import LOGIT_BYTES
from guideopt.model.framework import Framework, MemoryFractionOf
from guideopt.model.layers import DeltaNetAttention, GqaAttention, LayerGroup, MambaMixer, MlaAttention, MoeFfn
from guideopt.model.llm import ModelArch
from guideopt.units import BYTES_PER_GIB

# Live activations per token at the peak of a forward pass: the residual stream, the
# normed input and attention output (3 hidden vectors), QKV, and the MLP's gate/up
# output plus the activation result (3 ffn-wide vectors, per TP shard).
PEAK_HIDDEN_VECTORS = 3
PEAK_FFN_VECTORS = 3


@dataclass(frozen=True)
class MemoryArrays:
    weights_bytes: np.ndarray
    activation_bytes: np.ndarray
    overhead_bytes: np.ndarray
    kv_pool_bytes: np.ndarray  # what the engine sets aside for KV (may be negative: does not fit)
    kv_bytes_per_token: np.ndarray  # per GPU
    kv_tokens: np.ndarray  # paged-block-rounded KV capacity per GPU group (tokens)
    usable_bytes: np.ndarray  # what the framework lets itself use in total


def _mixer_params_per_gpu(g: LayerGroup, h: int, tp: np.ndarray) -> np.ndarray | float:
    a = g.attention
    if a is None:
        return 0.0
    if isinstance(a, GqaAttention):  # KV projections replicated when TP exceeds the KV heads
        q = a.q_dim / tp
        kv = 2 * np.ceil(a.num_kv_heads / tp) * a.head_dim
        gate = h * q if a.output_gate else 0.0
        return h * (q + kv) + q * h + gate
    if isinstance(a, MlaAttention):  # down-projections and the indexer replicated, head projections split
        replicated = h * a.latent_dim + (h * a.q_lora_rank if a.q_lora_rank else 0) + a.indexer_params(h)
        return replicated + (a.params(h) - replicated) / tp
    assert isinstance(a, DeltaNetAttention | MambaMixer)
    return a.params(h) / tp


def _ffn_params_per_gpu(g: LayerGroup, h: int, tp: np.ndarray, dp: np.ndarray, ep: np.ndarray) -> np.ndarray | float:
    f = g.ffn
    if f is None:
        return 0.0
    if not isinstance(f, MoeFfn):
        return f.params(h) / tp
    router = h * f.num_experts
    experts = f.num_experts * f.expert_params(h) / (tp * dp)  # moe_tp × ep = tp × dp GPUs share them
    return router + (f.fixed_params(h) - router) / tp + experts


def layer_weight_bytes_per_gpu(arch: ModelArch, *, tp, w_bytes, dp=1.0, ep=1.0) -> np.ndarray:
    """The mean layer's weights on one GPU (Σ over layer groups / layers): attention split over
    TP and copied on each attention-DP rank, experts split over the stage's tp·dp GPUs."""
    tp = np.asarray(tp, dtype=float)
    dp = np.asarray(dp, dtype=float)
    ep = np.asarray(ep, dtype=float)
    h = arch.hidden_size
    total = sum(g.count * (_mixer_params_per_gpu(g, h, tp) + _ffn_params_per_gpu(g, h, tp, dp, ep) + h * 2) for g in arch.layer_groups)
    return np.asarray(total) / arch.num_layers * w_bytes


def edge_weight_bytes_per_gpu(arch: ModelArch, *, tp, first: bool, last: bool) -> np.ndarray:
    """Embedding (first stage) and LM head (last stage; a tied head is copied there when the
    stages differ), vocab-parallel over TP and kept in 16-bit."""
    tp = np.asarray(tp, dtype=float)
    params = 0.0
    if first:
        params += arch.embedding_params
    if last and (not first or not arch.tie_word_embeddings):
        params += arch.lm_head_params
    return params / tp * ACT_BYTES


def weights_per_gpu_bytes(arch: ModelArch, *, tp, pp, w_bytes, dp=1.0, ep=1.0) -> np.ndarray:
    """Largest stage's weights on one GPU; embeddings and LM head stay 16-bit, vocab-parallel."""
    tp = np.asarray(tp, dtype=float)
    pp = np.asarray(pp, dtype=float)
    head = 0.0 if arch.tie_word_embeddings else arch.lm_head_params
    emb = arch.embedding_params
    # PP>1: the first stage holds the embedding, the last the LM head (a tied head is copied).
    edge_pp1 = emb + head
    edge_ppn = max(emb, arch.lm_head_params)
    edge = np.where(pp > 1, edge_ppn, edge_pp1) / tp
    layers = np.ceil(arch.num_layers / pp)
    return layers * layer_weight_bytes_per_gpu(arch, tp=tp, w_bytes=w_bytes, dp=dp, ep=ep) + edge * ACT_BYTES


def kv_bytes_per_token_per_gpu(arch: ModelArch, *, tp, pp, kv_bytes, kv_keep=1.0, seq_tokens=None) -> np.ndarray:
    """Cache bytes one token costs on one GPU (largest stage), scaled by an H2O keep ratio.

    With ``seq_tokens`` (the sequence length the pool is sized for) sliding windows and the
    fixed states of linear-attention layers are spread over the sequence's tokens
    (``ModelArch.kv_bytes_per_seq``); without it a token costs what one more token of a long
    context adds."""
    tp = np.asarray(tp, dtype=float)
    stage = np.ceil(arch.num_layers / np.asarray(pp, dtype=float)) / arch.num_layers
    tokens = -1.0 if seq_tokens is None else seq_tokens  # -1: the growth per token
    flat_tp, flat_kv, flat_tok = np.broadcast_arrays(tp, np.asarray(kv_bytes, dtype=float), np.asarray(tokens, dtype=float))
    # a few distinct (tp, kv bytes, length) rows: one integer code per row (np.unique over
    # rows of a 2-D array sorts structured records, ten times slower)
    code = np.zeros(flat_tp.size, dtype=np.int64)
    columns = []
    for col in (flat_tp.ravel(), flat_kv.ravel(), flat_tok.ravel()):
        values, idx = np.unique(col, return_inverse=True)
        code = code * values.size + idx.ravel()
        columns.append((values, idx.ravel()))
    _, first, inverse = np.unique(code, return_index=True, return_inverse=True)
    tp_i, kv_i, tok_i = (values[idx[first]] for values, idx in columns)
    per = np.array([arch.kv_bytes_per_token(float(kv), int(t), _length(n)) for t, kv, n in zip(tp_i, kv_i, tok_i)])
    out = per[inverse.ravel()].reshape(flat_tp.shape)
    return stage * out * kv_keep


def _length(n: float) -> float | None:
    return None if n < 0 else float(n)


def activation_peak_bytes(arch: ModelArch, *, tp, token_budget, max_seqs) -> np.ndarray:
    """Peak activation memory of a forward pass of ``token_budget`` tokens, plus fp32 logits."""
    tp = np.asarray(tp, dtype=float)
    widest = max(_mixer_width(g) + PEAK_FFN_VECTORS * ffn_active_width(g.ffn) for g in arch.layer_groups)
    per_token = PEAK_HIDDEN_VECTORS * arch.hidden_size + widest / tp
    logits = np.minimum(max_seqs, token_budget) * arch.vocab_size / tp * LOGIT_BYTES
    return token_budget * per_token * ACT_BYTES + logits


def _mixer_width(g: LayerGroup) -> float:
    """Projection outputs a mixer holds per token (QKV, latent heads, linear-attention streams)."""
    a = g.attention
    if isinstance(a, GqaAttention):
        return a.q_dim + 2 * a.kv_dim
    if isinstance(a, MlaAttention):
        return a.num_heads * (a.qk_head_dim + a.v_head_dim)
    if isinstance(a, DeltaNetAttention):
        return 2 * a.key_dim + 2 * a.value_dim
    if isinstance(a, MambaMixer):
        return 2 * a.d_inner + 2 * a.n_groups * a.state_size
    return 0.0


def framework_overhead_bytes(fw: Framework, *, tp) -> np.ndarray:
    tp = np.asarray(tp, dtype=float)
    gib = fw.non_torch_gib + fw.cuda_graph_gib + np.where(tp > 1, fw.comm_buffer_gib_per_tp, 0.0)
    return gib * BYTES_PER_GIB


def kv_pool_bytes(fw: Framework, *, gpu_memory_bytes, weights, activation, overhead, fraction=None) -> tuple[np.ndarray, np.ndarray]:
    """KV-cache pool per GPU and the total the engine may use, by the framework's rule.

    ``fraction`` (per row) replaces the catalog's memory fraction where the engine derives
    it from the GPU and layout (``costs.engine_defaults.memory_fraction``).

    CUDA-graph memory comes out of the headroom outside the fraction unless the engine
    counts it inside (``cuda_graph_in_budget``, vLLM >= 0.21).
    """
    mem = np.asarray(gpu_memory_bytes, dtype=float)
    frac = fw.memory_fraction if fraction is None else np.asarray(fraction, dtype=float)
    reserve = fw.reserve_gib * BYTES_PER_GIB
    graphs = 0.0 if fw.cuda_graph_in_budget else fw.cuda_graph_gib * BYTES_PER_GIB
    in_budget = overhead - graphs
    if fw.memory_fraction_of is MemoryFractionOf.TOTAL:
        pool = mem * frac - weights - activation - in_budget
        usable = mem * frac + graphs  # graphs live in the headroom
    elif fw.memory_fraction_of is MemoryFractionOf.WEIGHTS_AND_KV:
        pool = mem * frac - weights
        # activations, graphs and buffers live in the rest; an engine that needs more fails
        rest = activation + overhead
        pool = np.where(mem * frac + rest <= mem, pool, 0.0)
        usable = np.minimum(mem, mem * frac + rest)
    elif fw.memory_fraction_of is MemoryFractionOf.FREE_AFTER_LOAD:
        pool = frac * (mem - weights - activation - overhead - reserve)
        usable = weights + activation + overhead + pool
    else:  # RESERVE
        usable = mem - reserve
        pool = usable - weights - activation - overhead
    return pool, usable


def memory_arrays(
    arch: ModelArch,
    fw: Framework,
    *,
    gpu_memory_bytes,
    tp,
    pp,
    w_bytes,
    kv_bytes,
    token_budget,
    kv_keep=1.0,
    seq_tokens=None,
    dp=1.0,
    ep=1.0,
) -> MemoryArrays:
    weights = weights_per_gpu_bytes(arch, tp=tp, pp=pp, w_bytes=w_bytes, dp=dp, ep=ep)
    act = activation_peak_bytes(arch, tp=tp, token_budget=token_budget, max_seqs=fw.max_num_seqs)
    overhead = framework_overhead_bytes(fw, tp=tp) + np.zeros_like(weights)
    # SGLang sizes its reserve by tp_size, which with attention DP counts every GPU of the stage (tp × dp)
    fraction = memory_fraction(fw, gpu_memory_bytes=gpu_memory_bytes, tp=np.asarray(tp) * dp, pp=pp, split=token_budget)
    pool, usable = kv_pool_bytes(
        fw, gpu_memory_bytes=gpu_memory_bytes, weights=weights, activation=act, overhead=overhead, fraction=fraction
    )
    per_token = kv_bytes_per_token_per_gpu(arch, tp=tp, pp=pp, kv_bytes=kv_bytes, kv_keep=kv_keep, seq_tokens=seq_tokens)
    block = fw.kv_block_tokens
    tokens = np.floor(np.maximum(pool, 0.0) / per_token / block) * block
    return MemoryArrays(weights, act, overhead, pool, per_token, tokens, usable)


def tokens_per_sequence(seq_len, block_tokens) -> np.ndarray:
    """KV slots one sequence occupies once rounded up to whole pages."""
    return np.ceil(np.asarray(seq_len, dtype=float) / block_tokens) * block_tokens


def max_batch(kv_tokens, seq_len, block_tokens) -> np.ndarray:
    """Largest number of sequences of ``seq_len`` tokens whose KV fits at once."""
    return np.floor(kv_tokens / tokens_per_sequence(seq_len, block_tokens))
