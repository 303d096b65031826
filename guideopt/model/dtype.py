"""Numeric precisions; each one carries its byte size."""

from __future__ import annotations

from enum import Enum


class Dtype(str, Enum):
    """Weight or KV-cache precision (contract ids)."""

    FP16 = "fp16"
    BF16 = "bf16"
    FP8 = "fp8"
    FP4 = "fp4"  # NVFP4 or MXFP4, as the GPU and engine run it
    INT8 = "int8"
    INT4 = "int4"

    @property
    def bytes(self) -> float:
        return _BYTES[self]

    @property
    def is_float16(self) -> bool:
        return self in (Dtype.FP16, Dtype.BF16)


# FP4 (E2M1) weights carry block scales. NVFP4: one FP8 E4M3 scale per 16 weights, so
# 0.5 + 1/16 byte per weight (NVIDIA, "Introducing NVFP4 for efficient and accurate
# low-precision inference", developer blog 2025); MXFP4: one E8M0 scale per 32 weights,
# 0.5 + 1/32 (OCP Microscaling Formats (MX) Specification v1.0, 2023). ``fp4`` takes the
# larger, NVFP4's, so that a plan never counts on memory an NVFP4 checkpoint does not free
# (gpt-oss's MXFP4 experts are 1/32 byte per weight smaller). NVFP4's per-tensor FP32
# scale is a few bytes per matrix and is left out.
NVFP4_BYTES_PER_WEIGHT = 0.5 + 1.0 / 16
MXFP4_BYTES_PER_WEIGHT = 0.5 + 1.0 / 32
FP4_BYTES_PER_WEIGHT = NVFP4_BYTES_PER_WEIGHT

_BYTES = {
    Dtype.FP16: 2.0,
    Dtype.BF16: 2.0,
    Dtype.FP8: 1.0,
    Dtype.FP4: FP4_BYTES_PER_WEIGHT,
    Dtype.INT8: 1.0,
    # 4-bit weights; group-wise scales (one fp16 per 128 weights in AWQ/GPTQ) add 1/64 byte.
    Dtype.INT4: 0.5 + 2.0 / 128,
}

# Activations are kept in 16-bit in every engine we model, whatever the weight precision.
ACTIVATION_DTYPE = Dtype.BF16
# Logits are computed in fp32 by vLLM / SGLang samplers.
LOGIT_BYTES = 4.0
