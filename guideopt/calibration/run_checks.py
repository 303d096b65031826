"""Refuse impossible numbers in a measured run before they reach a fit.

A benchmark result whose times are negative, zero or longer than a day, whose first token
comes after its last, whose throughput disagrees with its own token count and duration,
whose clients overlap more than its concurrency allows, or whose output rate is beyond
what its GPUs could compute (``model/limits.py``) is refused with one line naming the file,
line and key: fitted, it would pull every term toward nonsense.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from guideopt.errors import GuideoptError, InvalidRequestError
from guideopt.model.dtype import Dtype
from guideopt.model.limits import FLOPS_PER_WEIGHT_PER_TOKEN, MAX_MEASURED_LATENCY_MS, RUN_CONSISTENCY_SLACK
from guideopt.units import MS_PER_S

# First-token and end-to-end keys of the same statistic: every request's first token comes
# no later than its last, so each statistic of TTFT is at most the same statistic of E2E.
E2E_KEYS = ("mean_e2el_ms", "mean_e2e_latency_ms")  # vLLM, SGLang
TTFT_E2E_PAIRS = tuple((f"{s}_ttft_ms", f"{s}_{e[5:]}") for s in ("mean", "median", "p99") for e in E2E_KEYS)
TOKEN_TOTALS = ("total_input_tokens", "total_output_tokens")


def number(doc: Mapping[str, Any], key: str, where: str) -> float:
    """A finite number under ``key`` (refused with the file, line and key otherwise)."""
    if key not in doc or doc[key] is None:
        raise InvalidRequestError(f"{where}: key '{key}': missing (a benchmark result file has it)")
    value = doc[key]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise InvalidRequestError(f"{where}: key '{key}': {value!r} is not a number")
    return float(value)


def positive(doc: Mapping[str, Any], key: str, where: str) -> float:
    value = number(doc, key, where)
    if value <= 0:
        raise InvalidRequestError(f"{where}: key '{key}': {value:g} is not positive (a measured time, count or rate is > 0)")
    if key.endswith("_ms") and value > MAX_MEASURED_LATENCY_MS:
        raise InvalidRequestError(f"{where}: key '{key}': {value:g} ms is over a day (a unit error? the benchmarks write milliseconds)")
    return value


def check_serving_run(doc: Mapping[str, Any], where: str, keys: list[str], request: Mapping[str, Any], catalog: Any = None) -> None:
    """Every number the run is compared on is positive, and its numbers agree with each other and with physics."""
    for key in (*keys, *TOKEN_TOTALS):
        positive(doc, key, where)
    for ttft, e2e in TTFT_E2E_PAIRS:
        if doc.get(ttft) is not None and doc.get(e2e) is not None and positive(doc, ttft, where) > positive(doc, e2e, where):
            raise InvalidRequestError(
                f"{where}: key '{ttft}': {doc[ttft]:g} ms exceeds {e2e} {doc[e2e]:g} ms (a request's first token comes before its last)"
            )
    if doc.get("output_throughput") is None:
        return
    throughput = positive(doc, "output_throughput", where)
    if doc.get("duration") is not None:
        _check_own_rate(doc, where, throughput, positive(doc, "duration", where))
    _check_in_flight(doc, where, request)
    bound = output_rate_bound(request, catalog)
    if bound is not None and throughput > bound:
        raise InvalidRequestError(
            f"{where}: key 'output_throughput': {throughput:g} tok/s is beyond what {request['num_gpus']} x {request['gpu']} can compute "
            f"for {request['model']} ({bound:.3g} tok/s at the densest tensor peak; check --gpu, --tp, --pp and the model)"
        )


def _check_own_rate(doc: Mapping[str, Any], where: str, throughput: float, duration_s: float) -> None:
    own = number(doc, "total_output_tokens", where) / duration_s
    if abs(throughput - own) > RUN_CONSISTENCY_SLACK * own:
        raise InvalidRequestError(
            f"{where}: key 'output_throughput': {throughput:g} tok/s disagrees with total_output_tokens / duration = {own:.6g} "
            "(the benchmark writes one from the other; was the file edited?)"
        )


def _check_in_flight(doc: Mapping[str, Any], where: str, request: Mapping[str, Any]) -> None:
    """Little's law: completed x mean E2E / duration requests were in flight on average, never more than the clients."""
    clients = request.get("concurrency")
    e2e_key = next((k for k in E2E_KEYS if doc.get(k) is not None), None)
    if clients is None or e2e_key is None or doc.get("duration") is None:
        return
    in_flight = number(doc, "completed", where) * positive(doc, e2e_key, where) / MS_PER_S / positive(doc, "duration", where)
    if in_flight > clients * (1 + RUN_CONSISTENCY_SLACK):
        raise InvalidRequestError(
            f"{where}: key '{e2e_key}': {doc[e2e_key]:g} ms puts {in_flight:.3g} requests in flight on average, more than "
            f"max_concurrency {clients} allows (completed x {e2e_key} / duration; was the file edited?)"
        )


def output_rate_bound(request: Mapping[str, Any], catalog: Any) -> float | None:
    """Output tokens/s the run's GPUs could compute at most: every output token passes each
    active GEMM weight once (``FLOPS_PER_WEIGHT_PER_TOKEN``), at the GPU's densest tensor peak.
    None where the model or GPU is not in the catalog (the run is skipped later, with that reason)."""
    if catalog is None:
        return None
    try:
        arch, gpu = catalog.model(request["model"]), catalog.gpu(request["gpu"])
    except GuideoptError:
        return None
    head = arch.lm_head_params if arch.tie_word_embeddings else 0  # a tied head still multiplies
    weights = arch.num_active_params - arch.embedding_params + head
    peak = max(gpu.tensor_flops_per_s(d) for d in Dtype)
    return float(request["num_gpus"]) * peak / (FLOPS_PER_WEIGHT_PER_TOKEN * weights)
