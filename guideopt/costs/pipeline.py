"""Asymmetric pipelines (HexGen-style): one replica whose two stages sit on different GPU
types, each stage with its own TP and its own number of layers.

Pure, vectorised functions over rows of (stage A, stage B). Stage A holds the embedding and
the first layers, stage B the last layers and the LM head. Layers are split so that no stage
is the bottleneck: in proportion to each stage's per-layer speed, within what each stage can
hold (weights of its layers plus their KV cache for the batch, under the engine's memory
rule). Activations cross between the stages over a network link (different GPU types sit in
different nodes).
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np

from guideopt.costs.hardware import HardwareArrays
from guideopt.costs.memory import (
    activation_peak_bytes,
    edge_weight_bytes_per_gpu,
    framework_overhead_bytes,
    kv_bytes_per_token_per_gpu,
    kv_pool_bytes,
    layer_weight_bytes_per_gpu,
)
from guideopt.costs.roofline import ACT_BYTES, PassShape, _scaled, layer_s, lm_head_s
from guideopt.model.framework import Framework
from guideopt.model.link import NetworkLink
from guideopt.model.llm import ModelArch

STAGES = 2


@dataclass(frozen=True)
class Stage:
    hw: HardwareArrays
    tp: np.ndarray
    layers: np.ndarray
    # (each distinct stage's first row, each row's distinct stage): with it, ``hw`` and ``tp``
    # hold one entry per distinct stage (rows whose stage has the same per-layer inputs: GPU
    # class, TP, engine, precision, batch); without it, one per row
    distinct: tuple[np.ndarray, np.ndarray] | None = None


def distinct_rows(key: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(first row of each distinct key, each row's position among them)."""
    _, first, inverse = np.unique(key, return_index=True, return_inverse=True)
    return first, inverse.ravel()


def take_shape(shape: PassShape, rows: np.ndarray) -> PassShape:
    """The pass of some rows (scalar fields hold for every row)."""
    return PassShape(*(v if np.ndim(v) == 0 else np.asarray(v)[rows] for v in (getattr(shape, f.name) for f in fields(shape))))


def take_hw(hw: HardwareArrays, rows: np.ndarray) -> HardwareArrays:
    return HardwareArrays(**{k: getattr(hw, k)[rows] for k in HardwareArrays.__dataclass_fields__})


def _stage_s(st: Stage, shape: PassShape, figure) -> np.ndarray:
    """``figure(shape, tp, hw, rows)`` per row of a stage, computed once per distinct stage
    (rows None: all of them)."""
    if st.distinct is None:
        return figure(shape, st.tp, st.hw, None)
    first, inverse = st.distinct
    return np.asarray(figure(take_shape(shape, first), st.tp, st.hw, first))[inverse]


def kv_layer_bytes_per_token(arch: ModelArch, *, tp, kv_bytes) -> np.ndarray:
    """The mean layer's cache bytes per token on one GPU (all layers' share, spread evenly)."""
    return kv_bytes_per_token_per_gpu(arch, tp=tp, pp=1, kv_bytes=kv_bytes) / arch.num_layers


def max_layers(
    arch: ModelArch, fw: Framework, *, gpu_memory_bytes, tp, w_bytes, kv_bytes, kv_tokens, token_budget, first: bool, last: bool
) -> np.ndarray:
    """Most layers a stage can hold with the KV cache of ``kv_tokens`` tokens (−1: not even none)."""
    counts = np.arange(arch.num_layers + 1, dtype=float)[None, :]
    col = lambda a: np.asarray(a, dtype=float)[:, None]  # noqa: E731
    weights = counts * col(layer_weight_bytes_per_gpu(arch, tp=tp, w_bytes=w_bytes)) + col(
        edge_weight_bytes_per_gpu(arch, tp=tp, first=first, last=last)
    )
    act = col(activation_peak_bytes(arch, tp=tp, token_budget=token_budget, max_seqs=fw.max_num_seqs))
    overhead = col(framework_overhead_bytes(fw, tp=tp))
    pool, _ = kv_pool_bytes(fw, gpu_memory_bytes=col(gpu_memory_bytes), weights=weights, activation=act, overhead=overhead)
    need = counts * col(kv_tokens) * col(kv_layer_bytes_per_token(arch, tp=tp, kv_bytes=kv_bytes))
    return (pool >= need).sum(axis=1).astype(float) - 1.0


def balanced_split(arch: ModelArch, *, per_layer_a, per_layer_b, cap_a, cap_b) -> np.ndarray:
    """Layers of stage A (the rest go to B) minimising the slower stage; NaN when no split fits."""
    total = arch.num_layers
    lo = np.maximum(1.0, total - cap_b)
    hi = np.minimum(cap_a, total - 1.0)
    ideal = total * per_layer_b / (per_layer_a + per_layer_b)
    best = np.full(np.shape(ideal), np.nan)
    best_time = np.full(np.shape(ideal), np.inf)
    for guess in (np.floor(ideal), np.ceil(ideal), lo, hi):
        la = np.clip(guess, lo, hi)
        t = np.maximum(la * per_layer_a, (total - la) * per_layer_b)
        better = (t < best_time) & (lo <= hi)
        best = np.where(better, la, best)
        best_time = np.where(better, t, best_time)
    return best


def pipeline_forward_s(
    arch: ModelArch, shape: PassShape, *, a: Stage, b: Stage, w_bytes, kv_bytes, link: NetworkLink, flash: bool = True
) -> np.ndarray:
    """One forward pass through both stages with up to two micro-batches in flight: the
    slower stage sets the pace (as for uniform PP), plus the activation send between them."""
    micro = np.maximum(np.minimum(STAGES, np.maximum(shape.seqs, 1.0)), 1.0)
    mb = _scaled(shape, 1.0 / micro)

    def per_layer(sh: PassShape, tp, hw: HardwareArrays, rows) -> np.ndarray:
        w, kv = (w_bytes, kv_bytes) if rows is None else (_at(w_bytes, rows), _at(kv_bytes, rows))
        return layer_s(arch, sh, tp, w, kv, hw, flash=flash)

    time_a = a.layers * _stage_s(a, mb, per_layer)
    time_b = b.layers * _stage_s(b, mb, per_layer) + _stage_s(b, mb, lambda sh, tp, hw, rows: lm_head_s(arch, sh, tp, hw))
    send = link.latency_s + mb.new_tokens * arch.hidden_size * ACT_BYTES / link.bytes_per_s
    return np.maximum(micro, STAGES) * np.maximum(time_a, time_b) + (STAGES - 1) * send


def _at(values, rows: np.ndarray):
    return values if np.ndim(values) == 0 else np.asarray(values)[rows]
