"""Aggregated against disaggregated for one request: the comparison a plan reports, and
why ``disaggregation: only`` found nothing.

Both come from the analytic candidates (before the simulator's check): the best of each
kind under the request's objective, its $/h, and at the request's fixed rate the gain in
requests/s per $ (the rate over each plan's $/h).
"""

from __future__ import annotations

import numpy as np

from guideopt.errors import NoFeasiblePlanError
from guideopt.model.request import PlanRequest
from guideopt.solver.candidates import Candidates
from guideopt.solver.single import ranked_plans
from guideopt.units import MILLI_USD_PER_USD

DISAGG_SOURCE = 2  # candidates' ``source``: 0 option table, 1 cross-type pipeline, 2 disaggregated group


def _best(req: PlanRequest, cands: Candidates, pool: np.ndarray) -> int | None:
    ranked = ranked_plans(cands, pool, list(req.objective), cands.shape, 1)
    return int(ranked[0]) if ranked.size else None


def _slo_words(req: PlanRequest) -> str:
    q = req.slo.percentile
    parts = [
        f"P{q:g} {name} ≤ {v:g} ms" for name, v in (("TTFT", req.slo.ttft_ms), ("TPOT", req.slo.tpot_ms)) if isinstance(v, (int, float))
    ]
    return f" at {', '.join(parts)}" if parts else ""


def compare_roles(req: PlanRequest, cands: Candidates, feasible: np.ndarray, n_agg: int) -> dict:
    """The best aggregated and disaggregated candidates' $/h and the gain of the better, in words."""
    agg = feasible.copy()
    agg[n_agg:] = False
    dis = feasible.copy()
    dis[:n_agg] = False
    a, d = _best(req, cands, agg), _best(req, cands, dis)
    usd = {k: (None if i is None else float(cands.milli_usd_per_hour[i]) / MILLI_USD_PER_USD) for k, i in (("a", a), ("d", d))}
    rate = req.workload.rate_rps
    out: dict = {"aggregated_usd_per_hour": usd["a"], "disaggregated_usd_per_hour": usd["d"]}
    if usd["a"] is None or usd["d"] is None:
        missing = "aggregated" if usd["a"] is None else "disaggregated"
        out["note"] = f"no {missing} plan meets the constraints"
        return out
    gain = usd["a"] / usd["d"] - 1.0  # requests/s per $ at the same rate
    out["requests_per_usd_gain"] = gain
    better = "disaggregated" if gain > 0 else "aggregated"
    out["note"] = (
        f"{better}: {abs(gain) if gain > 0 else usd['d'] / usd['a'] - 1.0:+.0%} requests/s per $ for {rate:g} req/s{_slo_words(req)} "
        f"(aggregated ${usd['a']:.2f}/h, disaggregated ${usd['d']:.2f}/h)"
    )
    return out


def only_disagg(req: PlanRequest, cands: Candidates, feasible: np.ndarray, n_agg: int, engines_able: bool, short_prompts: bool) -> None:
    """``disaggregation: only`` found no disaggregated candidate: raise saying why, and what
    aggregated plans give (``feasible``: the aggregated candidates', the first ``n_agg``)."""
    feasible = np.concatenate([feasible, np.zeros(len(cands) - feasible.size, dtype=bool)])  # the disaggregated part: none feasible
    if not engines_able:
        raise NoFeasiblePlanError(
            "disaggregation: no allowed engine version pairs prefill and decode workers on the allowed GPUs "
            "(allow one whose catalog entry has capabilities.disaggregation, e.g. --framework vllm-0.33 or sglang-0.5.23)",
            ["disaggregation", "framework"],
        )
    agg = feasible.copy()
    agg[n_agg:] = False
    a = _best(req, cands, agg)
    tail = (
        f"; the best aggregated plan costs ${float(cands.milli_usd_per_hour[a]) / MILLI_USD_PER_USD:.2f}/h (use --disaggregated allow)"
        if a is not None
        else ""
    )
    why = " (prompts shorter than their outputs gain little from a prefill pool of their own)" if short_prompts else ""
    raise NoFeasiblePlanError(
        f"disaggregation: no prefill and decode pools meet the SLOs within the budget and limits{why}{tail}",
        ["disaggregation", "budget.usd_per_hour"],
    )
