"""Configurations shared by the stream tests: one replica ready for both evaluators."""

from __future__ import annotations

from functools import lru_cache

from guideopt.analyses.simulate import Configuration, configuration
from guideopt.costs.lengths import fixed_lengths
from guideopt.model.workload import SimulateRequest

# (model, gpu, tp, pp, framework, token budget or None): chunked and prefill-first engines,
# dense and MoE, TP and PP.
CONFIGS = {
    "8b-h100-vllm": ("meta-llama/Llama-3.1-8B", "h100-sxm", 1, 1, "vllm", 8192),  # vLLM's default on >= 70 GiB GPUs
    "8b-a100-vllm": ("meta-llama/Llama-3.1-8B", "a100-sxm4-80gb", 1, 1, "vllm", 2048),
    "70b-h100-trtllm": ("meta-llama/Llama-2-70b-hf", "h100-sxm", 4, 1, "trtllm", None),
    "7b-l40s-pp2-vllm": ("meta-llama/Llama-2-7b-hf", "l40s", 1, 2, "vllm", 4096),
    "mixtral-h100-sglang": ("mistralai/Mixtral-8x7B-v0.1", "h100-sxm", 2, 1, "sglang", None),
    "8b-h100-fastgen": ("meta-llama/Llama-3.1-8B", "h100-sxm", 1, 1, "fastgen", None),
}


@lru_cache(maxsize=32)
def config(name: str, input_len: int, output_len: int, running_cap: int | None = None) -> Configuration:
    model, gpu, tp, pp, fw, budget = CONFIGS[name]
    req = SimulateRequest.model_validate(
        {
            "model": model,
            "gpu": gpu,
            "tp": tp,
            "pp": pp,
            "framework": fw,
            "token_budget": budget,
            "running_cap": running_cap,
            "workload": {"concurrency": 1, "lengths": {"input_len": input_len, "output_len": output_len}},
        }
    )
    return configuration(req, fixed_lengths(input_len, output_len), input_len + output_len)
