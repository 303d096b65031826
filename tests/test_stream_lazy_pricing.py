"""The stream planner's shortcuts change no ranking (issue 24: sub-second stream plans).

* Cheapest-first pricing (``solver/stream_pricing.py``) against brute force: every option of
  a small catalog priced (its SLO rate searched, its fewest replicas from it); each shape's
  cheapest plan, and the planner's top shapes and costs are the brute force's.
* Lazily computed operating points and SLO rates (``solver/stream_lazy.py``) against the
  same candidates computed eagerly: the same ranked candidates, for cost-led and other
  objectives.
"""

from __future__ import annotations

import numpy as np
import pytest

from guideopt.model.request import PlanRequest
from guideopt.solver import stream_pricing
from guideopt.solver.constraints import satisfied, user_bounds
from guideopt.solver.dominance import shape_key
from guideopt.solver.options import resolve_gpus
from guideopt.solver.single import ranked_plans
from guideopt.solver.stream_options import build_stream_space, refine_rates
from guideopt.solver.stream_plan import lazy_stream_candidates, stream_candidates
from guideopt.units import MILLI_LOAD_PER_LOAD, ROUNDING_EPS

CASES = [
    {
        "model": "meta-llama/Llama-3.1-8B",
        "workload": {"input_len": 1024, "output_len": 256, "rate_rps": 12},
        "budget": {"usd_per_hour": 25},
        "gpus": {"l4": {}, "a100-sxm4-80gb": {}, "h100-sxm": {}},
        "slo": {"ttft_ms": 500, "tpot_ms": 40},
        "top": 3,
    },
    {
        "model": "meta-llama/Llama-3.1-8B",
        "workload": {"lengths": "sharegpt", "rate_rps": 6},
        "budget": {"usd_per_hour": 20},
        "gpus": {"l4": {}, "rtx-6000-ada": {}},
        "slo": {"ttft_ms": {"p99": 1500}, "tpot_ms": {"p90": 60}},
        "top": 4,
    },
]


def _setup(catalog, data: dict):
    req = PlanRequest.model_validate(data)
    gpus = resolve_gpus(req, catalog)
    return req, gpus, [g.usd_per_hour for g in gpus], user_bounds(req, gpus)


def _brute_force_fewest(req, space) -> np.ndarray:
    """Per option of an unpruned space (every option's SLO rate searched), the fewest replicas
    that serve the load within the SLOs, as the candidates count them; 0: none within the budget."""
    t = space.table
    price = t.usd_per_hour_per_gpu * t.gpus_per_replica
    milli = np.floor(space.slo_load * MILLI_LOAD_PER_LOAD)
    fewest = np.ceil(req.workload.rate_rps * MILLI_LOAD_PER_LOAD / np.maximum(milli, 1) - ROUNDING_EPS)
    ok = (milli > 0) & (fewest * price <= req.budget.usd_per_hour * (1 + 1e-9))
    return np.where(ok, fewest, 0).astype(int)


@pytest.mark.parametrize("data", CASES)
@pytest.mark.parametrize("batch", [3, stream_pricing.PRUNE_BATCH])  # small rounds: the stop rule decides, not the batch size
def test_cheapest_first_pricing_finds_the_brute_force_top_shapes(catalog, data, batch, monkeypatch):
    monkeypatch.setattr(stream_pricing, "PRUNE_BATCH", batch)
    req, gpus, prices, bounds = _setup(catalog, data)
    space = build_stream_space(req, catalog, gpus, prices, refine_later=True)
    lazy = lazy_stream_candidates(req, space, bounds)
    c = lazy.cands
    ranked = lazy.ranked(lambda: satisfied(c, bounds), c.shape, req.top)
    got = [(int(shape_key(space.table)[c.ref[k]]), int(c.milli_usd_per_hour[k])) for k in ranked]

    full = build_stream_space(req, catalog, gpus, prices, prune=False)
    fewest = _brute_force_fewest(req, full)
    t = full.table
    milli_usd = np.round(t.usd_per_hour_per_gpu * t.gpus_per_replica * 1000).astype(np.int64) * fewest
    shapes = shape_key(t)
    cheapest: dict[int, int] = {}
    for i in np.nonzero(fewest > 0)[0]:
        cheapest[int(shapes[i])] = min(cheapest.get(int(shapes[i]), 1 << 62), int(milli_usd[i]))
    want = sorted(cheapest.values())[: req.top]
    assert [cost for _, cost in got] == want, "the planner's top costs are not the brute force's"
    for shape, cost in got:
        assert cheapest[shape] == cost, "a shown shape's cost is not its brute-force cheapest"


@pytest.mark.parametrize("data", CASES)
@pytest.mark.parametrize("objective", [None, ["cost", "tpot"], ["rate", "cost"], ["ttft", "cost"]])
def test_lazy_operating_points_rank_as_eager_ones(catalog, data, objective):
    data = dict(data) if objective is None else {**data, "objective": objective}
    req, gpus, prices, bounds = _setup(catalog, data)
    space = build_stream_space(req, catalog, gpus, prices, refine_later=True)
    lazy = lazy_stream_candidates(req, space, bounds)
    c = lazy.cands
    ranked = lazy.ranked(lambda: satisfied(c, bounds), c.shape, req.top)
    computed = int(lazy.done.sum())

    eager_space = build_stream_space(req, catalog, gpus, prices, refine_later=True)
    refine_rates(req, eager_space, np.arange(len(eager_space.table)))
    eager = stream_candidates(req, eager_space, bounds)
    reference = ranked_plans(eager, satisfied(eager, bounds), list(req.objective), eager.shape, req.top)
    key = lambda cands, k: (int(cands.ref[k]), int(cands.replicas[k]), int(cands.ttft_us[k]), int(cands.milli_load[k]))  # noqa: E731
    assert [key(c, k) for k in ranked] == [key(eager, k) for k in reference]
    if req.objective[0].value == "cost":  # the point of it: most candidates are never computed
        assert computed < len(c) / 2
