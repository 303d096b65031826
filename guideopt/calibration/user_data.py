"""Measurements users took on their own hardware, as cases to fit and score.

Three formats:

* the measured-data CSV of ``shared/data/measured`` (columns ``CSV_COLUMNS``); rows say their
  workload in ``notes`` ("static batch", "closed-loop concurrency");
* vLLM's ``benchmark_serving.py`` / ``vllm bench serve --save-result`` JSON and SGLang's
  ``bench_serving`` JSON lines: ``max_concurrency``, ``completed``, ``total_input_tokens``,
  ``total_output_tokens``, ``mean_ttft_ms``, ``mean_tpot_ms``, ``output_throughput``;
  a closed loop (``max_concurrency`` set) of mean prompt/output lengths;
* vLLM's ``benchmark_latency.py`` / ``vllm bench latency --output-json`` JSON: ``avg_latency``
  (seconds) of one static batch; the batch and lengths are not in the file and come from
  the command line, like the GPU, model and layout of every JSON file.

A malformed file raises ``InvalidRequestError`` with one line naming the file and the line
or key, and what a valid file has there.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from guideopt.calibration.mapping import Case, CaseOrSkip, cases_from_file
from guideopt.catalog import Catalog
from guideopt.errors import InvalidRequestError

SERVING_KEYS = ("completed", "total_input_tokens", "total_output_tokens", "mean_ttft_ms", "mean_tpot_ms", "output_throughput")
SERVING_METRICS = {"mean_ttft_ms": "ttft_ms", "mean_tpot_ms": "tpot_ms", "output_throughput": "output_throughput_tok_s"}
LATENCY_KEY = "avg_latency"


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


def _number(doc: Mapping[str, Any], key: str, where: str) -> float:
    if key not in doc or doc[key] is None:
        raise InvalidRequestError(f"{where}: key '{key}': missing (a benchmark result file has it)")
    value = doc[key]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise InvalidRequestError(f"{where}: key '{key}': {value!r} is not a number")
    return float(value)


def _need(ctx: RunContext, where: str, *names: str) -> None:
    for name in names:
        if getattr(ctx, name) is None:
            flag = "--" + name.replace("_", "-")
            raise InvalidRequestError(f"{where}: {name} is not in the file (give it with {flag})")


def _request(ctx: RunContext, model: str, **shape: int) -> dict[str, Any]:
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


def serving_cases(doc: Mapping[str, Any], ctx: RunContext, where: str, line: int) -> list[Case]:
    """A vLLM / SGLang serving result in closed loop (max_concurrency clients)."""
    conc = doc.get("max_concurrency")
    if conc is None:
        raise InvalidRequestError(
            f"{where}: key 'max_concurrency': missing or null (only closed-loop runs are modelled; run with --max-concurrency)"
        )
    completed = _number(doc, "completed", where)
    if completed <= 0:
        raise InvalidRequestError(f"{where}: key 'completed': {completed:g} requests (a run with completed requests is needed)")
    model = ctx.model or doc.get("model_id")
    if not model:
        raise InvalidRequestError(f"{where}: key 'model_id': missing (give the model with --model)")
    _need(ctx, where, "gpu", "framework")
    shape = {
        "input_len": max(round(_number(doc, "total_input_tokens", where) / completed), 1),
        "output_len": max(round(_number(doc, "total_output_tokens", where) / completed), 1),
        "concurrency": int(_number(doc, "max_concurrency", where)),
    }
    req = _request(ctx, str(model), **shape)
    return [_case(req, metric, _number(doc, key, where), where, line, "closed_loop", ctx) for key, metric in SERVING_METRICS.items()]


def latency_cases(doc: Mapping[str, Any], ctx: RunContext, where: str) -> list[Case]:
    """vLLM benchmark_latency: one static batch, whole-batch latency in seconds."""
    value = _number(doc, LATENCY_KEY, where)
    _need(ctx, where, "model", "gpu", "framework", "batch", "input_len", "output_len")
    assert ctx.batch is not None and ctx.input_len is not None and ctx.output_len is not None  # checked by _need
    req = _request(ctx, str(ctx.model), batch=ctx.batch, input_len=ctx.input_len, output_len=ctx.output_len)
    return [_case(req, "batch_latency_s", value, where, 1, "static", ctx)]


def _json_docs(path: Path) -> list[tuple[int, Any]]:
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
    for number, line in enumerate(text.splitlines(), start=1):  # SGLang appends one JSON object per line
        if line.strip():
            try:
                docs.append((number, json.loads(line)))
            except json.JSONDecodeError as exc:
                raise InvalidRequestError(f"{path}: line {number}: not valid JSON ({exc.msg})") from None
            except RecursionError:
                raise InvalidRequestError(f"{path}: line {number}: nested too deeply to be a benchmark result") from None
    if not docs:
        raise InvalidRequestError(f"{path}: empty (expected a benchmark result JSON object)")
    return docs


def json_cases(path: Path, ctx: RunContext) -> list[Case]:
    out: list[Case] = []
    for line, doc in _json_docs(path):
        where = f"{path}: line {line}" if line > 1 else str(path)
        if not isinstance(doc, dict):
            raise InvalidRequestError(f"{where}: a JSON object is expected, not {type(doc).__name__}")
        if LATENCY_KEY in doc:
            out += latency_cases(doc, ctx, where)
        elif "mean_ttft_ms" in doc or "max_concurrency" in doc:
            out += serving_cases(doc, ctx, where, line)
        else:
            raise InvalidRequestError(
                f"{where}: neither '{LATENCY_KEY}' (vLLM benchmark_latency) nor 'mean_ttft_ms' (vLLM / SGLang serving) found"
            )
    return out


def load_user_files(paths: list[str], ctx: RunContext, catalog: Catalog) -> list[CaseOrSkip]:
    out: list[CaseOrSkip] = []
    for name in paths:
        path = Path(name)
        if not path.is_file():
            raise InvalidRequestError(f"{name}: no such file (give measured-data CSV or benchmark JSON files)")
        if path.suffix.lower() == ".csv":
            try:
                out += cases_from_file(path, catalog)
            except InvalidRequestError as exc:
                message = str(exc)
                raise InvalidRequestError(message if message.startswith(name) else f"{name}: {message}") from None
        elif path.suffix.lower() in (".json", ".jsonl"):
            out += json_cases(path, ctx)
        else:
            raise InvalidRequestError(f"{name}: unknown format '{path.suffix}' (use .csv, .json or .jsonl)")
    return out
