"""Text and charts of a simulation (``guideopt simulate``)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from guideopt.analyses.simulate import Simulation
from guideopt.errors import GuideoptError
from guideopt.io.plots import PLOT_DPI, check_plot_path
from guideopt.io.render import fit_lines, table

SERIES_SIZE_IN = (12.0, 7.0)
THROUGHPUT_BINS = 200  # time bins of the token-throughput panel


def simulation_text(sim: Simulation) -> str:
    d = sim.as_dict()
    rep, ana = d["simulated"], d["analytic"]["metrics"]
    load = f"rate {d['rate_rps']:g} req/s" if d["rate_rps"] is not None else f"concurrency {d['concurrency']}"
    if d.get("protocol"):
        load += f" under protocol {d['protocol']}"
    dp = d["attention_dp"]
    moe = f", attention_dp={dp}, moe_tp={d['moe_tp']}, moe_ep={d['moe_ep']}" if dp > 1 or d["moe_ep"] > 1 else ""
    rank = f" per attention-DP rank (one of {dp} per replica simulated; throughputs below are the replica's)" if dp > 1 else ""
    head = (
        f"{d['model']} on {d['replicas']} replica(s) x {d['tp'] * dp * d['pp']} {d['gpu']} (tp={d['tp']}, pp={d['pp']}{moe}, {d['framework']}, {d['dtype']}), {load}\n"
        f"running cap {d['running_cap']}, token budget {d['token_budget']}, KV cache {d['kv_cache_tokens']:,} tokens "
        f"(when full: {d['kv_policy']}){rank}; sustainable rate (analytic) {d['sustainable_rate_rps']:.2f} req/s"
    )
    if d.get("sustainable_within_slo_clients") is not None:
        head += f", {d['sustainable_within_slo_clients']:g} clients within the SLOs ({d['sustainable_within_slo_rps']:.2f} req/s)"
    elif d.get("sustainable_within_slo_rps") is not None:
        head += f", {d['sustainable_within_slo_rps']:.2f} req/s within the SLOs"
    pct_keys = [k for k in rep["metrics"]["ttft_ms"] if k != "mean"]
    rows = []
    for metric in ("ttft_ms", "tpot_ms", "e2e_ms", "queue_ms"):
        sim_m, ana_m = rep["metrics"][metric], ana[metric]
        rows.append([metric, "simulated", sim_m["mean"], *[sim_m[k] for k in pct_keys]])
        if d["analytic"]["stable"]:
            rows.append(["", "analytic", ana_m["mean"], *[ana_m.get(k, float("nan")) for k in pct_keys]])
        else:  # an unstable steady state's queue grows without bound: no number means anything
            rows.append(["", "analytic", *["unstable"] * (1 + len(pct_keys))])
    body = table(["metric", "model", "mean", *pct_keys], rows)
    tail = [
        f"requests {rep['requests']:,}{' on the simulated rank' if dp > 1 else ''} over {rep['duration_s']:.1f} s: "
        f"{rep['request_throughput_rps']:.2f} req/s, {rep['output_throughput_tok_s']:,.0f} output tok/s per replica",
        f"KV use mean {rep['kv_use_mean']:.0%}, max {rep['kv_use_max']:.0%}; preemptions {rep['preemptions']}; steps {rep['steps']:,}",
    ]
    if rep["goodput_rps"] is not None:
        tail.append(f"goodput {rep['goodput_rps']:.2f} req/s ({rep['slo_attainment']:.1%} of requests meet every SLO)")
    if not d["analytic"]["stable"]:
        tail.append("analytic model: this rate is beyond what the replica sustains (queues grow)")
    return fit_lines("\n".join([head, "", body, "", *tail]))


def disagg_simulation_text(sim) -> str:
    """A disaggregated deployment's simulation (``analyses/simulate_disagg.py``), as ``simulation_text``."""
    d = sim.as_dict()
    rep, ana = d["simulated"], d["analytic"]["metrics"]
    pools = ", ".join(
        f"{role} {r['workers']} x (tp={r['tp']}, attention_dp={r['attention_dp']}, moe_ep={r['moe_ep']})"
        for role, r in d["disaggregated"].items()
    )
    kv = d["kv_transfer"]
    head = (
        f"{d['model']} on {d['num_gpus']} {d['gpu']} ({d['framework']}, {d['dtype']}), disaggregated: {pools}; rate {d['rate_rps']:g} req/s\n"
        f"KV hand-over over {kv['link']}: {kv['ms_mean']:.1f} ms after the prompt on average; "
        f"sustainable rate (analytic) {d['sustainable_rate_rps']:.2f} req/s"
    )
    pct_keys = [k for k in rep["metrics"]["ttft_ms"] if k != "mean"]
    rows = []
    for metric in ("ttft_ms", "tpot_ms", "e2e_ms", "queue_ms"):
        sim_m, ana_m = rep["metrics"][metric], ana[metric]
        rows.append([metric, "simulated", *[sim_m[k] if sim_m[k] is not None else "-" for k in ("mean", *pct_keys)]])
        stable = d["analytic"]["stable"]
        rows.append(
            [
                "",
                "analytic",
                *([ana_m["mean"], *[ana_m.get(k, float("nan")) for k in pct_keys]] if stable else ["unstable"] * (1 + len(pct_keys))),
            ]
        )
    tail = [
        f"requests {rep['requests']:,} over {rep['duration_s']:.1f} s: {rep['request_throughput_rps']:.2f} req/s, {rep['output_throughput_tok_s']:,.0f} output tok/s"
    ]
    if rep["goodput_rps"] is not None:
        tail.append(f"goodput {rep['goodput_rps']:.2f} req/s ({rep['slo_attainment']:.1%} of requests meet every SLO)")
    return fit_lines("\n".join([head, "", table(["metric", "model", "mean", *pct_keys], rows), "", *tail]))


def plot_simulation(sim: Simulation, path: str | os.PathLike[str]) -> Path:
    """Queue length, running requests, KV-cache use and token throughput over time."""
    target = check_plot_path(path)
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise GuideoptError("plot: matplotlib is not installed (pip install matplotlib)") from None
    s = sim.result.series
    t = np.asarray(s.t_s)
    fig, axes = plt.subplots(2, 2, figsize=SERIES_SIZE_IN, sharex=True)
    try:
        panels = [
            (axes[0, 0], np.asarray(s.waiting), "waiting requests (queue)"),
            (axes[0, 1], np.asarray(s.running), "running requests"),
            (axes[1, 0], 100.0 * np.asarray(s.kv_used_tokens) / max(sim.engine.kv_tokens, 1), "KV cache in use (%)"),
        ]
        for ax, y, label in panels:
            ax.step(t, y, where="post", linewidth=0.8)
            ax.set_ylabel(label)
            ax.grid(True, alpha=0.3)
        edges = np.linspace(0.0, t.max() if t.size else 1.0, THROUGHPUT_BINS + 1)
        tokens, _ = np.histogram(t, bins=edges, weights=np.asarray(s.tokens))
        width = edges[1] - edges[0]
        axes[1, 1].plot((edges[:-1] + edges[1:]) / 2, tokens / max(width, 1e-12), linewidth=0.8)
        axes[1, 1].set_ylabel("tokens processed per s")
        axes[1, 1].grid(True, alpha=0.3)
        for ax in axes[1]:
            ax.set_xlabel("time (s)")
        d = sim.as_dict()
        one = f"one attention-DP rank of {d['attention_dp']} (simulated)" if d["attention_dp"] > 1 else "one replica (simulated)"
        fig.suptitle(f"{d['model']} on {d['gpu']} tp={d['tp']} pp={d['pp']} ({d['framework']}), {one}")
        fig.tight_layout()
        fig.savefig(target, dpi=PLOT_DPI)
    finally:
        plt.close(fig)
    return target
