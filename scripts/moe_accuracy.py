#!/usr/bin/env python3
"""Write docs/accuracy-moe.md: guideopt's error on the measured mixture-of-experts rows.

    python scripts/moe_accuracy.py [--data ../shared/data/measured/e2e.csv] [--out docs/accuracy-moe.md]
        [--kernels /tmp/aic/aiconfigurator_core/systems/data]

The engine terms are fitted on dense models (scripts/fit_calibration.py), the fused-MoE kernel
terms on kernel timings (scripts/fit_moe_kernels.py) and the engines' MoE serving terms on the
MoE closed-loop TPOT rows (scripts/fit_moe_serving.py). Those kernel tables hold timings of each model's own expert
shape, so with ``--kernels`` (the unpacked aiconfigurator-core package's systems/data) each
model's rows are predicted with the fused-MoE terms refitted without the kernel rows of its
shape (hidden, expert width, experts, top-k) and the engines' MoE serving terms
(``fit_moe_serving.py``) refitted without its rows: leave-one-model-out, about 1 min per model;
models of one shape (DeepSeek-R1 and -V3, whose measured rows coincide) are held out together.
Breakdowns: model family, system,
precision, layout family (TP, TEP, DEP, attention DP with TP experts), expert-parallel size,
batch band and engine, per workload and metric.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))
from guideopt.api import predict  # noqa: E402
from guideopt.calibration.aggregate import batch_bucket, cases_by, stats  # noqa: E402
from guideopt.calibration.calibration_file import edit_calibration_file  # noqa: E402
from guideopt.calibration.fit_moe import fit_moe_rows  # noqa: E402
from guideopt.calibration.fit_moe_serving import (  # noqa: E402
    ASYNC,
    MOE_LAYER,
    chosen_terms,
    held_out_terms,
    held_out_unit,
    probe,
    serving_rows,
    with_terms,
)
from guideopt.calibration.intervals_fit import HIGH_Q, LOW_Q  # noqa: E402
from guideopt.calibration.mapping import Case, cases_from_file  # noqa: E402
from guideopt.calibration.results import Report  # noqa: E402
from guideopt.calibration.validate import validate  # noqa: E402
from guideopt.catalog import load_catalog  # noqa: E402
from guideopt.costs.intervals import MIN_RESIDUALS, MIN_SOURCES, MOE_PREFIX, regime_engine, regime_keys  # noqa: E402
from guideopt.model.calibration import ErrorBand  # noqa: E402

METRICS = ("tpot_ms", "ttft_ms", "output_throughput_tok_s", "batch_latency_s")


# EP beyond one 8-GPU HGX board: the wide-EP family (NVL72 domains, or across nodes).
WIDE_EP_MIN = 16


def layout_family(c: Case) -> str:
    r = c.request
    dp, ep = r.get("attention_dp", 1), r.get("moe_ep", 1)
    if ep >= WIDE_EP_MIN:
        return "wide EP"
    if dp > 1:
        return "DEP" if ep > 1 else "attention DP, TP experts"
    return "TEP" if ep > 1 else "TP"


def family(c: Case) -> str:
    name = c.request["model"].split("/")[-1]
    for prefix in ("DeepSeek", "Kimi", "GLM", "Qwen3.5", "Qwen3", "MiniMax", "gpt-oss", "Mixtral", "Llama-4", "Nemotron"):
        if name.startswith(prefix) or prefix in name:
            return prefix
    return name


KEYS: dict[str, Callable[[Case], str]] = {
    "model family": family,
    "system": lambda c: c.request["gpu"],
    "precision": lambda c: c.request["dtype"],
    "layout family": layout_family,
    "expert-parallel size": lambda c: f"ep {c.request.get('moe_ep', 1)}",
    "layout family and EP size": lambda c: f"{layout_family(c)} ep {c.request.get('moe_ep', 1)}",
    "layout family and model": lambda c: f"{layout_family(c)}, {family(c)}",
    "batch band (clients)": lambda c: batch_bucket(c.request),
    "engine": lambda c: c.request["framework"],
}


def _row(name: str, results) -> str:
    s = stats(results)
    return f"| {name} | {s.count} | {s.median_ape:.1%} | {s.median_ratio:.2f} |"


MECHANISMS = """Layout mechanisms, each kept only if it lowers this held-out error (TEP / DEP closed-loop TPOT, before -> with it):
* MoE exchange per layout (`costs.comm.moe_exchange_s`): TEP as one all-reduce of the TP group, DEP as all-gather +
  reduce-scatter of the ranks' tokens (was two all-to-alls of k-fold routed tokens): 19.1 -> 16.5 % / 21.9 -> 21.3 %. Kept.
* Busiest expert rank, expected max of ep multinomial (hypergeometric) loads, no fitted constant: on routed FLOPs
  16.5 -> 17.9 % / 21.3 -> 21.4 %; on routed FLOPs and touched-expert reads 16.5 -> 17.2 % / 21.1 -> 21.3 %. Not kept.
* Slowest attention-DP rank, expected max of dp Poisson sequence loads on the attention time: DEP 21.3 -> 28.4 %. Not kept.
* DeepEP low-latency vs normal all-to-all: no compared row runs it (every DEP row is TensorRT-LLM's gather/scatter path); not priced.
* Redundant experts (EPLB: SGLang `--ep-num-redundant-experts`, vLLM `--enable-eplb`, TensorRT-LLM's MoE load balancer):
  not recorded in any row; not priced.
* Engine MoE serving terms (`scripts/fit_moe_serving.py`, refitted without each held-out model's rows; docs/serving-model.md):
  the decode-step overhead of vLLM versions that schedule asynchronously (0.14 and later: 0.2 ms against the 1.80 ms of
  the synchronous versions' dense rows) and SGLang's cost per MoE layer beyond the kernel tables (37 µs), with FP4-on-Hopper
  and INT4 priced by their own weight-only fused-MoE kernel terms: all rows 19.4 -> 14.6 %, TEP 16.5 -> 12.7 %
  (ep 2 / 4 / 8: 14.4 / 15.3 / 21.7 -> 13.8 / 11.8 / 14.1 %), DEP 21.3 -> 21.2 % (every DEP row is TensorRT-LLM, which keeps
  no term: its DeepSeek rows of the 2026-03-25 / 04-06 exports run faster than the db-dump export's by up to 1.7x for one
  configuration, the mark of MTP speculative decoding the sample does not record). Kept.
* The server's path to the first token (`first_token_us_per_layer`, `scripts/fit_first_token.py` --folds: refitted
  without each held-out model's or GPU's TTFT rows; docs/serving-model.md): per request and model layer, outside the GPU
  steps (vLLM 575, SGLang 4,150, TensorRT-LLM 2,175 µs): closed-loop TTFT held out by model 60.2 -> 24.9 %, by GPU
  61.0 -> 26.6 %; TPOT unchanged (it is not in a step). Tested beside it and not kept: a lockstep wave share per
  engine, and an eager floor on passes with prompt tokens (it raised TPOT error to 22-33 %). Kept.
"""


def markdown(report: Report, leave_one_model_out: bool = False, by: str = "model") -> str:
    held = (
        "Leave-one-system-out (`--by system`): each GPU's rows are predicted with the fused-MoE kernel terms refitted without\n"
        "that GPU's kernel timings (`--kernels`) and the engines' MoE serving terms (`scripts/fit_moe_serving.py`) refitted on\n"
        "the other GPUs' closed-loop TPOT rows; the other engine terms come from dense rows."
        if leave_one_model_out and by == "system"
        else "Leave-one-model-out: each model's rows are predicted with the fused-MoE kernel terms refitted without the kernel\n"
        "timings of its own expert shape (`--kernels`) and the engines' MoE serving terms (`scripts/fit_moe_serving.py`) refitted\n"
        "on the other models' closed-loop TPOT rows; the other engine terms come from dense rows."
        if leave_one_model_out
        else "In sample: the shipped terms (engine terms: dense rows; MoE serving terms: every MoE closed-loop TPOT row;\n"
        "fused-MoE terms: kernel timings, including each model's own expert shape): run with `--kernels` for leave-one-model-out)."
    )
    lines = [
        "# Accuracy on mixture-of-experts models",
        "",
        "Written by `python scripts/moe_accuracy.py --kernels DIR [--serving-folds FOLDS.json] [--by system]` (about fifteen",
        "minutes). Median",
        "absolute error and median",
        "predicted ÷ measured. " + held,
        "Layouts: TP (attention and experts tensor-parallel), TEP (attention TP, experts EP), DEP (attention DP, experts EP),",
        f"wide EP (EP ≥ {WIDE_EP_MIN}: no compared row; the GB200 rows beyond 8 GPUs do not record their split and are skipped).",
        f"{len(report.results)} MoE rows compared ({report.distinct_configs} configurations, {report.seconds:.0f} s).",
        "",
        MECHANISMS if by == "model" else "Mechanisms kept and their leave-one-model-out effect: `docs/accuracy-moe.md`.\n",
    ]
    by_workload = cases_by(report.results, lambda c: c.workload)
    for workload in sorted(by_workload):
        for metric in METRICS:
            rows = [r for r in by_workload[workload] if r.case.metric == metric]
            if not rows:
                continue
            lines += [f"## {workload}: {metric}", "", "| group | n | median error | pred/meas |", "|---|---|---|---|", _row("all", rows)]
            for title, key in KEYS.items():
                groups = cases_by(rows, key)
                lines += [_row(f"{title}: {g}", groups[g]) for g in sorted(groups)]
            lines.append("")
    return "\n".join(lines) + "\n"


def moe_bands(report: Report, cat) -> dict[str, ErrorBand]:
    """Error bands of MoE regimes ("moe:" keys, same back-off as the dense ones): 10th and 90th
    percentiles of log(measured / predicted). With ``--kernels`` every model's residuals come from terms fitted
    without its rows, so they are out of sample as they stand (no widening); ``sources`` counts distinct models
    behind a band."""
    members: dict[str, list[tuple[float, str]]] = defaultdict(list)
    for r in report.results:
        if r.predicted <= 0:
            continue
        q = r.case.request
        ranks = max(int(q.get("num_gpus", 1)) // (int(q.get("tp", 1)) * int(q.get("pp", 1))), 1)  # attention-DP ranks x replicas
        load = (q.get("concurrency") or q.get("batch") or 1) / ranks
        gpu = cat.gpus[q["gpu"]]
        engine = regime_engine(cat.frameworks[q["framework"]].calibration_id, gpu.vendor.value)
        keys = regime_keys(r.case.metric, gpu.arch, engine, load, q.get("tp", 1), r.case.workload == "closed_loop", moe=True)
        for key in keys:
            if key.startswith(MOE_PREFIX):
                members[key].append((math.log(r.measured / r.predicted), q["model"]))
    out = {}
    for key, rows in sorted(members.items()):
        models = len({m for _, m in rows})
        if len(rows) >= MIN_RESIDUALS and models >= MIN_SOURCES:
            q10, q90 = np.quantile([x for x, _ in rows], (LOW_Q, HIGH_Q))
            out[key] = ErrorBand(q10=round(float(q10), 4), q90=round(float(q90), 4), n=len(rows), sources=models)
    return out


def _write_bands(found: dict[str, ErrorBand], path: Path) -> None:
    def edit(data: dict) -> None:
        kept = {k: v for k, v in (data.get("intervals") or {}).items() if not k.startswith(MOE_PREFIX)}
        data["intervals"] = {**kept, **{k: v.model_dump() for k, v in found.items()}}

    edit_calibration_file(path, edit)


def serving_folds(cases: list, cat, folds: Path | None, by: str) -> dict[str, dict]:
    """Each held-out unit's MoE serving terms (``by`` "model": a model's MoE shape; "system": a GPU): read from
    ``scripts/fit_moe_serving.py --folds``, else fitted here (three predictions of every MoE closed-loop TPOT row,
    the kept terms of ``chosen_terms``)."""
    if folds is not None:
        return json.loads(folds.read_text())[by]
    served = probe(serving_rows(cases), cat, lambda cs, c: validate(cs, lambda r: predict(r, c)))
    chosen = chosen_terms(served)
    units = served.unit if by == "model" else np.array([c.request["gpu"] for c in served.cases])
    return held_out_terms(served, chosen, units)


def _unit(c, cat, by: str) -> str:
    """What a fold holds out: the model's MoE shape ("" for a dense model) or the GPU."""
    if by == "system":
        return c.request["gpu"]
    return held_out_unit(cat, c.request["model"]) if cat.models[c.request["model"]].moe else ""


def held_out_predictions(cases: list, cat, kernels: Path | None, folds: Path | None = None, by: str = "model") -> Report:
    """Predict every case; with ``kernels``, each model shape (``by`` "model") or GPU ("system") with the MoE
    kernel and serving terms refitted without it."""
    if kernels is None:
        return validate(cases, lambda r: predict(r, cat))
    from fit_moe_kernels import read_rows  # the parquet reader (pandas) lives with the fitting script

    rows = read_rows(kernels, cat)
    by_unit: dict[str, list] = defaultdict(list)
    for c in cases:
        by_unit[_unit(c, cat, by) if isinstance(c, Case) else ""].append(c)
    held_terms = serving_folds(cases, cat, folds, by)
    unfitted = {e: {ASYNC: None, MOE_LAYER: 0.0} for e in {fw.calibration_id for fw in cat.frameworks.values()}}
    report = Report()
    for unit, members in by_unit.items():
        held = cat
        if unit:
            kept = [r for r in rows if (repr((r.hidden, r.inter, r.experts, r.topk)) if by == "model" else r.gpu) != unit]
            held = dataclasses.replace(cat, calibration=cat.calibration.model_copy(update={"moe": fit_moe_rows(cat, kept)}))
            fold = held_terms.get(unit)  # None: no serving row of this unit, so the shipped terms never saw it
            terms = {**unfitted, **fold} if fold is not None else {}
            held = with_terms(held, terms)
            print(f"{by} {unit}: {len(members)} rows, MoE kernel and serving terms refitted without it: {terms}")
        part = validate(members, lambda r, c=held: predict(r, c))
        report.results += part.results
        report.skipped += part.skipped
        report.distinct_configs += part.distinct_configs
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "measured" / "e2e.csv")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "accuracy-moe.md")
    parser.add_argument("--kernels", type=Path, default=None, help="aiconfigurator_core/systems/data: refit MoE terms per held-out model")
    parser.add_argument("--serving-folds", type=Path, default=None, help="scripts/fit_moe_serving.py --folds output (else fitted here)")
    parser.add_argument(
        "--by", choices=("model", "system"), default="model", help="hold out each model (default; writes the MoE error bands) or each GPU"
    )
    args = parser.parse_args()
    cat = load_catalog()
    start = time.perf_counter()
    report = held_out_predictions(cases_from_file(args.data, cat, family="moe"), cat, args.kernels, args.serving_folds, args.by)
    report.seconds = time.perf_counter() - start
    args.out.write_text(markdown(report, leave_one_model_out=args.kernels is not None, by=args.by))
    if args.by == "model":
        found = moe_bands(report, cat)
        _write_bands(found, ROOT / "catalogs" / "calibration.yaml")
        print(f"{len(found)} MoE error bands in catalogs/calibration.yaml")
    print(f"wrote {args.out}: {len(report.results)} rows")


if __name__ == "__main__":
    main()
