"""A stream plan's check done for several plans at once gives each plan what checking it
alone gives (issue 24: the plans' analytic operating points are computed in one call per round
of checks)."""

from __future__ import annotations

import numpy as np

from guideopt.model.request import PlanRequest
from guideopt.solver.options import resolve_gpus
from guideopt.solver.stream_options import build_stream_space
from guideopt.solver.stream_verify import verify_plan, verify_plans


def _space(catalog, model: str, slo: dict):
    req = PlanRequest.model_validate(
        {
            "model": model,
            "workload": {"input_len": 1024, "output_len": 200, "rate_rps": 4, "num_requests": 300},
            "budget": {"usd_per_hour": 60},
            "gpus": {"l4": {}, "h100-sxm": {}},
            "slo": slo,
        }
    )
    gpus = resolve_gpus(req, catalog)
    return req, build_stream_space(req, catalog, gpus, [g.usd_per_hour for g in gpus], prune=False)


def test_plans_verified_together_equal_plans_verified_alone(catalog):
    req, space = _space(catalog, "meta-llama/Llama-3.1-8B", {"ttft_ms": 600, "tpot_ms": 60})
    served = np.nonzero(space.slo_rate_rps > 0)[0]
    rows = served[np.linspace(0, served.size - 1, 3).astype(int)]
    replicas = np.array([1, 2, 3])
    together = verify_plans(req, space, rows, replicas)
    for plan, row, n in zip(together, rows, replicas):
        assert plan.model_dump() == verify_plan(req, space, int(row), int(n)).model_dump()
