"""Stage 1 of the calibration: device and link efficiencies from ``kernels.csv``.

Per GPU with timings (NVIDIA): a roofline fit (``kernels.fit_device``). Per GPU with only
achieved-rate rows (AMD Instinct): ratios of measured rates to datasheet peaks
(``rates.fit_rates``); what those rows cannot give (attention, the m and KV-length
half-saturation points) comes from the median of the timed GPUs and says so. GPUs without
rows take their family's median, families without any the median of all.
"""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from pathlib import Path

from guideopt.calibration.kernels import KernelRow, fit_allreduce, fit_device, load_kernel_rows
from guideopt.calibration.rates import fit_mesh_busbw, fit_rates
from guideopt.model.calibration import DeviceEfficiency, LinkEfficiency

# Link classes measured in kernels.csv: NVSwitch nodes (TRT-LLM's custom all-reduce, which vLLM
# and SGLang also use for small messages), PCIe (L40S) and the xGMI mesh (8x MI300X, RCCL).
NVSWITCH_GPUS = ("a100-sxm4-80gb", "h100-sxm", "h200-sxm", "b200")
PCIE_GPUS = ("l40s",)
XGMI_GPUS = ("mi300x",)
DEVICE_FIELDS = (
    "compute_eff",
    "mem_eff",
    "attn_compute_eff",
    "attn_mem_eff",
    "kernel_overhead_us",
    "gemm_m_half_tokens",
    "attn_kv_len_half_tokens",
)
ROUND = 4


def rows_text(lines: list[int], file: str) -> str:
    lines = sorted(set(lines))
    return f"{file} lines {lines[0]}-{lines[-1]} ({len(lines)} rows)" if lines else ""


def _timed(catalog, by_gpu: dict[str, list[KernelRow]]) -> dict[str, DeviceEfficiency]:
    found = {g: fit_device(catalog.gpus[g], rows) for g, rows in sorted(by_gpu.items())}
    fits = {g: f for g, f in found.items() if f is not None}
    fallback = {
        name: statistics.median(getattr(f, name) for f in fits.values() if not math.isnan(getattr(f, name)))
        for name in ("attn_compute_eff", "attn_mem_eff", "attn_kv_len_half")
    }
    out = {}
    for g, f in fits.items():
        missing = [k for k in fallback if math.isnan(getattr(f, k))]
        value = {k: fallback[k] if k in missing else getattr(f, k) for k in fallback}
        note = f"; no rows for {', '.join(missing)}: median of timed GPUs" if missing else ""
        out[g] = DeviceEfficiency(
            compute_eff=round(f.compute_eff, ROUND),
            mem_eff=round(f.mem_eff, ROUND),
            attn_compute_eff=round(value["attn_compute_eff"], ROUND),
            attn_mem_eff=round(value["attn_mem_eff"], ROUND),
            kernel_overhead_us=f.kernel_overhead_us,
            compute_eff_fp8=None if f.compute_eff_fp8 is None else round(f.compute_eff_fp8, ROUND),
            gemm_m_half_tokens=round(f.gemm_m_half, 1),
            attn_kv_len_half_tokens=round(value["attn_kv_len_half"], 1),
            fitted_from=f"{rows_text(f.rows, 'kernels.csv')}; median abs error {f.median_ape:.1%}; "
            f"isolated-launch cost {f.isolated_launch_us:.1f} us (not used in engines){note}",
        )
    return out


def _from_rates(catalog, by_gpu: dict[str, list[KernelRow]], timed: dict[str, DeviceEfficiency]) -> dict[str, DeviceEfficiency]:
    """Rate-only GPUs. Attention efficiencies scale the GPU's own GEMM and stream rates by the
    timed GPUs' median attention/GEMM ratios; half-saturation points are the timed median."""
    med = {f: statistics.median(getattr(e, f) for e in timed.values()) for f in DEVICE_FIELDS}
    attn_ratio = statistics.median(e.attn_compute_eff / e.compute_eff for e in timed.values())
    kv_ratio = statistics.median(e.attn_mem_eff / e.mem_eff for e in timed.values())
    fits = {g: fit_rates(catalog.gpus[g], rows) for g, rows in sorted(by_gpu.items()) if g not in timed}
    out: dict[str, DeviceEfficiency] = {}
    for g, f in fits.items():
        if f is None or (f.compute_eff is None and f.compute_eff_fp8 is None):
            continue
        family = [out[o] for o in out if catalog.gpus[o].arch == catalog.gpus[g].arch]
        mem = f.mem_eff or (family[0].mem_eff if family else med["mem_eff"])
        ce = f.compute_eff or f.compute_eff_fp8 or med["compute_eff"]
        out[g] = DeviceEfficiency(
            compute_eff=round(ce, ROUND),
            compute_eff_fp8=None if f.compute_eff_fp8 is None else round(f.compute_eff_fp8, ROUND),
            mem_eff=round(mem, ROUND),
            attn_compute_eff=round(min(ce * attn_ratio, 1.0), ROUND),
            attn_mem_eff=round(min(mem * kv_ratio, 1.0), ROUND),
            kernel_overhead_us=med["kernel_overhead_us"],
            gemm_m_half_tokens=round(med["gemm_m_half_tokens"], 1),
            attn_kv_len_half_tokens=round(med["attn_kv_len_half_tokens"], 1),
            fitted_from=f"{rows_text(f.rows, 'kernels.csv')} (achieved GEMM TFLOPS / HBM TB/s over datasheet peaks); "
            f"{'HBM from its family; ' if f.mem_eff is None else ''}attention = own rates x timed GPUs' median "
            f"attention/GEMM ratio ({attn_ratio:.2f}, {kv_ratio:.2f}); m and KV-length half points: timed GPUs' median",
        )
    return out


def median_device(members: list[DeviceEfficiency], text: str) -> DeviceEfficiency:
    values = {f: round(statistics.median(getattr(e, f) for e in members), ROUND) for f in DEVICE_FIELDS}
    fp8 = [e.compute_eff_fp8 for e in members if e.compute_eff_fp8 is not None]
    return DeviceEfficiency(**values, compute_eff_fp8=round(statistics.median(fp8), ROUND) if fp8 else None, fitted_from=text)


def fit_devices(catalog, kernels_path: Path) -> tuple[dict[str, DeviceEfficiency], dict[str, DeviceEfficiency], DeviceEfficiency]:
    by_gpu: dict[str, list[KernelRow]] = defaultdict(list)
    for r in load_kernel_rows(kernels_path):
        by_gpu[r.gpu].append(r)
    timed = _timed(catalog, by_gpu)
    gpus = {**timed, **_from_rates(catalog, by_gpu, timed)}
    return gpus, *family_medians(catalog, gpus)


def family_medians(catalog, gpus: dict[str, DeviceEfficiency]) -> tuple[dict[str, DeviceEfficiency], DeviceEfficiency]:
    by_arch: dict[str, list[str]] = defaultdict(list)
    for g in gpus:
        by_arch[catalog.gpus[g].arch].append(g)
    arch = {a: median_device([gpus[g] for g in ids], f"median of {', '.join(ids)}") for a, ids in sorted(by_arch.items())}
    default = median_device(list(gpus.values()), f"median of all measured GPUs ({', '.join(sorted(gpus))}); families without rows")
    return arch, default


def fit_links(catalog, kernels_path: Path, prior: dict[str, LinkEfficiency]) -> dict[str, LinkEfficiency]:
    rows = load_kernel_rows(kernels_path)
    links = dict(prior)
    for name, members, algo in (("nvswitch", NVSWITCH_GPUS, "custom"), ("pcie", PCIE_GPUS, None)):
        fit = fit_allreduce(catalog.gpus, [r for r in rows if r.gpu in members and (algo is None or r.algo == algo)])
        if fit is not None:
            links[name] = LinkEfficiency(
                allreduce_latency_us=round(fit.allreduce_latency_us, 2),
                busbw_fraction=round(fit.busbw_fraction, ROUND),
                p2p_latency_us=round(fit.allreduce_latency_us, 2),
                allreduce_latency_per_rank_us=round(fit.latency_per_rank_us, 2),
                fitted_from=f"{rows_text(fit.rows, 'kernels.csv')} ({', '.join(members)}); median abs error {fit.median_ape:.1%}",
            )
    mesh = fit_mesh_busbw(catalog.gpus, [r for r in rows if r.gpu in XGMI_GPUS])
    if mesh is not None:
        links["xgmi"] = LinkEfficiency(
            allreduce_latency_us=round(mesh.allreduce_latency_us, 2),
            busbw_fraction=round(mesh.busbw_fraction, ROUND),
            p2p_latency_us=round(mesh.allreduce_latency_us, 2),
            fitted_from=f"{rows_text(mesh.rows, 'kernels.csv')} ({', '.join(XGMI_GPUS)}, RCCL bus bandwidth 1 KB-8 GB and "
            f"2 vs 8 GPUs); median abs error {mesh.median_ape:.1%}",
        )
    return links
