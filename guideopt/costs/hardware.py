"""Per-option hardware figures as numpy arrays: datasheet peaks × calibrated efficiencies.

``HardwareArrays`` is what the roofline functions consume; ``hardware_arrays`` builds it
for a vector of (GPU, framework, weight dtype) choices in one pass.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from guideopt.model.calibration import Calibration, FrameworkEfficiency, LinkEfficiency
from guideopt.model.dtype import ACTIVATION_DTYPE, Dtype
from guideopt.model.framework import Framework
from guideopt.model.gpu import Gpu, LinkClass
from guideopt.units import BYTES_PER_S_PER_GB_S, S_PER_MS, S_PER_US


@dataclass(frozen=True)
class HardwareArrays:
    """Achieved (not peak) rates per option; every field is an array of the same shape."""

    gemm_flops_per_s: np.ndarray  # linear layers, in the weight dtype's tensor path
    attn_flops_per_s: np.ndarray  # attention math (16-bit tensor path)
    mem_bytes_per_s: np.ndarray  # HBM streaming
    kv_bytes_per_s: np.ndarray  # KV-cache reads of (paged) attention
    kernel_overhead_s: np.ndarray  # fixed cost per kernel
    link_bytes_per_s: np.ndarray  # achieved all-reduce bus bandwidth inside a TP group
    pcie_bytes_per_s: np.ndarray  # achieved bus bandwidth when the group outgrows the fast link (PCIe, or the NIC beyond the domain)
    link_scales_with_group: np.ndarray  # 1 where bandwidth grows with the group (xGMI mesh)
    link_group_max: np.ndarray  # largest TP group that stays on the fast link (the scale-up domain)
    allreduce_latency_s: np.ndarray
    p2p_latency_s: np.ndarray
    p2p_bytes_per_s: np.ndarray
    decode_step_overhead_s: np.ndarray  # per decode step (the asynchronous value where the engine schedules ahead)
    prefill_step_overhead_s: np.ndarray
    memory_bytes: np.ndarray
    gemm_m_half: np.ndarray  # tokens at which GEMM FLOP/s is half its large-m value
    kv_len_half: np.ndarray  # KV length per sequence at which decode attention streams at half its rate
    allreduce_latency_per_rank_s: np.ndarray  # extra all-reduce call cost per rank beyond two
    seq_step_overhead_s: np.ndarray  # engine CPU cost per sequence in a step
    token_step_overhead_s: np.ndarray  # engine CPU cost per new token in a step
    moe_imbalance_per_rank: np.ndarray  # busiest expert rank's excess load per doubling of ranks
    moe_compute_fraction: np.ndarray  # fused-MoE FLOP/s ÷ the dense GEMM rate
    moe_m_half: np.ndarray  # tokens per expert at which fused-MoE FLOP/s is half its large value
    moe_n_half: np.ndarray  # expert width per GPU at which fused-MoE FLOP/s is half its wide value
    moe_bandwidth_fraction: np.ndarray  # fused-MoE weight streaming ÷ the dense rate
    moe_overhead_s: np.ndarray  # fixed cost per MoE layer
    first_token_layer_s: np.ndarray  # per request and model layer, the server's path to the first token (costs.metrics)


def hardware_arrays(
    gpus: Sequence[Gpu],
    frameworks: Sequence[Framework],
    dtypes: Sequence[Dtype],
    calibration: Calibration,
) -> HardwareArrays:
    """Arrays for options i = (gpus[i], frameworks[i], dtypes[i])."""
    rows = [_row(g, f, d, calibration) for g, f, d in zip(gpus, frameworks, dtypes, strict=True)]
    fields = HardwareArrays.__dataclass_fields__
    return HardwareArrays(**{name: np.array([r[name] for r in rows], dtype=float) for name in fields})


def _allreduce_latency_us(fw_eff: FrameworkEfficiency, link_cal: LinkEfficiency, link: LinkClass) -> float:
    """Engines bring their own all-reduce kernels for small messages (vLLM / TRT-LLM custom
    all-reduce): where the engine's per-call cost was fitted on this link class it replaces
    the collective library's."""
    if fw_eff.allreduce_latency_us is not None and fw_eff.allreduce_link == link.value:
        return fw_eff.allreduce_latency_us
    return link_cal.allreduce_latency_us


WEIGHT_ONLY = "-weight-only"


def moe_kernel_path(gpu: Gpu, dtype: Dtype) -> str:
    """Which fused-MoE kernels a precision runs on a GPU: its own tensor cores' (the precision), or
    weight-only kernels (low-precision storage, 16-bit math: Marlin, Triton w4a16 / w8a16) for INT4
    and for FP8 or FP4 without such tensor cores (FP4 on Hopper, FP8 on Ampere)."""
    if dtype is Dtype.INT4 or (dtype in (Dtype.FP8, Dtype.FP4) and gpu.native_tflops(dtype) is None):
        return f"{dtype.value}{WEIGHT_ONLY}"
    return dtype.value


def _decode_overhead_ms(fw: Framework, fw_eff: FrameworkEfficiency) -> float:
    """Per-step CPU cost of a decode step: the asynchronous versions' where the engine schedules ahead."""
    if fw.async_scheduling and fw_eff.async_decode_step_overhead_ms is not None:
        return fw_eff.async_decode_step_overhead_ms
    return fw_eff.decode_step_overhead_ms


def _row(gpu: Gpu, fw: Framework, dtype: Dtype, cal: Calibration) -> dict[str, float]:
    dev, _ = cal.device(gpu.id, gpu.arch)
    fw_eff = cal.framework(fw.calibration_id, gpu.vendor.value)
    link_cal = cal.links[gpu.link.value]
    pcie_cal = cal.links[LinkClass.PCIE.value]
    moe = cal.moe.kernels(fw.calibration_id, moe_kernel_path(gpu, dtype))
    speed = fw_eff.kernel_efficiency
    compute_speed = fw_eff.compute_efficiency or speed
    link_bw = gpu.link_bw_bytes_per_s()
    if gpu.link is LinkClass.XGMI:
        # xGMI is a full mesh of point-to-point links: a TP group of t GPUs drives t−1 of
        # the node's links, so its bandwidth grows with the group (see interconnect.md).
        link_bw = link_bw / max(gpu.gpus_per_node - 1, 1)
    pcie_bw = gpu.pcie_bw_unidir_gb_s * BYTES_PER_S_PER_GB_S
    pcie_fraction = fw_eff.pcie_busbw_fraction or pcie_cal.busbw_fraction
    link_fraction = pcie_fraction if gpu.link is LinkClass.PCIE else link_cal.busbw_fraction
    # The fast link reaches the scale-up domain: an NVLink bridge's pair, an HGX/MI board's 8
    # GPUs, an NVL72 rack's 72 (over 18 hosts); PCIe-only GPUs share the node's PCIe.
    group = gpu.gpus_per_node if gpu.link is LinkClass.PCIE else gpu.scale_up_domain_gpus
    # Beyond a switched domain (NVSwitch, xGMI) a TP group crosses hosts: its ring runs
    # through the scale-out NIC where the catalog gives it, else at PCIe speed as before.
    nic = gpu.scale_out_bytes_per_s if gpu.link in (LinkClass.NVSWITCH, LinkClass.XGMI) else None
    spill_bw = min(pcie_bw, nic) if nic else pcie_bw
    # A GPU's own FP8 or FP4 tensor path runs at the fitted low-precision GEMM efficiency;
    # weight-only formats (16-bit math) at the 16-bit one.
    low_precision = dtype is Dtype.FP8 or (dtype is Dtype.FP4 and gpu.native_tflops(dtype) is not None)
    return {
        "gemm_flops_per_s": gpu.tensor_flops_per_s(dtype) * dev.gemm_eff(low_precision) * compute_speed,
        "attn_flops_per_s": gpu.tensor_flops_per_s(ACTIVATION_DTYPE) * dev.attn_compute_eff * compute_speed,
        "mem_bytes_per_s": gpu.hbm_bw_bytes_per_s * dev.mem_eff * speed,
        "kv_bytes_per_s": gpu.hbm_bw_bytes_per_s * dev.attn_mem_eff * speed,
        "kernel_overhead_s": dev.kernel_overhead_us * S_PER_US,
        "link_bytes_per_s": link_bw * link_fraction,
        "link_scales_with_group": float(gpu.link is LinkClass.XGMI),
        "pcie_bytes_per_s": spill_bw * pcie_fraction,
        "link_group_max": float(group),
        "allreduce_latency_s": _allreduce_latency_us(fw_eff, link_cal, gpu.link) * S_PER_US,
        "p2p_latency_s": link_cal.p2p_latency_us * S_PER_US,
        "p2p_bytes_per_s": link_bw * link_cal.busbw_fraction if gpu.link is not LinkClass.PCIE else pcie_bw * pcie_cal.busbw_fraction,
        "decode_step_overhead_s": _decode_overhead_ms(fw, fw_eff) * S_PER_MS,
        "prefill_step_overhead_s": fw_eff.prefill_step_overhead_ms * S_PER_MS,
        "memory_bytes": gpu.memory_bytes,
        "gemm_m_half": dev.gemm_m_half_tokens,
        "kv_len_half": dev.attn_kv_len_half_tokens,
        "allreduce_latency_per_rank_s": link_cal.allreduce_latency_per_rank_us * S_PER_US,
        "seq_step_overhead_s": fw_eff.per_seq_step_us * S_PER_US,
        "token_step_overhead_s": fw_eff.per_token_step_us * S_PER_US,
        "moe_imbalance_per_rank": cal.moe.imbalance_per_rank,
        "moe_compute_fraction": moe.compute_fraction,
        "moe_m_half": moe.m_half_tokens,
        "moe_n_half": moe.n_half_columns,
        "moe_bandwidth_fraction": moe.bandwidth_fraction,
        "moe_overhead_s": (moe.overhead_us + fw_eff.moe_layer_overhead_us) * S_PER_US,
        "first_token_layer_s": fw_eff.first_token_us_per_layer * S_PER_US,
    }
