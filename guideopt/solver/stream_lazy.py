"""Stream candidates' latencies computed only where the ranking can read them.

A stream candidate's percentiles (its operating point: a mixture quantile per SLO bound) cost
far more than its price, and the default objective leads with cost. The candidates are
therefore ordered by the objective's leading terms that need no latency (cost, load served,
throughput, $ per token: ``LATENCY_FREE``) and their operating points computed in that order,
a batch at a time, each batch ending where that key changes. The ranking of the candidates
computed so far is exact once its last shown plan's key is below every candidate not yet
computed that may still be feasible: those rank after it whatever their latencies (the
ranking is lexicographic, leading with those terms). Until a candidate is computed its
latency columns are 0, so it counts as meeting every SLO bound (a superset of the feasible).
An objective leading with a latency term computes every candidate at once.

Where the cheapest-first pricing left options with a provisional SLO rate (a rate they meet the
SLOs at; their fewest replicas final), the load columns read from it (``LOAD_TERMS`` and the
tie-break on the load served) are made final by ``refine`` only where they decide the ranking
(``LazyLatencies.decisive``), and the ranking redone until none that decides is provisional.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from guideopt.model.request import ObjectiveTerm
from guideopt.solver.candidates import Candidates
from guideopt.solver.single import ranked_plans
from guideopt.solver.terms import TERMS

LATENCY_FREE = frozenset({ObjectiveTerm.COST, ObjectiveTerm.RATE, ObjectiveTerm.THROUGHPUT, ObjectiveTerm.USD_PER_MILLION_OUTPUT_TOKENS})
REFINE_AHEAD_SHAPES = 4  # shapes past ``top`` whose load columns are made final with the shown ones
FIRST_BATCH = 128  # candidates computed first (then twice as many each time), extended to a key boundary
LATENCY_COLUMNS = ("ttft_us", "tpot_us", "latency_us", "slo_us")  # what ``compute`` fills
# terms read from the load a candidate serves within the SLOs (what ``refine`` makes final)
LOAD_TERMS = frozenset({ObjectiveTerm.RATE, ObjectiveTerm.THROUGHPUT, ObjectiveTerm.USD_PER_MILLION_OUTPUT_TOKENS})


class LazyLatencies:
    """``cands`` with its latency columns filled by ``compute`` (of candidate indices: fills
    their columns in place) in the order of the objective's leading terms among ``known``
    (the terms whose columns are final before any ``compute``)."""

    def __init__(
        self,
        cands: Candidates,
        objective: list[ObjectiveTerm],
        compute: Callable[[np.ndarray], None],
        known: frozenset[ObjectiveTerm] = LATENCY_FREE,
        refine: Callable[[np.ndarray], bool] | None = None,
    ) -> None:
        self.cands, self.objective, self.compute, self.refine = cands, objective, compute, refine
        prefix = []
        for term in objective:
            if term not in known:
                break
            prefix.append(TERMS[term].oriented(cands))
        self.keys = np.stack(prefix, axis=1) if prefix else np.zeros((len(cands), 0), dtype=np.int64)
        self.order = np.lexsort(self.keys.T[::-1]) if prefix else np.arange(len(cands))
        self.done = np.zeros(len(cands), dtype=bool)
        self.pos = 0  # order[:pos] computed
        self.batch = FIRST_BATCH if prefix else max(len(cands), 1)

    def next_batch(self) -> bool:
        """Compute the next batch (extended to the end of its key); False when all are computed."""
        n = self.order.size
        if self.pos >= n:
            return False
        end = min(self.pos + self.batch, n)
        ordered = self.keys[self.order]
        while end < n and np.array_equal(ordered[end], ordered[end - 1]):
            end += 1
        idx = self.order[self.pos : end]
        self.compute(idx)
        self.done[idx] = True
        self.pos = end
        self.batch *= 2
        return True

    def ranked(self, pool_of: Callable[[], np.ndarray], shapes: np.ndarray, top: int) -> np.ndarray:
        """The exact top ``top`` of ``pool_of()`` (recomputed after each batch: it reads the
        latency columns), computing batches until no candidate left out can rank among them,
        and with ``refine``, the load columns final where they decide (``decisive``)."""
        while True:
            ranked = self._latency_exact(pool_of, shapes, top)
            if self.refine is None:
                return ranked
            # the next few shapes' too: a ranking redone after the simulator cuts a plan reads
            # them, and one search over more options costs about what it costs over a few
            done = pool_of() & self.done
            wider = ranked_plans(self.cands, done, self.objective, shapes, top + REFINE_AHEAD_SHAPES)
            if not self.refine(self.decisive(wider, done)):
                return ranked

    def _latency_exact(self, pool_of: Callable[[], np.ndarray], shapes: np.ndarray, top: int) -> np.ndarray:
        while True:
            pool = pool_of()
            ranked = ranked_plans(self.cands, pool & self.done, self.objective, shapes, top)
            waiting = self.order[self.pos :]
            waiting = waiting[pool[waiting]]
            if waiting.size == 0:
                return ranked
            if ranked.size == top and tuple(self.keys[ranked[-1]]) < tuple(self.keys[waiting[0]]):
                return ranked
            self.next_batch()

    def decisive(self, ranked: np.ndarray, pool: np.ndarray) -> np.ndarray:
        """Candidates whose load columns (``LOAD_TERMS``, and the tie-break on the load served)
        decide the ranking: the ranked ones (their figures are shown), and every candidate of
        ``pool`` equal to a ranked one in the objective's terms before its first load term (the
        load orders only such candidates among themselves; an order among candidates that holds
        no ranked one changes no choice of the best per shape nor of the shapes shown)."""
        terms = []
        for term in self.objective:
            if term in LOAD_TERMS:
                break
            terms.append(TERMS[term].oriented(self.cands))
        if not terms or ranked.size == 0:
            return ranked if terms else np.nonzero(pool)[0]
        keys = np.stack(terms, axis=1)
        members = np.nonzero(pool)[0]
        same = (keys[members][:, None, :] == keys[ranked][None, :, :]).all(axis=2).any(axis=1)
        return np.union1d(ranked, members[same])
