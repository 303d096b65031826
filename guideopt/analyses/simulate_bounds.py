"""Bounds on one ``guideopt simulate`` run, checked before it runs.

The simulator's cost is its scheduler steps that compute prompt tokens: pure decode steps are
advanced many at a time, but every step with a prompt chunk in it is simulated on its own
(25-110 µs of CPU each, measured here). Each such step computes at most ``token_budget`` prompt
tokens, so the prompts alone take at least Σ input_len / token_budget of them: a budget of
1 token on 2,000 prompts of 1,024 tokens is 2 million steps (172 s with nothing shown).
"""

from __future__ import annotations

import math

import numpy as np

from guideopt.errors import InvalidRequestError
from guideopt.model.limits import MAX_SIMULATED_PROMPT_STEPS
from guideopt.model.workload import SimulateRequest
from guideopt.simulator.engine import EngineSpec


def check_prompt_steps(req: SimulateRequest, inputs: np.ndarray, engine: EngineSpec) -> None:
    """Refuse a simulation whose prompts need more than ``MAX_SIMULATED_PROMPT_STEPS`` steps,
    naming the token budget when it was given, else the requests (the engine's budget is a default)."""
    tokens = int(inputs.sum())
    steps = math.ceil(tokens / engine.token_budget)
    if steps <= MAX_SIMULATED_PROMPT_STEPS:
        return
    work = f"{inputs.size:,} prompts of {tokens:,} tokens in all take at least {steps:,} steps at a budget of {engine.token_budget:,} {'token' if engine.token_budget == 1 else 'tokens'} per step"
    limit = f"over the {MAX_SIMULATED_PROMPT_STEPS:,} a simulation may run"
    if req.token_budget is not None:
        needed = math.ceil(tokens / MAX_SIMULATED_PROMPT_STEPS)
        raise InvalidRequestError(f"{work}, {limit} (give {needed:,} or more)", field="token_budget")
    fewer = max(int(inputs.size * MAX_SIMULATED_PROMPT_STEPS / steps), 1)
    field = "workload.lengths" if req.workload.lengths.file is not None else "workload.num_requests"
    raise InvalidRequestError(f"{work}, {limit} (simulate at most {fewer:,} requests, or give a larger token budget)", field=field)


def simulated_requests(req: SimulateRequest, trace_requests: int | None, recorded_arrivals: bool) -> int:
    """Requests the simulated rank runs, as ``run_simulation`` shares them: a sampled stream's
    ``num_requests``; a trace whole, or every n-th request of n ranks when its recorded arrivals are replayed."""
    if trace_requests is None:
        return req.workload.num_requests
    ranks = req.replicas * req.attention_dp
    replayed = recorded_arrivals and req.workload.rate_rps is None and req.workload.concurrency is None
    return -(-trace_requests // ranks) if replayed else trace_requests
