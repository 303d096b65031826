"""Numeric precisions; each one carries its byte size."""

from __future__ import annotations

from enum import Enum


class Dtype(str, Enum):
    """Weight or KV-cache precision (contract ids)."""

    FP16 = "fp16"
    BF16 = "bf16"
    FP8 = "fp8"
    INT8 = "int8"
    INT4 = "int4"

    @property
    def bytes(self) -> float:
        return _BYTES[self]

    @property
    def is_float16(self) -> bool:
        return self in (Dtype.FP16, Dtype.BF16)


_BYTES = {
    Dtype.FP16: 2.0,
    Dtype.BF16: 2.0,
    Dtype.FP8: 1.0,
    Dtype.INT8: 1.0,
    # 4-bit weights; group-wise scales (one fp16 per 128 weights in AWQ/GPTQ) add 1/64 byte.
    Dtype.INT4: 0.5 + 2.0 / 128,
}

# Activations are kept in 16-bit in every engine we model, whatever the weight precision.
ACTIVATION_DTYPE = Dtype.BF16
# Logits are computed in fp32 by vLLM / SGLang samplers.
LOGIT_BYTES = 4.0
