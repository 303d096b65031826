"""Starting points the web page offers (after examples/), and its "optimise for" choices."""

from __future__ import annotations

from typing import Any

from guideopt.model.request import DEFAULT_OBJECTIVE, ObjectiveTerm

# "Optimise for" choices: the first term leads, the default order breaks ties (as `plan --objective X`).
OBJECTIVE_ORDERS: dict[str, list[str]] = {t.value: [t.value] + [d.value for d in DEFAULT_OBJECTIVE if d is not t] for t in ObjectiveTerm}

# Starting points for newcomers (after examples/): each is a PlanRequest the form can show.
PRESETS: list[dict[str, Any]] = [
    {
        "id": "chat",
        "label": "Chat service (8B, tight TTFT/TPOT, cheapest)",
        "request": {
            "model": "meta-llama/Llama-3.1-8B",
            "workload": {"input_len": 1024, "output_len": 256},
            "budget": {"usd_per_hour": 15},
            "gpus": {"l4": {}, "a10g": {}, "l40s": {}, "a100-sxm4-80gb": {}, "h100-sxm": {}},
            "parallelism": {"tp": [1, 2, 4], "pp": [1]},
            "framework": ["vllm", "sglang"],
            "precision": ["bf16"],
            "slo": {"ttft_ms": 600, "tpot_ms": 40, "min_output_throughput_tok_s": 3000},
            "objective": OBJECTIVE_ORDERS["cost"],
            "top": 3,
        },
    },
    {
        "id": "chat-stream",
        "label": "Chat service at a rate (8B, 10 req/s, ShareGPT lengths, P90 TTFT/TPOT)",
        "request": {
            "model": "meta-llama/Llama-3.1-8B",
            "workload": {"rate_rps": 10, "lengths": "sharegpt"},
            "budget": {"usd_per_hour": 20},
            "gpus": {"l4": {}, "l40s": {}, "a100-sxm4-80gb": {}, "h100-sxm": {}},
            "framework": "vllm",
            "precision": ["bf16"],
            "slo": {"ttft_ms": 800, "tpot_ms": 60, "percentile": 90},
            "top": 3,
            "time_limit_s": 30,  # the verifying simulations of four GPU types (examples/chat-stream-slo.yaml)
        },
    },
    {
        "id": "offline",
        "label": "Offline batch (32B, long outputs, max throughput)",
        "request": {
            "model": "Qwen/Qwen2.5-32B",
            "workload": {"input_len": 512, "output_len": 2048},
            "budget": {"usd_per_hour": 30},
            "gpus": {"a100-sxm4-80gb": {}, "h100-sxm": {}, "l40s": {}, "mi300x": {}},
            "parallelism": {"tp": [1, 2, 4, 8], "pp": [1, 2], "max_gpus": 16},
            "framework": ["vllm", "sglang"],
            "precision": ["fp16", "bf16", "fp8"],
            "slo": {"batch_latency_s": 900},
            "objective": OBJECTIVE_ORDERS["throughput"],
            "top": 3,
        },
    },
    {
        "id": "small-70b",
        "label": "Small budget 70B ($8/h, quantised weights)",
        "request": {
            "model": "meta-llama/Llama-3.1-70B",
            "workload": {"input_len": 1024, "output_len": 256},
            "budget": {"usd_per_hour": 8},
            "gpus": {"l40s": {}, "rtx-6000-ada": {}, "a100-sxm4-80gb": {}, "h100-sxm": {}},
            "parallelism": {"tp": [1, 2, 4, 8], "pp": [1, 2, 4], "max_gpus": 8},
            "framework": "vllm",
            "precision": ["int4", "int8", "fp8"],
            "slo": {"ttft_ms": 8000, "tpot_ms": 100},
            "objective": OBJECTIVE_ORDERS["throughput"],
            "top": 3,
        },
    },
]
