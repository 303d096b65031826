"""Write catalogs/models/*.yaml for the MoE / hybrid families from the config.json copies in
the aiconfigurator-core 0.12.0 package (Apache-2.0; `pip download --no-deps
aiconfigurator-core==0.12.0`, unzip, pass its `aiconfigurator_core/model_configs` folder).

Usage: python scripts/import_model_configs.py PATH/TO/model_configs
Each file keeps the config.json keys as published (``hf_config``) and names its source.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import yaml

from guideopt.model.hf_config import arch_from_hf_config

PACKAGE = "aiconfigurator-core 0.12.0 (Apache-2.0) aiconfigurator_core/model_configs"
# catalog id -> the package's config file (the unquantized repository's where both exist).
MODELS = {
    "deepseek-ai/DeepSeek-R1": "deepseek-ai--DeepSeek-R1_config.json",
    "deepseek-ai/DeepSeek-V3": "deepseek-ai--DeepSeek-V3_config.json",
    "deepseek-ai/DeepSeek-V3.2": "deepseek-ai--DeepSeek-V3.2_config.json",
    "moonshotai/Kimi-K2.5": "moonshotai--Kimi-K2.5_config.json",
    "moonshotai/Kimi-K2-Instruct": "moonshotai--Kimi-K2-Instruct_config.json",
    "zai-org/GLM-5": "zai-org--GLM-5_config.json",
    "Qwen/Qwen3-235B-A22B": "Qwen--Qwen3-235B-A22B_config.json",
    "Qwen/Qwen3-30B-A3B": "Qwen--Qwen3-30B-A3B_config.json",
    "Qwen/Qwen3-Coder-480B-A35B-Instruct": "Qwen--Qwen3-Coder-480B-A35B-Instruct_config.json",
    "Qwen/Qwen3.5-397B-A17B": "Qwen--Qwen3.5-397B-A17B_config.json",
    "Qwen/Qwen3.5-122B-A10B": "Qwen--Qwen3.5-122B-A10B_config.json",
    "Qwen/Qwen3.5-35B-A3B": "Qwen--Qwen3.5-35B-A3B_config.json",
    "Qwen/Qwen3.5-27B": "Qwen--Qwen3.5-27B_config.json",
    "MiniMaxAI/MiniMax-M2.5": "MiniMaxAI--MiniMax-M2.5_config.json",
    "openai/gpt-oss-120b": "openai--gpt-oss-120b_config.json",
    "openai/gpt-oss-20b": "openai--gpt-oss-20b_config.json",
    "meta-llama/Llama-4-Scout-17B-16E-Instruct": "meta-llama--Llama-4-Scout-17B-16E-Instruct_config.json",
    "meta-llama/Llama-4-Maverick-17B-128E-Instruct": "meta-llama--Llama-4-Maverick-17B-128E-Instruct_config.json",
    "nvidia/NVIDIA-Nemotron-3-Super-120B-A12B-FP8": "nvidia--NVIDIA-Nemotron-3-Super-120B-A12B-FP8_config.json",
    "nvidia/NVIDIA-Nemotron-3-Nano-30B-A3B-BF16": "nvidia--NVIDIA-Nemotron-3-Nano-30B-A3B-BF16_config.json",
}
# Keys of no use to sizing that only bloat the file (vision towers, tokenizer ids, generation defaults).
_DROP = ("vision_config", "id2label", "label2id", "auto_map", "bad_words_ids", "task_specific_params")


def _clean(cfg: dict) -> dict:
    out = {k: v for k, v in cfg.items() if k not in _DROP}
    if isinstance(out.get("text_config"), dict):
        out["text_config"] = _clean(out["text_config"])
    return out


def main(folder: str) -> None:
    root = Path(__file__).resolve().parent.parent / "catalogs" / "models"
    for model_id, name in MODELS.items():
        cfg = _clean(json.loads((Path(folder) / name).read_text()))
        source = f"Hugging Face config.json of {model_id}, as copied in {PACKAGE}/{name}"
        arch = arch_from_hf_config(cfg, model_id, source)
        header = (
            f"# {model_id}: {' + '.join(arch.attention_kinds)} attention, "
            f"{arch.num_experts} experts ({arch.experts_per_token} per token); config.json from {PACKAGE}/{name}.\n"
            "# Written by scripts/import_model_configs.py; num_params is computed from the config (embeddings included, MTP layers not).\n"
        )
        body = {"id": model_id, "num_params": arch.num_params, "source": source, "hf_config": cfg}
        path = root / (model_id.replace("/", "--") + ".yaml")
        path.write_text(header + yaml.safe_dump(body, sort_keys=False, width=200))
        print(f"{path.name}: {arch.num_params / 1e9:.1f}B, {arch.num_active_params / 1e9:.1f}B active")


if __name__ == "__main__":
    main(sys.argv[1])
