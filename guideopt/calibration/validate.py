"""Check guideopt's predictions against published measurements (``shared/data/measured/e2e.csv``).

Three steps, each a small pure function:

1. ``load_measurements`` reads the CSV (one measured number per row) into ``Measurement``s.
2. ``to_case`` maps one row onto a configuration guideopt can predict (catalog ids, precision,
   TP/PP, static batch or closed-loop concurrency) and converts the measured number into
   guideopt's metric and unit — or says, in a ``Skip``, why the row cannot be compared.
3. ``validate`` predicts each distinct configuration once and records the absolute
   percentage error |predicted − measured| / measured per row; ``report_markdown`` and
   ``report_dict`` aggregate it per metric and by GPU, framework, batch bucket, model and
   source, as GUIDE's Table 2 does, and list the skipped rows by reason.

The mapping rules are data tables below, each entry with the reason it holds.
"""

from __future__ import annotations

import csv
import re
import statistics
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

from guideopt.api import predict
from guideopt.catalog import Catalog, load_catalog
from guideopt.errors import CatalogError, GuideoptError, InvalidRequestError, NoFeasiblePlanError
from guideopt.model.validation import check_csv_header

# --------------------------------------------------------------------------------------
# Rows
# --------------------------------------------------------------------------------------

CSV_COLUMNS = (
    "source",
    "source_locator",
    "framework",
    "framework_version",
    "gpu",
    "num_gpus",
    "tp",
    "pp",
    "model",
    "dtype",
    "quant",
    "batch_or_concurrency",
    "input_len",
    "output_len",
    "metric",
    "value",
    "unit",
    "notes",
)
_NUMERIC_COLUMNS = ("num_gpus", "tp", "pp", "batch_or_concurrency", "input_len", "output_len")


@dataclass(frozen=True)
class Measurement:
    """One row of the measured-data CSV; empty numeric cells are ``None``."""

    line: int  # line number in the file (the header is line 1)
    source: str
    source_locator: str
    framework: str
    framework_version: str
    gpu: str
    num_gpus: float | None
    tp: float | None
    pp: float | None
    model: str
    dtype: str
    quant: str
    batch_or_concurrency: float | None
    input_len: float | None
    output_len: float | None
    metric: str
    value: float
    unit: str
    notes: str


def _number(text: str, column: str, line: int) -> float | None:
    text = (text or "").strip()
    if not text:
        return None
    try:
        return float(text)
    except ValueError:
        raise InvalidRequestError(f"line {line}: {column}: {text!r} is not a number") from None


def _measurement(raw: Mapping[str, str], line: int) -> Measurement:
    text = {c: (raw.get(c) or "").strip() for c in CSV_COLUMNS}
    numbers = {c: _number(text[c], c, line) for c in _NUMERIC_COLUMNS}
    value = _number(text["value"], "value", line)
    if value is None:
        raise InvalidRequestError(f"line {line}: value: empty (every row carries one measured number)")
    rest = {c: text[c] for c in CSV_COLUMNS if c not in _NUMERIC_COLUMNS and c != "value"}
    return Measurement(line=line, value=value, **numbers, **rest)  # type: ignore[arg-type]  # columns typed by name


def load_measurements(path: str | Path) -> list[Measurement]:
    """Read the measured-data CSV (columns ``CSV_COLUMNS``, header row required)."""
    out: list[Measurement] = []
    try:  # utf-8-sig: Excel's "CSV UTF-8" starts with a byte-order mark
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            check_csv_header(reader.fieldnames or [], CSV_COLUMNS, str(path))
            end_of_previous = reader.line_num
            for raw in reader:
                out.append(_measurement(raw, end_of_previous + 1))  # quoted fields may span lines
                end_of_previous = reader.line_num
    except UnicodeDecodeError:
        raise InvalidRequestError(f"{path}: the file is not UTF-8 text (save it as CSV UTF-8)") from None
    except csv.Error as exc:
        raise InvalidRequestError(f"{path}: not a readable CSV ({exc})") from None
    return out


# --------------------------------------------------------------------------------------
# Cases and skips
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    """A row guideopt can predict: the request, the metric and the measured value in guideopt units."""

    request: dict[str, Any]  # PredictRequest-compatible
    metric: str  # a guideopt metric name (``Metrics`` field)
    measured: float
    source: str
    source_locator: str
    line: int
    framework_label: str  # the engine as the source named it
    proxy_of: str | None = None  # engine this framework profile stands in for (None: the engine itself)
    assumptions: tuple[str, ...] = ()  # what the row did not say and we assumed

    @property
    def framework_proxy(self) -> bool:
        return self.proxy_of is not None

    @property
    def config_key(self) -> tuple:
        return tuple(sorted(self.request.items()))


@dataclass(frozen=True)
class Skip:
    """A row that is not compared, with a grouping ``reason`` and a row-specific ``detail``."""

    reason: str
    detail: str = ""
    line: int = 0
    source: str = ""
    metric: str = ""

    def __str__(self) -> str:
        return f"{self.reason}: {self.detail}" if self.detail else self.reason


CaseOrSkip = Case | Skip


def _annotation_free(text: str) -> str:
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
    # Not in the catalog: Blackwell Ultra and Grace-Blackwell superchips.
    "b300-sxm": None,
    "b300": None,
    "gb200": None,
}


def gpu_id(label: str, catalog: Catalog | None = None) -> str | None:
    """Catalog id for a source GPU label, or None when the catalog lacks that GPU."""
    key = _annotation_free(label).lower()
    cat = catalog or load_catalog()
    if key in cat.gpus:
        return key
    return GPU_LABELS.get(key)


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
}


def model_id(name: str, catalog: Catalog | None = None) -> tuple[str, str | None] | None:
    """(catalog id, checkpoint precision or None) for a source model name; None if not in the catalog."""
    key = _annotation_free(name).lower()
    cat = catalog or load_catalog()
    folded = {m.lower(): m for m in cat.models}
    if key in folded:
        return folded[key], None
    return MODEL_NAMES.get(key)


# --- Frameworks ------------------------------------------------------------------------


@dataclass(frozen=True)
class FrameworkRule:
    prefix: str  # lower-case prefix of the source's framework label
    framework: str  # guideopt framework id
    proxy_of: str | None  # set when the profile only stands in for another engine
    why: str


FRAMEWORK_RULES: tuple[FrameworkRule, ...] = (
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


def framework_rule(label: str) -> FrameworkRule | None:
    low = label.strip().lower()
    return next((r for r in FRAMEWORK_RULES if low.startswith(r.prefix)), None)


# --- Precision -------------------------------------------------------------------------

# When a row states no precision, the checkpoint's own (config.json torch_dtype) is what the
# engines load: bf16 for every Llama-3 / Mistral model here (fp16 and bf16 cost the same).
DEFAULT_DTYPE = "bf16"
_KV_FP8 = re.compile(r"fp8\s+kv", re.IGNORECASE)  # "FP8 KV cache" in quant or notes


def precision(m: Measurement, checkpoint_dtype: str | None) -> tuple[str, str | None, tuple[str, ...]] | Skip:
    """(weight dtype, KV dtype or None for the default, assumptions) for a row, or a Skip."""
    dtype = _annotation_free(m.dtype).lower()
    quant = _annotation_free(m.quant).lower()
    kv = "fp8" if _KV_FP8.search(m.quant) or _KV_FP8.search(m.notes) else None
    if "fp4" in dtype or "fp4" in quant:  # fp4 / nvfp4: no FP4 tensor-core rates or 4-bit float weights in guideopt
        return Skip("fp4 not modelled", m.quant or m.dtype)
    if checkpoint_dtype:
        return checkpoint_dtype, kv, ()
    if dtype.startswith("fp8") or quant.startswith("fp8"):  # fp8, fp8_block (block-scaled), "FP8 checkpoint"
        return "fp8", kv, ()
    if quant == "int4_wo" or dtype == "int4":  # weight-only int4, 16-bit activations: guideopt's int4
        return "int4", kv, ()
    if dtype in ("bf16", "fp16"):
        assumed = (f"precision not stated; {dtype} assumed",) if "not stated" in m.dtype else ()
        return dtype, kv, assumed
    if not dtype and not quant:
        return DEFAULT_DTYPE, kv, (f"precision not stated; {DEFAULT_DTYPE} assumed",)
    return Skip("precision not modelled", f"dtype={m.dtype!r} quant={m.quant!r}")


# --- Workload --------------------------------------------------------------------------


class Workload(str, Enum):
    STATIC = "static"  # B requests submitted together: PredictRequest.batch
    CLOSED_LOOP = "closed_loop"  # c clients, each sending its next request when the last ends: .concurrency
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


# --- Parallel layout -------------------------------------------------------------------

_ATTENTION_DP = re.compile(r"attention_dp_size=(\d+)")
_MOE_EP = re.compile(r"moe_ep=(\d+)")
_DP_OR_EP_WORDS = re.compile(r"attention[- _]dp|expert[- ]parallel|\bEP\b", re.IGNORECASE)


def _integer(x: float | None) -> int | None:
    return None if x is None else int(round(x))


def layout(m: Measurement) -> tuple[int, int, int] | Skip:
    """(num_gpus, tp, pp): tp defaults to num_gpus / pp (or 1), pp to 1, num_gpus to tp·pp."""
    dp = _ATTENTION_DP.search(m.notes)
    ep = _MOE_EP.search(m.notes)
    if (dp and int(dp.group(1)) > 1) or (ep and int(ep.group(1)) > 1):
        found = dp or ep
        return Skip("attention-DP / expert-parallel layout not modelled", found.group(0) if found else "")
    if m.num_gpus is None and _DP_OR_EP_WORDS.search(m.notes):
        return Skip("attention-DP / expert-parallel layout not modelled", "num_gpus empty")
    pp = _integer(m.pp) or 1
    num_gpus = _integer(m.num_gpus)
    tp = _integer(m.tp) or (max(num_gpus // pp, 1) if num_gpus else 1)
    num_gpus = num_gpus or tp * pp
    if num_gpus % (tp * pp):
        return Skip("inconsistent parallel layout", f"num_gpus={num_gpus} tp={tp} pp={pp}")
    return num_gpus, tp, pp


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


def _lengths_and_load(m: Measurement, kind: Workload) -> dict[str, int] | Skip:
    if m.input_len is None or m.output_len is None:
        return Skip("open-loop / variable lengths not modelled", "no fixed input/output length")
    load = _integer(m.batch_or_concurrency)
    if load is None or load < 1:
        return Skip("open-loop / variable lengths not modelled", "no batch or concurrency")
    key = "batch" if kind is Workload.STATIC else "concurrency"
    return {"input_len": round(m.input_len), "output_len": round(m.output_len), key: load}


def to_case(m: Measurement, catalog: Catalog | None = None) -> CaseOrSkip:
    """Map one measured row onto a predictable configuration, or say why it cannot be."""
    cat = catalog or load_catalog()
    result = _to_case(m, cat)
    if isinstance(result, Skip):
        return Skip(result.reason, result.detail, m.line, m.source, m.metric)
    return result


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
    gpu = gpu_id(m.gpu, cat)
    if gpu is None:
        return Skip("GPU not in catalog", m.gpu)
    model = model_id(m.model, cat)
    if model is None:
        return Skip("model not in catalog", _annotation_free(m.model))
    rule = framework_rule(m.framework)
    if rule is None:
        return Skip("framework not modelled", m.framework)
    prec = precision(m, model[1])
    if isinstance(prec, Skip):
        return prec
    lay = layout(m)
    if isinstance(lay, Skip):
        return lay
    shape = _lengths_and_load(m, kind)
    if isinstance(shape, Skip):
        return shape
    num_gpus, tp, pp = lay
    value = measured_value(m, metric, num_gpus)
    if isinstance(value, Skip):
        return value
    dtype, kv_dtype, assumed = prec
    request: dict[str, Any] = {
        "model": model[0],
        "gpu": gpu,
        "num_gpus": num_gpus,
        "tp": tp,
        "pp": pp,
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
    )


def cases_from_file(path: str | Path, catalog: Catalog | None = None) -> list[CaseOrSkip]:
    cat = catalog or load_catalog()
    return [to_case(m, cat) for m in load_measurements(path)]


# --------------------------------------------------------------------------------------
# Validation
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Result:
    case: Case
    predicted: float
    waves: int = 1  # static batches too large for the KV cache run in waves; per-request latency definitions then differ by source

    @property
    def measured(self) -> float:
        return self.case.measured

    @property
    def ape(self) -> float:
        """Absolute percentage error as a fraction: |predicted − measured| / measured."""
        return abs(self.predicted - self.case.measured) / self.case.measured

    @property
    def ratio(self) -> float:
        """predicted / measured (> 1: guideopt predicts more than was measured)."""
        return self.predicted / self.case.measured


@dataclass
class Report:
    results: list[Result] = field(default_factory=list)
    skipped: list[Skip] = field(default_factory=list)
    distinct_configs: int = 0
    seconds: float = 0.0


# Error class -> skip reason; the message (e.g. "does not fit: … needs 45 GB") is the detail.
PREDICTION_ERROR_REASONS: tuple[tuple[type[GuideoptError], str], ...] = (
    (NoFeasiblePlanError, "prediction: does not fit in memory"),
    (InvalidRequestError, "prediction: configuration rejected"),
    (CatalogError, "prediction: unknown catalog id"),
    (GuideoptError, "prediction: refused"),
)
CLOSED_LOOP_UNAVAILABLE = "closed-loop mode unavailable"


def _error_skip(exc: GuideoptError) -> Skip:
    reason = next(r for cls, r in PREDICTION_ERROR_REASONS if isinstance(exc, cls))
    return Skip(reason, str(exc))


@dataclass(frozen=True)
class _Predicted:
    metrics: dict[str, float]
    waves: int


def _predicted(prediction: Any) -> _Predicted:
    """Metrics (and waves) of a ``Prediction``, of anything with ``.metrics``, or of a plain mapping."""
    metrics = getattr(prediction, "metrics", prediction)
    if hasattr(metrics, "model_dump"):
        metrics = metrics.model_dump()
    return _Predicted(dict(metrics), int(getattr(prediction, "waves", 1)))


def _predict_config(request: dict[str, Any], predict_fn: Callable[[dict], Any]) -> _Predicted | Skip:
    try:
        return _predicted(predict_fn(request))
    except GuideoptError as exc:
        return _error_skip(exc)
    except Exception as exc:
        if request.get("concurrency") is None:
            raise
        return Skip(CLOSED_LOOP_UNAVAILABLE, f"{type(exc).__name__}: {exc}")


def validate(cases: Iterable[CaseOrSkip], predict_fn: Callable[[dict], Any] = predict) -> Report:
    """Predict every distinct configuration once; compare each case with its measurement.

    ``cases`` may hold ``Skip``s from ``to_case``: they are carried into the report.
    """
    start = time.perf_counter()
    report = Report()
    outcomes: dict[tuple, _Predicted | Skip] = {}
    for item in cases:
        if isinstance(item, Skip):
            report.skipped.append(item)
            continue
        key = item.config_key
        if key not in outcomes:
            outcomes[key] = _predict_config(item.request, predict_fn)
        outcome = outcomes[key]
        if isinstance(outcome, Skip):
            report.skipped.append(Skip(outcome.reason, outcome.detail, item.line, item.source, item.metric))
        else:
            report.results.append(Result(item, float(outcome.metrics[item.metric]), outcome.waves))
    report.distinct_configs = len(outcomes)
    report.seconds = time.perf_counter() - start
    return report


def validate_file(path: str | Path, predict_fn: Callable[[dict], Any] = predict, catalog: Catalog | None = None) -> Report:
    return validate(cases_from_file(path, catalog), predict_fn)


# --------------------------------------------------------------------------------------
# Aggregation
# --------------------------------------------------------------------------------------

# Batch-size buckets of the breakdown (inclusive bounds): single stream, small, medium, large.
BATCH_BUCKETS: tuple[tuple[int, int | None, str], ...] = ((1, 1, "1"), (2, 8, "2-8"), (9, 64, "9-64"), (65, None, ">64"))


def batch_bucket(request: Mapping[str, Any]) -> str:
    load = request.get("concurrency") or request.get("batch") or 1
    return next(label for lo, hi, label in BATCH_BUCKETS if load >= lo and (hi is None or load <= hi))


def _framework_key(case: Case) -> str:
    fw = case.request["framework"]
    return f"{fw} (for {case.proxy_of})" if case.proxy_of else fw


GROUP_KEYS: dict[str, Callable[[Case], str]] = {
    "gpu": lambda c: c.request["gpu"],
    "framework": _framework_key,
    "batch": lambda c: batch_bucket(c.request),
    "mode": lambda c: "concurrency" if c.request.get("concurrency") else "static batch",
    "model": lambda c: c.request["model"],
    "source": lambda c: c.source,
    "metric": lambda c: c.metric,
}
BREAKDOWNS = ("gpu", "framework", "batch", "model", "source", "waves")


def _case_of(item: Case | Result) -> Case:
    return item.case if isinstance(item, Result) else item


def _waves_key(item: Case | Result) -> str:
    if not isinstance(item, Result):
        return "not predicted"
    return "1 wave" if item.waves <= 1 else "several waves"


def cases_by(items: Report | Iterable[Case | Result], key: str | Callable[[Case], str]) -> dict[str, list]:
    """Group a report's results (or a list of cases / results) by a ``GROUP_KEYS`` name (or
    ``"waves"``, results only) or by a function of the ``Case``."""
    seq = items.results if isinstance(items, Report) else [i for i in items if not isinstance(i, Skip)]
    if key == "waves":
        label: Callable[[Case | Result], str] = _waves_key
    else:
        fn = GROUP_KEYS[key] if isinstance(key, str) else key
        label = lambda item: fn(_case_of(item))  # noqa: E731
    groups: dict[str, list] = defaultdict(list)
    for item in seq:
        groups[label(item)].append(item)
    return dict(sorted(groups.items()))


@dataclass(frozen=True)
class Stats:
    count: int
    median_ape: float
    mean_ape: float  # MAPE
    median_ratio: float  # median predicted / measured: the bias direction

    def as_dict(self) -> dict[str, float]:
        return {"count": self.count, "median_ape": self.median_ape, "mape": self.mean_ape, "median_ratio": self.median_ratio}


def stats(results: Iterable[Result]) -> Stats:
    rs = list(results)
    if not rs:
        raise ValueError("stats of no results")
    apes = [r.ape for r in rs]
    return Stats(len(rs), statistics.median(apes), statistics.fmean(apes), statistics.median(r.ratio for r in rs))


def per_metric(results: Iterable[Result]) -> dict[str, Stats]:
    return {m: stats(rs) for m, rs in cases_by(results, "metric").items()}


def breakdown(report: Report, key: str) -> dict[str, dict[str, Stats]]:
    """{group: {metric: Stats}} for one of ``GROUP_KEYS``."""
    return {group: per_metric(rs) for group, rs in cases_by(report, key).items()}


def skipped_by_reason(skipped: Iterable[Skip]) -> dict[str, Counter]:
    """{reason: Counter(detail)}, reasons ordered by row count."""
    groups: dict[str, Counter] = defaultdict(Counter)
    for s in skipped:
        groups[s.reason][s.detail] += 1
    return dict(sorted(groups.items(), key=lambda kv: -sum(kv[1].values())))


def report_dict(report: Report) -> dict[str, Any]:
    return {
        "rows": len(report.results) + len(report.skipped),
        "compared": len(report.results),
        "skipped": len(report.skipped),
        "distinct_configs": report.distinct_configs,
        "seconds": report.seconds,
        "metrics": {m: s.as_dict() for m, s in per_metric(report.results).items()},
        "by": {k: {g: {m: s.as_dict() for m, s in ms.items()} for g, ms in breakdown(report, k).items()} for k in BREAKDOWNS},
        "skip_reasons": {
            r: {"count": sum(d.values()), "details": dict(d.most_common())} for r, d in skipped_by_reason(report.skipped).items()
        },
    }


# --------------------------------------------------------------------------------------
# Markdown
# --------------------------------------------------------------------------------------

SKIP_DETAILS_SHOWN = 3  # most frequent details listed per skip reason


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(r) + " |" for r in rows]


def _stats_cells(s: Stats) -> list[str]:
    return [str(s.count), _pct(s.median_ape), _pct(s.mean_ape), f"{s.median_ratio:.2f}"]


STATS_HEADER = ["n", "median APE", "MAPE", "median pred/meas"]


def report_markdown(report: Report) -> str:
    total = len(report.results) + len(report.skipped)
    out = [
        "# guideopt vs measured",
        "",
        f"{len(report.results)} of {total} rows compared ({report.distinct_configs} distinct configurations, "
        f"{report.seconds:.1f} s); {len(report.skipped)} skipped.",
        "",
        "## Per metric",
        "",
    ]
    out += _table(["metric"] + STATS_HEADER, [[m] + _stats_cells(s) for m, s in per_metric(report.results).items()])
    for key in BREAKDOWNS:
        rows = [[g, m] + _stats_cells(s) for g, ms in breakdown(report, key).items() for m, s in ms.items()]
        out += ["", f"## By {key}", ""] + _table([key, "metric"] + STATS_HEADER, rows)
    skip_rows = []
    for reason, details in skipped_by_reason(report.skipped).items():
        shown = "; ".join(f"{d or '—'} ({n})" for d, n in details.most_common(SKIP_DETAILS_SHOWN))
        more = len(details) - SKIP_DETAILS_SHOWN
        skip_rows.append([reason, str(sum(details.values())), shown + (f"; … {more} more" if more > 0 else "")])
    out += ["", "## Skipped rows", ""] + _table(["reason", "rows", "most frequent details"], skip_rows)
    return "\n".join(out) + "\n"


__all__ = [
    "BATCH_BUCKETS",
    "FRAMEWORK_RULES",
    "GPU_LABELS",
    "METRICS",
    "MODEL_NAMES",
    "SOURCE_RULES",
    "Case",
    "Measurement",
    "Report",
    "Result",
    "Skip",
    "Stats",
    "Workload",
    "batch_bucket",
    "breakdown",
    "cases_by",
    "cases_from_file",
    "gpu_id",
    "layout",
    "load_measurements",
    "measured_value",
    "model_id",
    "per_metric",
    "precision",
    "report_dict",
    "report_markdown",
    "skipped_by_reason",
    "stats",
    "to_case",
    "validate",
    "validate_file",
]
