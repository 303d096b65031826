"""Engine defaults that depend on the GPU and layout (SGLang >= 0.5 derives its memory
fraction and chunked-prefill size from GPU memory, parallel size and chunk size)."""

from __future__ import annotations

import numpy as np

from guideopt.model.framework import Framework, GpuMemoryBand, ReservedMemoryRule
from guideopt.units import BYTES_PER_GIB

MIB_PER_GIB = 1024


def _band(rule: ReservedMemoryRule, gpu_gib: float) -> GpuMemoryBand:
    return next((b for b in rule.bands if gpu_gib < b.below_gib), rule.bands[-1])


def default_split(fw: Framework, gpu_memory_bytes: float) -> int:
    """The engine's own token budget per pass (chunked-prefill size) on this GPU."""
    if fw.memory_rule is None:
        return fw.max_num_batched_tokens
    return _band(fw.memory_rule, gpu_memory_bytes / BYTES_PER_GIB).chunk_tokens


def token_budget(fw: Framework, gpu_memory_bytes: float, *, requested: int | None, longest_prompt: int) -> int:
    """The one token budget per pass of ``predict``, ``capacity`` and ``simulate``: the one asked
    for, else the engine's own default on this GPU; an engine that does not chunk prefill runs a
    whole prompt in one pass, so its budget is at least the longest prompt."""
    budget = requested if requested is not None else default_split(fw, gpu_memory_bytes)
    return budget if fw.chunked_prefill or requested is not None else max(budget, longest_prompt)


def memory_fraction(fw: Framework, *, gpu_memory_bytes, tp, pp, split) -> np.ndarray:
    """The memory fraction the engine uses for each row (its catalog value unless it has a rule)."""
    mem = np.asarray(gpu_memory_bytes, dtype=float)
    shape = np.broadcast(mem, np.asarray(tp), np.asarray(pp), np.asarray(split)).shape
    rule = fw.memory_rule
    if rule is None:
        return np.full(shape, fw.memory_fraction)
    cols = np.stack([np.broadcast_to(np.asarray(a, dtype=float), shape).ravel() for a in (mem, tp, pp, split)], axis=1)
    uniq, inverse = np.unique(cols, axis=0, return_inverse=True)
    values = np.array([_rule_fraction(rule, *row) for row in uniq])
    return values[np.asarray(inverse).ravel()].reshape(shape)


def _rule_fraction(rule: ReservedMemoryRule, mem_bytes: float, tp: float, pp: float, split: float) -> float:
    mem_mib = mem_bytes / BYTES_PER_GIB * MIB_PER_GIB
    band = _band(rule, mem_bytes / BYTES_PER_GIB)
    graph_bs = band.graph_max_batch[int(tp >= rule.graph_tp_threshold)]
    reserved = (
        rule.base_mib
        + rule.per_chunk_token_mib * max(split, rule.min_chunk_tokens)
        + rule.per_graph_batch_mib * graph_bs
        + rule.per_parallel_rank_mib * tp * pp
    )
    if mem_mib > rule.large_gpu_gib * MIB_PER_GIB:
        reserved = max(reserved, rule.large_gpu_min_reserved_mib)
    return round((mem_mib - reserved) / mem_mib, rule.fraction_digits)
