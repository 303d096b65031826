"""Per-operator roofline time of one forward pass (GUIDE §3.2), vectorised over options.

Every operator costs ``max(FLOPs / achieved FLOP/s, bytes / achieved bandwidth)`` plus a
fixed per-kernel overhead. Inputs are numpy arrays broadcast together; the model
architecture is a scalar.
"""

from __future__ import annotations

import numpy as np

from guideopt.costs.comm import moe_exchange_s, pipeline_send_s, ring_allreduce_s
from guideopt.costs.hardware import HardwareArrays
from guideopt.costs.layer_ops import (
    LayerLayout,
    dense_ffn_s,
    ffn_active_width,
    gqa_s,
    mla_s,
    moe_s,
    recurrent_s,
)
from guideopt.costs.ops import ACT_BYTES, PassShape, gemm_s
from guideopt.model.dtype import LOGIT_BYTES
from guideopt.model.layers import DeltaNetAttention, DenseFfn, GqaAttention, LayerGroup, MambaMixer, MlaAttention, MoeFfn
from guideopt.model.llm import ModelArch
from guideopt.units import FLOPS_PER_MAC

__all__ = ["ACT_BYTES", "PassShape", "forward_pass_s", "gemm_s", "layer_s", "lm_head_s"]

# Kernels per layer besides the GEMMs and attention: two RMSNorms, rotary embedding and
# the gated activation (fused residual adds), as in vLLM's Llama.
ELEMENTWISE_KERNELS_PER_LAYER = 4
# Elementwise traffic per token: each norm reads and writes h, residual adds read 2h and
# write h, twice per layer: (2 + 2) + (3 + 3) = 10 hidden-size vectors.
ELEMENTWISE_HIDDEN_VECTORS = 10
# The gated activation reads gate and up and writes one ffn-wide vector.
ACTIVATION_FFN_VECTORS = 3


def _layout(tp, dp, ep) -> LayerLayout:
    return LayerLayout(np.asarray(tp, dtype=float), np.asarray(dp, dtype=float), np.asarray(ep, dtype=float))


def _mixer_s(g: LayerGroup, h: int, shape: PassShape, lay: LayerLayout, w_bytes, kv_bytes, hw, flash: bool):
    a = g.attention
    if a is None:
        return 0.0
    if isinstance(a, GqaAttention):
        return gqa_s(a, h, shape, lay, w_bytes, kv_bytes, hw, flash)
    if isinstance(a, MlaAttention):
        return mla_s(a, h, shape, lay, w_bytes, kv_bytes, hw)
    assert isinstance(a, DeltaNetAttention | MambaMixer)
    return recurrent_s(a, h, shape, lay, w_bytes, hw)


def _ffn_s(g: LayerGroup, h: int, shape: PassShape, lay: LayerLayout, w_bytes, hw):
    f = g.ffn
    if f is None:
        return 0.0
    if isinstance(f, DenseFfn):
        return dense_ffn_s(f, h, shape.new_tokens, lay.tp, w_bytes, hw)
    return moe_s(f, h, shape, lay, w_bytes, hw)


def _elementwise_s(g: LayerGroup, h: int, shape: PassShape, lay: LayerLayout, hw):
    """Norms, rotary embedding, residual adds and the MLP activation (memory-bound)."""
    vectors = ELEMENTWISE_HIDDEN_VECTORS * h + ACTIVATION_FFN_VECTORS * ffn_active_width(g.ffn) / lay.tp
    return shape.new_tokens * vectors * ACT_BYTES / hw.mem_bytes_per_s + ELEMENTWISE_KERNELS_PER_LAYER * hw.kernel_overhead_s


def _comm_s(g: LayerGroup, h: int, shape: PassShape, lay: LayerLayout, hw):
    """TP all-reduces after the mixer and a dense FFN; an MoE layer's dispatch and combine
    (``moe_exchange_s``: an all-reduce without attention DP, all-gather and reduce-scatter with it)."""
    message = shape.new_tokens * h * ACT_BYTES
    sublayers = (g.attention is not None) + (g.ffn is not None and not isinstance(g.ffn, MoeFfn))
    t = sublayers * ring_allreduce_s(message_bytes=message, tp=lay.tp, hw=hw)
    if isinstance(g.ffn, MoeFfn):
        t = t + moe_exchange_s(message_bytes=message, tp=lay.tp, dp=lay.dp, hw=hw)
    return t


def group_layer_s(g: LayerGroup, arch: ModelArch, shape: PassShape, lay: LayerLayout, w_bytes, kv_bytes, hw, flash: bool):
    """One layer of group ``g`` on one GPU."""
    h = arch.hidden_size
    return (
        _mixer_s(g, h, shape, lay, w_bytes, kv_bytes, hw, flash)
        + _ffn_s(g, h, shape, lay, w_bytes, hw)
        + _elementwise_s(g, h, shape, lay, hw)
        + _comm_s(g, h, shape, lay, hw)
    )


def layer_s(arch: ModelArch, shape: PassShape, tp, w_bytes, kv_bytes, hw: HardwareArrays, *, flash: bool, dp=1.0, ep=1.0) -> np.ndarray:
    """The mean layer of the model on one GPU (Σ over layer groups / layers): ``layers × layer_s``
    is the time of that many layers taken in the model's proportions."""
    lay = _layout(tp, dp, ep)
    total = sum(g.count * group_layer_s(g, arch, shape, lay, w_bytes, kv_bytes, hw, flash) for g in arch.layer_groups)
    return np.asarray(total) / arch.num_layers


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
    dp=1.0,
    ep=1.0,
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
    stage = layers_per_stage * layer_s(arch, mb, tp, w_bytes, kv_bytes, hw, flash=flash, dp=dp, ep=ep)
    head = lm_head_s(arch, mb, tp, hw) / pp  # one stage carries it; spread for the steady state
    sends = pipeline_send_s(message_bytes=mb.new_tokens * arch.hidden_size * ACT_BYTES, pp=pp, hw=hw)
    return np.maximum(micro, pp) * (stage + head) + sends
