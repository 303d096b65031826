"""How a model name maps onto a catalog id: fine-tuned variants, renamed repositories and
quantized repositories (pure functions; ``catalog.py`` applies them)."""

from __future__ import annotations

import re
from typing import Any

# Fine-tuned variants keep their base model's architecture (same config.json sizes), so they
# cost the same: "-chat-hf", "-Instruct", "-Instruct-v0.2", "-it" map to the catalog base.
_VARIANT_SUFFIX = re.compile(r"[-_](chat|instruct|it)([-_]hf)?([-_]v\d+(\.\d+)*)?$", re.IGNORECASE)
# Quantized repositories name their precision last ("Qwen/Qwen3-235B-A22B-FP8",
# "nvidia/DeepSeek-R1-NVFP4", "nvidia/Llama-3.1-70B-Instruct-FP8"): suffix -> weight precision.
_QUANT_SUFFIX = re.compile(r"[-_](fp8(?:[-_]dynamic)?|nvfp4|mxfp4|fp4|awq|gptq(?:[-_]int4)?|int4|w4a16)$", re.IGNORECASE)
_QUANT_DTYPE = {"fp8": "fp8", "nvfp4": "fp4", "mxfp4": "fp4", "fp4": "fp4", "awq": "int4", "gptq": "int4", "int4": "int4", "w4a16": "int4"}


def quantized_suffix_dtype(model_id: str) -> str | None:
    """The weight precision a quantized repository's name ends with (None when it names none)."""
    found = _QUANT_SUFFIX.search(model_id)
    return _QUANT_DTYPE[re.split(r"[-_]", found.group(1).lower())[0]] if found else None


# Meta renamed "Meta-Llama-3.1-*" to "Llama-3.1-*" on the Hub; both name the same weights.
_RENAMES = (("meta-llama/meta-llama-3.1-", "meta-llama/llama-3.1-"),)


def base_model_id(model_id: str, models: dict[str, Any]) -> str | None:
    """The catalog id a variant's name points to (None when there is no such base)."""
    folded = {k.lower(): k for k in models}
    name = model_id.lower()
    for old, new in _RENAMES:
        name = name.replace(old, new)
    if name in folded:
        return folded[name]
    stripped = _VARIANT_SUFFIX.sub("", _QUANT_SUFFIX.sub("", name))
    candidates = [stripped, stripped + "-hf", stripped + "-v0.1"]
    found = next((folded[c] for c in candidates if c in folded), None)
    if found is None and _QUANT_SUFFIX.search(name):  # another org's quantization of a catalog model (nvidia/X-NVFP4)
        repo = stripped.split("/")[-1]
        same = [k for k in folded if k.split("/")[-1] in (repo, repo + "-instruct")]
        found = folded[same[0]] if len(same) == 1 else None
    return found
