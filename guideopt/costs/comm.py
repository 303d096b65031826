"""Communication time: TP all-reduce, MoE dispatch/combine and PP send/recv (vectorised)."""

from __future__ import annotations

import numpy as np

from guideopt.costs.hardware import HardwareArrays


def _bus_bytes_per_s(ranks: np.ndarray, hw: HardwareArrays) -> np.ndarray:
    """Achieved bus bandwidth of a collective among ``ranks`` GPUs: the fast link inside its
    group (xGMI's grows with the links a group drives), PCIe or the NIC beyond it."""
    link = hw.link_bytes_per_s * np.where(hw.link_scales_with_group > 0, np.maximum(ranks - 1.0, 1.0), 1.0)
    return np.where(ranks <= hw.link_group_max, link, hw.pcie_bytes_per_s)


def _call_latency_s(ranks: np.ndarray, hw: HardwareArrays) -> np.ndarray:
    """α(t) = α₂ + (t − 2)·α_rank: the per-call latency grows with the ranks synchronised."""
    return hw.allreduce_latency_s + hw.allreduce_latency_per_rank_s * np.maximum(ranks - 2.0, 0.0)


def ring_allreduce_s(*, message_bytes: np.ndarray, tp: np.ndarray, hw: HardwareArrays) -> np.ndarray:
    """One all-reduce: α(t) + 2(t−1)/t · bytes / bus bandwidth; zero for t = 1.

    α(t) is fitted per link class from all-reduce timings on 2, 4 and 8 GPUs. A group larger
    than the fast link reaches (a 2-way NVLink bridge) runs at PCIe speed.
    """
    tp = np.asarray(tp, dtype=float)
    t = _call_latency_s(tp, hw) + 2.0 * (tp - 1.0) / tp * message_bytes / _bus_bytes_per_s(tp, hw)
    return np.where(tp > 1, t, 0.0)


def pipeline_send_s(*, message_bytes: np.ndarray, pp: np.ndarray, hw: HardwareArrays) -> np.ndarray:
    """Activation transfers between consecutive pipeline stages for one forward pass."""
    pp = np.asarray(pp, dtype=float)
    return (pp - 1.0) * (hw.p2p_latency_s + message_bytes / hw.p2p_bytes_per_s)


def moe_exchange_s(*, message_bytes: np.ndarray, tp: np.ndarray, dp: np.ndarray, hw: HardwareArrays) -> np.ndarray:
    """Dispatch and combine of one MoE layer; ``message_bytes`` is one attention rank's hidden states.

    Without attention DP (TP, TEP) every GPU of the TP group already holds all the tokens: each
    runs its experts' share (its experts under EP, its slice of every expert under TP) and one
    all-reduce sums the outputs, as after a dense FFN. This is the path of TensorRT-LLM, vLLM
    (``--enable-expert-parallel`` without DP) and SGLang (``--ep-size`` without DP attention).

    With attention DP the tp·dp GPUs of a stage gather every rank's tokens (dispatch) and
    reduce-scatter the outputs back to their ranks (combine): two calls, each moving the
    (dp − 1)/dp of the gathered dp·message that other ranks hold. This is the engines' default
    when no all-to-all kernel is chosen (TensorRT-LLM's allgather / reducescatter MoE without
    MNNVL all-to-all, vLLM's ``allgather_reducescatter`` all2all backend, SGLang's DP-attention
    gather); DeepEP-style all-to-alls move k·message instead and are not priced here.
    Beyond the scale-up domain both run over the NIC (``hw.pcie_bytes_per_s``).
    """
    tp = np.asarray(tp, dtype=float)
    dp = np.asarray(dp, dtype=float)
    ranks = tp * dp
    one_way = _call_latency_s(ranks, hw) + (dp - 1.0) * message_bytes / _bus_bytes_per_s(ranks, hw)
    return np.where(dp > 1, 2.0 * one_way, ring_allreduce_s(message_bytes=message_bytes, tp=tp, hw=hw))
