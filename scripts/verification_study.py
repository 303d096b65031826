"""How much one simulated run says about the next: per-seed percentiles of the plans the analytic
model accepts (a script, not a test; its output justifies ``simulator/runs.py``'s constants).

For each case, the cheapest analytically feasible aggregated candidates (one per deployment
shape, at the planner's replica count and operating point) are simulated with seeds 0-9, each
exactly what ``guideopt simulate --seed S --warmup 0.1`` runs at the plan's settings. The
per-seed values are written to a JSON file; ``--evaluate`` then scores checking rules on them:
a rule sees seeds 0..k-1 and says verified or not; the truth is whether all ten seeds meet every
SLO. It prints false passes (verified, yet a seed misses), false cuts and the mean runs.

Run: python scripts/verification_study.py --out /tmp/verify_study.json [--shapes 12]
     python scripts/verification_study.py --evaluate /tmp/verify_study.json
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import warnings

import numpy as np

CASES = {
    "70B 1024/256 5 req/s $40 (issue 25)": {
        "model": "meta-llama/Llama-3.1-70B",
        "workload": {"rate_rps": 5, "input_len": 1024, "output_len": 256},
        "budget": {"usd_per_hour": 40},
        "slo": {"ttft_ms": 500, "tpot_ms": 50},
    },
    "8B 1024/256 5 req/s rtx-6000-ada (issue 25)": {
        "model": "meta-llama/Llama-3.1-8B",
        "gpus": {"rtx-6000-ada": 64},
        "workload": {"rate_rps": 5, "input_len": 1024, "output_len": 256},
        "budget": {"usd_per_hour": 10},
        "slo": {"ttft_ms": 500, "tpot_ms": 50},
    },
    "8B 1024/256 10 req/s $40": {
        "model": "meta-llama/Llama-3.1-8B",
        "workload": {"input_len": 1024, "output_len": 256, "rate_rps": 10},
        "budget": {"usd_per_hour": 40},
        "slo": {"ttft_ms": 500, "tpot_ms": 50},
    },
    "8B sharegpt 20 req/s P99 TTFT 1 s": {
        "model": "meta-llama/Llama-3.1-8B",
        "workload": {"lengths": "sharegpt", "rate_rps": 20},
        "budget": {"usd_per_hour": 30},
        "slo": {"ttft_ms": {"p99": 1000}, "tpot_ms": {"p90": 40}},
    },
    "70B sharegpt 5 req/s P99 TTFT 1 s": {
        "model": "meta-llama/Llama-3.1-70B",
        "workload": {"lengths": "sharegpt", "rate_rps": 5},
        "budget": {"usd_per_hour": 60},
        "slo": {"ttft_ms": {"p99": 1000}, "tpot_ms": {"p90": 50}},
    },
    "8B 4000/500 2 req/s P90 TTFT 1 s": {
        "model": "meta-llama/Llama-3.1-8B",
        "workload": {"input_len": 4000, "output_len": 500, "rate_rps": 2},
        "budget": {"usd_per_hour": 20},
        "slo": {"ttft_ms": 1000, "tpot_ms": 30},
    },
}
SEEDS = 10


def collect(shapes: int) -> dict:
    from guideopt.catalog import load_catalog
    from guideopt.model.request import PlanRequest
    from guideopt.model.workload import VERIFY_WARMUP_FRACTION
    from guideopt.simulator.engine import simulate
    from guideopt.simulator.report import stream_report
    from guideopt.simulator.sampling import make_stream
    from guideopt.solver.constraints import satisfied, stream_slo_bounds, user_bounds
    from guideopt.solver.options import resolve_gpus
    from guideopt.solver.stream_extract import total_load
    from guideopt.solver.stream_options import build_stream_space
    from guideopt.solver.stream_plan import stream_candidates
    from guideopt.solver.stream_verify import engine_of, sampled_lengths

    cat = load_catalog()
    out: dict = {}
    for name, body in CASES.items():
        req = PlanRequest.model_validate(body)
        gpus = resolve_gpus(req, cat)
        prices = [req.allowance(g.id).usd_per_hour or g.usd_per_hour for g in gpus]
        space = build_stream_space(req, cat, gpus, prices, prune=False)
        bounds = user_bounds(req, gpus)
        cands = stream_candidates(req, space, bounds)
        ok = np.nonzero(satisfied(cands, bounds))[0]
        ok = ok[np.argsort(cands.milli_usd_per_hour[ok], kind="stable")]
        seen: set[int] = set()
        rows = []
        targets = {m: {f"p{p:g}": b for p, b in t.targets.items()} for m, t in space.targets.items()}
        for k in ok:
            shape = int(cands.shape[k])
            if shape in seen:
                continue
            seen.add(shape)
            row, replicas = int(cands.ref[k]), int(cands.replicas[k])
            engine, steps = engine_of(space, row)
            ranks = replicas * int(space.table.dp[row])
            rate = total_load(req) / ranks
            runs = []
            for seed in range(SEEDS):
                r = req.model_copy(update={"workload": req.workload.model_copy(update={"seed": seed})})
                inputs, outputs = sampled_lengths(r, space)
                stream = make_stream(inputs, outputs, rate_rps=rate, burstiness=req.workload.burstiness, seed=seed)
                rep = stream_report(simulate(stream, engine, steps), slo=space.targets, warmup_fraction=VERIFY_WARMUP_FRACTION)
                runs.append({m: {f"p{p:g}": rep.metrics[m].at(p) for p in t.targets} for m, t in space.targets.items()})
            t = space.table
            rows.append(
                {
                    "gpu": t.space.gpus[int(t.gpu_idx[row])].id,
                    "tp": int(t.tp[row]),
                    "pp": int(t.pp[row]),
                    "replicas": replicas,
                    "cap": int(space.options.running_cap[row]),
                    "budget": int(t.split[row]),
                    "usd_per_hour": float(cands.milli_usd_per_hour[k]) / 1000,
                    "load_share": rate / max(float(space.slo_rate_rps[row]), 1e-12),
                    "analytic": {f"{m}.p{p:g}": float(cands.slo_us[k, j]) / 1e3 for j, (m, p, _) in enumerate(stream_slo_bounds(req))},
                    "runs": runs,
                }
            )
            print(name, rows[-1]["gpu"], replicas, [round(x["ttft_ms"][next(iter(x["ttft_ms"]))]) for x in runs], file=sys.stderr)
            if len(rows) >= shapes:
                break
        out[name] = {"targets": targets, "plans": rows}
    return out


def _bound(values: list[float], conf: float) -> float:
    from scipy.special import stdtrit

    k = len(values)
    logs = np.log(np.maximum(values, 1e-9))
    sd = float(logs.std(ddof=1)) if k > 1 else math.inf
    return float(np.exp(logs.mean() + stdtrit(k - 1, conf) * sd * math.sqrt(1 + 1 / k)))


def rule(min_runs: int, max_runs: int, conf: float):
    def check(runs: list[dict], targets: dict) -> tuple[bool, int]:
        if max_runs == 1:  # one run decides alone
            return all(runs[0][m][p] <= b for m, t in targets.items() for p, b in t.items()), 1
        for k in range(1, max_runs + 1):
            run = runs[k - 1]
            if any(run[m][p] > b for m, t in targets.items() for p, b in t.items()):
                return False, k
            if k >= min_runs and all(_bound([r[m][p] for r in runs[:k]], conf) <= b for m, t in targets.items() for p, b in t.items()):
                return True, k
        return False, max_runs

    return check


def evaluate(path: str) -> None:
    with open(path) as f:
        data = json.load(f)
    rules = {"one run (today)": rule(1, 1, 0.5)}
    for lo, hi in ((3, 5), (3, 6), (2, 5), (3, 8)):
        for conf in (0.9, 0.95, 0.975, 0.99):
            rules[f"runs {lo}-{hi}, one-sided {conf:g}"] = rule(lo, hi, conf)
    print(f"{'rule':34s} {'plans':>5s} {'truth ok':>8s} {'passed':>6s} {'false pass':>10s} {'false cut':>9s} {'mean runs':>9s}")
    for label, check in rules.items():
        n = ok = passed = fp = fc = 0
        runs_used = 0
        for case in data.values():
            for plan in case["plans"]:
                truth = all(all(r[m][p] <= b for m, t in case["targets"].items() for p, b in t.items()) for r in plan["runs"])
                verdict, k = check(plan["runs"], case["targets"])
                n += 1
                ok += truth
                passed += verdict
                fp += verdict and not truth
                fc += truth and not verdict
                runs_used += k
        print(f"{label:34s} {n:5d} {ok:8d} {passed:6d} {fp:10d} {fc:9d} {runs_used / max(n, 1):9.2f}")
    chosen = rule(3, 6, 0.975)
    print("\nfalse passes of runs 3-6, one-sided 0.975 (the seeds' SLO percentiles):")
    for name, case in data.items():
        for plan in case["plans"]:
            truth = all(all(r[m][p] <= b for m, t in case["targets"].items() for p, b in t.items()) for r in plan["runs"])
            if chosen(plan["runs"], case["targets"])[0] and not truth:
                vals = {f"{m}.{p}": [round(r[m][p], 1) for r in plan["runs"]] for m, t in case["targets"].items() for p in t}
                print(
                    f"  {name}: {plan['replicas']} x {plan['gpu']} cap {plan['cap']} budget {plan['budget']} load share {plan['load_share']:.2f}: {vals}"
                )


def main() -> None:
    warnings.simplefilter("ignore")
    ap = argparse.ArgumentParser()
    ap.add_argument("--out")
    ap.add_argument("--shapes", type=int, default=12)
    ap.add_argument("--evaluate")
    a = ap.parse_args()
    if a.evaluate:
        evaluate(a.evaluate)
        return
    data = collect(a.shapes)
    with open(a.out or "verify_study.json", "w") as f:
        json.dump(data, f, indent=1)


if __name__ == "__main__":
    main()
