"""Planning for a request stream: brute force, monotone properties, the issue's example,
agreement with ``capacity --rate``, bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from guideopt import api
from guideopt.analyses.capacity import CapacityRequest, capacity
from guideopt.cli import main
from guideopt.errors import InvalidRequestError, NoFeasiblePlanError
from guideopt.model.request import ObjectiveTerm, PlanRequest
from guideopt.solver.candidates import expand, kinds_from_options
from guideopt.solver.constraints import satisfied, stream_slo_bounds, user_bounds
from guideopt.solver.dominance import shape_key
from guideopt.solver.options import resolve_gpus
from guideopt.solver.single import ranked_plans
from guideopt.solver.stream_options import build_stream_space
from guideopt.solver.stream_plan import stream_candidates, with_operating_point
from guideopt.units import MILLI_LOAD_PER_LOAD

SMALL = {
    "model": "meta-llama/Llama-2-7b-hf",
    "workload": {"input_len": 512, "output_len": 128, "rate_rps": 4.0, "num_requests": 400},
    "budget": {"usd_per_hour": 12},
    "gpus": {"l4": {}, "a100-sxm4-80gb": {}},
    "parallelism": {"tp": [1, 2], "pp": [1]},
    "slo": {"ttft_ms": 800, "tpot_ms": 60},
    "top": 1,
}


def small(**changes) -> dict:
    data = json.loads(json.dumps(SMALL))
    for key, value in changes.items():
        section, _, leaf = key.partition(".")
        if leaf:
            data[section][leaf] = value
        else:
            data[section] = value
    return data


def _space(req: PlanRequest, catalog):
    gpus = resolve_gpus(req, catalog)
    return gpus, build_stream_space(req, catalog, gpus, [g.usd_per_hour for g in gpus])


@pytest.mark.parametrize("rate,ttft", [(2.0, 800.0), (6.0, 400.0), (15.0, 1500.0)])
def test_best_stream_plan_equals_brute_force(catalog, rate, ttft):
    req = PlanRequest.model_validate(
        small(**{"workload.rate_rps": rate, "slo": {"ttft_ms": {"p90": ttft, "p99": 3 * ttft}, "tpot_ms": 60}})
    )
    gpus, space = _space(req, catalog)
    bounds = user_bounds(req, gpus)
    cands = stream_candidates(req, space, bounds)
    ok = satisfied(cands, bounds)
    solver_best = int(ranked_plans(cands, ok, list(req.objective), cands.shape, 1)[0])
    # brute force: every option at every replica count the budget allows, priced directly
    kinds = kinds_from_options(space.table, shape_key(space.table))
    kinds.milli_load = np.floor(space.slo_load * MILLI_LOAD_PER_LOAD).astype(np.int64)
    every = []
    for o in range(len(kinds)):
        for n in range(1, int(12_000 // kinds.milli_usd_per_hour[o]) + 1):
            every.append((o, n))
    opt, reps = np.array([e[0] for e in every]), np.array([e[1] for e in every])
    allc = with_operating_point(req, space, expand(kinds, opt, reps))
    good = (allc.milli_usd_per_hour <= 12_000) & (allc.milli_load >= rate * MILLI_LOAD_PER_LOAD)
    for j, (_, _, bound) in enumerate(stream_slo_bounds(req)):
        good &= allc.slo_us[:, j] <= bound * 1000
    assert good.any()
    keys = np.lexsort((-allc.milli_load[good], allc.ttft_us[good], allc.milli_usd_per_hour[good]))
    brute = np.nonzero(good)[0][keys[0]]
    assert cands.milli_usd_per_hour[solver_best] == allc.milli_usd_per_hour[brute]
    assert cands.ttft_us[solver_best] == allc.ttft_us[brute]
    assert cands.milli_load[solver_best] == allc.milli_load[brute]


def _value(data: dict, catalog, term: int = 0) -> float:
    return api.plan(data, catalog).objective_values[term]


PROPERTY = settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@PROPERTY
@given(budget=st.floats(3.0, 30.0), extra=st.floats(0.0, 30.0))
def test_more_budget_never_lowers_the_sustainable_rate(catalog, budget, extra):
    base = small(**{"workload.rate_rps": 0.5, "objective": ["rate", "cost"]})
    low = _value({**base, "budget": {"usd_per_hour": budget}}, catalog)
    high = _value({**base, "budget": {"usd_per_hour": budget + extra}}, catalog)
    assert high >= low


@PROPERTY
@given(rate=st.floats(0.5, 20.0), factor=st.floats(1.0, 3.0))
def test_a_higher_rate_never_needs_fewer_gpus(catalog, rate, factor):
    one_type = {"gpus": {"a100-sxm4-80gb": {}}, "budget": {"usd_per_hour": 200}}

    def gpus(r: float) -> int:
        return api.plan({**small(**{"workload.rate_rps": r}), **one_type}, catalog).plans[0].num_gpus

    assert gpus(rate * factor) >= gpus(rate)


@PROPERTY
@given(ttft=st.floats(200.0, 2000.0), looser=st.floats(1.0, 4.0))
def test_a_looser_slo_never_costs_more(catalog, ttft, looser):
    def cost(t: float) -> float:
        return api.plan(small(**{"slo": {"ttft_ms": t, "tpot_ms": 80}, "budget": {"usd_per_hour": 60}}), catalog).plans[0].usd_per_hour

    assert cost(ttft * looser) <= cost(ttft)


def test_issue_example_meets_the_slos_in_simulation():
    args = "plan --model meta-llama/Llama-3.1-70B --budget 40 --input-len 1024 --output-len 256 --ttft-ms 500 --tpot-ms 50"
    args += " --gpu h100-sxm --gpu a100-sxm4-80gb --gpu l40s --rate 10 --json"
    res = CliRunner().invoke(main, args.split())
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["verification_rounds"] >= 1
    plan = out["plans"][0]
    sim = plan["groups"][0]["stream"]["simulated"]
    assert plan["stream"]["simulated_meets_slo"] is True
    assert sim["ttft_ms"]["p90"] <= 500 and sim["tpot_ms"]["p90"] <= 50
    ana = plan["groups"][0]["stream"]["analytic"]
    assert ana["ttft_ms"]["p90"] <= 500 and ana["tpot_ms"]["p90"] <= 50
    assert plan["usd_per_hour"] <= 40


def test_plan_and_capacity_agree_on_replicas(catalog):
    data = small(**{"workload.rate_rps": 9.0, "gpus": {"a100-sxm4-80gb": {}}, "budget": {"usd_per_hour": 100}})
    g = api.plan(data, catalog).plans[0].groups[0]
    res = capacity(
        CapacityRequest(
            model=data["model"],
            gpu=g.gpu,
            tp=g.tp,
            pp=g.pp,
            framework=g.framework,
            input_len=512,
            output_len=128,
            rate=9.0,
            ttft_ms=800,
            tpot_ms=60,
            split=g.split,
            running_cap=g.stream["running_cap"],
        ),
        catalog,
    )
    assert res.replicas == g.replicas


def test_offline_request_keeps_static_batch_plans(catalog):
    offline = api.plan(small(workload={"input_len": 512, "output_len": 128}), catalog)
    assert offline.verification_rounds is None and offline.plans[0].stream is None
    assert offline.objective == ["throughput", "latency", "cost"]


def test_per_percentile_slo_is_checked_at_each_percentile(catalog):
    result = api.plan(small(slo={"ttft_ms": {"p50": 300, "p99": 900}, "tpot_ms": {"p90": 60}}), catalog)
    ana = result.plans[0].groups[0].stream["analytic"]
    assert ana["ttft_ms"]["p50"] <= 300 and ana["ttft_ms"]["p99"] <= 900 and ana["tpot_ms"]["p90"] <= 60


@pytest.mark.parametrize(
    "changes,field",
    [
        ({"workload.rate_rps": 0}, "workload.rate_rps"),
        ({"workload.rate_rps": -2}, "workload.rate_rps"),
        ({"slo": {"ttft_ms": 500, "percentile": 100}}, "slo.percentile"),
        ({"slo": {"ttft_ms": {"p0": 500}}}, "slo.ttft_ms"),
        ({"workload": {"input_len": 512, "output_len": 128, "batch": 4, "rate_rps": 2}}, "workload"),
    ],
)
def test_bad_stream_input_names_the_field(catalog, changes, field):
    with pytest.raises(InvalidRequestError, match=field.replace(".", r"\.")):
        api.plan(small(**changes), catalog)


def test_unservable_rate_says_the_largest_the_budget_serves(catalog):
    with pytest.raises(NoFeasiblePlanError, match=r"workload\.rate_rps: 5000 req/s .* the most is [0-9.]+ req/s"):
        api.plan(small(**{"workload.rate_rps": 5000.0}), catalog)
    res = CliRunner().invoke(
        main,
        ["plan", "--model", "meta-llama/Llama-2-7b-hf", "--budget", "5", "--input-len", "512", "--output-len", "128", "--rate", "5000"],
    )
    assert res.exit_code == 3 and "the most is" in res.stderr and "Traceback" not in res.output


def test_heterogeneous_stream_is_refused_in_one_line():
    res = CliRunner().invoke(
        main,
        [
            "plan",
            "--model",
            "meta-llama/Llama-2-7b-hf",
            "--budget",
            "5",
            "--input-len",
            "512",
            "--output-len",
            "128",
            "--rate",
            "2",
            "--heterogeneous",
        ],
    )
    assert res.exit_code == 1 and res.stderr.count("\n") == 1 and "heterogeneous" in res.stderr


def test_stream_rate_term_is_refused_offline(catalog):
    with pytest.raises(InvalidRequestError, match="rate needs a stream"):
        api.plan(small(workload={"input_len": 512, "output_len": 128}, objective=[ObjectiveTerm.RATE.value]), catalog)


def test_length_mix_stream_plans(catalog):
    data = small(workload={"lengths": "sharegpt", "rate_rps": 2.0, "num_requests": 300}, budget={"usd_per_hour": 30})
    plan = api.plan(data, catalog).plans[0]
    assert plan.stream is not None and plan.groups[0].stream["simulated"]["requests"] > 0


def test_one_token_outputs_plan_with_a_tpot_slo():
    """No request of a one-token output has a TPOT: the SLO holds, the plan is verified in one
    round and its JSON has no NaN (the simulated TPOT is null)."""
    args = "plan --model meta-llama/Llama-2-7b-hf --budget 10 --input-len 1000 --output-len 1 --rate 4 --ttft-ms 500 --tpot-ms 40"
    res = CliRunner().invoke(main, [*args.split(), "--gpu", "a100-sxm4-80gb", "--top", "1", "--json"])
    assert res.exit_code == 0, res.output
    assert "NaN" not in res.stdout
    out = json.loads(res.stdout)
    plan = out["plans"][0]
    assert plan["stream"]["simulated_meets_slo"] is True and out["verification_rounds"] == 1
    assert plan["groups"][0]["stream"]["simulated"]["tpot_ms"]["p90"] is None
