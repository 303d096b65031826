"""Communication time: TP all-reduce and PP send/recv (vectorised)."""

from __future__ import annotations

import numpy as np

from guideopt.costs.hardware import HardwareArrays


def ring_allreduce_s(*, message_bytes: np.ndarray, tp: np.ndarray, hw: HardwareArrays) -> np.ndarray:
    """One all-reduce: α(t) + 2(t−1)/t · bytes / bus bandwidth; zero for t = 1.

    α(t) = α₂ + (t − 2)·α_rank: the per-call latency grows with the ranks synchronised
    (fitted per link class from all-reduce timings on 2, 4 and 8 GPUs).

    A group larger than the fast link reaches (a 2-way NVLink bridge) runs at PCIe speed.
    """
    tp = np.asarray(tp, dtype=float)
    link = hw.link_bytes_per_s * np.where(hw.link_scales_with_group > 0, np.maximum(tp - 1.0, 1.0), 1.0)
    busbw = np.where(tp <= hw.link_group_max, link, hw.pcie_bytes_per_s)
    latency = hw.allreduce_latency_s + hw.allreduce_latency_per_rank_s * np.maximum(tp - 2.0, 0.0)
    t = latency + 2.0 * (tp - 1.0) / tp * message_bytes / busbw
    return np.where(tp > 1, t, 0.0)


def pipeline_send_s(*, message_bytes: np.ndarray, pp: np.ndarray, hw: HardwareArrays) -> np.ndarray:
    """Activation transfers between consecutive pipeline stages for one forward pass."""
    pp = np.asarray(pp, dtype=float)
    return (pp - 1.0) * (hw.p2p_latency_s + message_bytes / hw.p2p_bytes_per_s)


def all_to_all_s(*, message_bytes: np.ndarray, ranks: np.ndarray, hw: HardwareArrays) -> np.ndarray:
    """One all-to-all among ``ranks`` GPUs (MoE dispatch or combine): each rank sends
    (r−1)/r of its ``message_bytes`` to the others; zero for r = 1. Beyond the fast link's
    group it runs at PCIe (or NIC) speed, as the all-reduce does."""
    r = np.asarray(ranks, dtype=float)
    busbw = np.where(r <= hw.link_group_max, hw.link_bytes_per_s, hw.pcie_bytes_per_s)
    latency = hw.allreduce_latency_s + hw.allreduce_latency_per_rank_s * np.maximum(r - 2.0, 0.0)
    t = latency + (r - 1.0) / np.maximum(r, 1.0) * message_bytes / busbw
    return np.where(r > 1, t, 0.0)
