"""Communication time: TP all-reduce and PP send/recv (vectorised)."""

from __future__ import annotations

import numpy as np

from guideopt.costs.hardware import HardwareArrays


def ring_allreduce_s(*, message_bytes: np.ndarray, tp: np.ndarray, hw: HardwareArrays) -> np.ndarray:
    """One ring all-reduce: latency + 2(t−1)/t · bytes / bus bandwidth; zero for t = 1.

    A group larger than the fast link reaches (a 2-way NVLink bridge) runs at PCIe speed.
    """
    tp = np.asarray(tp, dtype=float)
    link = hw.link_bytes_per_s * np.where(hw.link_scales_with_group > 0, np.maximum(tp - 1.0, 1.0), 1.0)
    busbw = np.where(tp <= hw.link_group_max, link, hw.pcie_bytes_per_s)
    t = hw.allreduce_latency_s + 2.0 * (tp - 1.0) / tp * message_bytes / busbw
    return np.where(tp > 1, t, 0.0)


def pipeline_send_s(*, message_bytes: np.ndarray, pp: np.ndarray, hw: HardwareArrays) -> np.ndarray:
    """Activation transfers between consecutive pipeline stages for one forward pass."""
    pp = np.asarray(pp, dtype=float)
    return (pp - 1.0) * (hw.p2p_latency_s + message_bytes / hw.p2p_bytes_per_s)
