"""One engine step of continuous batching: its pass shape and its time.

Both stream evaluators (the analytic steady state in ``costs/stream.py`` and the
discrete-event simulator in ``guideopt/simulator``) price a step here and nowhere else.
A step runs ``decodes`` sequences one token each (their KV holds ``decode_kv_tokens``
tokens in all) plus ``prefill_tokens`` prompt tokens from ``prefill_seqs`` prompts, whose
attention covers ``prefill_pairs`` (query, key) pairs. The shape follows the static-batch
model of ``costs/metrics.py`` exactly (a prefill pass reads the KV of its new tokens and
computes logits for every sequence it touches; a decode reads each sequence's context),
so a static batch run step by step costs what ``static_batch_metrics`` says.

Per-step framework overhead: a step carrying prompt tokens pays the engine's calibrated
prefill-pass overhead, a pure decode step the decode-step overhead (both from
``catalogs/calibration.yaml``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from guideopt.costs.hardware import HardwareArrays
from guideopt.costs.roofline import PassShape, forward_pass_s
from guideopt.model.llm import ModelArch


@dataclass(frozen=True)
class StepConfig:
    """What fixes a replica's step cost besides the batch: arrays broadcast per option."""

    tp: np.ndarray
    pp: np.ndarray
    w_bytes: np.ndarray
    kv_bytes: np.ndarray
    flash: bool = True
    # Attention-DP ranks and expert-parallel ranks: a step is one rank's (its own requests),
    # its MoE layers gathering the tokens of all dp ranks (``costs/roofline.py``).
    dp: np.ndarray | float = 1.0
    ep: np.ndarray | float = 1.0


def prefill_pairs(chunk_tokens, prefix_tokens) -> np.ndarray:
    """(query, key) pairs of a prompt chunk of ``chunk_tokens`` after ``prefix_tokens`` already
    prefilled: Σ_{j=1..c} (prefix + j). Summed over a prompt's chunks it is I·(I+1)/2, the
    static-batch model's count."""
    c = np.asarray(chunk_tokens, dtype=float)
    return c * (np.asarray(prefix_tokens, dtype=float) + (c + 1.0) / 2.0)


def step_shape(*, decodes, decode_kv_tokens, prefill_tokens, prefill_seqs, prefill_pair_count) -> PassShape:
    """The forward pass of one mixed step (arrays broadcast)."""
    d = np.asarray(decodes, dtype=float)
    p = np.asarray(prefill_tokens, dtype=float)
    s = np.asarray(decode_kv_tokens, dtype=float)
    seqs = np.maximum(d + np.asarray(prefill_seqs, dtype=float), 1.0)
    return PassShape(
        new_tokens=np.maximum(d + p, 1.0),
        seqs=seqs,
        attn_pairs=s + np.asarray(prefill_pair_count, dtype=float),
        kv_read_tokens=s + p,
        logit_tokens=seqs,
    )


def step_time_s(arch: ModelArch, cfg: StepConfig, hw: HardwareArrays, shape: PassShape, prefill_tokens) -> np.ndarray:
    """Seconds of one engine step: kernels of the pass plus the engine's per-step overhead."""
    kernels = forward_pass_s(
        arch, shape, tp=cfg.tp, pp=cfg.pp, w_bytes=cfg.w_bytes, kv_bytes=cfg.kv_bytes, hw=hw, flash=cfg.flash, dp=cfg.dp, ep=cfg.ep
    )
    overhead = np.where(np.asarray(prefill_tokens) > 0, hw.prefill_step_overhead_s, hw.decode_step_overhead_s)
    return kernels + overhead


def mixed_step_s(
    arch: ModelArch, cfg: StepConfig, hw: HardwareArrays, *, decodes, decode_kv_tokens, prefill_tokens, prefill_seqs, prefill_pair_count
) -> np.ndarray:
    """``step_time_s`` of the step ``step_shape`` builds (the one entry point of both evaluators)."""
    shape = step_shape(
        decodes=decodes,
        decode_kv_tokens=decode_kv_tokens,
        prefill_tokens=prefill_tokens,
        prefill_seqs=prefill_seqs,
        prefill_pair_count=prefill_pair_count,
    )
    return step_time_s(arch, cfg, hw, shape, prefill_tokens)
