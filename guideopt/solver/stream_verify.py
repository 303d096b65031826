"""Check a stream plan with the discrete-event simulator: one replica at its share of the load.

The simulator (``guideopt.simulator``) replays ``workload.num_requests`` requests sampled
from the plan's length table through the engine's scheduler, on the step table of the same
step-time function the analytic model uses. Replicas share the load evenly, so one replica
at load / n stands for the group. Run i uses seed ``workload.seed`` + i and is exactly what
``guideopt simulate --seed`` gives at the plan's settings with ``--warmup 0.1``; the plan is
verified when its SLOs hold run after run (``simulator.runs.check_runs``).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from guideopt.model.plan import Plan
from guideopt.model.request import PlanRequest
from guideopt.model.workload import VERIFY_WARMUP_FRACTION
from guideopt.simulator.engine import EngineSpec, SimResult, simulate
from guideopt.simulator.policy import kv_policy
from guideopt.simulator.report import StreamReport, stream_report
from guideopt.simulator.runs import RUN_CONFIDENCE, RunsVerdict, check_runs
from guideopt.simulator.sampling import make_stream, sample_table
from guideopt.simulator.table import StepTable
from guideopt.solver.stream_extract import percentiles_wanted, stream_plans_of, total_load
from guideopt.solver.stream_options import StreamSpace


def verify_plan(req: PlanRequest, space: StreamSpace, row: int, replicas: int) -> Plan:
    """The plan of ``replicas`` × option ``row`` with its simulated percentiles and verdict."""
    return verify_plans(req, space, np.array([row]), np.array([replicas]))[0]


def verify_plans(req: PlanRequest, space: StreamSpace, rows: np.ndarray, replicas: np.ndarray, engines: dict | None = None) -> list[Plan]:
    """``verify_plan`` of each (``rows[i]``, ``replicas[i]``): their analytic operating points
    computed in one call, then each simulated. ``engines``: option row → (scheduler settings,
    step table) already built (filled in: more replicas of one option share them)."""
    plans = stream_plans_of(req, space, rows, replicas)
    engines = {} if engines is None else engines
    out = []
    for plan, row, n in zip(plans, rows, replicas):
        if int(row) not in engines:
            engines[int(row)] = engine_of(space, int(row))
        out.append(_simulated(req, space, plan, int(row), int(n), engines[int(row)]))
    return out


def _simulated(
    req: PlanRequest, space: StreamSpace, plan: Plan, row: int, replicas: int, engine_table: tuple[EngineSpec, StepTable]
) -> Plan:
    """``plan`` (``replicas`` × option ``row``) with its simulated percentiles and verdict."""
    group = plan.groups[0]
    assert group.stream is not None, "a stream plan carries its stream block"
    wl = req.workload
    engine, steps = engine_table
    ranks = replicas * int(space.table.dp[row])  # each attention-DP rank serves its own share (the router spreads requests)

    def one_run(seed: int) -> SimResult:
        inputs, outputs = sampled_lengths(req, space, seed)
        if wl.concurrency is not None:
            stream = make_stream(inputs, outputs, concurrency=math.ceil(wl.concurrency / ranks), seed=seed)
        else:
            stream = make_stream(inputs, outputs, rate_rps=total_load(req) / ranks, burstiness=wl.burstiness, seed=seed)
        return simulate(stream, engine, steps)

    ok, simulated = simulated_runs(req, space, one_run)
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


def sampled_lengths(req: PlanRequest, space: StreamSpace, seed: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """A run's request lengths: ``workload.num_requests`` draws from the length table, seeded
    as ``guideopt simulate --seed`` seeds them (``seed``; default ``workload.seed``)."""
    wl = req.workload
    s = wl.seed if seed is None else seed
    return sample_table(space.lengths, wl.num_requests, np.random.default_rng([s, 0]))


def simulated_runs(req: PlanRequest, space: StreamSpace, one_run: Callable[[int], SimResult]) -> tuple[bool, dict]:
    """(the SLOs hold run after run, the simulated block) for runs of seeds ``workload.seed`` + i."""
    targets = space.targets
    pcts = percentiles_wanted(req)

    def report(seed: int) -> StreamReport:
        return stream_report(one_run(seed), slo=targets or None, percentiles=pcts, warmup_fraction=VERIFY_WARMUP_FRACTION)

    verdict = check_runs(report, req.workload.seed, targets)
    return verdict.holds, simulated_block(verdict, req.workload.seed)


def simulated_block(verdict: RunsVerdict, seed: int) -> dict:
    """The runs' figures: each percentile averaged over the runs, the worst run's and the
    next run's upper prediction bound for the SLO percentiles, and the seeds run."""
    reports = verdict.reports
    metrics = {m: _mean_dist([r.metrics[m].as_dict() for r in reports]) for m in reports[0].metrics}
    block: dict = {
        **metrics,
        "requests": reports[0].requests,
        "request_throughput_rps": float(np.mean([r.request_throughput_rps for r in reports])),
        "preemptions": int(sum(r.preemptions for r in reports)),
        "kv_use_max": max(r.kv_use_max for r in reports),
        "runs": len(reports),
        "seeds": [seed + i for i in range(len(reports))],
    }
    if verdict.bound:
        block["worst_run"] = {m: {f"p{p:g}": _max([r.metrics[m].at(p) for r in reports]) for p in b} for m, b in verdict.bound.items()}
        block["next_run_bound"] = {
            m: {f"p{p:g}": (v if math.isfinite(v) else None) for p, v in b.items()} for m, b in verdict.bound.items()
        }
        block["bound_confidence"] = RUN_CONFIDENCE
    if verdict.failed_seed is not None:
        block["failed_seed"] = verdict.failed_seed
    return block


def _mean_dist(dists: list[dict[str, float | None]]) -> dict[str, float | None]:
    out: dict[str, float | None] = {}
    for key in dists[0]:
        vals = [v for d in dists if (v := d[key]) is not None]
        out[key] = float(np.mean(vals)) if vals else None
    return out


def _max(values: list[float]) -> float | None:
    v = [x for x in values if not math.isnan(x)]
    return max(v) if v else None
