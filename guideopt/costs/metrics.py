"""Static-batch metrics (the contract's ``ttft_ms`` … ``prefill_throughput_tok_s``), vectorised.

A static batch: B requests of I input tokens, submitted together, each generating O tokens.
Prefill runs B·I tokens in passes of at most ``split`` tokens (chunked engines) or of
whole prompts up to ``split`` tokens (engines without chunked prefill); decode then runs
O−1 steps over the batch. When the KV cache holds fewer than B sequences the engine runs
the batch in waves of what fits (requests wait: GUIDE's "latency divergence").
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from guideopt.costs.hardware import HardwareArrays
from guideopt.costs.roofline import PassShape, forward_pass_s
from guideopt.model.llm import ModelArch
from guideopt.units import MS_PER_S

# Simpson's rule over the decode context range: step time is near-linear in the context,
# but the max() of the roofline bends it; three points capture the bend.
SIMPSON_WEIGHTS = (1.0 / 6.0, 4.0 / 6.0, 1.0 / 6.0)


@dataclass(frozen=True)
class StaticBatchInputs:
    """One row per option; arrays broadcast together."""

    tp: np.ndarray
    pp: np.ndarray
    batch: np.ndarray
    input_len: np.ndarray
    output_len: np.ndarray
    split: np.ndarray  # token budget per forward pass
    chunked: np.ndarray  # bool: prefill chunked to the budget
    w_bytes: np.ndarray
    kv_bytes: np.ndarray
    running_cap: np.ndarray  # sequences that fit in the KV cache at once (>= 1)
    kv_keep: np.ndarray  # H2O keep ratio (1 = full cache)
    flash: bool = True
    # Kernel time of one pass, when not the uniform TP×PP model (asymmetric pipelines).
    forward: Callable[[PassShape], np.ndarray] | None = None
    dp: np.ndarray | float = 1.0  # attention-DP ranks (arrays above are per rank)
    ep: np.ndarray | float = 1.0  # expert-parallel ranks


@dataclass(frozen=True)
class StaticBatchMetrics:
    ttft_s: np.ndarray
    tpot_s: np.ndarray
    batch_latency_s: np.ndarray
    decode_throughput_tok_s: np.ndarray
    output_throughput_tok_s: np.ndarray
    total_throughput_tok_s: np.ndarray
    prefill_throughput_tok_s: np.ndarray
    waves: np.ndarray

    def as_contract_dict(self, index: int | None = None) -> dict[str, float]:
        def pick(a: np.ndarray) -> float:
            return float(a if index is None else a[index])

        return {
            "ttft_ms": pick(self.ttft_s) * MS_PER_S,
            "tpot_ms": pick(self.tpot_s) * MS_PER_S,
            "batch_latency_s": pick(self.batch_latency_s),
            "decode_throughput_tok_s": pick(self.decode_throughput_tok_s),
            "output_throughput_tok_s": pick(self.output_throughput_tok_s),
            "total_throughput_tok_s": pick(self.total_throughput_tok_s),
            "prefill_throughput_tok_s": pick(self.prefill_throughput_tok_s),
        }


def engine_step_s(hw: HardwareArrays, *, seqs, tokens) -> np.ndarray:
    """Engine CPU time that grows with a step's work: per sequence (scheduling, sampling,
    detokenising) and per new token (input preparation)."""
    return hw.seq_step_overhead_s * seqs + hw.token_step_overhead_s * tokens


def first_token_path_s(arch: ModelArch, hw: HardwareArrays) -> np.ndarray:
    """Per option, the online server's time on a request's path to its first token outside the GPU
    steps (API server, tokenizer, scheduler admission, detokenizer, streaming; per model layer, as
    aiconfigurator-core 0.12.0 prices vLLM's prefill dispatch): it adds to a served request's TTFT
    and E2E, not to an offline batch's."""
    return arch.num_layers * np.asarray(hw.first_token_layer_s, dtype=float)


def _forward(arch, x: StaticBatchInputs, hw, shape: PassShape) -> np.ndarray:
    if x.forward is not None:
        return x.forward(shape)
    return forward_pass_s(arch, shape, tp=x.tp, pp=x.pp, w_bytes=x.w_bytes, kv_bytes=x.kv_bytes, hw=hw, flash=x.flash, dp=x.dp, ep=x.ep)


def prefill_passes(*, batch, input_len, split, chunked) -> tuple[np.ndarray, np.ndarray]:
    """Number of prefill passes and tokens per pass for ``batch`` prompts."""
    total = batch * input_len
    chunk_passes = np.ceil(total / split)
    prompts_per_pass = np.minimum(np.maximum(np.floor(split / input_len), 1.0), batch)
    whole_passes = np.ceil(batch / prompts_per_pass)
    passes = np.where(chunked, chunk_passes, whole_passes)
    return passes, total / passes


def prefill_s(arch: ModelArch, x: StaticBatchInputs, hw: HardwareArrays, batch) -> np.ndarray:
    """Time to prefill ``batch`` prompts: the TTFT of that many requests."""
    passes, tokens = prefill_passes(batch=batch, input_len=x.input_len, split=x.split, chunked=x.chunked)
    seqs = batch / passes
    pairs = batch * x.input_len * (x.input_len + 1.0) / 2.0 / passes
    shape = PassShape(new_tokens=tokens, seqs=np.maximum(seqs, 1.0), attn_pairs=pairs, kv_read_tokens=tokens, logit_tokens=seqs)
    engine_s = hw.prefill_step_overhead_s + engine_step_s(hw, seqs=shape.seqs, tokens=tokens)
    return passes * (_forward(arch, x, hw, shape) + engine_s)


def decode_step_s(arch: ModelArch, x: StaticBatchInputs, hw: HardwareArrays, batch, context) -> np.ndarray:
    """One decode step of ``batch`` sequences whose KV holds ``context`` tokens each."""
    ctx = context * x.kv_keep
    shape = PassShape(new_tokens=batch, seqs=batch, attn_pairs=batch * ctx, kv_read_tokens=batch * ctx, logit_tokens=batch)
    return _forward(arch, x, hw, shape) + hw.decode_step_overhead_s + engine_step_s(hw, seqs=batch, tokens=batch)


def decode_s(arch: ModelArch, x: StaticBatchInputs, hw: HardwareArrays, batch) -> np.ndarray:
    """All O−1 decode steps after the first token (Simpson average over the context)."""
    steps = np.maximum(x.output_len - 1.0, 0.0)
    start = x.input_len + 1.0
    end = x.input_len + np.maximum(x.output_len - 1.0, 1.0)
    points = (start, (start + end) / 2.0, end)
    mean_step = sum(w * decode_step_s(arch, x, hw, batch, c) for w, c in zip(SIMPSON_WEIGHTS, points))
    return steps * mean_step


def static_batch_metrics(arch: ModelArch, x: StaticBatchInputs, hw: HardwareArrays) -> StaticBatchMetrics:
    batch = np.asarray(x.batch, dtype=float)
    running = np.minimum(batch, np.maximum(x.running_cap, 1.0))
    full_waves = np.floor(batch / running)
    rest = batch - full_waves * running
    ttft_wave = prefill_s(arch, x, hw, running)
    wave_latency = ttft_wave + decode_s(arch, x, hw, running)
    rest_safe = np.maximum(rest, 1.0)
    rest_latency = np.where(rest > 0, prefill_s(arch, x, hw, rest_safe) + decode_s(arch, x, hw, rest_safe), 0.0)
    latency = full_waves * wave_latency + rest_latency
    ttft = ttft_wave
    decode_time = np.maximum(latency - ttft, 1e-12)
    out = x.output_len
    return StaticBatchMetrics(
        ttft_s=ttft,
        tpot_s=np.where(out > 1, decode_time / np.maximum(out - 1.0, 1.0), 0.0),
        batch_latency_s=latency,
        decode_throughput_tok_s=np.where(out > 1, batch * (out - 1.0) / decode_time, 0.0),
        output_throughput_tok_s=batch * out / latency,
        total_throughput_tok_s=batch * (x.input_len + out) / latency,
        prefill_throughput_tok_s=running * x.input_len / ttft,
        waves=full_waves + (rest > 0),
    )
