"""Check a stream plan with the discrete-event simulator: one replica at its share of the load.

The simulator (``guideopt.simulator``) replays ``workload.num_requests`` requests sampled
from the plan's length table (seeded by ``workload.seed``) through the engine's scheduler,
on the step table of the same step-time function the analytic model uses. Replicas share
the load evenly, so one replica at load / n stands for the group.
"""

from __future__ import annotations

import math

import numpy as np

from guideopt.model.plan import Plan
from guideopt.model.request import PlanRequest
from guideopt.simulator.engine import EngineSpec, SimResult, simulate
from guideopt.simulator.policy import kv_policy
from guideopt.simulator.report import meets_slo, stream_report
from guideopt.simulator.sampling import make_stream, sample_table
from guideopt.simulator.table import StepTable
from guideopt.solver.stream_extract import percentiles_wanted, stream_plan_of, total_load
from guideopt.solver.stream_options import StreamSpace

# Share of the earliest arrivals left out of the check: the simulation starts with an empty
# replica, so its first requests see no queue and would flatter the percentiles.
VERIFY_WARMUP_FRACTION = 0.1


def verify_plan(req: PlanRequest, space: StreamSpace, row: int, replicas: int) -> Plan:
    """The plan of ``replicas`` × option ``row`` with its simulated percentiles and verdict."""
    plan = stream_plan_of(req, space, row, replicas, rank=1)
    group = plan.groups[0]
    assert group.stream is not None, "a stream plan carries its stream block"
    wl = req.workload
    t = space.table
    engine, steps = engine_of(space, row)
    inputs, outputs = sampled_lengths(req, space)
    ranks = replicas * int(t.dp[row])  # each attention-DP rank serves its own share (the router spreads requests)
    if wl.concurrency is not None:
        stream = make_stream(inputs, outputs, concurrency=math.ceil(wl.concurrency / ranks), seed=wl.seed)
    else:
        stream = make_stream(inputs, outputs, rate_rps=total_load(req) / ranks, burstiness=wl.burstiness, seed=wl.seed)
    ok, simulated = simulated_block(req, space, simulate(stream, engine, steps))
    stream_block = {**group.stream, "simulated": simulated}
    plan_block = {**(plan.stream or {}), "simulated_meets_slo": ok}
    return plan.model_copy(update={"groups": [group.model_copy(update={"stream": stream_block})], "stream": plan_block})


def engine_of(space: StreamSpace, row: int) -> tuple[EngineSpec, StepTable]:
    """Option ``row``'s scheduler settings and step table (one attention-DP rank)."""
    return engine_for(space.arch, space.table, space.options, row, space.lengths.max_total)


def engine_for(arch, table, options, row: int, max_context: int) -> tuple[EngineSpec, StepTable]:
    """Row ``row`` of an option ``table`` (its stream ``options``): scheduler settings and step table."""
    fw = table.space.frameworks[int(table.fw_idx[row])]
    cap = int(options.running_cap[row])
    budget = int(table.split[row])
    engine = EngineSpec(cap, budget, fw.chunked_prefill, int(table.memory.kv_tokens[row]), fw.kv_block_tokens, kv_policy(fw.calibration_id))
    opts = options.take(np.array([row]))
    steps = StepTable.build(arch, opts.cfg, opts.hw, cap=cap, budget=budget, max_context=max_context, pp=int(table.pp[row]))
    return engine, steps


def sampled_lengths(req: PlanRequest, space: StreamSpace) -> tuple[np.ndarray, np.ndarray]:
    """The check's request lengths: ``workload.num_requests`` draws from the length table (seeded)."""
    wl = req.workload
    return sample_table(space.lengths, wl.num_requests, np.random.default_rng([wl.seed, 0]))


def simulated_block(req: PlanRequest, space: StreamSpace, result: SimResult) -> tuple[bool, dict]:
    """(meets every SLO, the simulated percentiles and counts) of a simulation."""
    targets = space.targets
    report = stream_report(result, slo=targets or None, percentiles=percentiles_wanted(req), warmup_fraction=VERIFY_WARMUP_FRACTION)
    ok = meets_slo(report, targets) if targets else True
    simulated = {
        **{m: d.as_dict() for m, d in report.metrics.items()},
        "requests": report.requests,
        "request_throughput_rps": report.request_throughput_rps,
        "preemptions": report.preemptions,
        "kv_use_max": report.kv_use_max,
    }
    return ok, simulated
