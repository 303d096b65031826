"""The JSON Schema of constraints files (``guideopt schema``), with help text for editors."""

from __future__ import annotations

from typing import Any

from guideopt.catalog import Catalog, load_catalog
from guideopt.errors import CatalogError
from guideopt.model.request import ObjectiveTerm, PlanRequest

_DESCRIPTIONS: dict[str, str] = {
    "model": "Hugging Face id from `guideopt catalog models`, or a path to a config.json (relative to this file)",
    "workload": "The static batch to plan for: B requests of input_len tokens, each generating output_len tokens",
    "budget": "Spending ceiling for the whole deployment",
    "gpus": "Allowed GPU types (ids from `guideopt catalog gpus`), each with how many can be had (a count) or "
    "{max, usd_per_hour} to also override the price; leave out to allow the whole catalog",
    "parallelism": "Allowed tensor/pipeline/expert/attention-data-parallel sizes and caps on the GPUs and nodes in all",
    "parallelism.tp": "Allowed tensor-parallel sizes (default 1, 2, 4, 8)",
    "parallelism.pp": "Allowed pipeline-parallel sizes (default 1, 2, 4)",
    "parallelism.ep": "MoE models: allowed expert-parallel sizes, each dividing the routed experts "
    "(default: experts split by TP only, or one expert rank per GPU of the stage: TP, TEP and DEP layouts)",
    "parallelism.attention_dp": "MoE models: allowed attention data-parallel ranks per replica (default 1, 2, 4, ..., 64); "
    "a replica has tp × attention_dp × pp GPUs",
    "parallelism.max_gpus": "At most this many GPUs in the whole deployment",
    "parallelism.max_nodes": "At most this many nodes in the whole deployment; a node holds gpus_per_node GPUs of one type "
    "(catalog); replicas no wider than a node share nodes, wider ones take whole nodes each",
    "framework": "Serving engine: an id (vllm, fastgen, trtllm, sglang), a list of ids, or any",
    "precision": "Allowed weight precisions; the solver picks among them (default [fp16])",
    "kv_dtype": "KV-cache precision (default: 16-bit)",
    "slo": "Service-level objectives every plan must meet (all optional)",
    "slo.ttft_ms": "Time to first token of the batch at most this many milliseconds",
    "slo.tpot_ms": "Mean time per output token (after the first) at most this many milliseconds",
    "slo.batch_latency_s": "Time until every request of a replica's batch is done, at most this many seconds",
    "slo.min_output_throughput_tok_s": "Whole-deployment output tokens per second, at least this many",
    "objective": "Lexicographic objective: the first term decides, later terms break ties "
    "(throughput, latency, ttft, tpot, cost, usd_per_million_output_tokens)",
    "top": "How many distinct plans (deployment shapes) to return",
    "time_limit_s": "Wall-clock safety net of the search in seconds (default 60; searches are bounded by work); when it hits, the plans found so far "
    "are returned with status feasible and the optimality gap",
    "heterogeneous": "Allow plans that mix GPU types: one group of replicas per type, traffic split by throughput",
    "disaggregation": "never (default), allow or only: plans whose prefill and decode run in separate pools of workers "
    "that hand the KV cache over a link (request streams at a rate)",
}

_DEF_FOR = {"workload": "Workload", "budget": "Budget", "parallelism": "Parallelism", "slo": "Slo", "gpus": "GpuAllowance"}


def json_schema(catalog: Catalog | None = None) -> dict[str, Any]:
    """The JSON Schema of constraints files, with titles and help text for editors."""
    schema = PlanRequest.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "guideopt constraints file"
    schema["description"] = (
        "What `guideopt solve FILE` plans for (YAML, JSON or TOML with this structure): the model, the workload, "
        "a budget, and optional GPU inventory, parallelism, engines, precisions, SLOs and a lexicographic objective."
    )
    props = schema.get("properties", {})
    defs = schema.get("$defs", {})
    for key, text in _DESCRIPTIONS.items():
        top, _, sub = key.partition(".")
        if not sub:
            if top in props:
                props[top]["description"] = text
        elif _DEF_FOR.get(top) in defs:
            sub_props = defs[_DEF_FOR[top]].get("properties", {})
            if sub in sub_props:
                sub_props[sub]["description"] = text
    for def_name, text in (
        ("Workload", "The static batch to plan for"),
        ("Budget", "Spending ceiling"),
        ("GpuAllowance", "How many GPUs of one type can be had, and at what price"),
        ("Parallelism", "Allowed parallel layouts"),
        ("Slo", "Service-level objectives"),
    ):
        if def_name in defs:
            defs[def_name].setdefault("description", text)
    if "ObjectiveTerm" in defs:
        defs["ObjectiveTerm"]["description"] = (
            "throughput: maximise output tok/s; latency: minimise batch latency; ttft, tpot: minimise them; cost: minimise $/h; "
            "usd_per_million_output_tokens: minimise $/h per million output tokens an hour"
        )
    cat = catalog
    if cat is None:
        try:
            cat = load_catalog()
        except CatalogError:
            cat = None
    if cat is not None and "gpus" in props:
        props["gpus"]["propertyNames"] = {"enum": sorted(cat.gpus)}
        props["model"]["examples"] = sorted(cat.models)[:5]
    props.get("framework", {})["examples"] = ["vllm", ["vllm", "sglang"], "any"]
    props.get("objective", {})["examples"] = [[t.value for t in (ObjectiveTerm.THROUGHPUT, ObjectiveTerm.COST)]]
    return schema
