"""Enumerate asymmetric pipeline replicas (stage A on one GPU type, stage B on another) for
heterogeneous plans, and compute their metrics and per-stage memory in one vectorised pass."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from guideopt.costs.capability import mixed_pipeline_reason
from guideopt.costs.hardware import HardwareArrays, hardware_arrays
from guideopt.costs.memory import (
    activation_peak_bytes,
    edge_weight_bytes_per_gpu,
    framework_overhead_bytes,
    kv_pool_bytes,
    layer_weight_bytes_per_gpu,
    tokens_per_sequence,
)
from guideopt.costs.metrics import SIMPSON_WEIGHTS, StaticBatchInputs, StaticBatchMetrics, static_batch_metrics
from guideopt.costs.pipeline import Stage, balanced_split, kv_layer_bytes_per_token, max_layers, pipeline_forward_s
from guideopt.costs.roofline import PassShape, layer_s
from guideopt.costs.tables import OptionSpace, capability_mask, default_kv_dtype, tp_is_valid
from guideopt.model.calibration import Calibration
from guideopt.model.link import NetworkLink
from guideopt.model.llm import ModelArch
from guideopt.units import BYTES_PER_GB

PIPELINE_STAGES = 2


@dataclass
class PipelineTable:
    space: OptionSpace
    gpu_a: np.ndarray
    gpu_b: np.ndarray
    tp_a: np.ndarray
    tp_b: np.ndarray
    layers_a: np.ndarray
    layers_b: np.ndarray
    fw_idx: np.ndarray
    dtype_idx: np.ndarray
    batch: np.ndarray
    split: np.ndarray
    metrics: StaticBatchMetrics
    stage_memory: list[dict[str, np.ndarray]]  # per stage: GB figures per row
    usd_per_replica: np.ndarray

    def __len__(self) -> int:
        return int(self.batch.size)


def _rows(arch: ModelArch, space: OptionSpace) -> dict[str, np.ndarray]:
    """Rows in (type a < type b, tp a, tp b, engine, precision, batch) order; the checks run
    on the grid without batch sizes, which are only repeated onto the rows that pass."""
    n_gpu = len(space.gpus)
    pair_a, pair_b = np.triu_indices(n_gpu, k=1)
    tp = np.asarray(space.tp, dtype=np.int64)
    mesh = np.meshgrid(
        np.arange(pair_a.size),
        np.arange(tp.size),
        np.arange(tp.size),
        np.arange(len(space.frameworks)),
        np.arange(len(space.dtypes)),
        indexing="ij",
    )
    pair, ia, ib, f, d = (m.ravel() for m in mesh)
    ga, gb, ta, tb = pair_a[pair], pair_b[pair], tp[ia], tp[ib]
    node = np.array([g.gpus_per_node for g in space.gpus])
    serves = np.stack([capability_mask(space, fw) for fw in space.frameworks])  # [fw, gpu, dtype]
    tp_ok = tp_is_valid(arch, tp)
    ok = tp_ok[ia] & tp_ok[ib] & (ta <= node[ga]) & (tb <= node[gb])
    ok &= serves[f, ga, d] & serves[f, gb, d] & _mixed_ok(space)[f, ga, gb, (ta == tb).astype(int)]
    keep = np.nonzero(ok)[0]
    batch = np.asarray(space.batch, dtype=np.int64)
    rows = {"ga": ga[keep], "gb": gb[keep], "ta": ta[keep], "tb": tb[keep], "f": f[keep], "d": d[keep]}
    out = {k: np.repeat(v, batch.size) for k, v in rows.items()}
    out["b"] = np.tile(batch, keep.size)
    return out


def _mixed_ok(space: OptionSpace) -> np.ndarray:
    """[fw, gpu a, gpu b, same tp] -> one instance of the engine may pipeline a into b."""
    n = len(space.gpus)
    out = np.zeros((len(space.frameworks), n, n, 2), dtype=bool)
    for fi, fw in enumerate(space.frameworks):
        for i, a in enumerate(space.gpus):
            for j, b in enumerate(space.gpus):
                for same in (0, 1):
                    out[fi, i, j, same] = mixed_pipeline_reason(fw, a, b, 1, 1 if same else 2) is None
    return out


def _hw(space: OptionSpace, calibration: Calibration, gpu: np.ndarray, fw: np.ndarray, dt: np.ndarray) -> HardwareArrays:
    key = (gpu * len(space.frameworks) + fw) * len(space.dtypes) + dt
    uniq, inverse = np.unique(key, return_inverse=True)
    g, rest = np.divmod(uniq, len(space.frameworks) * len(space.dtypes))
    f, d = np.divmod(rest, len(space.dtypes))
    base = hardware_arrays([space.gpus[i] for i in g], [space.frameworks[i] for i in f], [space.dtypes[i] for i in d], calibration)
    return HardwareArrays(**{k: getattr(base, k)[inverse] for k in HardwareArrays.__dataclass_fields__})


def build_pipeline_table(
    arch: ModelArch, space: OptionSpace, calibration: Calibration, link: NetworkLink, prices: list[float]
) -> PipelineTable | None:
    """Every two-stage cross-type pipeline replica that fits, with its metrics."""
    if len(space.gpus) < 2 or arch.num_layers < PIPELINE_STAGES:
        return None
    r = _rows(arch, space)
    if r["b"].size == 0:
        return None
    w_bytes = np.array([dt.bytes for dt in space.dtypes])[r["d"]]
    kv_bytes = np.array([(space.kv_dtype or default_kv_dtype(dt)).bytes for dt in space.dtypes])[r["d"]]
    seq = space.input_len + space.output_len
    split = np.array(
        [fw.max_num_batched_tokens if fw.chunked_prefill else max(fw.max_num_batched_tokens, space.input_len) for fw in space.frameworks],
        dtype=float,
    )[r["f"]]
    blocks = np.array([fw.kv_block_tokens for fw in space.frameworks])[r["f"]]
    kv_tokens = r["b"] * tokens_per_sequence(seq, blocks)
    mem = np.array([g.memory_bytes for g in space.gpus])
    cap_a, cap_b = np.zeros(r["b"].size), np.zeros(r["b"].size)
    for fi, fw in enumerate(space.frameworks):
        sel = r["f"] == fi
        common = dict(w_bytes=w_bytes[sel], kv_bytes=kv_bytes[sel], kv_tokens=kv_tokens[sel], token_budget=split[sel])
        cap_a[sel] = max_layers(arch, fw, gpu_memory_bytes=mem[r["ga"][sel]], tp=r["ta"][sel], first=True, last=False, **common)
        cap_b[sel] = max_layers(arch, fw, gpu_memory_bytes=mem[r["gb"][sel]], tp=r["tb"][sel], first=False, last=True, **common)
    hw_a = _hw(space, calibration, r["ga"], r["f"], r["d"])
    hw_b = _hw(space, calibration, r["gb"], r["f"], r["d"])
    ctx = space.input_len + space.output_len / 2.0
    batch = r["b"].astype(float)
    mb = np.maximum(batch / np.minimum(PIPELINE_STAGES, batch), 1.0)
    shape = PassShape(new_tokens=mb, seqs=mb, attn_pairs=mb * ctx, kv_read_tokens=mb * ctx, logit_tokens=mb)
    per_a = layer_s(arch, shape, r["ta"].astype(float), w_bytes, kv_bytes, hw_a, flash=space.flash_attention)
    per_b = layer_s(arch, shape, r["tb"].astype(float), w_bytes, kv_bytes, hw_b, flash=space.flash_attention)
    la = balanced_split(arch, per_layer_a=per_a, per_layer_b=per_b, cap_a=cap_a, cap_b=cap_b)
    keep = np.nonzero(~np.isnan(la))[0]
    if keep.size == 0:
        return None
    r = {k: v[keep] for k, v in r.items()}
    la = la[keep]
    w_bytes, kv_bytes, split, kv_tokens = w_bytes[keep], kv_bytes[keep], split[keep], kv_tokens[keep]
    hw_a = HardwareArrays(**{k: getattr(hw_a, k)[keep] for k in HardwareArrays.__dataclass_fields__})
    hw_b = HardwareArrays(**{k: getattr(hw_b, k)[keep] for k in HardwareArrays.__dataclass_fields__})
    a = Stage(hw=hw_a, tp=r["ta"].astype(float), layers=la)
    b = Stage(hw=hw_b, tp=r["tb"].astype(float), layers=arch.num_layers - la)
    n = la.size
    chunked = np.array([fw.chunked_prefill for fw in space.frameworks])[r["f"]]
    inputs = StaticBatchInputs(
        tp=a.tp,
        pp=np.full(n, float(PIPELINE_STAGES)),
        batch=r["b"].astype(float),
        input_len=np.full(n, float(space.input_len)),
        output_len=np.full(n, float(space.output_len)),
        split=split,
        chunked=chunked,
        w_bytes=w_bytes,
        kv_bytes=kv_bytes,
        running_cap=r["b"].astype(float),
        kv_keep=np.ones(n),
        flash=space.flash_attention,
        forward=lambda s: pipeline_forward_s(arch, s, a=a, b=b, w_bytes=w_bytes, kv_bytes=kv_bytes, link=link),
    )
    metrics = static_batch_metrics(arch, inputs, hw_a)
    memory = [
        _stage_memory(arch, space, r, "ga", "ta", la, first=True, w_bytes=w_bytes, kv_bytes=kv_bytes, kv_tokens=kv_tokens, split=split),
        _stage_memory(
            arch,
            space,
            r,
            "gb",
            "tb",
            arch.num_layers - la,
            first=False,
            w_bytes=w_bytes,
            kv_bytes=kv_bytes,
            kv_tokens=kv_tokens,
            split=split,
        ),
    ]
    price = np.asarray(prices, dtype=float)
    usd = r["ta"] * price[r["ga"]] + r["tb"] * price[r["gb"]]
    return PipelineTable(
        space,
        r["ga"],
        r["gb"],
        r["ta"],
        r["tb"],
        la.astype(int),
        (arch.num_layers - la).astype(int),
        r["f"],
        r["d"],
        r["b"],
        split.astype(int),
        metrics,
        memory,
        usd,
    )


def _stage_memory(arch, space, r, gkey, tkey, layers, *, first, w_bytes, kv_bytes, kv_tokens, split) -> dict[str, np.ndarray]:
    tp = r[tkey].astype(float)
    weights = layers * layer_weight_bytes_per_gpu(arch, tp=tp, w_bytes=w_bytes) + edge_weight_bytes_per_gpu(
        arch, tp=tp, first=first, last=not first
    )
    kv = layers * kv_tokens * kv_layer_bytes_per_token(arch, tp=tp, kv_bytes=kv_bytes)
    out = {
        k: np.zeros(tp.size)
        for k in (
            "weights_gb",
            "kv_cache_gb",
            "activation_gb",
            "overhead_gb",
            "total_per_gpu_gb",
            "gpu_memory_gb",
            "kv_pool_gb",
            "usable_gb",
        )
    }
    mem = np.array([g.memory_bytes for g in space.gpus])[r[gkey]]
    for fi, fw in enumerate(space.frameworks):
        sel = r["f"] == fi
        act = activation_peak_bytes(arch, tp=tp[sel], token_budget=split[sel], max_seqs=fw.max_num_seqs)
        over = framework_overhead_bytes(fw, tp=tp[sel]) + np.zeros(int(sel.sum()))
        pool, usable = kv_pool_bytes(fw, gpu_memory_bytes=mem[sel], weights=weights[sel], activation=act, overhead=over)
        for key, value in (("activation_gb", act), ("overhead_gb", over), ("kv_pool_gb", np.maximum(pool, 0)), ("usable_gb", usable)):
            out[key][sel] = value / BYTES_PER_GB
    out["weights_gb"] = weights / BYTES_PER_GB
    out["kv_cache_gb"] = kv / BYTES_PER_GB
    out["gpu_memory_gb"] = mem / BYTES_PER_GB
    out["total_per_gpu_gb"] = out["weights_gb"] + out["kv_cache_gb"] + out["activation_gb"] + out["overhead_gb"]
    return out


__all__ = ["SIMPSON_WEIGHTS", "PipelineTable", "build_pipeline_table"]
