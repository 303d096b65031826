"""The CP-SAT planner against an independent brute-force checker, plus plan invariants.

The checker builds the same option table the solver sees (``build_plan_options``), takes
every option that fits in memory and every replica count that the budget allows, applies
the request's constraints itself and picks the lexicographic optimum with numpy. It shares
no code with ``guideopt/solver/cpsat.py`` or ``guideopt/solver/plan.py`` (candidate
reduction, pruning, Pareto front, the CP-SAT stages), so it re-checks all of them.
"""

from __future__ import annotations

import json
import math
import random
import re
from typing import Any

import numpy as np
import pytest
from conftest import (
    DECI_TOK_PER_TOK,
    LLAMA2_7B,
    LLAMA2_13B,
    LLAMA3_8B,
    LLAMA31_405B,
    MILLI_USD_PER_USD,
    PER_MTOK,
    QWEN2_7B,
    SMALL_GPUS,
    US_PER_S,
    close_tuple,
    milli_usd_per_million_tok,
    plan_or_none,
    plan_request,
    rel_close,
    solver_values,
)
from hypothesis import assume, given
from hypothesis import strategies as st

from guideopt import api, units
from guideopt.errors import NoFeasiblePlanError
from guideopt.model.request import PlanRequest
from guideopt.solver.options import build_plan_options

# Integer scaling of the objective terms, as documented in guideopt/units.py: ties
# below these resolutions are ties for the solver too.
TERMS = ("throughput", "latency", "ttft", "tpot", "cost")

SOLVER_MODELS = (LLAMA2_7B, LLAMA3_8B, QWEN2_7B, LLAMA2_13B)
GPU_POOL = (
    "l4",
    "t4",
    "a10g",
    "l40s",
    "rtx-4090",
    "a100-sxm4-40gb",
    "a100-sxm4-80gb",
    "a100-pcie-80gb",
    "h100-sxm",
    "h100-pcie",
    "mi300x",
)
GPU_SUBSETS = (
    ("l4", "h100-sxm"),
    ("l4", "a100-sxm4-80gb", "h100-sxm"),
    ("t4", "a10g", "l40s"),
    ("a100-sxm4-40gb", "h100-pcie"),
    ("rtx-4090", "mi300x", "l4", "a10g"),
)


def test_scaling_matches_the_solver():
    assert (units.MILLI_USD_PER_USD, units.US_PER_S, units.DECI_TOK_S_PER_TOK_S) == (MILLI_USD_PER_USD, US_PER_S, DECI_TOK_PER_TOK)


# ---------------------------------------------------------------- the independent checker


def _shape_of_option(table, i: int) -> tuple:
    space = table.space
    return (
        space.gpus[int(table.gpu_idx[i])].id,
        space.frameworks[int(table.fw_idx[i])].id,
        space.dtypes[int(table.dtype_idx[i])].value,
        int(table.tp[i]),
        int(table.dp[i]),
        int(table.ep[i]),
        int(table.pp[i]),
    )


def _shape_of_group(group) -> tuple:
    return (group.gpu, group.framework, group.dtype, group.tp, group.attention_dp, group.moe_ep, group.pp)


def brute_force(req: PlanRequest, catalog, exclude_shapes: set[tuple] = frozenset()) -> tuple[int, ...] | None:
    """The lexicographic optimum (smaller is better per term) over all (option, replicas), or None."""
    opts = build_plan_options(req, catalog)
    table = opts.all_options
    fit = [i for i in np.nonzero(table.fits)[0] if _shape_of_option(table, int(i)) not in exclude_shapes]
    if not fit:
        return None
    fit = np.array(fit)
    per_replica = table.gpus_per_replica[fit].astype(np.int64)
    price = table.usd_per_hour_per_gpu[fit]
    n_max = int(math.floor(req.budget.usd_per_hour / float(price.min()))) + 1
    opt_i, n = (a.ravel() for a in np.meshgrid(np.arange(fit.size), np.arange(1, n_max + 1), indexing="ij"))
    o = fit[opt_i]
    gpus = per_replica[opt_i] * n
    m = table.metrics
    # The model's conservative scaling: a replica's price rounded up to the milli-dollar,
    # throughput rounded down to 0.1 tok/s (so accepted plans truly meet budget and floors).
    usd = np.ceil(price[opt_i] * per_replica[opt_i] * MILLI_USD_PER_USD - 1e-9).astype(np.int64) * n
    thr = np.floor(m.output_throughput_tok_s[o] * n * DECI_TOK_PER_TOK + 1e-9).astype(np.int64)
    ttft = np.round(m.ttft_s[o] * US_PER_S).astype(np.int64)
    tpot = np.round(m.tpot_s[o] * US_PER_S).astype(np.int64)
    lat = np.round(m.batch_latency_s[o] * US_PER_S).astype(np.int64)

    ok = usd <= math.floor(req.budget.usd_per_hour * MILLI_USD_PER_USD + 1e-9)
    if req.parallelism.max_gpus:
        ok &= gpus <= req.parallelism.max_gpus
    gpu_of = table.gpu_idx[o]
    if req.parallelism.max_nodes:
        node = np.array([catalog.gpu(g.id).gpus_per_node for g in table.space.gpus])[gpu_of]
        g = per_replica[opt_i]
        nodes = np.where(g <= node, -(-n // np.maximum(node // g, 1)), n * -(-g // node))
        ok &= nodes <= req.parallelism.max_nodes
    for g, gpu in enumerate(table.space.gpus):
        limit = req.allowance(gpu.id).max
        if limit is not None:
            ok &= ~((gpu_of == g) & (gpus > limit))
    slo = req.slo
    if slo.ttft_ms is not None:
        ok &= ttft <= slo.ttft_ms * 1e3
    if slo.tpot_ms is not None:
        ok &= tpot <= slo.tpot_ms * 1e3
    if slo.batch_latency_s is not None:
        ok &= lat <= slo.batch_latency_s * US_PER_S
    if slo.min_output_throughput_tok_s is not None:
        ok &= thr >= slo.min_output_throughput_tok_s * DECI_TOK_PER_TOK
    if not ok.any():
        return None
    per_mtok = milli_usd_per_million_tok(usd, np.maximum(thr, 1))
    columns = {"throughput": -thr, "latency": lat, "ttft": ttft, "tpot": tpot, "cost": usd, PER_MTOK: per_mtok}
    keys = [columns[t.value][ok] for t in req.objective]
    best = np.lexsort(keys[::-1])[0]
    return tuple(int(k[best]) for k in keys)


def plan_values(plan, req: PlanRequest, catalog) -> tuple[int, ...]:
    """A plan's objective tuple from its reported metrics, in the model's conservative scaling.

    Cost: each replica's price rounded up to the milli-dollar, times the replicas;
    throughput: rounded down to 0.1 tok/s. Latencies: nearest microsecond.
    """
    m = plan.metrics
    cost = 0
    for g in plan.groups:
        price = req.allowance(g.gpu).usd_per_hour or catalog.gpu(g.gpu).usd_per_hour
        cost += math.ceil(price * g.tp * g.attention_dp * g.pp * MILLI_USD_PER_USD - 1e-9) * g.replicas
    columns = {
        "throughput": -math.floor(m.output_throughput_tok_s * DECI_TOK_PER_TOK + 1e-9),
        "latency": round(m.batch_latency_s * US_PER_S),
        "ttft": round(m.ttft_ms * 1e3),
        "tpot": round(m.tpot_ms * 1e3),
        "cost": cost,
    }
    columns[PER_MTOK] = milli_usd_per_million_tok(cost, -columns["throughput"])
    return tuple(columns[t.value] for t in req.objective)


def lex_not_better(later: tuple[int, ...], earlier: tuple[int, ...], slack: int = 1) -> bool:
    """``later`` is lexicographically no better than ``earlier``.

    Decided at the first term that differs; a difference of at most ``slack`` units there
    may be re-rounding noise of the reported metrics, so it is accepted either way.
    """
    for x, y in zip(later, earlier):
        if x != y:
            return x > y or abs(x - y) <= slack
    return True


def random_request(seed: int) -> dict[str, Any]:
    rng = random.Random(seed)
    gpu_ids = rng.sample(GPU_POOL, rng.randint(2, 4))
    gpus: dict[str, Any] = {}
    for g in gpu_ids:
        roll = rng.random()
        gpus[g] = rng.randint(1, 8) if roll < 0.25 else ({"max": rng.randint(2, 16)} if roll < 0.35 else {})
    req: dict[str, Any] = {
        "model": rng.choice(SOLVER_MODELS),
        "workload": {"input_len": rng.choice([128, 512, 2048]), "output_len": rng.choice([32, 128, 512])},
        "budget": {"usd_per_hour": round(rng.uniform(1, 40), 2)},
        "gpus": gpus,
        "objective": rng.sample(TERMS, rng.randint(1, 3)),
        "top": 2,
    }
    if rng.random() < 0.3:
        req["workload"]["batch"] = rng.choice([1, 8, 32, 64])
    slo: dict[str, Any] = {}
    for key, choices in (
        ("ttft_ms", [20, 100, 500, 2000, 10000]),
        ("tpot_ms", [8, 15, 30, 60]),
        ("batch_latency_s", [2, 5, 20, 60]),
        ("min_output_throughput_tok_s", [200, 1000, 4000, 20000]),
    ):
        if rng.random() < 0.3:
            slo[key] = rng.choice(choices)
    if slo:
        req["slo"] = slo
    par: dict[str, Any] = {}
    if rng.random() < 0.3:
        par["max_gpus"] = rng.randint(1, 8)
    if rng.random() < 0.3:
        par["tp"] = rng.sample([1, 2, 4, 8], rng.randint(1, 3))
    if rng.random() < 0.3:
        par["pp"] = [1] if rng.random() < 0.5 else [1, 2]
    if par:
        req["parallelism"] = par
    if rng.random() < 0.25:
        req["framework"] = rng.choice(["any", ["vllm", "trtllm"], "sglang"])
    if rng.random() < 0.25:
        req["precision"] = rng.choice([["fp16", "int8"], ["int4"], ["fp16", "fp8"]])
    return req


# ---------------------------------------------------------------- solver vs brute force


@pytest.mark.parametrize("seed", range(30))
def test_solver_matches_brute_force(seed, catalog):
    req = PlanRequest.model_validate(random_request(seed))
    expected = brute_force(req, catalog)
    if expected is None:
        with pytest.raises(NoFeasiblePlanError):
            api.plan(req, catalog)
        return
    result = api.plan(req, catalog)
    assert result.status == "optimal"
    assert solver_values(result, req) == expected
    assert close_tuple(plan_values(result.plans[0], req, catalog), expected)
    # Each later plan is the optimum over the shapes not already shown.
    shown: set[tuple] = set()
    for plan in result.plans:
        want = brute_force(req, catalog, exclude_shapes=shown)
        assert want is not None
        assert close_tuple(plan_values(plan, req, catalog), want), (plan.rank, plan_values(plan, req, catalog), want)
        shown.add(_shape_of_group(plan.groups[0]))


@pytest.mark.parametrize("seed", range(12))
def test_usd_per_million_output_tokens_matches_brute_force(seed, catalog):
    """The $/million-output-token term, leading or breaking ties, at every rank."""
    raw = random_request(100 + seed)
    raw["objective"] = [PER_MTOK] + raw["objective"] if seed % 2 == 0 else raw["objective"][:1] + [PER_MTOK]
    raw["top"] = 3
    req = PlanRequest.model_validate(raw)
    expected = brute_force(req, catalog)
    if expected is None:
        with pytest.raises(NoFeasiblePlanError):
            api.plan(req, catalog)
        return
    result = api.plan(req, catalog)
    assert result.status == "optimal"
    assert solver_values(result, req) == expected
    shown: set[tuple] = set()
    for plan in result.plans:
        want = brute_force(req, catalog, exclude_shapes=shown)
        assert close_tuple(plan_values(plan, req, catalog), want), (plan.rank, plan_values(plan, req, catalog), want)
        shown.add(_shape_of_group(plan.groups[0]))


def test_usd_per_million_output_tokens_by_hand(catalog):
    """One L4 (tp 1, pp 1, batch fixed): the term is its $/h over its output tokens per hour."""
    req = plan_request(LLAMA2_7B, budget=0.44, gpus={"l4": {}}, parallelism={"tp": [1], "pp": [1]}, batch=16, objective=[PER_MTOK], top=1)
    result = api.plan(req, catalog)
    plan = result.plans[0]
    by_hand = plan.usd_per_hour / (plan.metrics.output_throughput_tok_s * 3600) * 1e6
    # rounded up at a milli-dollar (price rounded up, throughput down): never understated
    assert by_hand <= result.objective_values[0] <= by_hand + 2e-3


@pytest.mark.parametrize("seed", range(12))
def test_max_nodes_matches_brute_force(seed, catalog):
    """A node limit (nodes of gpus_per_node GPUs of one type), against the brute force."""
    raw = random_request(300 + seed)
    raw.setdefault("parallelism", {})["max_nodes"] = 1 + seed % 3
    raw["budget"] = {"usd_per_hour": raw["budget"]["usd_per_hour"] * 4}  # so that the node limit binds
    raw["objective"] = ["throughput"] + [t for t in raw["objective"] if t != "throughput"]
    req = PlanRequest.model_validate(raw)
    expected = brute_force(req, catalog)
    if expected is None:
        with pytest.raises(NoFeasiblePlanError):
            api.plan(req, catalog)
        return
    result = api.plan(req, catalog)
    assert result.status == "optimal"
    assert solver_values(result, req) == expected
    shown: set[tuple] = set()
    for plan in result.plans:
        assert close_tuple(plan_values(plan, req, catalog), brute_force(req, catalog, exclude_shapes=shown))
        shown.add(_shape_of_group(plan.groups[0]))


def test_max_nodes_by_hand(catalog):
    """L4 nodes hold 8 GPUs: TP-2 replicas pack four to a node, so two nodes hold eight
    replicas; one node caps any layout at 8 GPUs; a TP-4 × PP-2 replica on T4s (4 per node) spans two."""
    base = plan_request(
        LLAMA2_7B, budget=100, gpus={"l4": {}}, parallelism={"tp": [2], "pp": [1], "max_nodes": 2}, objective=["throughput"], top=1
    )
    plan = api.plan(base, catalog).plans[0]
    assert (plan.groups[0].replicas, plan.num_gpus) == (8, 16)
    one_node = dict(base, parallelism={"max_nodes": 1})
    assert api.plan(one_node, catalog).plans[0].num_gpus == 8
    t4 = plan_request(
        LLAMA2_13B, budget=100, gpus={"t4": {}}, parallelism={"tp": [4], "pp": [2], "max_nodes": 3}, objective=["throughput"], top=1
    )
    assert api.plan(t4, catalog).plans[0].groups[0].replicas == 1  # 2 nodes each: a second needs 4
    with pytest.raises(NoFeasiblePlanError) as info:
        api.plan(dict(t4, parallelism={"tp": [4], "pp": [2], "max_nodes": 1}), catalog)
    assert "parallelism.max_nodes" in info.value.conflicts
    assert "2 or more would allow a plan" in str(info.value)


def test_brute_force_covers_feasible_and_infeasible_instances(catalog):
    outcomes = {brute_force(PlanRequest.model_validate(random_request(s)), catalog) is None for s in range(30)}
    assert outcomes == {True, False}, "the seeded instances should exercise both outcomes"


def test_hand_checked_cost_first_plan(catalog):
    """Objective cost first: the cheapest GPU that holds Llama-2-7b at all, one of it."""
    req = plan_request(LLAMA2_7B, budget=12, gpus={"l4": {}, "h100-sxm": {}}, objective=["cost"], top=1)
    plan = api.plan(req, catalog).plans[0]
    assert plan.gpu_counts == {"l4": 1}
    assert plan.usd_per_hour == pytest.approx(catalog.gpu("l4").usd_per_hour)


def test_hand_checked_throughput_first_uses_the_budget(catalog):
    """Throughput first on L4s only (tp=1, pp=1): as many replicas as $2/h buys at $0.44 each."""
    req = plan_request(LLAMA2_7B, budget=2, gpus={"l4": {}}, parallelism={"tp": [1], "pp": [1]}, objective=["throughput", "cost"], top=1)
    plan = api.plan(req, catalog).plans[0]
    assert plan.num_gpus == math.floor(2 / catalog.gpu("l4").usd_per_hour) == 4
    assert plan.groups[0].replicas == 4


# ---------------------------------------------------------------- invariants (hypothesis)


objective_strategy = st.lists(st.sampled_from(TERMS), min_size=1, max_size=3, unique=True)


@st.composite
def plan_requests(draw, top: int = 3) -> dict[str, Any]:
    gpus = {g: {} for g in draw(st.sampled_from(GPU_SUBSETS))}
    if draw(st.booleans()):
        first = next(iter(gpus))
        gpus[first] = {"usd_per_hour": draw(st.integers(30, 400)) / 100}  # a price override
    req = plan_request(
        draw(st.sampled_from(SOLVER_MODELS)),
        budget=draw(st.integers(100, 4000)) / 100,
        input_len=draw(st.sampled_from([64, 512, 1500])),
        output_len=draw(st.sampled_from([16, 128, 300])),
        gpus=gpus,
        objective=draw(objective_strategy),
        top=top,
    )
    if draw(st.booleans()):
        req["workload"]["batch"] = draw(st.sampled_from([1, 4, 16, 64]))
    if draw(st.booleans()):
        req["slo"] = {"ttft_ms": draw(st.sampled_from([300, 3000])), "tpot_ms": draw(st.sampled_from([20, 80]))}
    if draw(st.booleans()):
        req["parallelism"] = {"max_gpus": draw(st.integers(1, 8))}
    if draw(st.booleans()):
        req["framework"] = draw(st.sampled_from(["any", "sglang", ["trtllm", "fastgen"]]))
    if draw(st.booleans()):
        req["precision"] = draw(st.sampled_from([["fp16", "int4"], ["bf16"], ["fp8", "int8"]]))
        if draw(st.booleans()):
            req["kv_dtype"] = "fp8"
    return req


@given(req=plan_requests(top=1), extra_cents=st.integers(1, 2000))
def test_more_budget_never_lowers_the_throughput_optimum(catalog, req, extra_cents):
    req["objective"] = ["throughput"] + [t for t in req["objective"] if t != "throughput"]
    low = plan_or_none(req, catalog)
    assume(low is not None)
    richer = dict(req, budget={"usd_per_hour": req["budget"]["usd_per_hour"] + extra_cents / 100})
    high = api.plan(richer, catalog)
    assert high.objective_values[0] >= low.objective_values[0]


def test_more_budget_never_lowers_throughput_sub_cent_prices(catalog):
    base = plan_request(
        LLAMA2_7B, gpus={"l4": {"usd_per_hour": 0.33351}}, parallelism={"tp": [1], "pp": [1]}, objective=["throughput", "cost"], top=1
    )
    low = api.plan(dict(base, budget={"usd_per_hour": 1.0005}), catalog)
    high = api.plan(dict(base, budget={"usd_per_hour": 1.0006}), catalog)
    assert high.objective_values[0] >= low.objective_values[0]


def test_plan_never_exceeds_the_budget_with_a_throughput_floor(catalog):
    base = plan_request(
        LLAMA2_7B,
        gpus={"l4": {"usd_per_hour": 0.33347}},
        parallelism={"tp": [1], "pp": [1]},
        objective=["cost", "throughput"],
        top=1,
        budget=1.0,
    )
    best_per_replica = float(build_plan_options(PlanRequest.model_validate(base), catalog).table.metrics.output_throughput_tok_s.max())
    base["slo"] = {"min_output_throughput_tok_s": 2.5 * best_per_replica}  # needs 3 replicas
    # The only right answer: three replicas cost 3 x $0.33347 = $1.00041/h, over the budget
    # (a solver that rounded the price down to the milli-dollar would accept them).
    with pytest.raises(NoFeasiblePlanError) as info:
        api.plan(base, catalog)
    assert set(info.value.conflicts) == {"budget.usd_per_hour", "slo.min_output_throughput_tok_s"}
    assert api.plan(dict(base, budget={"usd_per_hour": 1.002}), catalog).plans[0].groups[0].replicas == 3  # 3 x 334 m$/h


@given(req=plan_requests())
def test_every_plan_satisfies_the_request(catalog, req):
    result = plan_or_none(req, catalog)
    assume(result is not None)
    request = PlanRequest.model_validate(req)
    assert 1 <= len(result.plans) <= request.top
    assert [p.rank for p in result.plans] == list(range(1, len(result.plans) + 1))
    for plan in result.plans:
        assert plan.usd_per_hour <= request.budget.usd_per_hour + 1e-9
        assert plan.num_gpus == sum(g.replicas * g.tp * g.attention_dp * g.pp for g in plan.groups)
        if request.parallelism.max_gpus:
            assert plan.num_gpus <= request.parallelism.max_gpus
        price = {g: (request.allowance(g).usd_per_hour or catalog.gpu(g).usd_per_hour) for g in plan.gpu_counts}
        assert plan.usd_per_hour == pytest.approx(sum(price[g] * n for g, n in plan.gpu_counts.items()), abs=1e-3)
        assert sum(plan.gpu_counts.values()) == plan.num_gpus
        for group in plan.groups:
            mem = group.memory
            assert mem.total_per_gpu_gb <= mem.usable_gb * (1 + 1e-9)
            assert mem.usable_gb <= mem.gpu_memory_gb * (1 + 1e-9)
            assert mem.total_per_gpu_gb == pytest.approx(mem.weights_gb + mem.kv_cache_gb + mem.activation_gb + mem.overhead_gb, rel=1e-9)
            assert mem.gpu_memory_gb == pytest.approx(catalog.gpu(group.gpu).memory_gb)
            if request.workload.batch:
                assert group.batch == request.workload.batch
            assert group.framework in request.framework_ids(list(catalog.frameworks))
            assert group.dtype in {d.value for d in request.precision}
            assert group.tp in request.parallelism.tp and group.pp in request.parallelism.pp
        slo = request.slo
        if slo.ttft_ms:
            assert plan.metrics.ttft_ms <= slo.ttft_ms + 1e-3
        if slo.tpot_ms:
            assert plan.metrics.tpot_ms <= slo.tpot_ms + 1e-3
        # Plan-level metrics: throughputs add over groups, latencies are the worst group's.
        assert plan.metrics.output_throughput_tok_s == pytest.approx(sum(g.metrics.output_throughput_tok_s for g in plan.groups))
        assert plan.metrics.batch_latency_s == pytest.approx(max(g.metrics.batch_latency_s for g in plan.groups))


@given(req=plan_requests(top=2))
def test_plan_group_metrics_equal_predict(catalog, req):
    result = plan_or_none(req, catalog)
    assume(result is not None)
    for plan in result.plans:
        for g in plan.groups:
            pred = api.predict(
                {
                    "model": req["model"],
                    "gpu": g.gpu,
                    "num_gpus": g.replicas * g.tp * g.attention_dp * g.pp,
                    "tp": g.tp,
                    "pp": g.pp,
                    "framework": g.framework,
                    "dtype": g.dtype,
                    "kv_dtype": g.kv_dtype,
                    "batch": g.replicas * g.batch,
                    "input_len": req["workload"]["input_len"],
                    "output_len": req["workload"]["output_len"],
                    "split": g.split,
                },
                catalog,
            )
            assert pred.replicas == g.replicas and pred.batch_per_replica == g.batch and pred.waves == 1
            for key, value in g.metrics.model_dump().items():
                assert rel_close(getattr(pred.metrics, key), value), key
            for key, value in g.memory.model_dump().items():
                assert rel_close(getattr(pred.memory, key), value), key


@given(req=plan_requests(top=1), shift=st.integers(1, len(TERMS) - 1))
def test_a_second_objective_term_never_worsens_the_first(catalog, req, shift):
    first = req["objective"][0]
    second = TERMS[(TERMS.index(first) + shift) % len(TERMS)]
    only = plan_or_none(dict(req, objective=[first]), catalog)
    assume(only is not None)
    both = api.plan(dict(req, objective=[first, second]), catalog)
    assert both.objective_values[0] == only.objective_values[0]


@given(req=plan_requests())
def test_solving_twice_gives_identical_json(catalog, req):
    a = plan_or_none(req, catalog)
    assume(a is not None)
    b = api.plan(req, catalog)
    da, db = a.model_dump(), b.model_dump()
    da.pop("solve_time_s"), db.pop("solve_time_s")
    assert json.dumps(da, sort_keys=True) == json.dumps(db, sort_keys=True)


@given(req=plan_requests(top=4))
def test_top_k_plans_are_distinct_shapes_in_lexicographic_order(catalog, req):
    result = plan_or_none(req, catalog)
    assume(result is not None)
    request = PlanRequest.model_validate(req)
    shapes = [tuple(_shape_of_group(g) for g in p.groups) for p in result.plans]
    assert len(set(shapes)) == len(shapes)
    values = [plan_values(p, request, catalog) for p in result.plans]
    for earlier, later in zip(values, values[1:]):
        assert lex_not_better(later, earlier), (earlier, later)
    assert close_tuple(values[0], solver_values(result, request))


# ---------------------------------------------------------------- infeasibility explanations


def test_tiny_budget_names_the_budget_and_a_price(catalog):
    with pytest.raises(NoFeasiblePlanError) as info:
        api.plan(plan_request(LLAMA2_7B, budget=0.1), catalog)
    msg = str(info.value)
    assert "budget" in msg and "$" in msg
    assert "budget.usd_per_hour" in info.value.conflicts
    # The figure it names is enough: the cheapest single GPU that holds the model.
    cheapest = min(catalog.gpu(g).usd_per_hour for g in SMALL_GPUS)
    assert f"${cheapest:.2f}/h" in msg
    assert api.plan(plan_request(LLAMA2_7B, budget=cheapest), catalog).plans


def test_impossible_ttft_names_ttft(catalog):
    with pytest.raises(NoFeasiblePlanError) as info:
        api.plan(plan_request(LLAMA2_7B, budget=12, slo={"ttft_ms": 0.001}), catalog)
    assert "ttft" in str(info.value)
    assert info.value.conflicts == ["slo.ttft_ms"]


def test_405b_on_a10g_names_memory(catalog):
    with pytest.raises(NoFeasiblePlanError) as info:
        api.plan(plan_request(LLAMA31_405B, budget=100, gpus={"a10g": {}}, parallelism={"max_gpus": 8}), catalog)
    msg = str(info.value)
    assert "memory" in msg and "weights" in msg
    assert "memory" in info.value.conflicts


def test_conflicting_budget_and_throughput_floor_names_both(catalog):
    req = plan_request(LLAMA2_7B, budget=1, gpus={"l4": {}}, slo={"min_output_throughput_tok_s": 100_000})
    with pytest.raises(NoFeasiblePlanError) as info:
        api.plan(req, catalog)
    assert set(info.value.conflicts) == {"budget.usd_per_hour", "slo.min_output_throughput_tok_s"}


def test_inventory_too_small_names_the_gpu(catalog):
    req = plan_request(LLAMA2_13B, budget=40, gpus={"l4": 1}, parallelism={"tp": [1]})
    with pytest.raises(NoFeasiblePlanError) as info:
        api.plan(req, catalog)
    assert "l4" in str(info.value) or "memory" in str(info.value)


def test_suggested_budget_allows_a_plan(catalog):
    req = plan_request(LLAMA2_13B, budget=0.1, gpus={"a10g": {}})
    with pytest.raises(NoFeasiblePlanError) as info:
        api.plan(req, catalog)
    suggested = float(re.search(r"budget of \$([0-9.]+)/h", str(info.value)).group(1))
    assert api.plan(dict(req, budget={"usd_per_hour": suggested}), catalog).plans


def test_plan_meets_the_throughput_floor_exactly(catalog):
    # Two L4 replicas at most ($0.88/h); find a batch whose 2-replica throughput rounds *up* at 0.1 tok/s.
    for batch in (1, 2, 4, 8, 16, 24, 32):
        base = plan_request(
            LLAMA2_7B, budget=0.88, gpus={"l4": {}}, parallelism={"tp": [1], "pp": [1]}, objective=["cost"], top=1, batch=batch
        )
        table = build_plan_options(PlanRequest.model_validate(base), catalog).all_options
        deci = 2 * float(table.metrics.output_throughput_tok_s[table.fits].max()) * DECI_TOK_PER_TOK
        if deci % 1 >= 0.5:
            break
    else:
        raise AssertionError("no batch gives a throughput that rounds up: the test needs another instance")
    floor = round(deci) / DECI_TOK_PER_TOK  # just above what two replicas deliver
    # The only right answer: two replicas fall short (by less than 0.1 tok/s) and a third is
    # over budget (a solver that rounded the throughput to nearest would accept two).
    with pytest.raises(NoFeasiblePlanError) as info:
        api.plan(dict(base, slo={"min_output_throughput_tok_s": floor}), catalog)
    assert "slo.min_output_throughput_tok_s" in info.value.conflicts
    below = api.plan(dict(base, slo={"min_output_throughput_tok_s": floor - 1 / DECI_TOK_PER_TOK}), catalog).plans[0]
    assert below.groups[0].replicas == 2 and below.metrics.output_throughput_tok_s >= floor - 1 / DECI_TOK_PER_TOK


def test_max_nodes_and_per_token_cost_from_flags_and_files(tmp_path):
    """`--max-nodes` and `--objective usd_per_million_output_tokens` on the command line,
    the same keys in a constraints file, and both in the JSON Schema."""
    from click.testing import CliRunner

    from guideopt.cli import main
    from guideopt.io.constraints_file import json_schema

    args = ["plan", "--model", LLAMA2_7B, "--budget", "100", "--input-len", "512", "--output-len", "128", "--gpu", "l4"]
    args += ["--max-nodes", "1", "--objective", "throughput,usd_per_million_output_tokens", "--top", "1", "--json"]
    out = CliRunner().invoke(main, args, catch_exceptions=False)
    assert out.exit_code == 0, out.output
    flags = json.loads(out.output)
    assert flags["objective"] == ["throughput", "usd_per_million_output_tokens"]
    assert flags["plans"][0]["num_gpus"] <= 8
    path = tmp_path / "c.yaml"
    path.write_text(
        f"model: {LLAMA2_7B}\nworkload: {{input_len: 512, output_len: 128}}\nbudget: {{usd_per_hour: 100}}\n"
        "gpus: {l4: {}}\nparallelism: {max_nodes: 1}\nobjective: [throughput, usd_per_million_output_tokens]\ntop: 1\n"
    )
    out = CliRunner().invoke(main, ["solve", str(path), "--json"], catch_exceptions=False)
    assert out.exit_code == 0, out.output
    assert json.loads(out.output)["plans"][0]["num_gpus"] == flags["plans"][0]["num_gpus"]
    schema = json_schema()
    assert "max_nodes" in schema["$defs"]["Parallelism"]["properties"]
    assert "usd_per_million_output_tokens" in schema["$defs"]["ObjectiveTerm"]["enum"]


# ---------------------------------------------------------------- dominance (plain numpy)


def _skyline_by_definition(group: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Row j is kept unless another row of its group is no worse everywhere and either
    better somewhere or identical and earlier."""
    n = len(group)
    keep = np.ones(n, dtype=bool)
    for j in range(n):
        for i in range(n):
            if i == j or group[i] != group[j] or not (values[i] <= values[j]).all():
                continue
            if (values[i] < values[j]).any() or i < j:
                keep[j] = False
                break
    return keep


@given(
    rows=st.lists(st.tuples(st.integers(0, 2), st.lists(st.integers(0, 9), min_size=4, max_size=4)), min_size=0, max_size=200),
    columns=st.integers(1, 4),
)
def test_skyline_equals_the_definition(rows, columns):
    from guideopt.solver.dominance import skyline

    group = np.array([r[0] for r in rows], dtype=np.int64)
    values = np.array([r[1][:columns] for r in rows], dtype=float).reshape(len(rows), columns)
    assert (skyline(group, values) == _skyline_by_definition(group, values)).all()


# ---------------------------------------------------------------- relaxations that suffice


def _relaxed_request(raw: dict[str, Any], name: str, value: float) -> dict[str, Any]:
    out = json.loads(json.dumps(raw))
    section, key = name.split(".", 1)
    if section == "gpus":
        out["gpus"][key] = {"max": int(value)}
    else:
        out.setdefault(section, {})[key] = value
    return out


RELAXATION_CASES = [
    plan_request(LLAMA31_405B, budget=5, slo={"ttft_ms": 200}),
    plan_request(LLAMA2_7B, budget=0.2, slo={"ttft_ms": 0.5}),  # neither alone helps
    plan_request(LLAMA2_7B, budget=1, gpus={"l4": {}}, slo={"min_output_throughput_tok_s": 100_000}),
    plan_request(LLAMA2_13B, budget=40, gpus={"l4": 1, "a10g": 1}, parallelism={"tp": [1, 2]}),
    plan_request(LLAMA2_7B, budget=30, gpus={"l4": {}}, parallelism={"max_nodes": 1}, slo={"min_output_throughput_tok_s": 20_000}),
] + [random_request(s) for s in range(30)]


@pytest.mark.parametrize("raw", RELAXATION_CASES)
def test_each_suggested_relaxation_allows_a_plan(raw, catalog):
    """Every conflicting limit is named; each relaxation the explanation promises, applied
    alone (every other limit kept), gives a plan; so do the joint values."""
    from guideopt.solver.explain import relaxations

    req = PlanRequest.model_validate(raw)
    try:
        api.plan(req, catalog)
        return
    except NoFeasiblePlanError as exc:
        conflicts, msg = list(exc.conflicts), str(exc)
    opts = build_plan_options(req, catalog)
    if len(opts.table) == 0 or "memory" in conflicts:
        return  # nothing fits in memory: a different explanation
    alone, together = relaxations(opts, req, conflicts)
    assert set(alone) == set(conflicts)
    for name, value in alone.items():
        assert name in msg
        if value is None:
            assert f"{name}: relaxing it alone does not help" in msg
            continue
        assert api.plan(_relaxed_request(raw, name, value), catalog).plans, (name, value)
    if together is not None:
        relaxed = raw
        for name, value in together.items():
            relaxed = _relaxed_request(relaxed, name, value)
        assert api.plan(relaxed, catalog).plans
    else:
        assert all(v is not None for v in alone.values()) or len(conflicts) == 1


def test_when_no_single_relaxation_helps_the_joint_one_is_given(catalog):
    with pytest.raises(NoFeasiblePlanError) as info:
        api.plan(plan_request(LLAMA2_7B, budget=0.2, slo={"ttft_ms": 0.5}), catalog)
    msg = str(info.value)
    assert set(info.value.conflicts) == {"budget.usd_per_hour", "slo.ttft_ms"}
    assert "budget.usd_per_hour: relaxing it alone does not help" in msg
    assert "slo.ttft_ms: relaxing it alone does not help" in msg
    assert "relaxing them together would allow a plan" in msg


# ---------------------------------------------------------------- top-k and deadlines


@pytest.mark.parametrize("seed", range(6))
def test_top_10_each_rank_is_exactly_the_next_best(seed, catalog):
    """Ranks 1..10 against the brute force over the shapes not shown yet."""
    raw = dict(random_request(400 + seed), top=10)
    req = PlanRequest.model_validate(raw)
    result = plan_or_none(raw, catalog)
    if result is None:
        assert brute_force(req, catalog) is None
        return
    assert result.status == "optimal" and not result.time_limit_reached
    shown: set[tuple] = set()
    for plan in result.plans:
        want = brute_force(req, catalog, exclude_shapes=shown)
        assert close_tuple(plan_values(plan, req, catalog), want), (plan.rank, plan_values(plan, req, catalog), want)
        shown.add(_shape_of_group(plan.groups[0]))
    if len(result.plans) < 10:
        assert brute_force(req, catalog, exclude_shapes=shown) is None  # no shape left


def test_a_tiny_time_limit_still_returns_the_best_plan_marked_feasible(catalog):
    raw = plan_request(LLAMA2_7B, budget=12, top=10)
    full = api.plan(raw, catalog)
    cut = api.plan(dict(raw, time_limit_s=1e-4), catalog)
    assert full.status == "optimal" and len(full.plans) == 10 and not full.time_limit_reached
    assert cut.status == "feasible" and cut.time_limit_reached
    assert 1 <= len(cut.plans) < 10
    assert cut.plans[0].model_dump() == full.plans[0].model_dump()  # rank 1 is exact before any cut


def test_time_limit_from_flags_and_files(tmp_path):
    from click.testing import CliRunner

    from guideopt.cli import main

    args = ["plan", "--model", LLAMA2_7B, "--budget", "12", "--input-len", "512", "--output-len", "128", "--top", "5"]
    out = CliRunner().invoke(main, [*args, "--time-limit-s", "0.0001", "--json"], catch_exceptions=False)
    assert out.exit_code == 0, out.output
    data = json.loads(out.output)
    assert data["status"] == "feasible" and data["time_limit_reached"] is True
    path = tmp_path / "c.yaml"
    path.write_text(f"model: {LLAMA2_7B}\nworkload: {{input_len: 512, output_len: 128}}\nbudget: {{usd_per_hour: 12}}\ntime_limit_s: 0\n")
    out = CliRunner().invoke(main, ["solve", str(path)], catch_exceptions=False)
    assert out.exit_code == 1 and "time_limit_s" in out.output
