"""The lexicographic optimum of mixed-type plans over a subset of candidates, exactly, with
the Pareto-front knapsack (``pareto_dp``).

Summed terms read off the front: cost (smallest cost), the DP's value (throughput or the
stream load: largest value), $ per million output tokens (smallest cost ÷ throughput, which
a front point of largest value for its cost attains). A worst-group term (latency, TTFT,
TPOT) is the smallest threshold whose candidates still reach every earlier stage: one DP
just below the incumbent's value usually proves it, else a binary search over the values.
Each stage's optimum constrains the next; the plan returned is the cheapest that meets all.

This is the relaxation where a cross-type pipeline occupies only its first type's slot; the
ranked search (``hetero_ranks``) branches where a plan uses a type twice.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction

import numpy as np

from guideopt.model.request import ObjectiveTerm
from guideopt.solver.pareto_dp import Front, SlotItems, pareto_items, solve_front
from guideopt.solver.terms import TERMS, Aggregate, ratio_values


@dataclass
class LexProblem:
    """What every node of one ranked search shares."""

    items: SlotItems
    budget: int  # milli-$/h
    value_term: ObjectiveTerm  # THROUGHPUT or RATE: the DP's summed value
    value_floor: int  # the plan's value must reach it (throughput floor, stream load)
    objective: list[ObjectiveTerm]
    worst: dict[ObjectiveTerm, np.ndarray]  # per candidate, each worst-group term's value
    levels: dict[ObjectiveTerm, np.ndarray] = field(default_factory=dict)  # each one's distinct values, sorted
    work: list[int] = field(default_factory=lambda: [0])  # DP passes so far (the work bound)


@dataclass
class Limits:
    """Constraints fixed by earlier stages, on a front point (cost, value)."""

    cost_max: int
    value_min: int
    ratio_max: int | None = None
    ratio_scale: Fraction = Fraction(1)

    def ok(self, front: Front) -> np.ndarray:
        ok = front.nonempty & (front.cost <= self.cost_max) & (front.value >= self.value_min)
        if self.ratio_max is not None:
            ok &= self.ratio(front) <= self.ratio_max
        return ok

    def ratio(self, front: Front) -> np.ndarray:
        return ratio_values(front.cost, front.value, self.ratio_scale)


@dataclass
class LexResult:
    values: list[int]  # per objective term, in the solver's integers
    picks: list[int]


def _front(p: LexProblem, allowed: np.ndarray, required: frozenset[int], value_min: int = 0) -> Front:
    p.work[0] += 1
    return solve_front(p.items, pareto_items(p.items, allowed, p.budget), p.budget, required, value_min)


def _cheapest(front: Front, lim: Limits) -> int | None:
    """Front position of the cheapest point meeting the limits (None: none does)."""
    ok = np.flatnonzero(lim.ok(front))
    return int(ok[0]) if ok.size else None


def first_front(p: LexProblem, allowed: np.ndarray, required: frozenset[int]) -> Front:
    """The front before any stage (a node keeps it for its full solve)."""
    return _front(p, allowed, required, p.value_floor)


def solve_lex(
    p: LexProblem, allowed: np.ndarray, required: frozenset[int], stages: int | None = None, front: Front | None = None
) -> LexResult | None:
    """The lexicographic optimum over ``allowed`` candidates (``required`` slots hold a
    group), through the first ``stages`` terms (all by default); None when no plan exists.
    ``front``: ``first_front`` of the same candidates, when known."""
    lim = Limits(p.budget, p.value_floor)
    allowed = allowed.copy()
    front = first_front(p, allowed, required) if front is None else front
    values: list[int] = []
    for term in p.objective[: len(p.objective) if stages is None else stages]:
        ok = np.flatnonzero(lim.ok(front))
        if ok.size == 0:
            return None
        row = TERMS[term]
        if row.aggregate is Aggregate.WORST:
            best, front = _min_worst(p, term, allowed, required, lim, front)
            allowed &= p.worst[term] <= best
            values.append(best)
        elif term is ObjectiveTerm.COST:
            lim.cost_max = int(front.cost[ok[0]])
            values.append(lim.cost_max)
        elif term is p.value_term:
            lim.value_min = int(front.value[ok].max())
            values.append(lim.value_min)
        else:  # the ratio of cost to throughput
            assert row.ratio is not None  # the only other summed term: $ per million output tokens
            lim.ratio_scale = row.ratio[2]
            lim.ratio_max = int(lim.ratio(front)[ok].min())
            values.append(lim.ratio_max)
    j = _cheapest(front, lim)
    if j is None:
        return None
    return LexResult(values, front.plan(j))


def _min_worst(
    p: LexProblem, term: ObjectiveTerm, allowed: np.ndarray, required: frozenset[int], lim: Limits, front: Front
) -> tuple[int, Front]:
    """Smallest threshold on a worst-group term at which the candidates still give a plan
    within ``lim``, and the front at that threshold. The thresholds searched are every
    candidate's values (one sorted array per search): a value no allowed candidate has
    probes like the next lower one, and the answer is always a plan's own value."""
    worst = p.worst[term]
    if term not in p.levels:
        p.levels[term] = np.unique(worst)
    plan = front.plan(_cheapest(front, lim))  # type: ignore[arg-type]
    top = int(worst[plan].max())
    levels = p.levels[term]
    lo = 0
    hi = first = int(np.searchsorted(levels, top))
    fronts: dict[int, Front] = {}
    while lo < hi:
        # the first probe sits just below the incumbent: usually it proves it optimal
        mid = hi - 1 if hi == first else (lo + hi) // 2
        probe = fronts[mid] = _front(p, allowed & (worst <= levels[mid]), required, lim.value_min)
        j = _cheapest(probe, lim)
        if j is None:
            lo = mid + 1
        else:
            hi = int(np.searchsorted(levels, int(worst[probe.plan(j)].max())))  # may beat the threshold
    if lo not in fronts:  # the later stages need the front of exactly this threshold
        fronts[lo] = _front(p, allowed & (worst <= levels[lo]), required, lim.value_min)
    return int(levels[lo]), fronts[lo]
