"""When the clients of a closed loop send their first requests.

A closed loop of c clients each sends its next request when its last one finishes. How the
clients *start* decides whether they stay in step. Started together (every first request at
t = 0, as ``vllm bench serve --max-concurrency C`` with its default ``--request-rate inf``
and aiperf's ``--concurrency C`` do), clients with equal lengths finish together and send
again together: each prompt then waits behind the prompts of its wave, round after round.
A prefill-first engine (the simulator's model of TensorRT-LLM with chunked context off)
holds such a wave together for good, since its decodes all wait for the wave's prompts and
finish in the same step; chunking engines spread it out within a few rounds.

Users of a deployment do not start in step, so by default the simulator spreads the first
requests evenly over one request's time in the engine (``request_time_s``, at the mean lengths): client k sends
at k · time / c, as a ramp-up does, and the run shows the steady state of independent
clients (clients beyond the running cap queue for a place, as they would anyway). ``RequestStream.together`` keeps the benchmark's start (the closed-loop share fit,
``calibration/fit_closed_loop.py``, and the accuracy report simulate benchmarks as they ran).
"""

from __future__ import annotations

import math
from typing import Protocol

import numpy as np

from guideopt.simulator.table import StepTable


class EngineKnobs(Protocol):
    """What of ``engine.EngineSpec`` a request's time depends on."""

    @property
    def running_cap(self) -> int: ...
    @property
    def token_budget(self) -> int: ...
    @property
    def chunked(self) -> bool: ...
    @property
    def kv_tokens(self) -> int: ...
    @property
    def kv_keep(self) -> float: ...


class Clients(Protocol):
    """What of ``engine.RequestStream`` the clients' start depends on."""

    @property
    def input_len(self) -> np.ndarray: ...
    @property
    def output_len(self) -> np.ndarray: ...
    @property
    def arrival_s(self) -> np.ndarray | None: ...
    @property
    def concurrency(self) -> int | None: ...
    @property
    def together(self) -> bool: ...


def client_starts_s(stream: Clients, spec: EngineKnobs, table: StepTable) -> np.ndarray | None:
    """First-request times of the ``min(concurrency, requests)`` clients of a closed loop,
    ascending (None: the stream is open-loop)."""
    if stream.arrival_s is not None:
        return None
    c = min(int(stream.concurrency or 1), int(stream.input_len.size))
    if stream.together or c <= 1:
        return np.zeros(c)
    mean_in, mean_out = float(np.mean(stream.input_len)), float(np.mean(stream.output_len))
    cycle = request_time_s(mean_in, mean_out, c, spec, table) + table.first_token_s  # a client's whole cycle: the server's path too
    return np.arange(c) * (cycle / c)


def request_time_s(inp: float, out: float, clients: int, spec: EngineKnobs, table: StepTable) -> float:
    """One request's time in the engine (``inp`` prompt, ``out`` output tokens), with as many
    running as the clients, the cap and the KV cache allow: its prompt's passes alone, then
    its decode steps beside the others."""
    slots = max(spec.kv_tokens // max(int(inp + out), 1), 1)
    running = max(min(clients, spec.running_cap, slots), 1)
    per_pass = min(inp, float(spec.token_budget)) if spec.chunked else inp
    passes = math.ceil(inp / per_pass)
    prefill_s = passes * table.step_s(0, per_pass, 0.0, inp * (inp + 1.0) / 2.0 / passes)
    kv = running * (inp + out / 2.0) * spec.kv_keep
    decode_s = max(out - 1.0, 0.0) * float(table.decode_s(running, np.array([kv]))[0])
    return prefill_s + decode_s
