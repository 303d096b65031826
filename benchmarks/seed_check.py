"""Do verified stream plans hold on other seeds? (a script, not a test; issue 25's seed test).

Plans each case with `guideopt plan --json`, then runs `guideopt simulate` at every shown
aggregated plan's settings (GPU, layout, replicas, engine, precision, running cap, token
budget) for seeds 0-9, with the plan's warm-up (0.1) and with none, and prints each plan's
range of the SLO percentiles and how many seeds miss.

Run: python benchmarks/seed_check.py [--seeds 10] [--case NAME]
"""

from __future__ import annotations

import argparse
import json
import time

from click.testing import CliRunner

from guideopt.cli import main as cli

CASES = {
    "70B 1024/256 5 req/s $40": (
        "--model meta-llama/Llama-3.1-70B --rate 5 --input-len 1024 --output-len 256 --ttft-ms 500 --tpot-ms 50 --budget 40"
    ),
    "8B rtx-6000-ada 1024/256 5 req/s $10": (
        "--model meta-llama/Llama-3.1-8B --gpu rtx-6000-ada --rate 5 --input-len 1024 --output-len 256 --ttft-ms 500 --tpot-ms 50 --budget 10"
    ),
    "8B mlperf-openorca (percentiles) 10 req/s $10": (
        "--model meta-llama/Llama-3.1-8B --rate 10 --lengths mlperf-openorca --ttft-ms 1000 --tpot-ms 50 --budget 10"
    ),
    "Qwen3-30B-A3B sglang-0.5.23 (MoE-layer term) 5 req/s $20": (
        "--model Qwen/Qwen3-30B-A3B --framework sglang-0.5.23 --rate 5 --input-len 1024 --output-len 256 --ttft-ms 1000 --tpot-ms 50"
        " --budget 20"
    ),
}
WORKLOAD_FLAGS = ("--model", "--rate", "--input-len", "--output-len", "--ttft-ms", "--tpot-ms", "--percentile", "--lengths")


def simulate_args(group: dict, request: list[str]) -> list[str]:
    """`guideopt simulate` at a plan group's settings, with the request's workload and SLO flags."""
    args = ["simulate", "--gpu", group["gpu"], "--tp", str(group["tp"]), "--pp", str(group["pp"])]
    args += ["--replicas", str(group["replicas"]), "--framework", group["framework"], "--dtype", group["dtype"]]
    args += ["--running-cap", str(group["batch"]), "--token-budget", str(group["split"]), "--json"]
    if group.get("attention_dp", 1) > 1:
        args += ["--attention-dp", str(group["attention_dp"])]
    if group.get("moe_ep", 1) > 1:
        args += ["--moe-ep", str(group["moe_ep"])]
    for i, a in enumerate(request):
        if a in WORKLOAD_FLAGS:
            args += [a, request[i + 1]]
    return args


def slo_of(request: list[str]) -> dict[str, float]:
    flags = {"--ttft-ms": "ttft_ms", "--tpot-ms": "tpot_ms"}
    return {m: float(request[request.index(f) + 1]) for f, m in flags.items() if f in request}


def check(name: str, flags: str, seeds: int) -> bool:
    request = flags.split()
    t0 = time.perf_counter()
    out = CliRunner().invoke(cli, ["plan", *request, "--json"])
    plan_s = time.perf_counter() - t0
    if out.exit_code:
        print(f"{name}: plan failed: {out.output.strip()}")
        return False
    result = json.loads(out.stdout)
    slo = slo_of(request)
    pct = f"p{float(request[request.index('--percentile') + 1]) if '--percentile' in request else 90.0:g}"
    print(f"{name}: {len(result['plans'])} plan(s) in {plan_s:.1f} s, {result['verification_rounds']} round(s), {result['status']}")
    all_ok = True
    for plan in result["plans"]:
        if len(plan["groups"]) != 1:
            print(f"  rank {plan['rank']}: disaggregated, skipped")
            continue
        g = plan["groups"][0]
        for warmup in ("0.1", "0"):
            values: dict[str, list[float]] = {m: [] for m in slo}
            misses = 0
            for seed in range(seeds):
                r = CliRunner().invoke(cli, simulate_args(g, request) + ["--seed", str(seed), "--warmup", warmup])
                metrics = json.loads(r.stdout)["simulated"]["metrics"]
                vals = {m: metrics[m][pct] for m in slo}
                misses += any(v is not None and v > slo[m] for m, v in vals.items())
                for m, v in vals.items():
                    values[m].append(v if v is not None else float("nan"))
            ranges = ", ".join(f"{pct} {m} {min(v):.1f}-{max(v):.1f} (SLO {slo[m]:g})" for m, v in values.items())
            print(
                f"  rank {plan['rank']} {g['replicas']} x {g['gpu']} tp{g['tp']} pp{g['pp']} cap {g['batch']} budget {g['split']}"
                f" ${plan['usd_per_hour']}/h warmup {warmup}: {ranges}; misses {misses}/{seeds}"
            )
            all_ok &= misses == 0
    return all_ok


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--case", choices=list(CASES))
    a = ap.parse_args()
    ok = [check(name, CASES[name], a.seeds) for name in ([a.case] if a.case else list(CASES))]
    print("every seed meets the SLOs" if all(ok) else "some seed misses")


if __name__ == "__main__":
    main()
