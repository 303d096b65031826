"""Exact top-k mixed-type plans: best-first branch and bound (Lawler) over the Pareto-front
knapsack, bounded by work, not by the clock.

A *node* is a set of allowed candidates and of slots (GPU types) that must hold a group; its
bound is the lexicographic optimum of the relaxation where a cross-type pipeline occupies
only its first type (``hetero_lex``). Nodes are popped best first (a node's key holds its
first stage's value until it is popped, then all of them). The popped node's plan is:
  - a *type conflict* (a type used twice: a pipeline's second stage and a group of its own,
    or two pipelines): the node splits into disjoint children — the type is no pipeline's
    second stage; or it is the second stage of a pipeline whose first type is t, for each t;
  - a repeat of an earlier plan's shapes (a later rank may not hold all shapes of an earlier
    one): with those shapes s1..sm, child i requires s1..s(i-1) and forbids si;
  - else the next rank, exactly: no unexplored plan beats a popped bound. The node goes back
    on the heap, where the new rank's shapes split it in turn.
The children partition their parent's plans minus those that break a rule, so every plan is
in at most one node and the ranks come out in order, each proven. The search stops after
``MAX_DP_PASSES`` programme passes (deterministic), or at the wall-clock deadline (a safety
net, reported); the ranks found by then are exact.
"""

from __future__ import annotations

import heapq
import itertools
from dataclasses import dataclass

import numpy as np

from guideopt.model.request import ObjectiveTerm, PlanRequest
from guideopt.solver.candidates import Candidates
from guideopt.solver.constraints import BUDGET, MAX_GPUS, MAX_NODES, STREAM_LOAD, THROUGHPUT_FLOOR, Bound, Scope, within
from guideopt.solver.hetero_lex import LexProblem, LexResult, first_front, solve_lex
from guideopt.solver.pareto_dp import Front, SlotItems
from guideopt.solver.terms import TERMS, Aggregate
from guideopt.solver.timing import Deadline

# Work bound of one ranked search: Pareto-front DP passes (each a few milliseconds over the
# whole catalog). Top 20 of the README request takes about 150.
MAX_DP_PASSES = 4000


def dp_problem(c: Candidates, req: PlanRequest, bounds: list[Bound]) -> LexProblem | None:
    """The ranked DP's problem, or None when the request needs more than it models (caps on
    GPUs or nodes over the plan, or both throughput and load summed): CP-SAT then."""
    plan_kinds = {b.kind for b in bounds if b.kind.scope is Scope.PLAN}
    if plan_kinds & {MAX_GPUS, MAX_NODES}:
        return None
    sums = {t for t in req.objective if TERMS[t].aggregate is not Aggregate.WORST and t is not ObjectiveTerm.COST}
    if ObjectiveTerm.USD_PER_MILLION_OUTPUT_TOKENS in sums:
        sums = (sums - {ObjectiveTerm.USD_PER_MILLION_OUTPUT_TOKENS}) | {ObjectiveTerm.THROUGHPUT}
    if THROUGHPUT_FLOOR in plan_kinds:
        sums.add(ObjectiveTerm.THROUGHPUT)
    if STREAM_LOAD in plan_kinds:
        sums.add(ObjectiveTerm.RATE)
    if len(sums) > 1:
        return None
    value_term = next(iter(sums), ObjectiveTerm.THROUGHPUT)
    value = TERMS[value_term].values(c).astype(np.int64)
    floor = max((b.int_limit() for b in bounds if b.kind in (THROUGHPUT_FLOOR, STREAM_LOAD)), default=0)
    budget = next(b for b in bounds if b.kind is BUDGET).int_limit()
    worst = {t: TERMS[t].values(c).astype(np.int64) for t in req.objective if TERMS[t].aggregate is Aggregate.WORST}
    items = SlotItems.build(c.gpu_idx.astype(np.int64), c.milli_usd_per_hour.astype(np.int64), value)
    return LexProblem(items, budget, value_term, floor, list(req.objective), worst)


def type_allowed(c: Candidates, bounds: list[Bound]) -> np.ndarray:
    """Candidates within every per-type limit (inventories)."""
    return within(c, bounds, Scope.TYPE)


@dataclass
class Node:
    allowed: np.ndarray
    required: frozenset[int]
    key: tuple[int, ...] = ()  # a lower bound of its best plan's oriented values (exact once solved)
    front: Front | None = None  # its first front, once computed
    result: LexResult | None = None  # all stages (None: not yet solved)


@dataclass
class RankedPlans:
    picks: list[list[int]]
    values: list[list[int]]
    exhausted: bool  # every plan was ranked (fewer than asked exist)
    work_hit: bool  # the work bound stopped the search
    passes: int


class RankedSearch:
    def __init__(self, c: Candidates, problem: LexProblem, allowed: np.ndarray, deadline: Deadline) -> None:
        self.c, self.p, self.deadline = c, problem, deadline
        self.heap: list[tuple[tuple[int, ...], int, Node]] = []
        self.counter = itertools.count()
        self.shown: list[list[int]] = []  # shape sets of the ranks found
        self.sign = [-1 if TERMS[t].maximise else 1 for t in problem.objective]
        self._push(Node(allowed, frozenset()))

    def _push(self, node: Node) -> None:
        heapq.heappush(self.heap, (node.key, next(self.counter), node))

    def _refine(self, node: Node) -> None:
        """One step closer to the node's exact key: its first stage, then every stage; pushed
        back unless it holds no plan."""
        if node.front is None:
            node.front = first_front(self.p, node.allowed, node.required)
            first = solve_lex(self.p, node.allowed, node.required, stages=1, front=node.front)
            if first is None:
                return
            node.key = (self.sign[0] * first.values[0],)
        else:
            node.result = solve_lex(self.p, node.allowed, node.required, front=node.front)
            if node.result is None:
                return
            node.key = tuple(s * v for s, v in zip(self.sign, node.result.values))
        self._push(node)

    def run(self, top: int) -> RankedPlans:
        out = RankedPlans([], [], False, False, 0)
        while len(out.picks) < top:
            if self.p.work[0] >= MAX_DP_PASSES:
                out.work_hit = True
                break
            if self.deadline.expired():
                self.deadline.hit = True
                break
            if not self.heap:
                out.exhausted = True
                break
            _, _, node = heapq.heappop(self.heap)
            if node.result is None:
                self._refine(node)
                continue
            children = self._split(node)
            if children is None:  # a valid plan: the next rank
                out.picks.append(node.result.picks)
                out.values.append(node.result.values)
                self.shown.append(sorted({int(s) for s in self.c.shape[node.result.picks]}))
                self._push(node)
                continue
            for child in children:  # the parent's key bounds theirs: solved only when popped
                child.key = node.key
                self._push(child)
        out.passes = self.p.work[0]
        return out

    def _split(self, node: Node) -> list[Node] | None:
        picks = np.asarray(node.result.picks)  # type: ignore[union-attr]
        conflict = _conflict_type(self.c, picks)
        if conflict is not None:
            return _conflict_children(self.c, node, conflict)
        shapes = set(self.c.shape[picks].tolist())
        for earlier in self.shown:
            if shapes.issuperset(earlier):
                return _exclusion_children(self.c, node, earlier)
        return None


def _conflict_type(c: Candidates, picks: np.ndarray) -> int | None:
    """The first GPU type the plan uses twice (a pipeline's second stage is counted too)."""
    used = np.concatenate([c.gpu_idx[picks], c.gpu_idx2[picks][c.gpu_idx2[picks] >= 0]])
    values, counts = np.unique(used, return_counts=True)
    twice = values[counts > 1]
    return int(twice[0]) if twice.size else None


def _conflict_children(c: Candidates, node: Node, b: int) -> list[Node]:
    """Type b is no pipeline's second stage; or it is the second stage of a pipeline from
    type a (for each a), which then fills a's slot, and b holds nothing else."""
    second = c.gpu_idx2 == b
    out = [Node(node.allowed & ~second, node.required)]
    if b in node.required:  # b must hold a group of its own: it cannot be a second stage
        return out
    for a in np.unique(c.gpu_idx[node.allowed & second]).tolist():
        keep = node.allowed & (c.gpu_idx != b) & (~second | (c.gpu_idx == a)) & ((c.gpu_idx != a) | second)
        out.append(Node(keep, node.required | {int(a)}))
    return out


def _exclusion_children(c: Candidates, node: Node, shapes: list[int]) -> list[Node]:
    """Disjoint children that each leave out one of ``shapes`` (child i keeps the first i-1)."""
    out = []
    allowed, required = node.allowed, node.required
    for s in shapes:
        out.append(Node(allowed & (c.shape != s), required))
        slot = int(c.gpu_idx[np.flatnonzero(c.shape == s)[0]])
        allowed = allowed & ((c.gpu_idx != slot) | (c.shape == s))
        required = required | {slot}
    return out
