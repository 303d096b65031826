"""Fit device and link efficiencies from single-kernel timings (``kernels.csv``).

Pure functions: each fit takes parsed rows and returns physically meaningful parameters
(achieved fraction of peak FLOP/s and of HBM bandwidth, a per-kernel fixed cost, and per
all-reduce latency and bus-bandwidth fraction). ``scripts/fit_calibration.py`` runs them.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.optimize import least_squares

from guideopt.model.dtype import Dtype
from guideopt.model.gpu import Gpu
from guideopt.units import FLOPS_PER_MAC, S_PER_MS

# Kernel-table GPU labels → catalog ids. Vidur's "A100"/"H100" are the 80 GB SXM parts of DGX nodes.
KERNEL_GPU_LABELS = {
    "A100-SXM4-80GB": "a100-sxm4-80gb",
    "A100": "a100-sxm4-80gb",
    "A100 (DGX)": "a100-sxm4-80gb",
    "H100-SXM-80GB": "h100-sxm",
    "H100": "h100-sxm",
    "H100 (DGX)": "h100-sxm",
    "H200-SXM-141GB": "h200-sxm",
    "L40S": "l40s",
    "B200": "b200",
    "A40": "a40",
}
BF16_BYTES = 2.0
FP8_BYTES = 1.0
# Bounds that keep fitted values physical.
EFF_BOUNDS = (0.05, 1.0)
# Best sustained HBM streaming seen in copy benchmarks is ~90-93 % of the datasheet figure
# (BabelStream/nvbandwidth on A100/H100; cf. shared/reference/interconnect.md: 87-88 % for
# link copies). Small GEMMs whose weights fit in a large L2 (L40S 96 MB, B200 126 MB) time
# faster than HBM allows, so the fitted fraction is capped here.
MAX_STREAM_EFF = 0.92
# Per-kernel fixed cost inside an engine that replays CUDA graphs: a graph node launches in
# ~2 µs (NVIDIA CUDA Graphs blog, "Getting Started with CUDA Graphs", 2019). Isolated-kernel
# timings (as in kernels.csv) pay a full eager launch and sync each, so the fit gives them
# their own fixed cost (reported, not used) and keeps only the rates for the engine model.
KERNEL_OVERHEAD_US = 2.0
ISOLATED_LAUNCH_US_BOUNDS = (0.0, 25.0)


@dataclass(frozen=True)
class KernelRow:
    line: int
    gpu: str  # catalog id
    kind: str  # gemm | ctx_attn | gen_attn | allreduce
    flops: float
    bytes: float
    seconds: float
    ranks: int = 1
    message_bytes: float = 0.0
    algo: str = ""


def _gemm(m: int, n: int, k: int, w_bytes: float) -> tuple[float, float]:
    return FLOPS_PER_MAC * m * n * k, n * k * w_bytes + (m * k + m * n) * BF16_BYTES


def _num(pattern: str, text: str) -> int:
    found = re.search(pattern, text)
    if not found:
        raise ValueError(pattern)
    return int(found.group(1))


def parse_kernel_row(line: int, row: dict[str, str]) -> KernelRow | None:
    gpu = KERNEL_GPU_LABELS.get(row["gpu"])
    if gpu is None:
        return None
    notes, metric = row["notes"], row["metric"]
    seconds = float(row["value"]) * S_PER_MS
    if metric == "gemm_time" and notes.startswith("GEMM"):
        w = FP8_BYTES if row["dtype"] == "fp8" else BF16_BYTES
        flops, nbytes = _gemm(_num(r"m=(\d+)", notes), _num(r"n=(\d+)", notes), _num(r"k=(\d+)", notes), w)
        return KernelRow(line, gpu, "gemm" if w == BF16_BYTES else "gemm_fp8", flops, nbytes, seconds)
    if metric == "gemm_time":  # vidur: QKV or MLP-up projection of a Llama shape
        tokens, tp = _num(r"num_tokens=(\d+)", notes), _num(r"tp=(\d+)", notes)
        h, ffn = _num(r"n_embd=(\d+)", notes), _num(r"n_expanded_embd=(\d+)", notes)
        heads, kv = _num(r"n_head=(\d+)", notes), _num(r"n_kv_head=(\d+)", notes)
        n = (heads + 2 * kv) * (h // heads) // tp if "attn_pre_proj" in notes else 2 * ffn // tp
        flops, nbytes = _gemm(tokens, n, h, BF16_BYTES)
        return KernelRow(line, gpu, "gemm", flops, nbytes, seconds)
    if metric == "attn_time":
        heads, kv, d = _num(r"num_heads=(\d+)", notes), _num(r"num_kv_heads=(\d+)", notes), _num(r"head_dim=(\d+)", notes)
        batch, length = int(float(row["batch_or_concurrency"])), int(float(row["input_len"]))
        if notes.startswith("prefill"):
            pairs = batch * length * (length + 1) / 2
            nbytes = batch * length * (2 * heads + 2 * kv) * d * BF16_BYTES
            return KernelRow(line, gpu, "ctx_attn", 2 * FLOPS_PER_MAC * d * heads * pairs, nbytes, seconds)
        nbytes = batch * length * 2 * kv * d * BF16_BYTES
        return KernelRow(line, gpu, "gen_attn", 2 * FLOPS_PER_MAC * d * heads * batch * length, nbytes, seconds)
    if metric == "allreduce_time":
        elements = _num(r"(?:message_size|size)=(\d+)", notes)
        algo = "custom" if "custom" in row["source"] else "nccl"
        return KernelRow(
            line, gpu, "allreduce", 0.0, 0.0, seconds, ranks=int(float(row["num_gpus"])), message_bytes=elements * BF16_BYTES, algo=algo
        )
    return None


def load_kernel_rows(path: Path) -> list[KernelRow]:
    with path.open() as fh:
        rows = [parse_kernel_row(i + 2, r) for i, r in enumerate(csv.DictReader(fh))]
    return [r for r in rows if r is not None]


def roofline_s(flops, nbytes, *, peak_flops, bw, compute_eff, mem_eff, overhead_s):
    return np.maximum(flops / (peak_flops * compute_eff), nbytes / (bw * mem_eff)) + overhead_s


@dataclass(frozen=True)
class DeviceFit:
    compute_eff: float
    mem_eff: float
    attn_compute_eff: float
    kernel_overhead_us: float
    rows: list[int]
    median_ape: float
    isolated_launch_us: float = 0.0
    attn_mem_eff: float = float("nan")


def fit_device(gpu: Gpu, rows: list[KernelRow]) -> DeviceFit | None:
    """Fit compute_eff (large GEMMs), mem_eff (small-m GEMMs, decode attention) and
    attn_compute_eff (prefill attention) on one GPU's rows; None without GEMM rows."""
    gemm = [r for r in rows if r.kind == "gemm"]
    attn = [r for r in rows if r.kind in ("ctx_attn", "gen_attn")]
    if len(gemm) < 3:
        return None
    use = gemm + attn
    flops = np.array([r.flops for r in use])
    nbytes = np.array([r.bytes for r in use])
    measured = np.array([r.seconds for r in use])
    is_attn = np.array([r.kind != "gemm" for r in use])
    is_kv = np.array([r.kind == "gen_attn" for r in use])
    peak = gpu.tensor_flops_per_s(Dtype.BF16)
    bw = gpu.hbm_bw_bytes_per_s

    def predict(p):
        ce, me, ae, kve, launch_us = p
        eff = np.where(is_attn, ae, ce)
        mem = np.where(is_kv, kve, me)
        return roofline_s(flops, nbytes, peak_flops=peak, bw=bw, compute_eff=eff, mem_eff=mem, overhead_s=launch_us * 1e-6)

    lo = [EFF_BOUNDS[0]] * 4 + [ISOLATED_LAUNCH_US_BOUNDS[0]]
    hi = [EFF_BOUNDS[1], MAX_STREAM_EFF, EFF_BOUNDS[1], MAX_STREAM_EFF, ISOLATED_LAUNCH_US_BOUNDS[1]]
    fit = least_squares(lambda p: np.log(predict(p) / measured), x0=[0.6, 0.7, 0.4, 0.5, 5.0], bounds=(lo, hi), loss="soft_l1")
    ape = np.abs(predict(fit.x) / measured - 1)
    ce, me, ae, kve, launch = (float(v) for v in fit.x)
    has_ctx, has_gen = any(r.kind == "ctx_attn" for r in use), bool(is_kv.any())
    return DeviceFit(
        ce,
        me,
        ae if has_ctx else float("nan"),
        KERNEL_OVERHEAD_US,
        [r.line for r in use],
        float(np.median(ape)),
        launch,
        kve if has_gen else float("nan"),
    )


@dataclass(frozen=True)
class LinkFit:
    allreduce_latency_us: float
    busbw_fraction: float
    rows: list[int]
    median_ape: float


def fit_allreduce(gpus: dict[str, Gpu], rows: list[KernelRow]) -> LinkFit | None:
    """Ring model t = α + 2(n−1)/n · bytes / (link_bw · f) over all-reduce rows of NVSwitch GPUs."""
    use = [r for r in rows if r.kind == "allreduce" and r.ranks > 1]
    if len(use) < 3:
        return None
    bw = np.array([gpus[r.gpu].link_bw_bytes_per_s() for r in use])
    n = np.array([float(r.ranks) for r in use])
    msg = np.array([r.message_bytes for r in use])
    measured = np.array([r.seconds for r in use])

    def predict(p):
        alpha_us, frac = p
        return alpha_us * 1e-6 + 2 * (n - 1) / n * msg / (bw * frac)

    fit = least_squares(lambda p: np.log(predict(p) / measured), x0=[10.0, 0.7], bounds=([0.5, 0.05], [200.0, 1.0]), loss="soft_l1")
    ape = np.abs(predict(fit.x) / measured - 1)
    return LinkFit(float(fit.x[0]), float(fit.x[1]), [r.line for r in use], float(np.median(ape)))
