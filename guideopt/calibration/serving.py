"""Error of the stream models (analytic and simulated) on the serving rows of e2e.csv.

    guideopt validate ../shared/data/measured/e2e.csv --serving [--max-configs N]
    python scripts/serving_accuracy.py [--data ../shared/data/measured/e2e.csv] [--max-configs N]

Sources (rows with a known rate or concurrency):
* TensorRT-LLM v0.14 online serving (Triton): open-loop QPS 2-32, fixed ISL/OSL; TTFT and
  ITL (compared with TPOT), statistic not stated: read as means.
* MLPerf Inference Server/Interactive (rows that state the parallelism: one model copy per
  GPU, so the per-replica rate is target_qps / GPUs): Poisson arrivals at target_qps,
  OpenOrca lengths (the ``mlperf-openorca`` mix), mean and P99 TTFT/TPOT.
* aiconfigurator closed-loop rows: client concurrency, fixed ISL/OSL, mean TTFT/TPOT;
  dense Llama-3.1 8B/70B only (the clean rows, README), concurrency up to MAX_CONCURRENCY.
  Simulated as that benchmark runs: all clients start together and each sends
  BENCH_REQUESTS_PER_CLIENT requests, all of them measured. Their analytic figures are the
  closed loop ``predict --concurrency`` and ``simulate`` price (``costs/closed_loop.py``).

The first two sources reach the engine without a Python server (Triton's C++ backend; LoadGen
in-process), so they run without the engines' first-token path (``without_server_path``),
which the closed-loop rows of trtllm-serve, vLLM and SGLang measure.

For each configuration both evaluators run with the engine defaults of the catalog; the
error is predicted / measured - 1, summarised per source, metric and statistic as the
median absolute and median signed error.
"""

from __future__ import annotations

import re
from collections import defaultdict
from typing import Any

import numpy as np

from guideopt.analyses.simulate import analytic_metrics, configuration
from guideopt.calibration.fit_closed_loop import BENCH_PROTOCOL, BENCH_REQUESTS_PER_CLIENT, MAX_SIM_REQUESTS
from guideopt.calibration.fit_first_token import with_term
from guideopt.calibration.validate import framework_rule, gpu_id, load_measurements, model_id
from guideopt.catalog import load_catalog, load_length_mix
from guideopt.costs.lengths import fixed_lengths, mix_lengths
from guideopt.costs.stream_search import sustainable_rate
from guideopt.errors import GuideoptError
from guideopt.model.workload import SimulateRequest
from guideopt.simulator.engine import simulate
from guideopt.simulator.report import stream_report
from guideopt.simulator.sampling import make_stream, sample_mix

MAX_CONCURRENCY = 512  # closed-loop rows beyond this take long to simulate
SIM_REQUESTS = 2000
WARMUP = 0.1
NS_PER_MS = 1e6
PCT = (50.0, 90.0, 99.0)
QPS = re.compile(r"QPS=(\d+(\.\d+)?)")
TARGET = re.compile(r"target_qps=(\d+(\.\d+)?)")
STAT = re.compile(r"statistic=(\w+)")


def _config(model: str, gpu: str, tp: int, framework: str, dtype: str, lengths, max_total: int, cat=None):
    req = SimulateRequest.model_validate(
        {
            "model": model,
            "gpu": gpu,
            "tp": tp,
            "framework": framework,
            "dtype": dtype,
            "workload": {"concurrency": 1, "lengths": {"input_len": 1, "output_len": 1}},
        }
    )
    return configuration(req, lengths, max_total, cat)


def _norm_dtype(text: str) -> str:
    low = text.lower()
    return "fp8" if "fp8" in low else "bf16" if "bf16" in low or not low else "fp16"


def trtllm_online(rows):
    groups: dict[tuple, dict] = defaultdict(dict)
    for m in rows:
        if not m.source.startswith("TensorRT-LLM perf overview online") or m.metric not in ("ttft", "itl"):
            continue
        q = QPS.search(m.notes)
        if not q:
            continue
        key = (m.gpu, m.model, int(m.tp or 1), int(m.input_len or 0), int(m.output_len or 0), float(q.group(1)))
        groups[key][("ttft_ms" if m.metric == "ttft" else "tpot_ms", "mean")] = (m.value, m.line)
    for (gpu, model, tp, i, o, qps), measured in sorted(groups.items()):
        yield (
            "TRT-LLM online",
            dict(gpu=gpu, model=model, tp=tp, framework="TensorRT-LLM", dtype="bf16", lengths=("fixed", i, o), rate=qps, server_path=False),
            measured,
        )


def mlperf_server(rows):
    groups: dict[tuple, dict] = defaultdict(dict)
    for m in rows:
        if not m.source.startswith("MLPerf") or m.metric not in ("ttft", "tpot") or m.unit != "ns" or m.tp is None:
            continue
        if "scenario=Server" not in m.notes and "scenario=Interactive" not in m.notes:
            continue
        q, s = TARGET.search(m.notes), STAT.search(m.notes)
        if not q or not s:
            continue
        replicas = int((m.num_gpus or 1) // (m.tp or 1))
        # AMD's submissions name FP8 in the quant column (submission metadata) or, where the metadata
        # says UNSET, in the notes (Quark FP8 checkpoints): either makes the run FP8.
        dtype = "fp8" if "fp8" in f"{m.quant} {m.dtype} {m.notes}".lower() else "fp16"
        key = (m.gpu, m.model, int(m.tp), replicas, float(q.group(1)), dtype, m.framework)
        stat = "mean" if s.group(1) == "mean" else "p99" if s.group(1) == "p99" else None
        if stat:
            groups[key][(f"{m.metric}_ms", stat)] = (m.value / NS_PER_MS, m.line)
    for (gpu, model, tp, replicas, qps, dtype, fw), measured in sorted(groups.items()):
        yield (
            "MLPerf Server",
            dict(
                gpu=gpu,
                model=model,
                tp=tp,
                framework=fw,
                dtype=dtype,
                lengths=("mix", "mlperf-openorca"),
                rate=qps / max(replicas, 1),
                server_path=False,
                protocol="mlperf-server",
                stable_run=True,  # a valid submission met the scenario's latency limits at its target rate
            ),
            measured,
        )


def aiconfigurator(rows, max_configs: int):
    groups: dict[tuple, dict] = defaultdict(dict)
    for m in rows:
        if not m.source.startswith("NVIDIA aiconfigurator") or "Llama-3.1" not in m.model or not m.framework_version:
            continue
        c = m.batch_or_concurrency
        if c is None or c > MAX_CONCURRENCY or (m.pp or 1) != 1 or m.tp is None:
            continue
        key = (m.gpu, m.model, int(m.tp), m.framework, _norm_dtype(m.dtype), int(m.input_len or 0), int(m.output_len or 0), int(c))
        groups[key][(f"{m.metric}_ms", "mean")] = (m.value, m.line)
    keys = sorted(groups)
    step = max(len(keys) // max_configs, 1)
    for key in keys[::step][:max_configs]:
        gpu, model, tp, fw, dtype, i, o, c = key
        yield (
            "aiconfigurator closed loop",
            dict(gpu=gpu, model=model, tp=tp, framework=fw, dtype=dtype, lengths=("fixed", i, o), concurrency=c, protocol=BENCH_PROTOCOL),
            groups[key],
        )


# MLPerf system labels the shared mapping in calibration/validate.py does not cover.
EXTRA_GPU_LABELS = (("MI325X", "mi325x"), ("MI300X", "mi300x"), ("L40S", "l40s"), ("H200", "h200-sxm"), ("H100", "h100-sxm"))


def _gpu(label: str, cat) -> str | None:
    return gpu_id(label, cat) or next((g for key, g in EXTRA_GPU_LABELS if key in label.upper()), None)


def _model(name: str, cat) -> str | None:
    found = model_id(name, cat)
    if found:
        return found[0]
    try:
        return cat.model(name if "/" in name else f"meta-llama/{name}").id
    except GuideoptError:
        return None


def without_server_path(cat):
    """``cat`` with no engine's first-token path (``first_token_us_per_layer`` 0): for runs whose requests
    reach the engine without a Python server (TensorRT-LLM 0.14's C++ executor behind Triton's
    tensorrtllm_backend; MLPerf's LoadGen harnesses, in-process)."""
    return with_term(cat, dict.fromkeys(cat.calibration.frameworks, 0.0))


def evaluate(case: dict, cat):
    gpu = _gpu(case["gpu"], cat)
    mid = _model(case["model"], cat)
    rule = framework_rule(case["framework"])
    if gpu is None or mid is None or rule is None:
        return None
    kind = case["lengths"]
    clients = case.get("concurrency")
    proto = cat.protocol(case["protocol"]) if case.get("protocol") else None
    # Closed loop: the benchmark's protocol (catalogs/protocols: clients starting together, its requests per
    # client, all measured); open loop: a long run without its start (the simulation begins empty).
    per_client = proto.requests_per_client if proto and proto.requests_per_client else BENCH_REQUESTS_PER_CLIENT
    n = min(clients * per_client, MAX_SIM_REQUESTS) if clients else SIM_REQUESTS
    if kind[0] == "fixed":
        lengths = fixed_lengths(kind[1], kind[2])
        inputs, outputs = np.full(n, float(kind[1])), np.full(n, float(kind[2]))
    else:
        mix = load_length_mix(kind[1])
        lengths = mix_lengths(mix)
        inputs, outputs = sample_mix(mix, n, np.random.default_rng(0))
    conf = _config(mid, gpu, case["tp"], rule.framework, case["dtype"], lengths, lengths.max_total, cat)
    rate = case.get("rate")
    if rate is None:  # the closed loop as predict --concurrency prices it; simulated as the benchmark started it
        stream = make_stream(inputs, outputs, concurrency=clients, together=proto.together if proto else True)
    else:
        stream = make_stream(inputs, outputs, rate_rps=rate, seed=0)
    ana = analytic_metrics(conf, lengths, float(rate or 0.0), clients if rate is None else None, 1.0, PCT, cat)
    best = float(sustainable_rate(conf.arch, conf.options, lengths)[0]) if rate is not None else None
    rep = stream_report(simulate(stream, conf.engine, conf.step_table), percentiles=PCT, warmup_fraction=0.0 if clients else WARMUP)

    def pick(metric: str, stat: str) -> tuple[float, float]:
        d = ana.dist(metric)
        a = float(d.mean[0]) if stat == "mean" else float(d.percentiles[float(stat[1:])][0])
        s = rep.metrics[metric].mean if stat == "mean" else rep.metrics[metric].at(float(stat[1:]))
        return a, s

    return pick, bool(ana.stable[0]), best


def serving_errors(data_path: str, max_configs: int = 40) -> dict[str, Any]:
    """Signed errors (predicted / measured - 1) per (source, metric, statistic), analytic and simulated."""
    cat = load_catalog()
    rows = load_measurements(data_path)
    errors: dict[tuple[str, str, str], dict[str, Any]] = defaultdict(lambda: {"analytic": [], "simulated": [], "unstable": 0})
    capacity: dict[tuple, dict[str, Any]] = {}  # open-loop configuration -> its highest measured rate and the analytic sustainable one
    skipped = 0
    cases = [*trtllm_online(rows), *mlperf_server(rows), *aiconfigurator(rows, max_configs)]
    no_path = without_server_path(cat)
    for source, case, measured in cases:
        try:
            out = evaluate(case, cat if case.get("server_path", True) else no_path)
        except GuideoptError:
            out = None
        if out is None:
            skipped += 1
            continue
        pick, stable, best = out
        if best is not None and case.get("stable_run"):
            keep_highest_rate(capacity, source, case, best)
        for (metric, stat), (value, _line) in measured.items():
            a, s = pick(metric, stat)
            key = (source, metric, stat)
            if not stable:  # the analytic model says the rate is beyond the replica: its queue is unbounded
                errors[key]["unstable"] += 1
                a = float("nan")
            errors[key]["analytic"].append(a / value - 1)
            errors[key]["simulated"].append(s / value - 1)
    return {"configurations": len(cases), "skipped": skipped, "errors": dict(errors), "capacity": list(capacity.values())}


def keep_highest_rate(capacity: dict[tuple, dict[str, Any]], source: str, case: dict, best_rps: float) -> None:
    """Keep, per open-loop configuration, the highest rate a stable run of it was measured at (MLPerf: a valid
    submission met its latency limits there) beside the analytic sustainable rate (``costs.stream_search.sustainable_rate``)."""
    key = (source, *(str(case[k]) for k in ("gpu", "model", "tp", "framework", "dtype", "lengths")))
    row = capacity.setdefault(key, {"source": source, "gpu": case["gpu"], "model": case["model"], "tp": case["tp"]})
    row.update(framework=case["framework"], dtype=case["dtype"], predicted_rps=best_rps)
    row["measured_max_rps"] = max(row.get("measured_max_rps", 0.0), float(case["rate"]))
    row["ratio"] = best_rps / row["measured_max_rps"]


CAPACITY_WITHIN = 0.10  # issue 22: the analytic sustainable rate within 10 % of the highest stable measured rate


def capacity_markdown(result: dict[str, Any]) -> list[str]:
    """Per source, how the analytic sustainable rate compares with the highest measured rate of each configuration."""
    lines = [
        "",
        "Analytic sustainable rate (per replica) against the highest rate a stable run of each configuration reached (MLPerf",
        f"Server: a valid submission met its latency limits there), per source: median predicted ÷ measured, within {CAPACITY_WITHIN:.0%}:",
        "",
        "| source | configurations | median predicted ÷ measured | within 10 % | lowest / highest ratio |",
        "|---|---|---|---|---|",
    ]
    by_source: dict[str, list[float]] = defaultdict(list)
    for row in result.get("capacity", []):
        by_source[row["source"]].append(row["ratio"])
    for source, ratios in sorted(by_source.items()):
        r = np.asarray(ratios)
        within = int(np.sum(np.abs(r - 1.0) <= CAPACITY_WITHIN))
        lines.append(f"| {source} | {r.size} | {np.median(r):.2f} | {within} | {r.min():.2f} / {r.max():.2f} |")
    return lines


def serving_rows(result: dict[str, Any]) -> list[dict[str, Any]]:
    """One summary row per (source, metric, statistic): counts and median absolute / signed errors."""
    out = []
    for (source, metric, stat), e in sorted(result["errors"].items()):
        a_signed = np.asarray(e["analytic"], dtype=float)
        a_signed = a_signed[np.isfinite(a_signed)]
        s_signed = np.asarray(e["simulated"], dtype=float)
        out.append(
            {
                "source": source,
                "metric": metric,
                "statistic": stat,
                "n": int(s_signed.size),
                "analytic_unstable": e["unstable"],
                "analytic_median_ape": float(np.median(np.abs(a_signed))) if a_signed.size else None,
                "analytic_median_signed": float(np.median(a_signed)) if a_signed.size else None,
                "simulated_median_ape": float(np.median(np.abs(s_signed))),
                "simulated_median_signed": float(np.median(s_signed)),
            }
        )
    return out


def serving_markdown(result: dict[str, Any]) -> str:
    lines = [
        f"{result['configurations']} configurations, {result['skipped']} skipped (GPU, model or engine not in the catalog, or does not fit)",
        "",
        "| source | metric | statistic | n | analytic: beyond its sustainable rate | analytic median APE | analytic median signed"
        " | simulated median APE | simulated median signed |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in serving_rows(result):
        a = r["analytic_median_ape"]
        a_cells = f"{a:.0%} | {r['analytic_median_signed']:+.0%}" if a is not None else "- | -"
        lines.append(
            f"| {r['source']} | {r['metric']} | {r['statistic']} | {r['n']} | {r['analytic_unstable']} | {a_cells} | "
            f"{r['simulated_median_ape']:.0%} | {r['simulated_median_signed']:+.0%} |"
        )
    return "\n".join(lines + capacity_markdown(result))
