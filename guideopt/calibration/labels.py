"""Source labels -> catalog ids: GPUs, models and engines as the measured sources print them.

Each table entry says why it holds; ``mapping.py`` uses them to turn rows into cases.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from guideopt.catalog import Catalog, load_catalog


def annotation_free(text: str) -> str:
    """Drop trailing annotations such as " (table: LLaMA 7B)" or " (model default; not stated)"."""
    return re.sub(r"\s*\(.*\)\s*$", "", text or "").strip()


# --- GPUs ------------------------------------------------------------------------------

# Source GPU label (lower-cased, annotations dropped) -> catalog id. Catalog ids are also
# accepted as they are. Labels of GPUs the catalog lacks map to None (skipped).
GPU_LABELS: dict[str, str | None] = {
    # H100: every source in e2e.csv means the SXM5 80 GB board (DGX/HGX systems; MLPerf "DGX-H100").
    "h100 80gb hbm3": "h100-sxm",  # nvidia-smi name of the SXM5 part (TRT-LLM v0.14 tables)
    "h100-sxm": "h100-sxm",
    "h100-sxm-80gb": "h100-sxm",  # MLPerf system name
    "h100 sxm": "h100-sxm",
    "h100 80g": "h100-sxm",  # SGLang blog / NIM docs
    "h100": "h100-sxm",  # TRT-LLM perf docs: measured on DGX H100 (SXM)
    # H200: SXM 141 GB (nvidia-smi reports 131 GiB usable as "131GB").
    "h200 131gb hbm3": "h200-sxm",
    "h200-sxm": "h200-sxm",
    "h200-sxm-141gb": "h200-sxm",
    "h200": "h200-sxm",
    # A100: the sources use the 80 GB SXM4 part (DGX A100 80G; LMDeploy's A100-80G).
    "a100-80g": "a100-sxm4-80gb",
    "a100 80g": "a100-sxm4-80gb",
    "a100": "a100-sxm4-80gb",  # TRT-LLM perf docs: DGX A100 80 GB
    "l40s": "l40s",
    "b200-sxm": "b200",
    "b200-sxm-180gb": "b200",  # MLPerf system name (180 GB HBM3e)
    # Blackwell Ultra HGX board: aiconfigurator's system "b300_sxm" (systems/b300_sxm.yaml, 8 per node).
    "b300-sxm": "b300",
    "b300 sxm": "b300",
    # Grace-Blackwell superchips: aiconfigurator's systems "gb200" / "gb300" are the GPUs of an NVL72
    # rack (systems/gb200.yaml: 4 per compute tray, 72 per NVLink domain), the catalog's per-GPU entries.
    "gb200": "gb200",
    "gb200 nvl72": "gb200",
    "gb300": "gb300",
    "gb300 nvl72": "gb300",
    # Added sources (AMD Instinct and more NVIDIA cards), labels as printed.
    "amd instinct mi300x": "mi300x",  # dstack, amd.com, OCI, Azure (annotations dropped)
    "amd instinct mi300x 192gb hbm3": "mi300x",  # MLPerf v5.1 system description
    "amd instinct mi300x-nps1-spx-192gb-750w": "mi300x",  # MLPerf v4.1 (NPS1/SPX: one partition, whole GPU)
    "amd mi300x-nps1-spx-192gb-750w": "mi300x",
    "amd instinct mi325x 256gb hbm3e": "mi325x",
    "nvidia l40s": "l40s",
    "nvidia geforce rtx 4090": "rtx-4090",
    "nvidia a10g": "a10g",
    "nvidia rtx a6000": "rtx-a6000",
    "tesla v100 32gb sxm2": "v100-sxm2-32gb",
    # One GCD of an MI250X is half the board the catalog describes.
    "amd instinct mi250x": None,
}


def gpu_id(label: str, catalog: Catalog | None = None) -> str | None:
    """Catalog id for a source GPU label, or None when the catalog lacks that GPU."""
    key = annotation_free(label).lower()
    cat = catalog or load_catalog()
    if key in cat.gpus:
        return key
    mapped = GPU_LABELS.get(key)
    return mapped if mapped in cat.gpus else None  # a label of a GPU the catalog does not (yet) hold


# --- Models ----------------------------------------------------------------------------

# Source model name (lower-cased, annotations dropped) -> (catalog id, weight precision the
# checkpoint fixes or None). Fine-tunes (Instruct, chat) share the base architecture, which
# is all the cost model reads. Catalog ids are also accepted as they are.
MODEL_NAMES: dict[str, tuple[str, str | None]] = {
    "meta-llama/llama-2-7b": ("meta-llama/Llama-2-7b-hf", None),
    "meta-llama/llama-2-13b": ("meta-llama/Llama-2-13b-hf", None),
    "meta-llama/llama-2-70b": ("meta-llama/Llama-2-70b-hf", None),
    "meta-llama/llama-2-70b-chat-hf": ("meta-llama/Llama-2-70b-hf", None),
    "meta-llama/llama-3.1-8b-instruct": ("meta-llama/Llama-3.1-8B", None),
    "meta-llama/llama-3.1-70b-instruct": ("meta-llama/Llama-3.1-70B", None),
    # Llama-3.3-70B is a post-training refresh of Llama-3.1-70B: identical config.json shapes.
    "meta-llama/llama-3.3-70b-instruct": ("meta-llama/Llama-3.1-70B", None),
    "meta-llama/meta-llama-3-8b-instruct": ("meta-llama/Meta-Llama-3-8B", None),
    "meta-llama/meta-llama-3-70b-instruct": ("meta-llama/Meta-Llama-3-70B", None),
    "mistralai/mistral-7b": ("mistralai/Mistral-7B-v0.1", None),
    "mistralai/mistral-7b-instruct-v0.1": ("mistralai/Mistral-7B-v0.1", None),
    "mistralai/mixtral-8x7b": ("mistralai/Mixtral-8x7B-v0.1", None),
    "mistralai/mixtral-8x7b-instruct-v0.1": ("mistralai/Mixtral-8x7B-v0.1", None),
    # NVIDIA's FP8 (ModelOpt) checkpoint of Llama-3.1-8B-Instruct: FP8 weights.
    "nvidia/llama-3.1-8b-instruct-fp8": ("meta-llama/Llama-3.1-8B", "fp8"),
    # Added sources: short names as printed, and FP8 checkpoints (their weights fix the precision).
    "llama-2-7b": ("meta-llama/Llama-2-7b-hf", None),
    "llama2-7b": ("meta-llama/Llama-2-7b-hf", None),
    "llama-2-13b": ("meta-llama/Llama-2-13b-hf", None),
    "llama2-13b": ("meta-llama/Llama-2-13b-hf", None),
    "llama-2-70b": ("meta-llama/Llama-2-70b-hf", None),
    "llama2-70b": ("meta-llama/Llama-2-70b-hf", None),
    "llama-2-70b-chat-hf": ("meta-llama/Llama-2-70b-hf", None),
    "codellama-34b": ("meta-llama/CodeLlama-34b-hf", None),
    "llama-3-8b": ("meta-llama/Meta-Llama-3-8B", None),
    "llama-3-70b": ("meta-llama/Meta-Llama-3-70B", None),
    "llama-3.1-8b": ("meta-llama/Llama-3.1-8B", None),
    "llama-3.1-8b-instruct": ("meta-llama/Llama-3.1-8B", None),
    "llama-3.1-70b": ("meta-llama/Llama-3.1-70B", None),
    "llama-3.1-70b-instruct": ("meta-llama/Llama-3.1-70B", None),
    "llama-3.1-405b": ("meta-llama/Llama-3.1-405B", None),
    "llama-3-405b": ("meta-llama/Llama-3.1-405B", None),  # amd.com heading "LLAMA 3 (405B)": only 3.1 has a 405B
    "meta-llama/llama-3.1-405b-instruct": ("meta-llama/Llama-3.1-405B", None),
    "meta-llama/llama-3.1-405b-fp8": ("meta-llama/Llama-3.1-405B", "fp8"),  # Meta's FP8 checkpoint
    "amd/llama-3.1-405b-instruct-fp8-kv": ("meta-llama/Llama-3.1-405B", "fp8"),  # AMD Quark FP8 weights (+ FP8 KV)
    "amd/llama-3.1-70b-instruct-fp8-kv": ("meta-llama/Llama-3.1-70B", "fp8"),
    "mistral-7b": ("mistralai/Mistral-7B-v0.1", None),
    "mixtral-8x7b": ("mistralai/Mixtral-8x7B-v0.1", None),
    "mixtral-8x7b-instruct-v0.1": ("mistralai/Mixtral-8x7B-v0.1", None),
    "mixtral-8x22b": ("mistralai/Mixtral-8x22B-v0.1", None),
    "qwen/qwen3-8b-fp8": ("Qwen/Qwen3-8B", "fp8"),
    # aiconfigurator silicon sample: MoE checkpoints under their publishers' names (other "-FP8" /
    # "-NVFP4" repositories of catalog models resolve by the suffix rule below).
    # Zhipu AI publishes GLM-5 under its Hugging Face org zai-org (aiconfigurator's model_configs
    # ship zai-org--GLM-5_config.json); "zhipuai/" is the company name the sample prints.
    "zhipuai/glm-5": ("zai-org/GLM-5", None),
    # Qwen's own FP8 release (128x128 block-scaled weights) of Qwen3-235B-A22B: same config.json shapes.
    "qwen/qwen3-235b-a22b-fp8": ("Qwen/Qwen3-235B-A22B", "fp8"),
    # NVIDIA ModelOpt NVFP4 checkpoints (hf_quant_config quant_algo NVFP4, group 16): 4-bit weights.
    "nvidia/deepseek-r1-nvfp4": ("deepseek-ai/DeepSeek-R1", "fp4"),
    "nvidia/deepseek-r1-0528-nvfp4": ("deepseek-ai/DeepSeek-R1", "fp4"),
    # DeepSeek-V3.1 is a post-training refresh of V3: its config.json (model_configs/
    # nvidia--DeepSeek-V3.1-NVFP4_config.json) equals DeepSeek-V3's in every shape (61 layers, 256
    # routed experts top-8, MLA ranks 512 / 1536); only the quantization block differs.
    "nvidia/deepseek-v3.1-nvfp4": ("deepseek-ai/DeepSeek-V3", "fp4"),
    "deepseek-ai/deepseek-v3.1": ("deepseek-ai/DeepSeek-V3", None),
}

# Catalog models whose published checkpoint fixes the weight precision whatever a row states.
# gpt-oss ships its routed experts in MXFP4 only (config.json quantization_config quant_method
# mxfp4; attention, router, embeddings and lm_head stay bf16, ~1.5 % of the 120b's weights):
# a row labelled "fp8" (TensorRT-LLM on Hopper) runs those 4-bit experts with FP8 activations.
CHECKPOINT_DTYPES: dict[str, str] = {
    "openai/gpt-oss-120b": "fp4",
    "openai/gpt-oss-20b": "fp4",
    "nvidia/NVIDIA-Nemotron-3-Super-120B-A12B-FP8": "fp8",  # the FP8 repository is the catalog id
}

# A quantized checkpoint's id resolves to its architecture with that precision: "<org>/<Name>-FP8",
# "<org>/<Name>-NVFP4", ... where <Name> is a catalog model's name (any org: nvidia/, RedHatAI/...).
_QUANT_SUFFIX = re.compile(r"^(?:[^/]+/)?(?P<name>.+?)-(?P<q>fp8(?:-dynamic|-kv)?|nvfp4|mxfp4|fp4)$")
_SUFFIX_DTYPE = {"nvfp4": "fp4", "mxfp4": "fp4", "fp4": "fp4"}


def _quantized_checkpoint(key: str, catalog_ids: list[str]) -> tuple[str, str] | None:
    match = _QUANT_SUFFIX.match(key)
    if match is None:
        return None
    names = [m for m in catalog_ids if m.lower().split("/")[-1] == match["name"]]
    if len(names) != 1:  # no catalog model of that name, or several orgs: ambiguous
        return None
    return names[0], _SUFFIX_DTYPE.get(match["q"], "fp8")


def model_id(name: str, catalog: Catalog | None = None) -> tuple[str, str | None] | None:
    """(catalog id, checkpoint precision or None) for a source model name; None if not in the catalog."""
    key = annotation_free(name).lower()
    cat = catalog or load_catalog()
    folded = {m.lower(): m for m in cat.models}
    if key in folded:
        return folded[key], CHECKPOINT_DTYPES.get(folded[key])
    mapped = MODEL_NAMES.get(key) or _quantized_checkpoint(key, list(cat.models))
    if mapped is None or mapped[0] not in cat.models:  # a model the catalog does not (yet) hold
        return None
    return mapped


# --- Frameworks ------------------------------------------------------------------------


@dataclass(frozen=True)
class FrameworkRule:
    prefix: str  # lower-case prefix of the source's framework label
    framework: str  # guideopt framework id
    proxy_of: str | None  # set when the profile only stands in for another engine
    why: str
    min_version: tuple[int, ...] | None = None  # only rows whose stated version is at least this


FRAMEWORK_RULES: tuple[FrameworkRule, ...] = (
    # vLLM schedules asynchronously by default from 0.14.0 (config/scheduler.py async_scheduling
    # Field(default=None) -> on; False up to 0.13.0): such rows are the vllm-0.33 entry's kind.
    FrameworkRule("vllm", "vllm-0.33", None, "vLLM 0.14 and later: asynchronous scheduling by default", min_version=(0, 14)),
    FrameworkRule("vllm", "vllm", None, "vLLM, any version or harness"),
    FrameworkRule("tensorrt-llm", "trtllm", None, "TensorRT-LLM, also behind Triton or the MLPerf harness"),
    FrameworkRule("sglang", "sglang", None, "SGLang"),
    FrameworkRule("deepspeed-mii", "fastgen", None, "MII serves with DeepSpeed-FastGen"),
    FrameworkRule("deepspeed-fastgen", "fastgen", None, "DeepSpeed-FastGen"),
    FrameworkRule("fastgen", "fastgen", None, "DeepSpeed-FastGen"),
    # TurboMind is a C++ engine with fused kernels and a paged KV cache, tuned like TRT-LLM.
    FrameworkRule("lmdeploy", "trtllm", "LMDeploy TurboMind", "similarly tuned C++ engine; no own profile"),
    # NIM LLM containers run a TensorRT-LLM engine (or vLLM for some models); TRT-LLM is the closer profile.
    FrameworkRule("nvidia nim", "trtllm", "NVIDIA NIM", "NIM containers run TensorRT-LLM engines"),
)


def release(version: str) -> tuple[int, ...] | None:
    """The numeric release of a version label ("0.15.1" -> (0, 15, 1)); None for builds without one ("nightly-…")."""
    found = re.match(r"v?(\d+(?:\.\d+)*)", (version or "").strip())
    return tuple(int(x) for x in found.group(1).split(".")) if found else None


def framework_rule(label: str, version: str = "") -> FrameworkRule | None:
    """The catalog engine of a source's label; a rule with ``min_version`` takes rows of that version or later only."""
    low, stated = label.strip().lower(), release(version)
    return next(
        (
            r
            for r in FRAMEWORK_RULES
            if low.startswith(r.prefix) and (r.min_version is None or (stated is not None and stated >= r.min_version))
        ),
        None,
    )
