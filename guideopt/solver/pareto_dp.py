"""The exact multiple-choice knapsack of mixed-type plans, as a Pareto-front dynamic programme.

Each GPU type is a *slot* that holds at most one group (a candidate: a replica kind and its
replica count). A partial plan over the slots seen so far is summarised by two integers:
its cost (milli-$/h, at most the budget) and its value (the one summed quantity the request
ranks or bounds: output throughput or the stream load served). Of the partial plans with the
same slots, only the Pareto front in (cost smaller, value larger) can be completed into an
optimum of any objective monotone in both, so the programme keeps that front slot by slot
(Nemhauser–Ullmann), with back-pointers to rebuild a plan. Fronts stay small (a few hundred
points for the catalog's 32 GPU types), so one pass costs milliseconds whatever the budget.

Ties keep the earliest point in the order (cost, then value, then candidate index), so the
same input always gives the same plan.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class SlotItems:
    """Candidates sorted by (slot, cost, value descending, index): the DP's input."""

    order: np.ndarray  # candidate indices in that order
    slot: np.ndarray  # slot of each (sorted)
    cost: np.ndarray
    value: np.ndarray

    @staticmethod
    def build(slot: np.ndarray, cost: np.ndarray, value: np.ndarray) -> SlotItems:
        order = np.lexsort((np.arange(slot.size), -value, cost, slot))
        return SlotItems(order, slot[order], cost[order], value[order])


def pareto_items(items: SlotItems, allowed: np.ndarray, budget: int) -> np.ndarray:
    """Positions (into ``items``) of the allowed items on their slot's own (cost, value)
    front within the budget: an item another of its slot beats or equals in both is in no
    optimum (swapping it out keeps every constraint the DP sees)."""
    ok = allowed[items.order] & (items.cost <= budget)
    pos = np.nonzero(ok)[0]
    if pos.size == 0:
        return pos
    slot, value = items.slot[pos], items.value[pos]
    new_slot = np.concatenate([[True], slot[1:] != slot[:-1]])
    # running max of value within each slot: offset slots so that maxima never cross them
    span = int(value.max()) - int(value.min()) + 1
    keyed = (np.cumsum(new_slot) - 1).astype(np.int64) * span + (value - value.min())
    running = np.maximum.accumulate(keyed)
    keep = new_slot.copy()
    keep[1:] |= keyed[1:] > running[:-1]
    return pos[keep]


@dataclass
class Front:
    """Pareto front of whole plans: cost ascending, value strictly ascending."""

    cost: np.ndarray
    value: np.ndarray
    nonempty: np.ndarray  # False for the empty plan
    parents: list[np.ndarray]  # per slot step: index into the previous front
    picks: list[np.ndarray]  # per slot step: candidate index (-1: the slot holds nothing)

    def plan(self, j: int) -> list[int]:
        """Candidate indices of the plan at front position ``j``."""
        out = []
        for parent, pick in zip(reversed(self.parents), reversed(self.picks)):
            if pick[j] >= 0:
                out.append(int(pick[j]))
            j = int(parent[j])
        return sorted(out)


def solve_front(items: SlotItems, positions: np.ndarray, budget: int, required: frozenset[int] = frozenset(), value_min: int = 0) -> Front:
    """The front over every plan of at most one item per slot (exactly one in ``required``
    slots) with cost <= budget, less the points that cannot reach ``value_min``: a point's
    value plus what the slots after it could add (at most the sum of their best values, and
    at most the budget left times their best value per cost) falls short."""
    cost = np.zeros(1, dtype=np.int64)
    value = np.zeros(1, dtype=np.int64)
    nonempty = np.zeros(1, dtype=bool)
    parents: list[np.ndarray] = []
    picks: list[np.ndarray] = []
    if positions.size == 0:  # nothing allowed: only the empty plan
        return Front(cost, value, nonempty, [], []) if not required else Front(cost[:0], value[:0], nonempty[:0], [], [])
    slots = items.slot[positions]
    bounds = np.flatnonzero(np.concatenate([[True], slots[1:] != slots[:-1], [True]]))
    present = {int(slots[s]) for s in bounds[:-1]}
    if not required <= present:  # a required slot has no allowed item
        return Front(cost[:0], value[:0], nonempty[:0], [], [])
    most, per_cost = _still_reachable(items, positions, bounds) if value_min > 0 else (None, None)
    for step, (a, b) in enumerate(zip(bounds[:-1], bounds[1:])):
        mine = positions[a:b]
        skip = int(slots[a]) not in required
        ic = np.concatenate([[0], items.cost[mine]]) if skip else items.cost[mine]
        iv = np.concatenate([[0], items.value[mine]]) if skip else items.value[mine]
        ik = np.concatenate([[-1], items.order[mine]]) if skip else items.order[mine]
        cost, value, nonempty, parent, pick = _merge(cost, value, nonempty, ic, iv, ik, budget)
        if most is not None and per_cost is not None:
            left = np.minimum(most[step + 1], np.floor(per_cost[step + 1] * (budget - cost)) + 1)
            ok = value + left >= value_min
            cost, value, nonempty, parent, pick = cost[ok], value[ok], nonempty[ok], parent[ok], pick[ok]
        parents.append(parent)
        picks.append(pick)
    return Front(cost, value, nonempty, parents, picks)


def _still_reachable(items: SlotItems, positions: np.ndarray, bounds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per step (slots processed so far), the most value the remaining slots can add: the sum
    of their best items' values, and their best value per unit of cost (a fractional bound)."""
    value = items.value[positions].astype(float)
    ratio = value / np.maximum(items.cost[positions], 1)
    best = np.maximum.reduceat(value, bounds[:-1])
    best_ratio = np.maximum.reduceat(ratio, bounds[:-1])
    most = np.concatenate([np.cumsum(best[::-1])[::-1], [0.0]])
    per_cost = np.concatenate([np.maximum.accumulate(best_ratio[::-1])[::-1], [0.0]]) * (1 + 1e-9)
    return most, per_cost


def _merge(cost, value, nonempty, ic, iv, ik, budget: int):
    """Every (front point, item) pair within the budget, reduced to its Pareto front. The
    empty plan (cost 0: every item costs more) is kept whatever its value."""
    nc = (cost[:, None] + ic[None, :]).ravel()
    ok = np.flatnonzero(nc <= budget)
    nv = (value[:, None] + iv[None, :]).ravel()[ok]
    nc = nc[ok]
    order = _sort_order(nc, nv)
    nc, nv, ok = nc[order], nv[order], ok[order]
    keep = np.empty(nc.size, dtype=bool)
    keep[:1] = True
    np.greater(nv[1:], np.maximum.accumulate(nv)[:-1], out=keep[1:])
    keep |= nc == 0
    idx = ok[keep]
    parent, pick = idx // ic.size, ik[idx % ic.size]
    return nc[keep], nv[keep], nonempty[parent] | (pick >= 0), parent, pick


def _sort_order(cost: np.ndarray, value: np.ndarray) -> np.ndarray:
    """Cost up, value down, then the order of creation (stable). Only the empty plan costs
    0, so it sorts first."""
    if cost.size == 0:
        return np.arange(0)
    span = int(value.max()) - int(value.min()) + 1
    if int(cost.max()) < (1 << 62) // span:  # one integer key: a single stable sort
        return np.argsort(cost * span + (int(value.max()) - value), kind="stable")
    return np.lexsort((np.arange(cost.size), -value, cost))
