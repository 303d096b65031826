"""Single-type candidates, and the CP-SAT model that traces an infeasible request back to
its conflicting limits.

A candidate is an (option, replica count) pair. Throughput and cost are the only terms
that depend on the replica count, and both grow with it, so for any objective order the
best count of an option is the most its caps allow (budget, GPU count, nodes, inventory) or
the fewest that meets the throughput floor. Each option therefore brings two candidates
(ranked in numpy by ``single``). The model picks exactly one candidate:

  pick[c] = 1 if candidate c (option o_c deployed as n_c replicas) is the plan

Every user constraint (a row of ``constraints.CONSTRAINT_KINDS``) is a constraint over
``pick`` enforced by a named literal, so an infeasible problem is traced back to the
constraints that conflict (``sufficient_assumptions_for_infeasibility``). Objective terms
are the rows of ``terms.TERMS``; coefficients are integers in the scales of
``guideopt.units``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from ortools.sat.python import cp_model

from guideopt.model.request import ObjectiveTerm
from guideopt.solver.candidates import Candidates
from guideopt.solver.constraints import Bound, violations
from guideopt.solver.terms import TERMS

SOLVER_SEED = 0
SOLVER_WORKERS = 1  # one worker: the search, and so the plans, are deterministic
STAGE_TIME_LIMIT_S = 10.0
# Work bound per stage in CP-SAT deterministic time units (about a second of one core each).
STAGE_DETERMINISTIC_TIME = 5.0


@dataclass
class ModelHandle:
    model: cp_model.CpModel
    pick: list[cp_model.IntVar]
    terms: dict[ObjectiveTerm, cp_model.LinearExpr]
    constraint_literals: dict[str, cp_model.IntVar] = field(default_factory=dict)


def _sum(lits: list[cp_model.IntVar], coefs: np.ndarray) -> cp_model.LinearExpr:
    return cp_model.LinearExpr.weighted_sum(lits, coefs.tolist())


def build_model(c: Candidates) -> ModelHandle:
    model = cp_model.CpModel()
    pick = [model.new_bool_var(f"pick_{i}") for i in range(len(c.option))]
    model.add_exactly_one(pick)  # homogeneous: one replica shape, one replica count
    terms = {term: _sum(pick, row.values(c)) for term, row in TERMS.items()}
    return ModelHandle(model=model, pick=pick, terms=terms)


def add_user_constraints(h: ModelHandle, c: Candidates, bounds: list[Bound], skip: frozenset[str] = frozenset()) -> None:
    """Each limit behind a named enforcement literal: no candidate that breaks it is picked.

    ``skip`` leaves named constraints out (used to find how far each must be relaxed).
    """
    for name, violating in violations(c, bounds, skip).items():
        lit = h.model.new_bool_var(name)
        h.constraint_literals[name] = lit
        picks = [h.pick[i] for i in np.nonzero(violating)[0]]
        if picks:
            h.model.add(sum(picks) == 0).only_enforce_if(lit)
    h.model.add_assumptions(list(h.constraint_literals.values()))


def new_solver() -> cp_model.CpSolver:
    solver = cp_model.CpSolver()
    solver.parameters.num_workers = SOLVER_WORKERS
    solver.parameters.random_seed = SOLVER_SEED
    solver.parameters.max_time_in_seconds = STAGE_TIME_LIMIT_S  # safety net
    solver.parameters.max_deterministic_time = STAGE_DETERMINISTIC_TIME  # the bound: the same on any load
    # A pick-one model needs no presolve; its probing is quadratic in the candidates.
    solver.parameters.cp_model_presolve = False
    return solver


@dataclass
class StageResult:
    status: str  # "optimal" | "feasible" | "infeasible"
    values: list[int]
    picked: int | None
    core: list[str]


def solve_lexicographic(h: ModelHandle, objective: list[ObjectiveTerm]) -> StageResult:
    """Optimise each term in turn, keeping every earlier optimum while solving the next."""
    solver = new_solver()
    values: list[int] = []
    proven = True
    stages: list[ObjectiveTerm | None] = list(objective) or [None]
    for term in stages:
        h.model.clear_objective()
        if term is not None:
            expr = h.terms[term]
            (h.model.maximize if TERMS[term].maximise else h.model.minimize)(expr)
        status = solver.solve(h.model)
        if status == cp_model.INFEASIBLE:
            names = {lit.index: name for name, lit in h.constraint_literals.items()}
            core = [names[i] for i in solver.sufficient_assumptions_for_infeasibility() if i in names]
            return StageResult("infeasible", [], None, core)
        if status not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
            return StageResult("infeasible", [], None, [])
        proven &= status == cp_model.OPTIMAL
        if term is None:
            break
        best = int(round(solver.objective_value))
        values.append(best)
        h.model.add(expr >= best if TERMS[term].maximise else expr <= best)
        _hint(h, solver)
    picked = next(i for i, v in enumerate(h.pick) if solver.value(v))
    return StageResult("optimal" if proven else "feasible", values, picked, [])


def _hint(h: ModelHandle, solver: cp_model.CpSolver) -> None:
    h.model.clear_hints()
    for v in h.pick:
        h.model.add_hint(v, solver.value(v))
