"""Aggregated against disaggregated runs of one model, system and ISL/OSL in aiconfigurator's
silicon sample: how often guideopt's better one is the measured better one (used by
``scripts/disagg_accuracy.py``).

The sample's runs are closed-loop sweeps with different concurrencies and GPU counts, so the
comparison the data supports is at matched throughput per GPU: a run's output tokens/s per
GPU is, by Little's law on its own TTFT and TPOT, C·O / (TTFT + (O − 1)·TPOT) / GPUs. For each
disaggregated run, the aggregated side's answer at its throughput per GPU is the least TPOT
among the aggregated runs that reach at least that throughput per GPU (none: aggregated cannot
serve it). Disaggregated is better where its TPOT is lower. The same rule is applied to the
measured numbers and to guideopt's predictions of the same runs (aggregated runs predicted by
``guideopt.api.predict`` from their mapped requests in e2e.csv, whose layouts
``calibration.layouts.aic_layout`` decodes).
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from guideopt.api import predict
from guideopt.calibration.cases import Case
from guideopt.calibration.fit_moe_serving import held_out_unit
from guideopt.calibration.fit_moe_serving import with_terms as with_serving_terms
from guideopt.calibration.layouts import AIC_SOURCE
from guideopt.calibration.mapping import cases_from_file
from guideopt.catalog import Catalog
from guideopt.errors import GuideoptError

MS_PER_S = 1000.0


@dataclass
class AggRun:
    key: tuple[str, str, str, str]  # model, GPU, ISL, OSL (as the sample writes them)
    num_gpus: int
    concurrency: int
    measured: dict[str, float]
    predicted: dict[str, float]


def per_gpu_throughput(concurrency: float, gpus: int, osl: int, ttft_ms: float, tpot_ms: float) -> float:
    """Output tokens/s per GPU of a closed loop (Little's law on its mean E2E)."""
    e2e_s = (ttft_ms + (osl - 1) * tpot_ms) / MS_PER_S
    return concurrency * osl / e2e_s / gpus


def agg_runs(e2e: Path, cat: Catalog, keys: set[tuple[str, str, str, str]], catalog_of=None) -> list[AggRun]:
    """The silicon sample's aggregated runs of ``keys``, measured and predicted (``catalog_of(model)``: the
    catalog a model's runs are predicted with, e.g. its held-out serving terms; default ``cat``)."""
    measured: dict[tuple, dict[str, float]] = defaultdict(dict)
    requests: dict[tuple, dict] = {}
    for c in cases_from_file(e2e, cat):
        if not isinstance(c, Case) or not c.source.startswith(AIC_SOURCE) or c.metric not in ("ttft_ms", "tpot_ms"):
            continue
        r = c.request
        if (r["model"], r["gpu"], str(r["input_len"]), str(r["output_len"])) in keys and "concurrency" in r:
            measured[c.config_key][c.metric] = c.measured
            requests[c.config_key] = r
    runs = []
    for k, r in requests.items():
        if len(measured[k]) < 2:
            continue
        try:
            m = predict(r, catalog_of(r["model"]) if catalog_of else cat).metrics
        except GuideoptError:
            continue
        gpus = int(r.get("num_gpus") or r.get("tp", 1))
        key = (r["model"], r["gpu"], str(r["input_len"]), str(r["output_len"]))
        runs.append(
            AggRun(key, gpus, int(r["concurrency"]), measured[k], {"ttft_ms": float(m.ttft_ms or 0.0), "tpot_ms": float(m.tpot_ms or 0.0)})
        )
    return runs


def _disagg_better(tpot_ms: float, throughput: float, others: list[tuple[float, float]]) -> bool:
    """Whether a disaggregated run (TPOT, tokens/s/GPU) beats the aggregated runs (same pairs)."""
    reach = [t for t, thr in others if thr >= throughput]
    return not reach or tpot_ms < min(reach)


def _side(run, which: str, osl: int, gpus: int, concurrency: float) -> tuple[float, float]:
    values = getattr(run, which)
    return values["tpot_ms"], per_gpu_throughput(concurrency, gpus, osl, values["ttft_ms"], values["tpot_ms"])


def choice_table(results: list, runs: list[AggRun]) -> list[str]:
    """Markdown: per key, paired disaggregated runs and how often the predicted better mode is the measured one."""
    by_key: dict[tuple, list[AggRun]] = defaultdict(list)
    for run in runs:
        by_key[run.key].append(run)
    counts: dict[tuple, list[int]] = defaultdict(lambda: [0, 0, 0])  # pairs, agree, measured disagg better
    for r in results:
        key = (r.model, r.gpu, r.row["isl"], r.row["osl"])
        if key not in by_key:
            continue
        osl, gpus = int(r.row["osl"]), _gpus(r)
        verdict = {}
        for which in ("measured", "predicted"):
            others = [_side(a, which, osl, a.num_gpus, a.concurrency) for a in by_key[key]]
            verdict[which] = _disagg_better(*_side(r, which, osl, gpus, r.concurrency), others)
        c = counts[key]
        c[0], c[1], c[2] = c[0] + 1, c[1] + (verdict["measured"] == verdict["predicted"]), c[2] + verdict["measured"]
    return _choice_markdown(counts, by_key)


def _gpus(r) -> int:
    row = r.row
    return sum(
        int(row[f"{role}_num_workers"]) * int(row[f"{role}_tp_size"]) * int(row[f"{role}_attention_dp_size"] or 1)
        for role in ("prefill", "decode")
    )


def _choice_markdown(counts: dict[tuple, list[int]], by_key: dict[tuple, list[AggRun]]) -> list[str]:
    lines = [
        "## Aggregated or disaggregated: does guideopt pick the one that measured better?",
        "",
        __doc__.split("\n\n", 1)[1].strip(),
        "",
        "| model | system | ISL/OSL | aggregated runs | disaggregated runs | measured: disaggregated better | predicted choice matches |",
        "|---|---|---|---|---|---|---|",
    ]
    total = [0, 0, 0]
    for key, (n, agree, better) in sorted(counts.items()):
        lines.append(f"| {key[0]} | {key[1]} | {key[2]}/{key[3]} | {len(by_key[key])} | {n} | {better} | {agree} ({agree / n:.0%}) |")
        total = [total[0] + n, total[1] + agree, total[2] + better]
    if total[0]:
        lines.append(
            f"| **all** | | | {sum(len(by_key[k]) for k in counts)} | {total[0]} | {total[2]} | {total[1]} ({total[1] / total[0]:.0%}) |"
        )
    return [*lines, ""]


def held_out_serving(cat: Catalog, folds: Path | None):
    """``catalog_of(model, base=cat)``: ``base`` with the model's leave-one-model-out MoE serving terms
    (``scripts/fit_moe_serving.py --folds``); None without ``folds``."""
    if folds is None:
        return None
    terms = json.loads(folds.read_text())["model"]
    cache: dict[tuple[str, int], Catalog] = {}

    def catalog_of(model: str, base: Catalog | None = None) -> Catalog:
        base = base or cat
        unit = held_out_unit(cat, model)
        if (unit, id(base)) not in cache:
            cache[unit, id(base)] = with_serving_terms(base, terms.get(unit, {}))
        return cache[unit, id(base)]

    return catalog_of
