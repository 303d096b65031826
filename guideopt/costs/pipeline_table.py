"""Enumerate asymmetric pipeline replicas (stage A on one GPU type, stage B on another) for
heterogeneous plans, and compute their metrics and per-stage memory in one vectorised pass.

GPU types that differ only in name and price (one card listed at several prices, or by
several providers) are one *hardware class*: every figure of a pipeline but its price
depends on the classes of its two types, so the figures are computed once per pair of
classes (and per-stage quantities once per distinct stage) and repeated onto every pair of
types, whose prices then differ."""

from __future__ import annotations

from dataclasses import dataclass, replace

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
from guideopt.costs.pipeline import (
    Stage,
    balanced_split,
    distinct_rows,
    kv_layer_bytes_per_token,
    max_layers,
    pipeline_forward_s,
    take_hw,
    take_shape,
)
from guideopt.costs.roofline import PassShape, layer_s
from guideopt.costs.tables import OptionSpace, capability_mask, default_kv_dtype, tp_is_valid
from guideopt.model.calibration import Calibration
from guideopt.model.gpu import Gpu
from guideopt.model.link import NetworkLink
from guideopt.model.llm import ModelArch
from guideopt.units import BYTES_PER_GB

PIPELINE_STAGES = 2
# What may differ between GPU types of one hardware class: names and prices, never figures.
PRICE_FIELDS = frozenset({"id", "usd_per_hour", "price_grade", "price_source", "price_date", "source"})


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
    stage_memory: list[dict[str, RowsOf]]  # per stage: GB figures per row (read a row, or np.asarray all)
    usd_per_replica: np.ndarray

    def __len__(self) -> int:
        return int(self.batch.size)


class RowsOf:
    """Some rows of an array, gathered when read: ``view[i]`` is ``base[rows[i]]``."""

    def __init__(self, base: np.ndarray, rows: np.ndarray) -> None:
        self.base, self.rows = base, rows

    def __getitem__(self, i):
        return self.base[self.rows[i]]

    def __len__(self) -> int:
        return int(self.rows.size)

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        return np.asarray(self.base[self.rows], dtype=dtype)


def hardware_classes(gpus: list[Gpu] | tuple[Gpu, ...], calibration: Calibration) -> tuple[np.ndarray, list[int]]:
    """Per GPU type its hardware class (types equal in every field but ``PRICE_FIELDS`` and
    calibrated alike), numbered in order of first appearance; and each class's first type."""
    classes: dict[tuple[str, str, str], int] = {}
    reps: list[int] = []
    out = np.zeros(len(gpus), dtype=np.int64)
    for i, g in enumerate(gpus):
        key = (type(g).__name__, repr(g.model_dump(exclude=set(PRICE_FIELDS))), repr(calibration.device(g.id, g.arch)[0]))
        if key not in classes:
            classes[key] = len(reps)
            reps.append(i)
        out[i] = classes[key]
    return out, reps


def _rows(arch: ModelArch, space: OptionSpace, pair_a: np.ndarray, pair_b: np.ndarray) -> dict[str, np.ndarray]:
    """Rows in (pair, tp a, tp b, engine, precision, batch) order over the pairs of GPU types
    (indices into ``space.gpus``) given; the checks run on the grid without batch sizes,
    which are only repeated onto the rows that pass."""
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
    rows = {"pair": pair[keep], "ga": ga[keep], "gb": gb[keep], "ia": ia[keep], "ib": ib[keep], "ta": ta[keep], "tb": tb[keep]}
    rows |= {"f": f[keep], "d": d[keep]}
    out = {k: np.repeat(v, batch.size) for k, v in rows.items()}
    out["bi"] = np.tile(np.arange(batch.size), keep.size)
    out["b"] = np.tile(batch, keep.size)
    return out


def _stage_keys(space: OptionSpace, r: dict[str, np.ndarray], g: str, t: str) -> np.ndarray:
    """One integer per distinct stage (GPU class, TP, engine, precision, batch): every
    per-layer figure of a stage depends on these alone."""
    key = r[g]
    for col, size in ((r[t], len(space.tp)), (r["f"], len(space.frameworks)), (r["d"], len(space.dtypes)), (r["bi"], len(space.batch))):
        key = key * size + col
    return key


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
    return take_hw(base, inverse)


def build_pipeline_table(
    arch: ModelArch, space: OptionSpace, calibration: Calibration, link: NetworkLink, prices: list[float]
) -> PipelineTable | None:
    """Every two-stage cross-type pipeline replica that fits, with its metrics: computed per
    pair of hardware classes, repeated onto the pairs of types (first type before second)."""
    if len(space.gpus) < 2 or arch.num_layers < PIPELINE_STAGES:
        return None
    cls, reps = hardware_classes(list(space.gpus), calibration)
    type_a, type_b = np.triu_indices(len(space.gpus), k=1)
    pairs, which = np.unique(cls[type_a] * len(reps) + cls[type_b], return_inverse=True)
    class_space = replace(space, gpus=[space.gpus[i] for i in reps])
    r, la, metrics, memory = _class_table(arch, class_space, calibration, link, pairs // len(reps), pairs % len(reps))
    if la.size == 0:
        return None
    # rows of each class pair are contiguous (pair order); each pair of types takes its class pair's
    counts = np.bincount(r["pair"], minlength=pairs.size)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    per_type_pair = counts[which.ravel()]
    first = np.repeat(starts[which.ravel()] - (np.cumsum(per_type_pair) - per_type_pair), per_type_pair)
    rows = first + np.arange(first.size)
    ga, gb = np.repeat(type_a, per_type_pair), np.repeat(type_b, per_type_pair)
    ta, tb = r["ta"][rows], r["tb"][rows]
    price = np.asarray(prices, dtype=float)
    usd = ta * price[ga] + tb * price[gb]
    la = la[rows]
    return PipelineTable(
        space,
        ga,
        gb,
        ta,
        tb,
        la.astype(int),
        (arch.num_layers - la).astype(int),
        r["f"][rows],
        r["d"][rows],
        r["b"][rows],
        r["split"][rows].astype(int),
        StaticBatchMetrics(**{k: getattr(metrics, k)[rows] for k in StaticBatchMetrics.__dataclass_fields__}),
        [{k: RowsOf(v, rows) for k, v in stage.items()} for stage in memory],
        usd,
    )


def _class_table(arch: ModelArch, space: OptionSpace, calibration: Calibration, link: NetworkLink, pair_a: np.ndarray, pair_b: np.ndarray):
    """(rows, layers of stage A, metrics, per-stage memory) of the pipelines over the given
    pairs of GPU types of ``space`` that fit, in ``_rows`` order."""
    r = _rows(arch, space, pair_a, pair_b)
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
    ctx = space.input_len + space.output_len / 2.0
    batch = r["b"].astype(float)
    mb = np.maximum(batch / np.minimum(PIPELINE_STAGES, batch), 1.0)
    shape = PassShape(new_tokens=mb, seqs=mb, attn_pairs=mb * ctx, kv_read_tokens=mb * ctx, logit_tokens=mb)
    stages, caps, per_layer = [], [], []
    for g, i, t, first in (("ga", "ia", "ta", True), ("gb", "ib", "tb", False)):
        rep, inv = distinct_rows(_stage_keys(space, r, g, i))  # every per-stage figure once per distinct stage
        hw = _hw(space, calibration, r[g][rep], r["f"][rep], r["d"][rep])
        cap = np.zeros(rep.size)
        for fi, fw in enumerate(space.frameworks):
            mine = r["f"][rep] == fi
            sel = rep[mine]
            common = dict(w_bytes=w_bytes[sel], kv_bytes=kv_bytes[sel], kv_tokens=kv_tokens[sel], token_budget=split[sel])
            cap[mine] = max_layers(arch, fw, gpu_memory_bytes=mem[r[g][sel]], tp=r[t][sel], first=first, last=not first, **common)
        per = layer_s(arch, take_shape(shape, rep), r[t][rep].astype(float), w_bytes[rep], kv_bytes[rep], hw, flash=space.flash_attention)
        stages.append((inv, hw))
        caps.append(cap[inv])
        per_layer.append(per[inv])
    la = balanced_split(arch, per_layer_a=per_layer[0], per_layer_b=per_layer[1], cap_a=caps[0], cap_b=caps[1])
    keep = np.nonzero(~np.isnan(la))[0]
    r = {k: v[keep] for k, v in r.items()}
    r["split"] = split[keep]
    la = la[keep]
    w_bytes, kv_bytes, split, kv_tokens = w_bytes[keep], kv_bytes[keep], split[keep], kv_tokens[keep]
    a = _kept_stage(stages[0], keep, r["ta"], la)
    b = _kept_stage(stages[1], keep, r["tb"], arch.num_layers - la)
    n = la.size
    chunked = np.array([fw.chunked_prefill for fw in space.frameworks])[r["f"]]
    inputs = StaticBatchInputs(
        tp=r["ta"].astype(float),
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
    metrics = static_batch_metrics(arch, inputs, take_hw(stages[0][1], stages[0][0][keep]))
    common = dict(w_bytes=w_bytes, kv_bytes=kv_bytes, kv_tokens=kv_tokens, split=split)
    memory = [
        _stage_memory(arch, space, r, "ga", "ta", la, first=True, **common),
        _stage_memory(arch, space, r, "gb", "tb", arch.num_layers - la, first=False, **common),
    ]
    return r, la, metrics, memory


def _kept_stage(stage: tuple[np.ndarray, HardwareArrays], keep: np.ndarray, tp: np.ndarray, layers: np.ndarray) -> Stage:
    """A stage over the kept rows, its figures held once per distinct stage."""
    inverse, hw = stage
    ids = inverse[keep]
    first, within = distinct_rows(ids)
    return Stage(hw=take_hw(hw, ids[first]), tp=tp[first].astype(float), layers=layers, distinct=(first, within))


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
