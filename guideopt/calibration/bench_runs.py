"""Benchmark result files of vLLM and SGLang, read as runs to compare (``guideopt calibrate``).

* vLLM's ``vllm bench serve --save-result`` / ``benchmarks/benchmark_serving.py`` JSON (one
  object; ``--append-result`` adds one a line) and SGLang's ``bench_serving`` JSON lines
  (vllm 0.11 ``vllm/benchmarks/serve.py``, sglang 0.5.3 ``sglang/bench_serving.py``):
  ``request_rate`` ("inf", Infinity or requests/s), ``max_concurrency`` (null or clients),
  ``completed``, ``total_input_tokens``, ``total_output_tokens``, ``mean_ttft_ms``,
  ``mean_tpot_ms``, ``output_throughput``; where written, ``duration``, ``burstiness``
  (vLLM), ``mean_e2el_ms`` (vLLM) / ``mean_e2e_latency_ms`` (SGLang) and
  ``max_concurrent_requests`` (vLLM: the peak in flight). The load a run put on the engine:

  - a closed loop: ``max_concurrency`` C and an infinite rate: C clients (``concurrency``);
  - an open loop: a finite ``request_rate`` R (``vllm bench serve --request-rate R``) with no
    ``max_concurrency``, or one the run never reached (vLLM's peak below it): arrivals at R
    with the file's burstiness (``rate_rps``), compared with the stream model at that rate;
  - anything else (every prompt at once, both limits binding, a ramp-up, a trace replay)
    is skipped with its reason.

  The lengths are the run's means (``total_*_tokens / completed``).
* vLLM's ``benchmark_latency.py`` / ``vllm bench latency --output-json`` JSON: ``avg_latency``
  (seconds) of one static batch, whose batch and lengths come from the command line.

GPU, model, engine and layout come from the command line (``RunContext``). A malformed or
impossible run raises ``InvalidRequestError`` naming the file, line and key.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from guideopt.calibration.cases import Case, CaseOrSkip, Skip
from guideopt.calibration.run_checks import check_serving_run, number, positive
from guideopt.errors import InvalidRequestError
from guideopt.model.limits import MAX_BURSTINESS, MAX_RATE_REQ_S

# Run key -> guideopt metric. A closed loop's throughput follows from its clients; an open
# loop's is its offered rate (times the output length) whatever the engine, so it is not compared.
SERVING_METRICS = {"mean_ttft_ms": "ttft_ms", "mean_tpot_ms": "tpot_ms", "output_throughput": "output_throughput_tok_s"}
OPEN_LOOP_METRICS = ("mean_ttft_ms", "mean_tpot_ms")
LATENCY_KEY = "avg_latency"
# A rate the benchmarks write for "send every prompt at once".
INFINITE_RATES = ("inf", "infinity")


@dataclass(frozen=True)
class RunContext:
    """What benchmark JSON files do not record: the deployment they ran on."""

    model: str | None = None
    gpu: str | None = None
    framework: str | None = None
    dtype: str = "fp16"
    tp: int = 1
    pp: int = 1
    batch: int | None = None  # benchmark_latency only
    input_len: int | None = None
    output_len: int | None = None
    version: str = ""


def _need(ctx: RunContext, where: str, *names: str) -> None:
    for name in names:
        if getattr(ctx, name) is None:
            flag = "--" + name.replace("_", "-")
            raise InvalidRequestError(f"{where}: {name} is not in the file (give it with {flag})")


def _request(ctx: RunContext, model: str, **shape: Any) -> dict[str, Any]:
    return {
        "model": model,
        "gpu": ctx.gpu,
        "num_gpus": ctx.tp * ctx.pp,
        "tp": ctx.tp,
        "pp": ctx.pp,
        "framework": ctx.framework,
        "dtype": ctx.dtype,
        **shape,
    }


def _case(req: dict[str, Any], metric: str, value: float, path: str, line: int, workload: str, ctx: RunContext) -> Case:
    return Case(
        request=req,
        metric=metric,
        measured=value,
        source=path,
        source_locator=path,
        line=line,
        framework_label=str(req["framework"]),
        framework_version=ctx.version,
        workload=workload,
    )


def request_rate(doc: Mapping[str, Any], where: str) -> float | None:
    """The run's ``request_rate`` in requests/s (inf: every prompt at once); None for SGLang's trace replay."""
    value = doc.get("request_rate", math.inf)
    if value == "trace":
        return None
    if isinstance(value, str) and value.strip().lower() in INFINITE_RATES:
        return math.inf
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value) or value <= 0:
        raise InvalidRequestError(f"{where}: key 'request_rate': {value!r} is not a rate (requests/s > 0, or \"inf\")")
    if MAX_RATE_REQ_S < value < math.inf:
        raise InvalidRequestError(
            f"{where}: key 'request_rate': {value:g} req/s is beyond {MAX_RATE_REQ_S:g} (\"inf\" sends every prompt at once)"
        )
    return float(value)


def _capped(doc: Mapping[str, Any], where: str, rate: float) -> dict[str, Any] | str | None:
    """A run with max_concurrency: its clients, why it is not modelled, or None when the cap
    never bound (vLLM's peak in flight below it: an open loop)."""
    clients = number(doc, "max_concurrency", where)
    if clients < 1 or clients != int(clients):
        raise InvalidRequestError(f"{where}: key 'max_concurrency': {clients:g} is not a number of clients (a whole number >= 1)")
    if rate == math.inf:
        return {"concurrency": int(clients)}
    peak = doc.get("max_concurrent_requests")
    if isinstance(peak, (int, float)) and not isinstance(peak, bool) and peak < clients:
        return None
    return (
        f"both request_rate {rate:g} and max_concurrency {int(clients)} may have limited it (guideopt models one of them; "
        "run with only --request-rate or only --max-concurrency)"
    )


def _load(doc: Mapping[str, Any], where: str) -> dict[str, Any] | str:
    """The load the run put on the engine as request fields, or why it is not modelled."""
    rate = request_rate(doc, where)
    if doc.get("ramp_up_strategy"):
        return "a ramp-up run (the request rate changes during it; run at one --request-rate)"
    if rate is None:
        return "a trace replay (request_rate 'trace': arrivals are the trace's own)"
    if doc.get("max_concurrency") is not None:
        capped = _capped(doc, where, rate)
        if capped is not None:
            return capped
    elif rate == math.inf:
        return "every prompt at once (request_rate inf and no max_concurrency; run with --request-rate or --max-concurrency)"
    burstiness = positive(doc, "burstiness", where) if doc.get("burstiness") is not None else 1.0  # SGLang: Poisson
    if burstiness > MAX_BURSTINESS:
        raise InvalidRequestError(f"{where}: key 'burstiness': {burstiness:g} is beyond {MAX_BURSTINESS:g} (1 is Poisson)")
    return {"rate_rps": rate, "burstiness": burstiness}


def serving_cases(doc: Mapping[str, Any], ctx: RunContext, where: str, line: int, catalog: Any = None, path: str = "") -> list[Case] | Skip:
    """A vLLM / SGLang serving run: closed loop (clients) or open loop (a request rate)."""
    load = _load(doc, where)
    completed = number(doc, "completed", where)
    if completed <= 0:
        raise InvalidRequestError(f"{where}: key 'completed': {completed:g} requests (a run with completed requests is needed)")
    if isinstance(load, str):
        return Skip("run not modelled", load, line, path or where)
    model = ctx.model or doc.get("model_id")
    if not model:
        raise InvalidRequestError(f"{where}: key 'model_id': missing (give the model with --model)")
    _need(ctx, where, "gpu", "framework")
    shape = {
        "input_len": max(round(number(doc, "total_input_tokens", where) / completed), 1),
        "output_len": max(round(number(doc, "total_output_tokens", where) / completed), 1),
        **load,
    }
    req = _request(ctx, str(model), **shape)
    open_loop = "rate_rps" in load
    keys = [k for k in (OPEN_LOOP_METRICS if open_loop else SERVING_METRICS) if k != "mean_tpot_ms" or shape["output_len"] > 1]
    check_serving_run(doc, where, keys, req, catalog)
    workload = "open_loop" if open_loop else "closed_loop"
    return [_case(req, SERVING_METRICS[k], number(doc, k, where), path or where, line, workload, ctx) for k in keys]


def latency_cases(doc: Mapping[str, Any], ctx: RunContext, where: str, line: int = 1, path: str = "") -> list[Case]:
    """vLLM benchmark_latency: one static batch, whole-batch latency in seconds."""
    value = number(doc, LATENCY_KEY, where)
    if value <= 0:
        raise InvalidRequestError(f"{where}: key '{LATENCY_KEY}': {value:g} s is not a latency (a measured time is > 0)")
    _need(ctx, where, "model", "gpu", "framework", "batch", "input_len", "output_len")
    assert ctx.batch is not None and ctx.input_len is not None and ctx.output_len is not None  # checked by _need
    req = _request(ctx, str(ctx.model), batch=ctx.batch, input_len=ctx.input_len, output_len=ctx.output_len)
    return [_case(req, "batch_latency_s", value, path or where, line, "static", ctx)]


def json_docs(path: Path) -> list[tuple[int, Any]]:
    """The JSON documents of a result file with their line numbers (1 for a whole-file document)."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise InvalidRequestError(f"{path}: not UTF-8 text (give the JSON a benchmark wrote)") from None
    try:
        return [(1, json.loads(text))]
    except json.JSONDecodeError:
        pass
    except RecursionError:  # arrays nested thousands deep: no benchmark writes that
        raise InvalidRequestError(f"{path}: nested too deeply to be a benchmark result") from None
    docs = []
    for number_, line in enumerate(text.splitlines(), start=1):  # SGLang appends one JSON object per line
        if line.strip():
            try:
                docs.append((number_, json.loads(line)))
            except json.JSONDecodeError as exc:
                raise InvalidRequestError(f"{path}: line {number_}: not valid JSON ({exc.msg})") from None
            except RecursionError:
                raise InvalidRequestError(f"{path}: line {number_}: nested too deeply to be a benchmark result") from None
    if not docs:
        raise InvalidRequestError(f"{path}: empty (expected a benchmark result JSON object)")
    return docs


def where_of(path: Path | str, line: int, docs: int) -> str:
    return f"{path}: line {line}" if docs > 1 or line > 1 else str(path)


def run_cases(doc: Any, ctx: RunContext, path: str, line: int, docs: int = 1, catalog: Any = None) -> list[CaseOrSkip]:
    """One result document (line ``line`` of ``path``, which holds ``docs``) as its cases, or the Skip saying why it is not compared."""
    where = where_of(path, line, docs)
    if not isinstance(doc, dict):
        raise InvalidRequestError(f"{where}: a JSON object is expected, not {type(doc).__name__}")
    if LATENCY_KEY in doc:
        return list(latency_cases(doc, ctx, where, line, path))
    if "mean_ttft_ms" in doc or "max_concurrency" in doc or "request_rate" in doc:
        out = serving_cases(doc, ctx, where, line, catalog, path)
        return [out] if isinstance(out, Skip) else list(out)
    raise InvalidRequestError(f"{where}: neither '{LATENCY_KEY}' (vLLM benchmark_latency) nor 'mean_ttft_ms' (vLLM / SGLang serving) found")


def json_cases(path: Path, ctx: RunContext, catalog: Any = None) -> list[CaseOrSkip]:
    docs = json_docs(path)
    return [item for line, doc in docs for item in run_cases(doc, ctx, str(path), line, len(docs), catalog)]
