"""The library API (what the CLI and notebooks call). Never imports the CLI.

The cost model (numpy) and the solver (OR-Tools, which loads pandas) are imported inside
the functions that use them, so that a command which needs neither (``--help``,
``catalog``) starts without them.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from guideopt.catalog import Catalog, load_catalog
from guideopt.errors import GuideoptError, InvalidRequestError
from guideopt.model.request import PlanRequest, PredictRequest
from guideopt.model.validation import validated

if TYPE_CHECKING:
    from guideopt.analyses.predict import Prediction
    from guideopt.model.plan import PlanResult

PREDICT_CSV_INPUTS = ("model", "gpu", "num_gpus", "tp", "pp", "framework", "dtype", "batch", "input_len", "output_len")
PREDICT_CSV_OPTIONAL = ("kv_dtype", "concurrency")
PREDICT_CSV_METRICS = (
    "ttft_ms",
    "tpot_ms",
    "batch_latency_s",
    "decode_throughput_tok_s",
    "output_throughput_tok_s",
    "total_throughput_tok_s",
    "prefill_throughput_tok_s",
    "mem_per_gpu_gb",
)


def plan(request: PlanRequest | Mapping[str, Any], catalog: Catalog | None = None) -> PlanResult:
    """Best deployments for a request; raises NoFeasiblePlanError with an explanation."""
    from guideopt.solver.plan import solve_request

    return solve_request(validated(PlanRequest, request), catalog)


def predict(request: PredictRequest | Mapping[str, Any], catalog: Catalog | None = None) -> Prediction:
    from guideopt.analyses.predict import predict_one

    return predict_one(validated(PredictRequest, request), catalog)


def _row_request(row: Mapping[str, str]) -> dict[str, Any]:
    data: dict[str, Any] = {}
    for key in PREDICT_CSV_INPUTS + PREDICT_CSV_OPTIONAL + ("split",):
        value = (row.get(key) or "").strip()
        if value:
            data[key] = value
    return data


def predict_rows(rows: Iterable[Mapping[str, str]], catalog: Catalog | None = None) -> list[dict[str, Any]]:
    """Predict every row; a row that cannot be predicted keeps its place with an error."""
    cat = catalog or load_catalog()
    out: list[dict[str, Any]] = []
    for row in rows:
        result: dict[str, Any] = dict(row)
        for key in PREDICT_CSV_METRICS:
            result[key] = ""
        try:
            pred = predict(_row_request(row), cat)
            metrics = pred.metrics.model_dump()
            for key in PREDICT_CSV_METRICS[:-1]:
                result[key] = f"{metrics[key]:.6g}"
            result["mem_per_gpu_gb"] = f"{pred.memory.total_per_gpu_gb:.4g}"
            result["error"] = ""
        except GuideoptError as exc:
            result["error"] = str(exc)
        out.append(result)
    return out


def predict_csv_text(text: str, catalog: Catalog | None = None) -> str:
    reader = csv.DictReader(io.StringIO(text))
    fields = list(reader.fieldnames or [])
    missing = [c for c in PREDICT_CSV_INPUTS if c not in fields and c not in ("num_gpus", "tp", "pp", "framework", "dtype")]
    if missing:
        raise InvalidRequestError(f"csv: missing column(s) {', '.join(missing)} (header needs {', '.join(PREDICT_CSV_INPUTS)})")
    rows = predict_rows(reader, catalog)
    out = io.StringIO()
    columns = fields + [c for c in PREDICT_CSV_METRICS + ("error",) if c not in fields]
    writer = csv.DictWriter(out, fieldnames=columns, lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


def capacity(request: Mapping[str, Any] | Any, catalog: Catalog | None = None) -> Any:
    """Memory capacity, batch/length adjustment and sizing for a load (``guideopt capacity``)."""
    from guideopt.analyses.capacity import CapacityRequest
    from guideopt.analyses.capacity import capacity as run_capacity

    return run_capacity(validated(CapacityRequest, request), catalog)
