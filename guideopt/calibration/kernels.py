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
    "AMD Instinct MI300X (Azure ND MI300X v5)": "mi300x",
    "AMD MI300X": "mi300x",
    "AMD MI325X": "mi325x",
    # hipBLASLt tuning file of AMD's MLPerf MI325X submission (gfx942, 304 CUs: the MI325X die).
    "AMD Instinct MI325X (inferred)": "mi325x",
    # MI250X "one GCD" rows are half a board: not the catalog's mi250x.
}
# Achieved-rate rows (TFLOPS, TB/s, bus GB/s) rather than timings: the unit per printed unit.
FLOPS_PER_UNIT = {"tflops": 1e12, "gflops": 1e9}
BYTES_PER_S_PER_UNIT = {"tb/s": 1e12, "gb/s": 1e9, "gbps": 1e9}
_MESSAGE_SIZE = re.compile(r"(?:message size )?(\d+)\s*([KMG])i?B(?: payload)?", re.IGNORECASE)
_SIZE_UNIT = {"k": 1e3, "m": 1e6, "g": 1e9}
BYTES_PER_MB = 1e6  # cache sizes are published in MB (10^6 bytes)
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
# Upper bounds of the half-saturation points (tokens): beyond them the fit has no rows.
M_HALF_MAX = 4096.0
L_HALF_MAX = 4096.0


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
    m: float = 0.0  # GEMM rows (tokens), or KV length per sequence for decode attention
    rate: float = 0.0  # achieved FLOP/s, bytes/s or bus bytes/s for rate rows (kind gemm_rate, hbm_rate, busbw)


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
        m = _num(r"m=(\d+)", notes)
        flops, nbytes = _gemm(m, _num(r"n=(\d+)", notes), _num(r"k=(\d+)", notes), w)
        return KernelRow(line, gpu, "gemm" if w == BF16_BYTES else "gemm_fp8", flops, nbytes, seconds, m=m)
    if metric == "gemm_time":  # vidur: QKV or MLP-up projection of a Llama shape
        tokens, tp = _num(r"num_tokens=(\d+)", notes), _num(r"tp=(\d+)", notes)
        h, ffn = _num(r"n_embd=(\d+)", notes), _num(r"n_expanded_embd=(\d+)", notes)
        heads, kv = _num(r"n_head=(\d+)", notes), _num(r"n_kv_head=(\d+)", notes)
        n = (heads + 2 * kv) * (h // heads) // tp if "attn_pre_proj" in notes else 2 * ffn // tp
        flops, nbytes = _gemm(tokens, n, h, BF16_BYTES)
        return KernelRow(line, gpu, "gemm", flops, nbytes, seconds, m=tokens)
    if metric == "attn_time":
        heads, kv, d = _num(r"num_heads=(\d+)", notes), _num(r"num_kv_heads=(\d+)", notes), _num(r"head_dim=(\d+)", notes)
        batch, length = int(float(row["batch_or_concurrency"])), int(float(row["input_len"]))
        if notes.startswith("prefill"):
            pairs = batch * length * (length + 1) / 2
            nbytes = batch * length * (2 * heads + 2 * kv) * d * BF16_BYTES
            return KernelRow(line, gpu, "ctx_attn", 2 * FLOPS_PER_MAC * d * heads * pairs, nbytes, seconds)
        nbytes = batch * length * 2 * kv * d * BF16_BYTES
        return KernelRow(line, gpu, "gen_attn", 2 * FLOPS_PER_MAC * d * heads * batch * length, nbytes, seconds, m=length)
    if metric == "gemm_tflops":
        rate = float(row["value"]) * FLOPS_PER_UNIT[row["unit"].strip().lower()]
        fp8 = "fp8" in (row["dtype"] + row["quant"]).lower() or "f8" in row["dtype"].lower()
        square = re.search(r"GEMM m=(\d+) n=(\d+) k=(\d+)", notes)
        smallest = float(min(int(v) for v in square.groups())) if square else 0.0  # the smallest dimension limits occupancy
        return KernelRow(line, gpu, "gemm_rate_fp8" if fp8 else "gemm_rate", 0.0, 0.0, 0.0, m=smallest, rate=rate)
    if metric == "hbm_bw":
        return KernelRow(line, gpu, "hbm_rate", 0.0, 0.0, 0.0, rate=float(row["value"]) * BYTES_PER_S_PER_UNIT[row["unit"].strip().lower()])
    if metric == "allreduce_busbw":
        size = _MESSAGE_SIZE.search(notes)
        nbytes = float(size.group(1)) * _SIZE_UNIT[size.group(2).lower()] if size else 0.0
        busbw = float(row["value"]) * BYTES_PER_S_PER_UNIT[row["unit"].strip().lower()]
        return KernelRow(line, gpu, "busbw", 0.0, 0.0, 0.0, ranks=int(float(row["num_gpus"])), message_bytes=nbytes, rate=busbw)
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
    gemm_m_half: float = 0.0
    attn_kv_len_half: float = float("nan")
    compute_eff_fp8: float | None = None


def cache_resident(gpu: Gpu, row: KernelRow) -> bool:
    """A memory-bound timing whose whole working set fits in the GPU's L2: a timing loop runs it
    from cache, so it measures L2 bandwidth, not HBM (an engine's weights and KV of all layers
    do not fit). Left out of the device fit; GPUs without a published L2 size keep every row."""
    if gpu.l2_cache_mb is None or row.kind not in ("gemm", "gemm_fp8", "ctx_attn", "gen_attn") or row.bytes <= 0:
        return False
    peak = gpu.tensor_flops_per_s(Dtype.FP8 if row.kind == "gemm_fp8" else Dtype.BF16) or gpu.tensor_flops_per_s(Dtype.BF16)
    memory_bound = row.flops / row.bytes < peak / gpu.hbm_bw_bytes_per_s
    return memory_bound and row.bytes <= gpu.l2_cache_mb * BYTES_PER_MB


def fit_device(gpu: Gpu, rows: list[KernelRow]) -> DeviceFit | None:
    """Fit compute_eff and gemm_m_half (GEMMs), mem_eff (small-m GEMMs), attn_compute_eff
    (prefill attention), attn_mem_eff and attn_kv_len_half (decode attention) and the FP8
    GEMM efficiency on one GPU's timings; None without GEMM timings."""
    rows = [r for r in rows if not cache_resident(gpu, r)]
    gemm = [r for r in rows if r.kind in ("gemm", "gemm_fp8")]
    attn = [r for r in rows if r.kind in ("ctx_attn", "gen_attn")]
    if len(gemm) < 3:
        return None
    use = gemm + attn
    flops = np.array([r.flops for r in use])
    nbytes = np.array([r.bytes for r in use])
    measured = np.array([r.seconds for r in use])
    m = np.array([max(r.m, 1.0) for r in use])
    is_gemm = np.array([r.kind in ("gemm", "gemm_fp8") for r in use])
    is_fp8 = np.array([r.kind == "gemm_fp8" for r in use])
    is_kv = np.array([r.kind == "gen_attn" for r in use])
    peak = np.where(is_fp8, gpu.tensor_flops_per_s(Dtype.FP8) or gpu.tensor_flops_per_s(Dtype.BF16), gpu.tensor_flops_per_s(Dtype.BF16))
    bw = gpu.hbm_bw_bytes_per_s
    has_fp8 = bool(is_fp8.any())

    def predict(p):
        ce, me, ae, kve, launch_us, m_half, l_half, ce8 = p
        eff = np.where(is_gemm, np.where(is_fp8, ce8, ce) * m / (m + m_half), ae)
        mem = np.where(is_kv, kve * m / (m + l_half), me)
        return roofline_s(flops, nbytes, peak_flops=peak, bw=bw, compute_eff=eff, mem_eff=mem, overhead_s=launch_us * 1e-6)

    lo = [EFF_BOUNDS[0]] * 4 + [ISOLATED_LAUNCH_US_BOUNDS[0], 0.0, 0.0, EFF_BOUNDS[0]]
    hi = [EFF_BOUNDS[1], MAX_STREAM_EFF, EFF_BOUNDS[1], MAX_STREAM_EFF, ISOLATED_LAUNCH_US_BOUNDS[1], M_HALF_MAX, L_HALF_MAX, EFF_BOUNDS[1]]
    x0 = [0.6, 0.7, 0.4, 0.5, 5.0, 64.0, 64.0, 0.5]
    fit = least_squares(lambda p: np.log(predict(p) / measured), x0=x0, bounds=(lo, hi), loss="soft_l1")
    ape = np.abs(predict(fit.x) / measured - 1)
    ce, me, ae, kve, launch, m_half, l_half, ce8 = (float(v) for v in fit.x)
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
        gemm_m_half=m_half,
        attn_kv_len_half=l_half if has_gen else float("nan"),
        compute_eff_fp8=ce8 if has_fp8 else None,
    )


@dataclass(frozen=True)
class LinkFit:
    allreduce_latency_us: float
    busbw_fraction: float
    rows: list[int]
    median_ape: float
    latency_per_rank_us: float = 0.0


def fit_allreduce(gpus: dict[str, Gpu], rows: list[KernelRow]) -> LinkFit | None:
    """t = α₂ + (n−2)·α_rank + 2(n−1)/n · bytes / (link_bw · f) over all-reduce timings of a link class."""
    use = [r for r in rows if r.kind == "allreduce" and r.ranks > 1]
    if len(use) < 3:
        return None
    bw = np.array([gpus[r.gpu].link_bw_bytes_per_s() for r in use])
    n = np.array([float(r.ranks) for r in use])
    msg = np.array([r.message_bytes for r in use])
    measured = np.array([r.seconds for r in use])
    several_sizes = len(set(n)) > 1

    def predict(p):
        alpha_us, frac, per_rank_us = p
        return (alpha_us + per_rank_us * np.maximum(n - 2, 0)) * 1e-6 + 2 * (n - 1) / n * msg / (bw * frac)

    hi_rank = 100.0 if several_sizes else 1e-9
    fit = least_squares(
        lambda p: np.log(predict(p) / measured), x0=[10.0, 0.7, 0.0], bounds=([0.5, 0.05, 0.0], [200.0, 1.0, hi_rank]), loss="soft_l1"
    )
    ape = np.abs(predict(fit.x) / measured - 1)
    return LinkFit(float(fit.x[0]), float(fit.x[1]), [r.line for r in use], float(np.median(ape)), float(fit.x[2]))
