"""The shared pieces of the per-operator roofline: a pass's shape and one GEMM's time."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from guideopt.costs.hardware import HardwareArrays
from guideopt.model.dtype import ACTIVATION_DTYPE
from guideopt.units import FLOPS_PER_MAC

ACT_BYTES = ACTIVATION_DTYPE.bytes


@dataclass(frozen=True)
class PassShape:
    """What one forward pass processes, per replica (arrays broadcast together)."""

    new_tokens: np.ndarray  # tokens whose activations are computed in this pass
    seqs: np.ndarray  # sequences touched (decode: one token each)
    attn_pairs: np.ndarray  # Σ over new tokens of the KV length each attends to
    kv_read_tokens: np.ndarray  # KV-cache tokens streamed from memory
    logit_tokens: np.ndarray  # tokens whose next-token logits are computed


def gemm_s(m, k, n, weight_count, w_bytes, hw: HardwareArrays):
    """One GEMM of an (m×k) activation by weights totalling ``weight_count`` parameters.

    Achieved FLOP/s grows with the row count m (tile occupancy, wave quantisation):
    eff(m) = eff·m/(m + m_half), fitted per GPU from kernel timings.
    """
    flops = FLOPS_PER_MAC * m * k * n
    bytes_moved = weight_count * w_bytes + (m * k + m * n) * ACT_BYTES
    rate = hw.gemm_flops_per_s * m / (m + hw.gemm_m_half)
    return np.maximum(flops / rate, bytes_moved / hw.mem_bytes_per_s) + hw.kernel_overhead_s
