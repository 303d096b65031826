"""``rate_rps: max`` / ``concurrency: max``: the highest load a budget and inventory serve
within the percentile SLOs, and the plans at that load.

Every option is priced (its SLO load per replica, ``build_stream_space`` without the
cheapest-first cut, which needs a load to prune by); each at its most replicas within the
budget, inventory, GPU and node limits serves replicas × SLO load, and the highest such
load, rounded down to the milli-request/s (whole clients for a closed loop), is then
planned as an ordinary stream request: ranked, simulated and cut. When the simulator cuts
every plan at that load, the next lower load found is tried, a bounded number of times.
"""

from __future__ import annotations

import math

import numpy as np

from guideopt.catalog import Catalog
from guideopt.errors import NoFeasiblePlanError
from guideopt.model.plan import PlanResult
from guideopt.model.request import PlanRequest
from guideopt.solver.constraints import STREAM_LOAD, satisfied, user_bounds
from guideopt.solver.options import resolve_gpus
from guideopt.solver.stream_options import build_stream_space
from guideopt.solver.stream_plan import solve_stream, stream_candidates
from guideopt.solver.timing import Deadline, Phases
from guideopt.units import MILLI_LOAD_PER_LOAD

MAX_LOAD_TRIES = 4  # loads tried, highest first, when the simulator cuts every plan at one


def highest_loads(req: PlanRequest, cat: Catalog) -> list[float]:
    """The distinct loads (req/s, or clients) the best candidates serve, highest first."""
    gpus = resolve_gpus(req, cat)
    prices = [req.allowance(g.id).usd_per_hour or g.usd_per_hour for g in gpus]
    space = build_stream_space(req, cat, gpus, prices, prune=False)
    bounds = [b for b in user_bounds(req, gpus) if b.kind is not STREAM_LOAD]
    if len(space.table) == 0:
        return []
    cands = stream_candidates(req, space, bounds)
    ok = satisfied(cands, bounds)
    milli = cands.milli_load[ok]  # all replicas of each candidate
    closed = req.workload.concurrency is not None
    loads = sorted({(math.floor(m / MILLI_LOAD_PER_LOAD) if closed else m / MILLI_LOAD_PER_LOAD) for m in np.unique(milli)}, reverse=True)
    return [x for x in loads if x > 0]


def solve_max_load(req: PlanRequest, cat: Catalog, deadline: Deadline, clock: Phases) -> PlanResult:
    loads = highest_loads(req, cat)
    clock.lap("highest load")
    if not loads:
        # nothing serves any load within the SLOs: the ordinary stream solve says why
        return solve_stream(_at(req, None), cat, deadline, clock)
    last: NoFeasiblePlanError | None = None
    for load in loads[:MAX_LOAD_TRIES]:
        try:
            result = solve_stream(_at(req, load), cat, deadline, clock)
        except NoFeasiblePlanError as exc:  # the simulator cut every plan at this load: the next lower one
            last = exc
            continue
        plans = [p.model_copy(update={"stream": {**(p.stream or {}), "max_load": True}}) for p in result.plans]
        return result.model_copy(update={"plans": plans})
    assert last is not None
    raise last


def _at(req: PlanRequest, load: float | None) -> PlanRequest:
    """The request with its load fixed (None: the probe load it was priced at)."""
    wl = req.workload
    if load is None:
        return req
    key = "concurrency" if wl.concurrency is not None else "rate_rps"
    value = int(load) if key == "concurrency" else load
    return req.model_copy(update={"workload": wl.model_copy(update={key: value, "max_load": False})})
