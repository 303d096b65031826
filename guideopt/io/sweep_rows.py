"""One sweep scenario planned into rows: one per plan, or one saying why there is none.

``plan_chunk`` is what a worker runs (a local process or a Ray task): plain data in, plain
data out, so that results are the same whatever ran them. Rows hold no timing (the solve
time is left out) so that two runs of the same scenarios compare equal. A request error
gives an ``invalid`` row and no plan an ``infeasible`` row, each with its message in
``error``; a model caveat is kept in ``warnings``. Anything else is a bug and propagates.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import Any

from guideopt import api
from guideopt.catalog import Catalog, load_catalog, load_price_set
from guideopt.errors import GuideoptError, GuideoptWarning, InvalidRequestError, NoFeasiblePlanError
from guideopt.model.layout_names import layout_code
from guideopt.model.plan import METRIC_KEYS, Group, Plan
from guideopt.units import SECONDS_PER_HOUR, TOKENS_PER_MILLION

PRICES_KEY = "prices"
STATUS_INFEASIBLE = "infeasible"
STATUS_INVALID = "invalid"

# The result columns of every row, after the scenario's own columns, with their types
# (the Parquet schema; CSV writes them as text).
RESULT_TYPES: dict[str, str] = {
    "status": "string",
    "error": "string",
    "warnings": "string",
    "rank": "int64",
    "usd_per_hour": "float64",
    "num_gpus": "int64",
    "gpu_counts": "string",
    "layout": "string",
    **dict.fromkeys(METRIC_KEYS, "float64"),
    "usd_per_million_output_tokens": "float64",
    "sustainable_load": "float64",
    "simulated_meets_slo": "bool",
}
RESULT_COLUMNS = tuple(RESULT_TYPES)

Rows = list[dict[str, Any]]
Todo = list[tuple[str, dict[str, Any]]]  # (scenario id, request) of the scenarios to plan

# Tasks per worker a sweep is cut into: enough that the last ones finish close together
# (a task is ~1/16 of a worker's share), few enough that sending each costs little.
TASKS_PER_WORKER = 16
MAX_CHUNK_SCENARIOS = 64


def chunks(todo: Todo, workers: int) -> list[Todo]:
    """``todo`` cut into tasks of consecutive scenarios, about TASKS_PER_WORKER per worker."""
    size = max(1, min(MAX_CHUNK_SCENARIOS, -(-len(todo) // (max(workers, 1) * TASKS_PER_WORKER))))
    return [todo[i : i + size] for i in range(0, len(todo), size)]


def plan_chunk(chunk: Sequence[tuple[str, Mapping[str, Any]]]) -> list[tuple[str, Rows]]:
    """(scenario id, rows) for each (scenario id, request) of ``chunk``, in order."""
    return [(sid, scenario_rows(request)) for sid, request in chunk]


def scenario_rows(request: Mapping[str, Any], catalog: Catalog | None = None) -> Rows:
    """The rows of one scenario (its ``prices`` key, if any, is applied as ``plan --prices`` is)."""
    cat = catalog or load_catalog()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("ignore")  # numeric warnings are not the user's to read ...
        warnings.simplefilter("always", GuideoptWarning)  # ... model caveats are
        try:
            result = api.plan(priced_request(request, cat), cat)
            rows = [plan_row(result.status, plan) for plan in result.plans]
            rows = rows or [failed_row(STATUS_INFEASIBLE, result.explanation or "no plan")]
        except NoFeasiblePlanError as exc:
            rows = [failed_row(STATUS_INFEASIBLE, str(exc))]
        except GuideoptError as exc:
            rows = [failed_row(STATUS_INVALID, str(exc))]
    notes = "; ".join(dict.fromkeys(str(w.message) for w in caught if issubclass(w.category, GuideoptWarning)))
    for row in rows:
        row["warnings"] = notes
    return rows


def priced_request(request: Mapping[str, Any], cat: Catalog) -> dict[str, Any]:
    """The request with its ``prices`` source applied: the set's GPUs (those of ``gpus``
    when given) at the set's prices; a price written in ``gpus`` wins."""
    out = dict(request)
    source = out.pop(PRICES_KEY, None)
    if source is None:
        return out
    if not isinstance(source, str):
        raise InvalidRequestError(f"expected a price source such as spot or nebius:spot, got {source!r}", field=PRICES_KEY)
    prices = load_price_set(source, cat).prices()
    given = out.get("gpus")
    allowed: dict[str, Any] = {str(k).lower(): v for k, v in given.items()} if isinstance(given, Mapping) else {}
    missing = [g for g in allowed if g not in prices]
    if missing:
        raise InvalidRequestError(
            f"{missing[0]} is not sold in price set {source!r} (it has {', '.join(sorted(prices))})", field=PRICES_KEY
        )
    gpus: dict[str, Any] = {}
    for gpu, price in sorted(prices.items()):
        if allowed and gpu not in allowed:
            continue
        allowance = allowed.get(gpu) or {}
        allowance = {"max": allowance} if isinstance(allowance, int) else dict(allowance)
        gpus[gpu] = {"usd_per_hour": price.usd_per_hour, **allowance}
    out["gpus"] = gpus
    return out


def failed_row(status: str, message: str) -> dict[str, Any]:
    row: dict[str, Any] = dict.fromkeys(RESULT_COLUMNS)
    row.update(status=status, error=message)
    return row


def plan_row(status: str, plan: Plan) -> dict[str, Any]:
    row: dict[str, Any] = dict.fromkeys(RESULT_COLUMNS)
    metrics = plan.metrics.model_dump()
    stream = plan.stream or {}
    row.update(
        status=status,
        error="",
        rank=plan.rank,
        usd_per_hour=plan.usd_per_hour,
        num_gpus=plan.num_gpus,
        gpu_counts="+".join(f"{gpu}:{n}" for gpu, n in sorted(plan.gpu_counts.items())),
        layout=" + ".join(group_text(g) for g in plan.groups),
        usd_per_million_output_tokens=usd_per_million_tokens(plan.usd_per_hour, metrics.get("output_throughput_tok_s")),
        sustainable_load=stream.get("sustainable_load"),
        simulated_meets_slo=stream.get("simulated_meets_slo"),
    )
    row.update({key: metrics.get(key) for key in METRIC_KEYS})
    return row


def usd_per_million_tokens(usd_per_hour: float, tok_s: float | None) -> float | None:
    """Dollars per million tokens at ``tok_s`` tokens/s (None when nothing is produced)."""
    if not tok_s or tok_s <= 0:
        return None
    return usd_per_hour / (tok_s * SECONDS_PER_HOUR) * TOKENS_PER_MILLION


def group_text(g: Group) -> str:
    """``l4 2x(tp1·pp1) vllm fp16 batch 64 split 512`` (a cross-type pipeline: its stages)."""
    if g.stages:
        shape = "[" + " → ".join(f"{st['gpu']} tp{st['tp']} {st['layers']}L" for st in g.stages) + "]"
    else:
        shape = f"({layout_code(g.tp, g.pp, g.attention_dp, g.moe_ep)})"
    return f"{g.gpu} {g.replicas}x{shape} {g.framework} {g.dtype} batch {g.batch} split {g.split}"
