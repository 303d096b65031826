"""Single-type plans: the top-k ranking in plain numpy.

A single-type plan is one candidate (an option at its most or fewest replicas), so the
lexicographic optimum over the candidates that meet every limit is the first row of one
lexicographic sort of the objective columns, and the next-best plan of a new shape is the
first later row of a shape not shown yet: exactly what the staged CP-SAT model with a
no-good cut per shown shape returns, for every rank at the cost of one O(n log n) sort.
Ties (equal in every objective term) go to the stream plan serving the most load within
the SLOs, then to the lowest candidate index, as the Pareto front the CP-SAT model saw kept
the first of identical rows. CP-SAT stays where the
problem is coupled: mixed GPU types, and the assumption-based explanation when nothing is
feasible.
"""

from __future__ import annotations

import numpy as np

from guideopt.model.request import ObjectiveTerm
from guideopt.solver.candidates import Candidates
from guideopt.solver.terms import TERMS


def ranked_plans(c: Candidates, feasible: np.ndarray, objective: list[ObjectiveTerm], shapes: np.ndarray, top: int) -> np.ndarray:
    """Candidate indices of the best plan of each of the first ``top`` distinct shapes."""
    pool = np.nonzero(feasible)[0]
    if pool.size == 0:
        return pool
    keys = [TERMS[t].oriented(c)[pool] for t in objective]
    # among stream plans equal in every term, the one that serves the most load within the SLOs
    # (headroom: a higher running cap at the same latencies); static candidates have none (0)
    order = pool[np.lexsort([np.arange(pool.size), -c.milli_load[pool], *keys[::-1]])]
    _, first = np.unique(shapes[order], return_index=True)
    return order[np.sort(first)[:top]]
