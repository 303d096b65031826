"""The exact ranked search of mixed-type plans (issue 24: Pareto-front knapsack and a
best-first split) against an exhaustive enumeration on random small instances, cross-type
pipelines included (the planner-level brute force in test_hetero.py leaves them out).

An instance is a few GPU types, each with a handful of candidate groups (cost, throughput,
latency, a deployment shape), plus pipelines that occupy two types. A plan holds at most one
group per type, pipelines counting on both of theirs, within the budget. The enumeration
lists every plan, sorts by the objective, and takes ranks one by one: a later rank may not
hold every shape of an earlier one (the solver's top-k rule).
"""

from __future__ import annotations

import itertools
import random
from types import SimpleNamespace

import numpy as np
import pytest

from guideopt.model.request import ObjectiveTerm as T
from guideopt.solver.hetero_lex import LexProblem, solve_lex
from guideopt.solver.hetero_ranks import RankedSearch
from guideopt.solver.pareto_dp import SlotItems, pareto_items, solve_front
from guideopt.solver.terms import TERMS, ratio_values
from guideopt.solver.timing import Deadline

OBJECTIVES = (
    [T.THROUGHPUT, T.LATENCY, T.COST],
    [T.LATENCY, T.THROUGHPUT, T.COST],
    [T.COST, T.LATENCY],
    [T.USD_PER_MILLION_OUTPUT_TOKENS, T.LATENCY],
    [T.THROUGHPUT, T.COST],
)


def random_instance(seed: int):
    rng = random.Random(seed)
    types = rng.randint(2, 4)
    rows = []  # (slot, second slot or -1, shape, cost, thr, latency)
    shape = 0
    for t in range(types):
        for _ in range(rng.randint(1, 3)):  # shapes of this type, each at a few replica counts
            per_cost, per_thr, lat = rng.randint(3, 9), rng.randint(5, 30), rng.randint(1, 6)
            for n in range(1, rng.randint(1, 3) + 1):
                rows.append((t, -1, shape, per_cost * n, per_thr * n, lat))
            shape += 1
    for _ in range(rng.randint(0, 4)):  # pipelines over two types
        a, b = rng.sample(range(types), 2)
        rows.append((a, b, shape, rng.randint(4, 14), rng.randint(8, 50), rng.randint(1, 6)))
        shape += 1
    arr = np.array(rows, dtype=np.int64)
    c = SimpleNamespace(gpu_idx=arr[:, 0], gpu_idx2=arr[:, 1], shape=arr[:, 2], cost=arr[:, 3], thr=arr[:, 4], lat=arr[:, 5])
    budget = rng.randint(8, 30)
    floor = rng.choice([0, 0, rng.randint(10, 40)])
    return c, budget, floor, types


def _ratio(cost: int, thr: int) -> int:
    scale = TERMS[T.USD_PER_MILLION_OUTPUT_TOKENS].ratio[2]  # type: ignore[index]
    return int(ratio_values(np.array([cost]), np.array([thr]), scale)[0])


def plan_key(c, plan: tuple[int, ...], objective) -> tuple[int, ...]:
    cost, thr = int(c.cost[list(plan)].sum()), int(c.thr[list(plan)].sum())
    worst = int(c.lat[list(plan)].max())
    value = {T.THROUGHPUT: -thr, T.COST: cost, T.LATENCY: worst, T.USD_PER_MILLION_OUTPUT_TOKENS: _ratio(cost, thr)}
    return tuple(value[t] for t in objective)


def every_plan(c, budget: int, floor: int, types: int):
    choices = [[None] + [k for k in range(len(c.gpu_idx)) if c.gpu_idx[k] == t] for t in range(types)]
    for combo in itertools.product(*choices):
        plan = tuple(k for k in combo if k is not None)
        if not plan:
            continue
        used = [int(c.gpu_idx[k]) for k in plan] + [int(c.gpu_idx2[k]) for k in plan if c.gpu_idx2[k] >= 0]
        if len(used) != len(set(used)) or c.cost[list(plan)].sum() > budget or c.thr[list(plan)].sum() < floor:
            continue
        yield plan


def brute_ranks(c, budget, floor, types, objective, top):
    plans = sorted(every_plan(c, budget, floor, types), key=lambda p: plan_key(c, p, objective))
    shown: list[set[int]] = []
    out = []
    for plan in plans:
        if len(out) == top:
            break
        shapes = {int(c.shape[k]) for k in plan}
        if any(shapes >= s for s in shown):
            continue
        out.append(plan_key(c, plan, objective))
        shown.append(shapes)
    return out


def ranked(c, budget, floor, objective, top):
    items = SlotItems.build(c.gpu_idx, c.cost, c.thr)
    problem = LexProblem(items, budget, T.THROUGHPUT, floor, list(objective), {T.LATENCY: c.lat})
    found = RankedSearch(c, problem, np.ones(len(c.gpu_idx), dtype=bool), Deadline(60.0)).run(top)
    return found, [plan_key(c, tuple(p), objective) for p in found.picks]


@pytest.mark.parametrize("seed", range(60))
def test_every_rank_equals_the_enumeration(seed):
    c, budget, floor, types = random_instance(seed)
    objective = OBJECTIVES[seed % len(OBJECTIVES)]
    want = brute_ranks(c, budget, floor, types, objective, top=8)
    found, got = ranked(c, budget, floor, objective, top=8)
    assert got == want, (seed, got, want)
    assert found.exhausted == (len(want) < 8)
    for plan in found.picks:  # every plan is valid: types used once, within budget and floor
        used = list(c.gpu_idx[plan]) + [g for g in c.gpu_idx2[plan] if g >= 0]
        assert len(used) == len(set(used)) and c.cost[plan].sum() <= budget and c.thr[plan].sum() >= floor


@pytest.mark.parametrize("seed", range(20))
def test_front_holds_every_undominated_plan(seed):
    """The DP (pipelines on their first type only, no conflicts) keeps, for every cost, the
    best throughput any plan of that cost or less reaches."""
    c, budget, _, types = random_instance(seed)
    items = SlotItems.build(c.gpu_idx, c.cost, c.thr)
    front = solve_front(items, pareto_items(items, np.ones(len(c.gpu_idx), dtype=bool), budget), budget)
    choices = [[None] + [k for k in range(len(c.gpu_idx)) if c.gpu_idx[k] == t] for t in range(types)]
    best = {}
    for combo in itertools.product(*choices):
        plan = [k for k in combo if k is not None]
        cost = int(c.cost[plan].sum())
        if plan and cost <= budget:
            best[cost] = max(best.get(cost, 0), int(c.thr[plan].sum()))
    for b in range(budget + 1):
        want = max((v for cost, v in best.items() if cost <= b), default=None)
        on_front = front.value[front.nonempty & (front.cost <= b)]
        got = int(on_front.max()) if on_front.size else None
        assert got == want, (b, got, want)
    for j in np.flatnonzero(front.nonempty):  # each point rebuilds into a plan with its sums
        plan = front.plan(int(j))
        assert c.cost[plan].sum() == front.cost[j] and c.thr[plan].sum() == front.value[j]


def test_more_budget_never_gives_a_worse_first_rank():
    for seed in range(30):
        c, budget, floor, _ = random_instance(seed)
        objective = OBJECTIVES[0]
        keys = []
        for b in (budget, budget + 3, budget + 10):
            items = SlotItems.build(c.gpu_idx, c.cost, c.thr)
            p = LexProblem(items, b, T.THROUGHPUT, floor, list(objective), {T.LATENCY: c.lat})
            res = RankedSearch(c, p, np.ones(len(c.gpu_idx), dtype=bool), Deadline(60.0)).run(1)
            keys.append(plan_key(c, tuple(res.picks[0]), objective) if res.picks else None)
        assert keys == [None] * keys.count(None) + [k for k in keys if k is not None], keys  # feasible stays feasible
        present = [k for k in keys if k is not None]
        assert all(a[0] >= b[0] for a, b in zip(present, present[1:])), keys  # -throughput never rises


def test_solve_lex_without_plans_says_none():
    c, budget, _, _ = random_instance(0)
    items = SlotItems.build(c.gpu_idx, c.cost, c.thr)
    p = LexProblem(items, budget, T.THROUGHPUT, 10**9, [T.THROUGHPUT], {})
    assert solve_lex(p, np.ones(len(c.gpu_idx), dtype=bool), frozenset()) is None


def test_work_bound_returns_an_exact_prefix(catalog, monkeypatch):
    """Cut by its work bound, the ranked search returns the first ranks of the full answer,
    says so, and does not claim the wall clock stopped it."""
    from conftest import LLAMA2_7B

    from guideopt import api
    from guideopt.solver import hetero_ranks

    raw = {"model": LLAMA2_7B, "workload": {"input_len": 512, "output_len": 256}, "budget": {"usd_per_hour": 12}}
    raw.update(heterogeneous=True, top=6)
    full = api.plan(raw, catalog)
    assert full.status == "optimal" and len(full.plans) == 6
    monkeypatch.setattr(hetero_ranks, "MAX_DP_PASSES", 12)
    cut = api.plan(raw, catalog)
    assert 1 <= len(cut.plans) < 6
    assert cut.status == "feasible" and not cut.time_limit_reached
    assert "work bound" in (cut.explanation or "")
    assert [p.model_dump() for p in cut.plans] == [p.model_dump() for p in full.plans[: len(cut.plans)]]
