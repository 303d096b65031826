"""Expert parallelism and attention DP as planned dimensions (issue 21).

The solver's optimum over layouts equals a brute force that enumerates the layouts itself
and prices each with ``predict``; allowing EP / attention DP never gives a worse optimum;
plans carry their layout; bad layout input is refused naming the flag or key.
"""

from __future__ import annotations

import itertools
import math

import pytest
from click.testing import CliRunner
from conftest import DECI_TOK_PER_TOK, LLAMA2_7B, MILLI_USD_PER_USD, MIXTRAL_8X7B

from guideopt.analyses.predict import predict_one
from guideopt.cli import main
from guideopt.costs.layouts import layout_table, moe_ep_problem
from guideopt.errors import GuideoptError, NoFeasiblePlanError
from guideopt.model.predict_request import PredictRequest
from guideopt.model.request import PlanRequest
from guideopt.solver.plan import solve_request

QWEN3_30B = "Qwen/Qwen3-30B-A3B"
DEEPSEEK_R1 = "deepseek-ai/DeepSeek-R1"


def _request(model: str, gpu: str, budget: float, objective: str = "throughput", top: int = 1, **par) -> PlanRequest:
    return PlanRequest.model_validate(
        {
            "model": model,
            "workload": {"input_len": 1024, "output_len": 256, "batch": 16},
            "budget": {"usd_per_hour": budget},
            "gpus": {gpu: {}},
            "framework": "vllm",
            "precision": ["bf16"],
            "objective": [objective],
            "parallelism": {"pp": [1], **par},
            "top": top,
        }
    )


def _brute_force_throughput(req: PlanRequest, catalog, tps, dps, eps) -> int | None:
    """Best whole-deployment throughput (0.1 tok/s) over layouts enumerated here and replicas
    within the budget, each priced by ``predict`` (batch per attention-DP rank fixed)."""
    gpu_id = next(iter(req.gpus or {}))
    gpu = catalog.gpu(gpu_id)
    arch = catalog.model(req.model)
    batch = int(req.workload.batch or 1)
    splits = catalog.framework("vllm").split_sizes
    best = None
    for tp, dp, ep, split in itertools.product(tps, dps, eps, splits):
        if (tp * dp) % ep or moe_ep_problem(arch, ep, tp * dp) or arch.tp_problem(tp):
            continue
        per_replica = tp * dp
        unit_usd = math.ceil(gpu.usd_per_hour * per_replica * MILLI_USD_PER_USD - 1e-9)
        replicas = int(req.budget.usd_per_hour * MILLI_USD_PER_USD + 1e-9) // unit_usd
        if replicas < 1 or per_replica > gpu.scale_up_domain_gpus:
            continue
        one = PredictRequest(
            model=req.model,
            gpu=gpu_id,
            num_gpus=per_replica,
            tp=tp,
            attention_dp=dp,
            moe_ep=ep,
            framework="vllm",
            dtype="bf16",
            batch=batch * dp,
            split=split,
            input_len=req.workload.input_len,
            output_len=req.workload.output_len,
        )
        try:
            p = predict_one(one, catalog)
        except (NoFeasiblePlanError, GuideoptError):
            continue
        if p.waves > 1:  # a planned batch runs at once
            continue
        thr = math.floor(p.metrics.output_throughput_tok_s * replicas * DECI_TOK_PER_TOK + 1e-9)
        best = thr if best is None else max(best, thr)
    return best


@pytest.mark.parametrize(("model", "gpu", "budget"), [(QWEN3_30B, "h100-sxm", 40.0), (MIXTRAL_8X7B, "a100-sxm4-80gb", 30.0)])
def test_solver_equals_brute_force_over_layouts(catalog, model, gpu, budget):
    tps, dps, eps = [1, 2], [1, 2, 4], [1, 2, 4, 8]
    req = _request(model, gpu, budget, tp=tps, attention_dp=dps, ep=eps)
    want = _brute_force_throughput(req, catalog, tps, dps, eps)
    result = solve_request(req, catalog)
    assert want is not None and result.plans
    got = math.floor(result.plans[0].metrics.output_throughput_tok_s * DECI_TOK_PER_TOK + 1e-9)
    assert abs(got - want) <= 1, (got, want, result.plans[0].groups[0])


@pytest.mark.parametrize(
    ("model", "gpu", "budget", "objective"),
    [
        (QWEN3_30B, "h100-sxm", 25.0, "throughput"),
        (MIXTRAL_8X7B, "h100-sxm", 60.0, "throughput"),
        (QWEN3_30B, "a100-sxm4-80gb", 50.0, "latency"),
        ("Qwen/Qwen3-235B-A22B", "h200-sxm", 100.0, "throughput"),
    ],
)
def test_allowing_ep_and_attention_dp_never_gives_a_worse_optimum(catalog, model, gpu, budget, objective):
    base = _request(model, gpu, budget, objective, ep=[1], attention_dp=[1])
    wide = _request(model, gpu, budget, objective)
    narrow, broad = solve_request(base, catalog), solve_request(wide, catalog)
    assert broad.plans, broad.explanation
    if not narrow.plans:
        return
    a, b = narrow.plans[0].metrics, broad.plans[0].metrics
    if objective == "throughput":
        assert b.output_throughput_tok_s >= a.output_throughput_tok_s * (1 - 1e-9)
    else:
        assert b.batch_latency_s <= a.batch_latency_s * (1 + 1e-9)


def test_plans_carry_their_layout_and_gpu_count(catalog):
    req = _request(QWEN3_30B, "h100-sxm", 60.0, top=5)
    result = solve_request(req, catalog)
    assert result.plans
    for plan in result.plans:
        for g in plan.groups:
            assert g.num_gpus == g.replicas * g.tp * g.attention_dp * g.pp
            assert g.moe_tp is not None and g.moe_tp * g.moe_ep == g.tp * g.attention_dp
            assert g.layout and (f"EP {g.moe_ep}" in g.layout or g.moe_ep == 1)
            assert g.memory.total_per_gpu_gb <= g.memory.gpu_memory_gb


def test_dense_plans_keep_tp_pp_only(catalog):
    result = solve_request(_request(LLAMA2_7B, "a100-sxm4-80gb", 10.0), catalog)
    g = result.plans[0].groups[0]
    assert (g.attention_dp, g.moe_ep, g.moe_tp, g.layout) == (1, 1, None, None)


def test_default_layouts_are_tp_tep_dep_and_dp_with_tp_experts(catalog):
    arch = catalog.model(DEEPSEEK_R1)
    lay = layout_table(arch, [1, 8], [1, 8], None)
    rows = set(zip(lay.tp.tolist(), lay.dp.tolist(), lay.ep.tolist()))
    assert rows == {(1, 1, 1), (1, 8, 1), (1, 8, 8), (8, 1, 1), (8, 1, 8), (8, 8, 1), (8, 8, 64)}
    dense = layout_table(catalog.model(LLAMA2_7B), [1, 2], [1, 8], None)
    assert set(dense.dp.tolist()) == {1} and set(dense.ep.tolist()) == {1}


def _run(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


PLAN_R1 = ["plan", "--model", DEEPSEEK_R1, "--budget", "300", "--input-len", "4000", "--output-len", "500", "--gpu", "h200-sxm"]


@pytest.mark.parametrize(
    ("extra", "words"),
    [
        (["--ep", "3"], ["--ep", "256 routed experts"]),
        (["--attention-dp", "0"], ["--attention-dp", ">= 1"]),
    ],
)
def test_bad_layout_flags_are_one_line_naming_the_flag(extra, words):
    result = _run(*PLAN_R1, *extra)
    assert result.exit_code == 1, result.output
    line = [x for x in result.stderr.strip().splitlines() if not x.startswith("warning: model")]  # the model's caveat
    assert len(line) == 1 and "Traceback" not in result.output
    for w in words:
        assert w in line[0], line[0]


def test_ep_on_a_dense_model_is_refused_naming_the_key(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text(
        f"model: {LLAMA2_7B}\nworkload: {{input_len: 512, output_len: 128}}\nbudget: {{usd_per_hour: 12}}\nparallelism: {{ep: [8]}}\n"
    )
    result = _run("solve", str(f))
    assert result.exit_code == 1, result.output
    assert "parallelism.ep" in result.stderr and "dense" in result.stderr


def _stream_request(**par) -> PlanRequest:
    return PlanRequest.model_validate(
        {
            "model": QWEN3_30B,
            "workload": {"input_len": 1024, "output_len": 256, "rate_rps": 20},
            "budget": {"usd_per_hour": 60},
            "gpus": {"h100-sxm": {}},
            "framework": "vllm",
            "precision": ["bf16"],
            "slo": {"ttft_ms": 2000, "tpot_ms": 60},
            "parallelism": {"pp": [1], "tp": [1, 2], **par},
        }
    )


def test_a_dp_replica_serves_dp_times_one_ranks_rate(catalog):
    from guideopt.solver.options import resolve_gpus
    from guideopt.solver.stream_options import build_stream_space
    from guideopt.solver.stream_rates import slo_rates

    req = _stream_request(attention_dp=[4], ep=[4])
    gpus = resolve_gpus(req, catalog)
    space = build_stream_space(req, catalog, gpus, [g.usd_per_hour for g in gpus], prune=False)
    assert len(space.table) and set(space.table.dp.tolist()) == {4}
    rank = slo_rates(space.arch, space.options, space.lengths, space.targets, 1.0)
    assert space.slo_rate_rps == pytest.approx(4 * rank, rel=1e-12)


def test_stream_plans_with_attention_dp_are_simulated_per_rank(catalog):
    result = solve_request(_stream_request(attention_dp=[1, 4], ep=[1, 4]), catalog)
    assert result.plans
    for plan in result.plans:
        g = plan.groups[0]
        assert g.num_gpus == g.replicas * g.tp * g.attention_dp * g.pp
        stream = g.stream or {}
        simulated = stream.get("simulated")
        if simulated is None:
            continue
        # the simulator ran one attention-DP rank at its share of the replica's load
        assert simulated["request_throughput_rps"] == pytest.approx(20 / (g.replicas * g.attention_dp), rel=0.25)
