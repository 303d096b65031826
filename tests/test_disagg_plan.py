"""Disaggregated plans (issue 23): brute force over pool sizes and role pairs, the
never/allow/only property, the plan's shape, bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

import guideopt.solver.disagg_space as disagg_space
from guideopt import api
from guideopt.cli import main
from guideopt.costs.disagg import disagg_stream_metrics
from guideopt.errors import NoFeasiblePlanError
from guideopt.model.request import PlanRequest
from guideopt.solver.disagg_plan import disagg_table
from guideopt.solver.disagg_space import disagg_options, pairs_of
from guideopt.solver.options import resolve_gpus
from guideopt.solver.stream_options import build_stream_space
from guideopt.solver.stream_rates import meets_targets

EXIT_BAD_INPUT, EXIT_INFEASIBLE = 1, 3
SMALL = {
    "model": "meta-llama/Llama-2-7b-hf",
    "workload": {"input_len": 3000, "output_len": 200, "rate_rps": 6.0, "num_requests": 400},
    "budget": {"usd_per_hour": 14},
    "gpus": {"l4": {}, "a100-sxm4-80gb": {}},
    "framework": "vllm-0.33",
    "parallelism": {"tp": [1], "pp": [1]},
    "slo": {"ttft_ms": 1500, "tpot_ms": 40},
    "top": 1,
    "disaggregation": "only",
}
MAX_COUNT = 8  # workers per role the brute force tries


def _req(**changes) -> PlanRequest:
    data = json.loads(json.dumps(SMALL))
    data.update(changes)
    return PlanRequest.model_validate(data)


def _space(req: PlanRequest, catalog):
    gpus = resolve_gpus(req, catalog)
    return build_stream_space(req, catalog, gpus, [g.usd_per_hour for g in gpus], prune=False)


def _brute_cheapest(req: PlanRequest, space, catalog) -> float:
    """Cheapest $/h over every pair of rows of the space and every x, y ≤ MAX_COUNT within the budget."""
    t = space.table
    rows = np.arange(len(t))
    p, d = pairs_of(space, rows, rows)
    price = t.usd_per_hour_per_gpu * t.gpus_per_replica
    counts = np.arange(1, MAX_COUNT + 1)
    x, y = np.repeat(counts, counts.size), np.tile(counts, counts.size)
    pp, dd = np.repeat(p, x.size), np.repeat(d, x.size)
    xx, yy = np.tile(x, p.size), np.tile(y, p.size)
    cost = xx * price[pp] + yy * price[dd]
    within = cost <= req.budget.usd_per_hour
    pp, dd, xx, yy, cost = pp[within], dd[within], xx[within], yy[within], cost[within]
    opts, _ = disagg_options(space, catalog, pp, dd, xx, yy)
    m = disagg_stream_metrics(space.arch, opts, space.lengths, np.full(pp.size, req.workload.rate_rps), percentiles=())
    ok = meets_targets(m, space.targets, req.workload.num_requests)
    assert ok.any(), "the instance has a disaggregated plan"
    return float(cost[ok].min())


def test_cheapest_group_equals_brute_force_without_role_pruning(catalog, monkeypatch):
    monkeypatch.setattr(disagg_space, "ROLE_KEEP", 10_000)
    req = _req()
    space = _space(req, catalog)
    dt = disagg_table(req, space, catalog)
    assert len(dt) and float(dt.usd_per_hour.min()) == pytest.approx(_brute_cheapest(req, space, catalog))


def test_role_pruning_keeps_the_cheapest_group(catalog):
    req = _req(slo={"ttft_ms": 2500, "tpot_ms": 60})
    space = _space(req, catalog)
    assert float(disagg_table(req, space, catalog).usd_per_hour.min()) == pytest.approx(_brute_cheapest(req, space, catalog))


@pytest.mark.parametrize("rate,ttft", [(3.0, 1500), (6.0, 2000), (4.0, 1000), (10.0, 3000)])
def test_allowing_disaggregation_never_gives_a_worse_optimum(catalog, rate, ttft):
    base = dict(SMALL, workload={**SMALL["workload"], "rate_rps": rate}, slo={"ttft_ms": ttft, "tpot_ms": 40}, budget={"usd_per_hour": 30})
    try:
        never = api.plan({**base, "disaggregation": "never"}, catalog).plans[0].usd_per_hour
    except NoFeasiblePlanError:  # every aggregated plan cut (by the simulator): allowing more may still find one
        never = float("inf")
    allow = api.plan({**base, "disaggregation": "allow"}, catalog)
    assert allow.plans[0].usd_per_hour <= never + 1e-9
    assert allow.disaggregation is not None


def test_a_disaggregated_plan_has_two_roles_and_a_kv_hand_over(catalog):
    result = api.plan(SMALL, catalog)
    plan = result.plans[0]
    roles = [g.role for g in plan.groups]
    assert roles == ["prefill", "decode"]
    assert plan.num_gpus == sum(g.num_gpus for g in plan.groups) == sum(plan.gpu_counts.values())
    assert plan.usd_per_hour == pytest.approx(sum(g.usd_per_hour for g in plan.groups))
    kv = plan.kv_transfer
    assert kv is not None and kv["link"] in ("nvlink", "rdma") and kv["ms"] > 0
    # Llama-2-7B: 32 layers x 32 KV heads x 128 x 2 (K, V) x 2 bytes per token, 3000-token prompts
    assert kv["bytes_per_request"] == 32 * 32 * 128 * 2 * 2 * 3000
    assert plan.stream is not None and plan.stream["simulated_meets_slo"] is True
    assert plan.metrics.ttft_ms <= 1500 and plan.metrics.tpot_ms is not None and plan.metrics.tpot_ms <= 40


def test_aggregated_groups_have_no_role(catalog):
    base = {**SMALL, "workload": {**SMALL["workload"], "rate_rps": 3.0}, "budget": {"usd_per_hour": 30}}
    result = api.plan({**base, "disaggregation": "never"}, catalog)
    assert all(g.role is None for p in result.plans for g in p.groups) and result.plans[0].kv_transfer is None


@pytest.mark.parametrize(
    "args,code,needle",
    [
        (
            ["--concurrency", "32", "--disaggregated", "allow"],
            EXIT_BAD_INPUT,
            "--disaggregated: prefill and decode pools are sized for a request rate",
        ),
        (["--rate", "4", "--disaggregated", "sometimes"], 2, "--disaggregated"),
        (
            ["--rate", "4", "--disaggregated", "only", "--framework", "fastgen"],
            EXIT_INFEASIBLE,
            "disaggregation: no allowed engine version",
        ),
    ],
)
def test_bad_disaggregation_input_is_one_line(args, code, needle):
    base = [
        "plan",
        "--model",
        "meta-llama/Llama-2-7b-hf",
        "--budget",
        "20",
        "--input-len",
        "1000",
        "--output-len",
        "100",
        "--gpu",
        "a100-sxm4-80gb",
    ]
    result = CliRunner().invoke(main, base + args)
    assert result.exit_code == code, result.output
    assert needle in result.output and "Traceback" not in result.output


def test_the_file_key_is_checked(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text(
        "model: meta-llama/Llama-2-7b-hf\nworkload: {input_len: 1000, output_len: 100, rate_rps: 2}\nbudget: {usd_per_hour: 10}\ndisaggregation: maybe\n"
    )
    result = CliRunner().invoke(main, ["solve", str(f)])
    assert result.exit_code == EXIT_BAD_INPUT and "disaggregation" in result.output and len(result.output.strip().splitlines()) == 1


def test_roles_on_two_vendors_are_never_paired(catalog):
    """A KV connector moves caches between GPUs of one vendor (NIXL/UCX, Mooncake): no NVIDIA prefill with AMD decode."""
    req = _req(gpus={"l4": {}, "mi250": {}, "a100-sxm4-80gb": {}}, parallelism={"tp": [1, 2, 4, 8], "pp": [1]})
    space = _space(req, catalog)
    rows = np.arange(len(space.table))
    p, d = pairs_of(space, rows, rows)
    vendor = np.array([g.vendor.value for g in space.table.space.gpus])
    assert p.size and np.all(vendor[space.table.gpu_idx[p]] == vendor[space.table.gpu_idx[d]])
    assert np.any(space.table.gpu_idx[p] != space.table.gpu_idx[d])  # two NVIDIA types do pair (vLLM's NIXL connector)


@pytest.mark.parametrize(
    "workload",
    [
        {"input_len": 3000, "output_len": 200, "rate_rps": 6.0},
        {"input_len": 1000, "output_len": 500, "rate_rps": 10.0},
        {"lengths": "sharegpt", "rate_rps": 20.0},
    ],
)
def test_the_analytic_model_agrees_with_the_two_pool_simulator(catalog, workload):
    """The plan's analytic percentiles against its simulated ones (3,000 requests): TTFT within
    25 %, TPOT within 15 %, at the load the plan sizes the pools for."""
    data = {**SMALL, "workload": {**workload, "num_requests": 3000}, "budget": {"usd_per_hour": 40}}
    plan = api.plan(data, catalog).plans[0]
    stream = plan.groups[0].stream
    assert stream is not None
    analytic, simulated = stream["analytic"], stream["simulated"]
    for metric, keys, tolerance in (("ttft_ms", ("mean", "p50", "p90"), 0.25), ("tpot_ms", ("mean", "p90"), 0.15)):
        for key in keys:
            assert analytic[metric][key] == pytest.approx(simulated[metric][key], rel=tolerance), (metric, key)


def test_only_says_what_the_aggregated_plan_gives(catalog):
    args = ["plan", "--model", "meta-llama/Llama-2-7b-hf", "--budget", "3", "--rate", "6", "--input-len", "200", "--output-len", "400"]
    args += ["--ttft-ms", "200", "--tpot-ms", "40", "--gpu", "l4", "--gpu", "a100-sxm4-80gb"]
    only = CliRunner().invoke(main, [*args, "--disaggregated", "only"])
    assert only.exit_code == EXIT_INFEASIBLE and "prompts shorter than their outputs" in only.output
    aggregated = CliRunner().invoke(main, [*args, "--json"])
    assert aggregated.exit_code == 0, aggregated.output
    cost = json.loads(aggregated.stdout)["plans"][0]["usd_per_hour"]
    assert f"the best aggregated plan costs ${cost:.2f}/h" in only.output


@pytest.mark.parametrize("rate,tpot", [(6.0, 40), (20.0, 25), (2.0, 15)])
def test_decode_counts_are_the_fewest_the_pool_model_accepts(catalog, rate, tpot):
    """The closed-form count per decode worker equals a scan over counts with the pool model."""
    from guideopt.costs.disagg_pools import decode_pool

    req = _req(workload={**SMALL["workload"], "rate_rps": rate}, slo={"ttft_ms": 5000, "tpot_ms": tpot})
    space = _space(req, catalog)
    rows = np.arange(len(space.table))
    counts = disagg_space._decode_counts(req, space, rows, rate, np.ones(rows.size))
    scan = np.zeros(rows.size, dtype=np.int64)
    opts, dp = space.options.take(rows), space.table.dp[rows]
    for n in range(disagg_space.MAX_WORKERS_PER_ROLE, 0, -1):
        pool = decode_pool(space.arch, opts, space.lengths, rate / (n * dp))
        scan = np.where(pool.stable & (pool.step_s <= tpot / 1000.0), n, scan)
    assert (scan > 0).any() and np.array_equal(counts, scan)
