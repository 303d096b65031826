"""Map one measured row onto a configuration guideopt can predict (a ``Case``), or say why not (a ``Skip``).

The mapping rules are data tables, each entry with the reason it holds; source labels
(GPUs, models, engines) live in ``labels.py``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any

from guideopt.calibration.cases import Case, CaseOrSkip, Skip
from guideopt.calibration.labels import annotation_free, framework_rule, gpu_id, model_id
from guideopt.calibration.layouts import integer_or_none, layout
from guideopt.calibration.measurements import Measurement, load_measurements
from guideopt.calibration.precisions import DEFAULT_DTYPE, precision  # noqa: F401  (DEFAULT_DTYPE re-exported)
from guideopt.catalog import Catalog, load_catalog

# --- Workload --------------------------------------------------------------------------


class Workload(str, Enum):
    STATIC = "static"  # B requests submitted together: PredictRequest.batch
    CLOSED_LOOP = "closed_loop"  # c clients, each sending its next request when the last ends: .concurrency
    MAX_LOAD = "max_load"  # all requests queued at once, engine-chosen batch: the engine runs at its own cap
    OPEN_LOOP = "open_loop"  # Poisson / fixed request rate, or variable lengths: not modelled


@dataclass(frozen=True)
class SourceRule:
    prefix: str  # prefix of the ``source`` column
    workload: Workload
    why: str  # what the notes of that source say


SOURCE_RULES: tuple[SourceRule, ...] = (
    SourceRule(
        "NVIDIA aiconfigurator silicon_sample",
        Workload.CLOSED_LOOP,
        "aggregated serving; notes give 'client concurrency=N' = batch_or_concurrency (a few rows: "
        "'concurrency not recorded', the aic batch size stands in)",
    ),
    SourceRule("NVIDIA NIM", Workload.CLOSED_LOOP, "'closed-loop concurrency sweep (AIPerf/genai-perf)'"),
    SourceRule(
        "GPUStack",
        Workload.CLOSED_LOOP,
        "'vllm bench serve --max-concurrency 4' on ShareGPT: closed loop but variable lengths (no ISL/OSL)",
    ),
    SourceRule("LMDeploy", Workload.STATIC, "'static inference benchmark, fixed batch' (profile_generation)"),
    SourceRule(
        "TensorRT-LLM performance doc",
        Workload.STATIC,
        "gptSessionBenchmark 'static batch of fixed size'; first-token latency at batch 1, output length 1",
    ),
    SourceRule("vLLM performance benchmark", Workload.STATIC, "benchmark_latency 'fixed batch 8, input 32, output 128'"),
    SourceRule(
        "TensorRT-LLM perf overview online serving",
        Workload.OPEN_LOOP,
        "'request rate QPS=…, concurrency not fixed (open-loop arrival)'; QPS=INF sends 500 at once",
    ),
    SourceRule("SGLang v0.3.0 vs vLLM", Workload.OPEN_LOOP, "ShareGPT variable lengths at 4 / 8 req/s or offline"),
    SourceRule("MLPerf", Workload.OPEN_LOOP, "Server (scheduled load) / Offline on OpenOrca, variable lengths"),
    SourceRule(
        "TensorRT-LLM perf-overview",
        Workload.MAX_LOAD,
        "trtllm-bench throughput: 'all requests queued at infinite rate (in-flight batching, batch not fixed)'",
    ),
    SourceRule(
        "Oracle Cloud Infrastructure blog",
        Workload.STATIC,
        "benchmark_latency 'static batch' rows carry the batch; benchmark_throughput rows (no batch) are max load",
    ),
    SourceRule(
        'AMD "Performance results',
        Workload.STATIC,
        "'Latency (sec)' static batch rows carry the batch; 'client fed at infinite rate' throughput rows are max load",
    ),
    SourceRule("Azure AI-benchmarking-guide", Workload.MAX_LOAD, "'1000 requests, batch not fixed (offline throughput run)'"),
    SourceRule(
        "dstack benchmark: Llama-3.1-405B",
        Workload.STATIC,
        "benchmark_throughput '--num-prompts=batch_size (all prompts submitted at once)'; serving rows have no fixed lengths",
    ),
    SourceRule("dstack benchmark", Workload.OPEN_LOOP, "TGI / DeepSeek sets: outputs not fixed or models not in the catalog"),
    SourceRule(
        "mlc-ai/llm-perf-bench",
        Workload.STATIC,
        "single-stream decode (batch 1) of a short prompt 'What is the meaning of life?'",
    ),
)


def workload(m: Measurement) -> Workload | None:
    rule = next((r for r in SOURCE_RULES if m.source.startswith(r.prefix)), None)
    if rule is not None:
        return rule.workload
    notes = m.notes.lower()  # unknown source: fall back on what its notes say
    if "open-loop" in notes or "request rate" in notes:
        return Workload.OPEN_LOOP
    if "closed-loop" in notes or "concurrency" in notes:
        return Workload.CLOSED_LOOP
    if "static" in notes or "fixed batch" in notes:
        return Workload.STATIC
    return None


# --- Metrics and units -----------------------------------------------------------------

# Source metric -> guideopt metric. ITL is the decode step time, which is what guideopt's
# TPOT predicts (mean time per output token after the first).
METRICS: dict[str, str] = {
    "ttft": "ttft_ms",
    "tpot": "tpot_ms",
    "itl": "tpot_ms",
    "e2e_latency": "batch_latency_s",  # whole static batch, or one request in serving runs
    "output_throughput": "output_throughput_tok_s",
    "total_throughput": "total_throughput_tok_s",
    "decode_throughput": "decode_throughput_tok_s",
    "prefill_throughput": "prefill_throughput_tok_s",
}
# Seconds per unit of a time.
SECONDS_PER: dict[str, float] = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0}
# The unit guideopt reports each time metric in, as seconds per unit.
METRIC_TIME_UNIT_S: dict[str, float] = {"ttft_ms": 1e-3, "tpot_ms": 1e-3, "batch_latency_s": 1.0}
SYSTEM_THROUGHPUT_UNITS = ("tokens/s", "tok/s")
PER_GPU_THROUGHPUT_UNITS = ("tokens/s/gpu", "tok/s/gpu")
# The TRT-LLM v0.6.1 A100 / L40S tables do not say whether "out tok/s" is per GPU or total.
_UNSTATED_PER_GPU = "per-GPU vs total not stated"


def measured_value(m: Measurement, metric: str, num_gpus: int) -> float | Skip:
    """The row's value in the unit of guideopt's ``metric`` (whole-deployment throughputs)."""
    unit = m.unit.strip().lower()
    if metric in METRIC_TIME_UNIT_S:
        if unit not in SECONDS_PER:
            return Skip("unit not convertible", f"{m.unit!r} for {m.metric}")
        return m.value * SECONDS_PER[unit] / METRIC_TIME_UNIT_S[metric]
    if unit in PER_GPU_THROUGHPUT_UNITS:
        return m.value * num_gpus  # the tables normalise by the TP group's GPUs
    if unit in SYSTEM_THROUGHPUT_UNITS:
        if _UNSTATED_PER_GPU in m.notes and num_gpus > 1:
            return Skip("throughput per GPU or per system not stated", f"{num_gpus} GPUs")
        return m.value
    return Skip("unit not convertible", f"{m.unit!r} for {m.metric}")


# --- Row -> case -----------------------------------------------------------------------


# Max-load runs queue every request at once and let the engine choose its batch: more
# clients than any engine admits (the framework catalogs cap max_num_seqs at 2048 or less)
# make the prediction run at the engine's own cap.
MAX_LOAD_CLIENTS = 100_000
# Notes that mark a row of a mixed source as a max-load run rather than a fixed batch.
_MAX_LOAD_NOTES = re.compile(r"batch not fixed|infinite rate", re.IGNORECASE)
# mlc-ai/llm-perf-bench decodes from the prompt "What is the meaning of life?": 7 Llama
# tokens plus BOS. A batch-1 decode rate barely depends on so short a context.
SHORT_PROMPT = "what is the meaning of life"
SHORT_PROMPT_TOKENS = 8


def _lengths_and_load(m: Measurement, kind: Workload) -> tuple[dict[str, int], tuple[str, ...]] | Skip:
    input_len, assumed = m.input_len, tuple[str, ...]()
    if input_len is None and SHORT_PROMPT in m.notes.lower():
        input_len, assumed = SHORT_PROMPT_TOKENS, (f"prompt length not stated; {SHORT_PROMPT_TOKENS} tokens assumed",)
    if input_len is None or m.output_len is None:
        return Skip("open-loop / variable lengths not modelled", "no fixed input/output length")
    lengths = {"input_len": round(input_len), "output_len": round(m.output_len)}
    load = integer_or_none(m.batch_or_concurrency)
    if kind is Workload.MAX_LOAD or (load is None and _MAX_LOAD_NOTES.search(m.notes)):
        # The harness sizes the engine's batch to the load (amd.com: "num prompts = max num seqs";
        # trtllm-bench picks max batch size from memory): only the KV cache caps it.
        return {**lengths, "concurrency": MAX_LOAD_CLIENTS, "max_num_seqs": MAX_LOAD_CLIENTS}, assumed
    if load is None or load < 1:
        return Skip("open-loop / variable lengths not modelled", "no batch or concurrency")
    key = "batch" if kind is Workload.STATIC else "concurrency"
    return {**lengths, key: load}, assumed


def to_case(m: Measurement, catalog: Catalog | None = None) -> CaseOrSkip:
    """Map one measured row onto a predictable configuration, or say why it cannot be."""
    cat = catalog or load_catalog()
    result = _to_case(m, cat)
    if isinstance(result, Skip):
        return Skip(result.reason, result.detail, m.line, m.source, m.metric)
    return result


@dataclass(frozen=True)
class KernelPathRule:
    """A (source, checkpoint) pair whose runs do not take the kernel path guideopt models."""

    source_prefix: str
    model: str  # lower-case model label as printed
    reason: str


KERNEL_PATH_RULES: tuple[KernelPathRule, ...] = (
    KernelPathRule(
        "dstack benchmark: Llama-3.1-405B",
        "meta-llama/llama-3.1-405b-fp8",
        # Meta's checkpoint stores FBGEMM per-row dynamic FP8 ('fbgemm_fp8' in vLLM); the
        # source's own runs on the same 8x MI300X, TP, batch and lengths take 1.8-4.2x (median 3.3x) longer with it
        # than with AMD's per-tensor FP8 checkpoint, so it does not run FP8 tensor-core GEMMs there.
        "FP8 checkpoint format without FP8 GEMM kernels on this engine build (fbgemm_fp8 on ROCm vLLM 0.6.3)",
    ),
)


def kernel_path_skip(m: Measurement) -> Skip | None:
    rule = next((r for r in KERNEL_PATH_RULES if m.source.startswith(r.source_prefix) and m.model.lower() == r.model), None)
    return None if rule is None else Skip("kernel path not modelled", rule.reason)


def _to_case(m: Measurement, cat: Catalog) -> CaseOrSkip:
    metric = METRICS.get(m.metric)
    if metric is None:
        return Skip("metric not predicted", m.metric)
    if m.value <= 0:
        return Skip("measured value not positive", str(m.value))
    kind = workload(m)
    if kind is None:
        return Skip("workload kind unknown", m.source)
    if kind is Workload.OPEN_LOOP:
        return Skip("open-loop / variable lengths not modelled", m.source)
    off_path = kernel_path_skip(m)
    if off_path is not None:
        return off_path
    gpu = gpu_id(m.gpu, cat)
    if gpu is None:
        return Skip("GPU not in catalog", m.gpu)
    model = model_id(m.model, cat)
    if model is None:
        return Skip("model not in catalog", annotation_free(m.model))
    rule = framework_rule(m.framework, m.framework_version)
    if rule is None:
        return Skip("framework not modelled", m.framework)
    prec = precision(m, model[1])
    if isinstance(prec, Skip):
        return prec
    lay = layout(m)
    if isinstance(lay, Skip):
        return lay
    loaded = _lengths_and_load(m, kind)
    if isinstance(loaded, Skip):
        return loaded
    shape, assumed_load = loaded
    value = measured_value(m, metric, lay.num_gpus)
    if isinstance(value, Skip):
        return value
    dtype, kv_dtype, assumed_prec = prec
    assumed = assumed_prec + assumed_load
    request: dict[str, Any] = {
        "model": model[0],
        "gpu": gpu,
        **lay.request_fields(),
        "framework": rule.framework,
        "dtype": dtype,
        **shape,
    }
    if kv_dtype:
        request["kv_dtype"] = kv_dtype
    return Case(
        request=request,
        metric=metric,
        measured=value,
        source=m.source,
        source_locator=m.source_locator,
        line=m.line,
        framework_label=m.framework,
        proxy_of=rule.proxy_of,
        assumptions=assumed,
        framework_version=m.framework_version,
        workload=(Workload.MAX_LOAD if shape.get("concurrency") == MAX_LOAD_CLIENTS else kind).value,
    )


# The dense calibration (engine terms, closed-loop share, intervals) is fitted and gated on
# dense models; MoE rows are scored apart (scripts/moe_accuracy.py, docs/accuracy-moe.md) and
# never enter a fit, so their figures are out of sample for every model, source and system.
MOE_APART = "MoE model: scored apart (docs/accuracy-moe.md)"


def cases_from_file(path: str | Path, catalog: Catalog | None = None, family: str = "all") -> list[CaseOrSkip]:
    """Every row as a Case or a Skip; ``family`` "dense" or "moe" keeps one kind of model (the other is a Skip)."""
    cat = catalog or load_catalog()
    out = [to_case(m, cat) for m in load_measurements(path)]
    if family == "all":
        return out
    keep_moe = family == "moe"
    moe = {m: cat.models[m].is_moe for m in cat.models}  # requests carry catalog ids
    return [
        c
        if not isinstance(c, Case) or moe.get(c.request["model"], False) == keep_moe
        else Skip(MOE_APART if not keep_moe else "dense model", c.request["model"], c.line, c.source, c.metric)
        for c in out
    ]
