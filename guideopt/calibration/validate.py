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
The steps live in ``measurements.py`` (rows), ``labels.py`` and ``mapping.py`` (rows ->
cases), ``results.py`` and ``aggregate.py`` (statistics, markdown); this module runs the
comparison and re-exports their public names.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from guideopt.api import predict
from guideopt.calibration.aggregate import (
    BATCH_BUCKETS,
    BREAKDOWNS,
    GROUP_KEYS,
    Stats,
    batch_bucket,
    breakdown,
    cases_by,
    per_metric,
    report_dict,
    report_markdown,
    skipped_by_reason,
    stats,
)
from guideopt.calibration.labels import FRAMEWORK_RULES, GPU_LABELS, MODEL_NAMES, FrameworkRule, framework_rule, gpu_id, model_id
from guideopt.calibration.mapping import (
    DEFAULT_DTYPE,
    METRICS,
    SOURCE_RULES,
    Case,
    CaseOrSkip,
    Skip,
    Workload,
    cases_from_file,
    layout,
    measured_value,
    precision,
    to_case,
    workload,
)
from guideopt.calibration.measurements import CSV_COLUMNS, Measurement, load_measurements
from guideopt.calibration.open_loop import BeyondSustainableRate
from guideopt.calibration.results import Report, Result
from guideopt.catalog import Catalog
from guideopt.errors import CatalogError, GuideoptError, InvalidRequestError, NoFeasiblePlanError

# Error class -> skip reason; the message (e.g. "does not fit: … needs 45 GB") is the detail.
PREDICTION_ERROR_REASONS: tuple[tuple[type[GuideoptError], str], ...] = (
    (BeyondSustainableRate, "prediction: rate beyond what the stream model sustains"),
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


__all__ = [
    "BATCH_BUCKETS",
    "BREAKDOWNS",
    "CLOSED_LOOP_UNAVAILABLE",
    "CSV_COLUMNS",
    "DEFAULT_DTYPE",
    "FRAMEWORK_RULES",
    "GPU_LABELS",
    "GROUP_KEYS",
    "METRICS",
    "MODEL_NAMES",
    "SOURCE_RULES",
    "Case",
    "CaseOrSkip",
    "FrameworkRule",
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
    "framework_rule",
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
    "workload",
]
