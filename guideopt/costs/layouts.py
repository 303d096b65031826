"""The layouts of one replica an option table may use (CONTRACT "Layouts").

A layout is (tp, attention_dp, moe_ep) per pipeline stage: attention runs tensor-parallel
over ``tp`` GPUs in each of ``attention_dp`` data-parallel ranks, and the MoE layers split
their routed experts over ``moe_ep`` ranks of ``moe_tp = tp·attention_dp/moe_ep`` GPUs
each. The shapes people serve MoE models with are rows here: TP (dp 1, ep 1), TEP (dp 1,
ep = tp), DEP (dp = ep = the stage), attention DP with TP experts (ep 1), and wide EP
(DEP over a whole NVL72 domain or across nodes). Dense models have dp = ep = 1.

Option tables reference a layout by its index in a ``Layouts`` table.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from guideopt.model.llm import ModelArch

# Attention-DP ranks the planner tries for a MoE model when the request names none: powers
# of two up to 64, i.e. DEP up to 64 GPUs — an NVL72 domain's largest power of two, or
# eight 8-GPU nodes (SGLang's large-scale EP deployment of DeepSeek-V3 ran EP 72 decode
# over 9 nodes: lmsys.org/blog/2025-05-05-large-scale-ep; TRT-LLM's wide-EP runs EP 32-72
# on GB200 NVL72: TensorRT-LLM docs, "Scaling Expert Parallelism in TensorRT-LLM" part 1).
DEFAULT_ATTENTION_DP: tuple[int, ...] = (1, 2, 4, 8, 16, 32, 64)


@dataclass(frozen=True)
class Layouts:
    """One row per layout; arrays of ints."""

    tp: np.ndarray
    dp: np.ndarray
    ep: np.ndarray

    def __len__(self) -> int:
        return int(self.tp.size)

    @property
    def stage_gpus(self) -> np.ndarray:
        """GPUs of one pipeline stage: tp × attention_dp (= moe_tp × moe_ep)."""
        return self.tp * self.dp

    @property
    def moe_tp(self) -> np.ndarray:
        return self.stage_gpus // self.ep


def moe_ep_problem(arch: ModelArch, ep: int, stage_gpus: int) -> tuple[str, str] | None:
    """(field, why) when experts cannot be split over ``ep`` ranks of a ``stage_gpus``-GPU
    stage (None: they can); ``predict``, ``capacity`` and ``simulate`` refuse with it."""
    moe = arch.moe
    if moe is None:
        return None if ep == 1 else ("moe_ep", f"{arch.id} has no experts (leave --moe-ep and --moe-tp out)")
    if stage_gpus % ep:
        return (
            "moe_ep",
            f"{ep} does not divide the {stage_gpus} GPUs of a stage (tp × attention_dp; use a moe_ep that divides {stage_gpus})",
        )
    if moe.num_experts % ep:
        return "moe_ep", f"{ep} does not divide {arch.id}'s {moe.num_experts} routed experts (use a divisor of {moe.num_experts})"
    moe_tp = stage_gpus // ep
    if moe.expert_intermediate_size % moe_tp:
        return "moe_tp", f"{moe_tp} does not divide {arch.id}'s moe_intermediate_size {moe.expert_intermediate_size} (raise moe_ep)"
    return None


def _ep_choices(stage: int, allowed: Sequence[int] | None) -> list[int]:
    """EP sizes for a stage: the allowed ones, or (None) none or the whole stage (TEP/DEP)."""
    if allowed is None:
        return sorted({1, stage})
    return sorted(set(allowed))


def layout_table(arch: ModelArch, tp: Sequence[int], attention_dp: Sequence[int], moe_ep: Sequence[int] | None) -> Layouts:
    """Every valid (tp, attention_dp, moe_ep) from the allowed sizes. ``moe_ep`` None: each
    stage's experts either split by TP only or one expert rank per GPU. Dense models get
    attention_dp = moe_ep = 1 whatever is allowed (their data parallelism is replicas)."""
    rows: list[tuple[int, int, int]] = []
    dps = sorted(set(attention_dp)) if arch.is_moe else [1]
    for t in sorted(set(tp)):
        for d in dps:
            eps = _ep_choices(t * d, moe_ep) if arch.is_moe else [1]
            rows.extend((t, d, e) for e in eps if moe_ep_problem(arch, e, t * d) is None)
    arr = np.array(rows, dtype=np.int64).reshape(-1, 3)
    return Layouts(tp=arr[:, 0], dp=arr[:, 1], ep=arr[:, 2])
