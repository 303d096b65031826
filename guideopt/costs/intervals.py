"""Prediction intervals: the spread of held-out errors in a prediction's regime.

Every prediction is placed in a regime: metric × GPU family × engine (and vendor) × batch
band × TP band. ``scripts/accuracy_report.py`` records, per regime with enough rows, the
10th and 90th percentiles of log(measured / predicted) over leave-one-source-out
predictions (``Calibration.intervals``). A regime without enough rows (or sources) backs off to a
coarser key (dropping TP band, then batch band, then engine, then family). The interval
of a predicted value x is [x·e^q10, x·e^q90]: where the model was optimistic about a
time, q90 > 0 widens the interval upward.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from guideopt.model.calibration import ErrorBand

# Batch bands (inclusive upper bounds, requests per replica): where plans live is the top two.
BATCH_BANDS = ((1, "1"), (8, "2-8"), (64, "9-64"), (256, "65-256"), (None, ">256"))
TP_BANDS = ((1, "tp1"), (2, "tp2"), (4, "tp4"), (None, "tp8+"))
# Metrics that share one error band: all throughputs are work / time of the same runs.
THROUGHPUT = "throughput"
TIME_METRICS = ("ttft_ms", "tpot_ms", "batch_latency_s")
CLOSED_LOOP_TTFT = "ttft_ms@closed_loop"
# Bands of mixture-of-experts models: their own residuals (scripts/moe_accuracy.py; no MoE row
# is fitted, so each is out of sample), keyed "moe:<regime>"; without one, the dense regime's.
MOE_PREFIX = "moe:"
# Held-out residuals a regime needs before its own percentiles are used, and the distinct
# sources they must come from (one source's few configurations say little about the next).
MIN_RESIDUALS = 10
MIN_SOURCES = 2


def metric_kind(metric: str) -> str:
    return metric if metric in TIME_METRICS else THROUGHPUT


def band(value: float, bands) -> str:
    return next(label for hi, label in bands if hi is None or value <= hi)


def regime_keys(metric: str, family: str, engine: str, batch: float, tp: float, closed_loop: bool = False, moe: bool = False) -> list[str]:
    """Keys from the most specific regime to the metric alone (the back-off order). TTFT under
    closed-loop clients is its own metric kind: its published values carry a benchmark-client
    wait the step model does not predict (docs/accuracy.md), which must not widen static TTFTs."""
    kind = metric_kind(metric)
    if closed_loop and kind == "ttft_ms":
        kind = CLOSED_LOOP_TTFT
    parts = [kind, family, engine, band(batch, BATCH_BANDS), band(tp, TP_BANDS)]
    keys = ["|".join(parts[:n]) for n in range(len(parts), 0, -1)]
    return [MOE_PREFIX + k for k in keys] + keys if moe else keys


def regime_engine(calibration_id: str, vendor: str) -> str:
    """The engine part of a regime key: the engine's calibration id, with the vendor where it
    is not NVIDIA (as the engine fits are keyed: ``vllm``, ``vllm@amd``)."""
    return calibration_id if vendor == "nvidia" else f"{calibration_id}@{vendor}"


def lookup_keys(keys: list[str]) -> list[str]:
    """``keys`` and then, for closed-loop TTFT, the static TTFT keys of the same regime: a
    closed-loop TTFT without a band of its own takes the static one (its own rows never
    shape the static bands)."""
    if keys and keys[-1] == CLOSED_LOOP_TTFT:
        return keys + [k.replace(CLOSED_LOOP_TTFT, "ttft_ms", 1) for k in keys if not k.startswith(MOE_PREFIX)]
    return keys


def error_band(bands: Mapping[str, ErrorBand], keys: list[str]) -> ErrorBand | None:
    usable = (bands[k] for k in lookup_keys(keys) if k in bands and bands[k].n >= MIN_RESIDUALS and bands[k].sources >= MIN_SOURCES)
    return next(usable, None)


def interval(value: float | None, found: ErrorBand | None) -> tuple[float | None, float | None]:
    """[x·e^q10, x·e^q90]; a point where no band is known, nothing where there is no value (TPOT of one token)."""
    if found is None or value is None:
        return value, value
    return value * float(np.exp(found.q10)), value * float(np.exp(found.q90))


def pessimistic_factor(metric: str, found: ErrorBand | None) -> float:
    """Factor to the pessimistic end: times grow to q90 (if above the prediction), throughputs
    shrink to q10 (if below); the prediction itself when the band lies on its good side."""
    if found is None:
        return 1.0
    if metric_kind(metric) == THROUGHPUT:
        return min(float(np.exp(found.q10)), 1.0)
    return max(float(np.exp(found.q90)), 1.0)


# Contract metric name of each static-batch metric array (times are stored in seconds there).
TABLE_METRICS = {
    "ttft_s": "ttft_ms",
    "tpot_s": "tpot_ms",
    "batch_latency_s": "batch_latency_s",
    "decode_throughput_tok_s": "decode_throughput_tok_s",
    "output_throughput_tok_s": "output_throughput_tok_s",
    "total_throughput_tok_s": "total_throughput_tok_s",
    "prefill_throughput_tok_s": "prefill_throughput_tok_s",
}


def pessimistic_metrics(metrics, regimes: list[tuple[str, str, float, float]], bands: Mapping[str, ErrorBand], moe: bool = False):
    """``metrics`` (a StaticBatchMetrics) moved to the pessimistic end of each row's interval;
    ``regimes[i]`` = (GPU family, engine, batch per replica, TP) of row i. What ``--robust``
    planning sees: a plan chosen on these still meets its SLOs if the model is off by its
    typical held-out error (``moe``: the MoE bands first). The bands are looked up once per distinct regime."""
    import dataclasses

    labels = [(fam, eng, band(b, BATCH_BANDS), band(t, TP_BANDS)) for fam, eng, b, t in regimes]
    distinct = list(dict.fromkeys(labels))
    at = {lab: i for i, lab in enumerate(distinct)}
    index = np.array([at[lab] for lab in labels], dtype=int)
    # one representative (batch, TP) per distinct label gives the same regime keys
    first = dict(zip(labels, regimes))
    scaled = {}
    for field, metric in TABLE_METRICS.items():
        per_regime = np.array(
            [pessimistic_factor(metric, error_band(bands, regime_keys(metric, *first[lab], moe=moe))) for lab in distinct]
        )
        scaled[field] = np.asarray(getattr(metrics, field)) * per_regime[index]
    return dataclasses.replace(metrics, **scaled)


def pessimistic_table(table, bands: Mapping[str, ErrorBand]):
    """An option table whose metrics are at the pessimistic end of their intervals."""
    import dataclasses

    space = table.space
    engines = [[(gpu.arch, regime_engine(fw.calibration_id, gpu.vendor.value)) for fw in space.frameworks] for gpu in space.gpus]
    regimes = [
        (*engines[g][f], b, t) for g, f, b, t in zip(table.gpu_idx.tolist(), table.fw_idx.tolist(), table.batch.tolist(), table.tp.tolist())
    ]
    return dataclasses.replace(table, metrics=pessimistic_metrics(table.metrics, regimes, bands, moe=table.arch.is_moe))
