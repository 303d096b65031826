"""Check a disaggregated plan with the two-pool simulator (``simulator/disagg.py``).

The same sampled runs as an aggregated check (``workload.num_requests`` per run, seeds
``workload.seed`` + i, until the SLOs are shown to hold or not: ``simulator.runs``), the
whole group at the whole rate: x·attention_dp prefill ranks and y·attention_dp decode
ranks, each request's KV hand-over taking the time the analytic model gives it
(``costs.disagg.kv_transfer_s`` at its prompt length).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from guideopt.costs.disagg import handover_s
from guideopt.model.plan import Plan
from guideopt.model.request import PlanRequest
from guideopt.simulator.disagg import simulate_disagg
from guideopt.simulator.sampling import make_stream
from guideopt.solver.disagg_plan import disagg_plan_of
from guideopt.solver.disagg_space import DisaggTable
from guideopt.solver.stream_options import StreamSpace
from guideopt.solver.stream_verify import engine_of, sampled_lengths, simulated_runs


def verify_disagg(req: PlanRequest, space: StreamSpace, dt: DisaggTable, k: int) -> Plan:
    """Group ``k``'s plan with its simulated percentiles and verdict."""
    plan = disagg_plan_of(req, space, dt, k, rank=1)
    wl = req.workload
    p, d = int(dt.prefill_row[k]), int(dt.decode_row[k])
    t = space.table
    (pre, pre_steps), (dec, dec_steps) = engine_of(space, p), engine_of(space, d)

    def one_run(seed: int):
        inputs, outputs = sampled_lengths(req, space, seed)
        stream = make_stream(inputs, outputs, rate_rps=float(wl.rate_rps or 0.0), burstiness=wl.burstiness, seed=seed)
        transfer = handover_s(space.arch, dt.opts.take(np.array([k])), inputs)  # each sampled request its own prompt
        return simulate_disagg(
            stream,
            pre,
            pre_steps,
            int(dt.prefill_replicas[k] * t.dp[p]),
            dataclasses.replace(dec, chunked=False),
            dec_steps,
            int(dt.decode_replicas[k] * t.dp[d]),
            transfer,
        )

    ok, simulated = simulated_runs(req, space, one_run)
    groups = [g.model_copy(update={"stream": {**(g.stream or {}), "simulated": simulated}}) for g in plan.groups]
    return plan.model_copy(update={"groups": groups, "stream": {**(plan.stream or {}), "simulated_meets_slo": ok}})
