"""Weight and KV precision of a measured row: the dtype guideopt predicts it with, or why not.

guideopt holds one weight precision per model. A row may state two (aiconfigurator's notes
carry ``gemm_quant=`` for the dense / attention GEMMs and ``moe_quant=`` for the routed
experts); the rules below say which one the row is predicted with and record the rest as an
assumption.
"""

from __future__ import annotations

import re

from guideopt.calibration.cases import Skip
from guideopt.calibration.labels import annotation_free
from guideopt.calibration.measurements import Measurement

# When a row states no precision, the checkpoint's own (config.json torch_dtype) is what the
# engines load: bf16 for every Llama-3 / Mistral model here (fp16 and bf16 cost the same).
DEFAULT_DTYPE = "bf16"
# "FP8 KV cache", "FP8 (weights+KV, ...)", "--kv-cache-dtype fp8", "kv_cache_dtype=fp8"
_KV_FP8 = re.compile(r"fp8\s+kv|weights\s*\+\s*kv|kv[-_ ]cache[-_ ]dtype[= ]+fp8", re.IGNORECASE)
_GEMM_QUANT = re.compile(r"gemm_quant=([\w.]*)")
_MOE_QUANT = re.compile(r"moe_quant=([\w.]*)")


def quant_dtype(label: str) -> str | None:
    """guideopt dtype of a precision / quantization label as the sources print them, or None if unknown.

    fp4, nvfp4 (NVIDIA: e2m1 values, an fp8 scale per 16) and mxfp4 (OCP: e2m1, an e8m0 scale per
    32) are all 4-bit float weights: guideopt's ``fp4``. fp8 and fp8_block (128x128 block scales)
    are ``fp8``; int4_wo (weight-only int4, 16-bit activations) is ``int4``.
    """
    low = annotation_free(label).lower()
    if "fp4" in low:
        return "fp4"
    if low.startswith("fp8"):  # fp8, fp8_block, "FP8 checkpoint"
        return "fp8"
    if low in ("int4_wo", "int4"):
        return "int4"
    if low in ("bf16", "fp16"):
        return low
    return None


def _stated(m: Measurement) -> tuple[str | None, tuple[str, ...]]:
    """The weight dtype the row states (None: not stated), with what was assumed to get it."""
    gemm = _GEMM_QUANT.search(m.notes)
    moe = _MOE_QUANT.search(m.notes)
    gemm_dtype = quant_dtype(gemm.group(1)) if gemm else None
    moe_dtype = quant_dtype(moe.group(1)) if moe else None
    if gemm and moe and gemm_dtype and moe_dtype and gemm_dtype != moe_dtype:
        # The routed experts hold most of an MoE model's bytes (DeepSeek-R1: 656 of 671 B
        # parameters; gpt-oss-120b: 114 of 117 B), so their precision is the model's.
        return moe_dtype, (
            f"gemm_quant={gemm.group(1)} moe_quant={moe.group(1)}: predicted with {moe_dtype} weights throughout "
            "(guideopt has one weight precision per model)",
        )
    for label in (m.quant, m.dtype):
        dtype = quant_dtype(label)
        if dtype is not None:
            return dtype, ()
    return moe_dtype or gemm_dtype, ()


def precision(m: Measurement, checkpoint_dtype: str | None) -> tuple[str, str | None, tuple[str, ...]] | Skip:
    """(weight dtype, KV dtype or None for the default, assumptions) for a row, or a Skip."""
    dtype = annotation_free(m.dtype).lower()
    quant = annotation_free(m.quant).lower()
    kv = "fp8" if _KV_FP8.search(m.quant) or _KV_FP8.search(m.notes) else None
    stated, assumed = _stated(m)
    if checkpoint_dtype:
        if stated == "fp4" and checkpoint_dtype != "fp4":
            return "fp4", kv, assumed  # an NVFP4 re-quantization of an fp8 / bf16 release
        if stated and stated != checkpoint_dtype:
            assumed += (f"row states {stated}; the checkpoint stores {checkpoint_dtype} weights, predicted with those",)
        return checkpoint_dtype, kv, assumed
    if stated in ("fp4", "fp8", "int4"):
        return stated, kv, assumed
    if dtype in ("bf16", "fp16"):
        note = (f"precision not stated; {dtype} assumed",) if "not stated" in m.dtype else ()
        return dtype, kv, assumed + note
    if not dtype and not quant and stated is None:
        return DEFAULT_DTYPE, kv, (f"precision not stated; {DEFAULT_DTYPE} assumed",)
    if stated is not None:
        return stated, kv, assumed
    return Skip("precision not modelled", f"dtype={m.dtype!r} quant={m.quant!r}")
