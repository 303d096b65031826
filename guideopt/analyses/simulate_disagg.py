"""``guideopt simulate`` on a disaggregated deployment: x prefill and y decode workers (their
layouts as ``predict --csv``'s disaggregated columns give them) against a request stream,
simulated with two pools (``simulator/disagg.py``) beside the analytic model
(``costs/disagg.py``), both on the same step times and the same KV hand-over times.

The deployment is built by ``analyses/disagg_deploy.py`` at the stream's mean lengths; the
analytic model then serves the stream's own length table, and each simulated request's
hand-over moves its own prompt's KV. Open-loop streams only: the two-pool simulator
cannot feed decode finishes back into closed-loop arrivals.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from guideopt.analyses.disagg_deploy import Deployment, build_deployment
from guideopt.analyses.simulate import TraceArrays, resolve_lengths
from guideopt.catalog import Catalog, load_catalog
from guideopt.costs.disagg import at_prompt_lengths, disagg_max_rate, disagg_stream_metrics, handover_s
from guideopt.costs.stream import StreamMetrics
from guideopt.errors import InvalidRequestError, NoFeasiblePlanError
from guideopt.model.disagg_request import DisaggPredictRequest
from guideopt.model.workload import REPORTED_PERCENTILES, SimulateRequest
from guideopt.simulator.disagg import simulate_disagg
from guideopt.simulator.report import StreamReport, stream_report
from guideopt.simulator.sampling import make_stream
from guideopt.solver.stream_verify import engine_for
from guideopt.units import MS_PER_S

ROLE_FIELDS = ("workers", "tp", "attention_dp", "moe_ep")  # per role, as prefill_workers, decode_tp, ...


@dataclass
class DisaggSimulation:
    request: SimulateRequest
    deployment: Deployment
    report: StreamReport
    analytic: StreamMetrics
    transfer_ms: np.ndarray  # per simulated request: what it waits for its KV after its prompt
    sustainable_rate_rps: float

    def as_dict(self) -> dict:
        d = self.deployment.request
        a = self.analytic
        analytic = {
            m: {"mean": float(a.dist(m).mean[0]), **{f"p{p:g}": float(v[0]) for p, v in a.dist(m).percentiles.items()}}
            for m in ("ttft_ms", "tpot_ms", "e2e_ms", "queue_ms")
        }
        roles = {r: {f: int(getattr(d, f"{r}_{f}")) for f in ROLE_FIELDS} for r in ("prefill", "decode")}
        for role, table in self.deployment.tables.items():
            roles[role] |= {"token_budget": int(table.split[0]), "kv_cache_tokens": int(table.memory.kv_tokens[0])}
        roles["decode"]["running_cap"] = int(self.deployment.opts.decode.running_cap[0])
        return {
            "model": d.model,
            "gpu": d.gpu,
            "framework": d.framework,
            "dtype": d.dtype.value,
            "disaggregated": roles,
            "num_gpus": d.total_gpus,
            "kv_transfer": {"link": "nvlink" if self.deployment.nvlink else "rdma", "ms_mean": float(self.transfer_ms.mean())},
            "rate_rps": self.request.workload.rate_rps,
            "sustainable_rate_rps": self.sustainable_rate_rps,
            "simulated": self.report.as_dict(),
            "analytic": {"metrics": analytic, "stable": bool(a.stable[0])},
        }


def deployment_request(req: SimulateRequest, roles: dict[str, int], mean_in: int, mean_out: int) -> DisaggPredictRequest:
    """The deployment as ``predict --csv`` describes it, at the stream's mean lengths."""
    fields = {"model": req.model, "gpu": req.gpu, "framework": req.framework, "input_len": mean_in, "output_len": mean_out}
    fields |= {"kv_dtype": req.kv_dtype, "split": req.token_budget, "rate_rps": req.workload.rate_rps, **roles}
    if "dtype" in req.model_fields_set:
        fields["dtype"] = req.dtype
    return DisaggPredictRequest.model_validate({k: v for k, v in fields.items() if v is not None})


def run_disagg_simulation(
    req: SimulateRequest, roles: dict[str, int], trace: TraceArrays | None = None, catalog: Catalog | None = None
) -> DisaggSimulation:
    cat = catalog or load_catalog()
    wl = req.workload
    if req.protocol is not None:
        raise InvalidRequestError("not applied to a disaggregated deployment yet (drop it)", "protocol")
    if wl.rate_rps is None:
        raise InvalidRequestError("--concurrency: a disaggregated deployment is simulated at a request rate (give --rate R)")
    arch = cat.model(req.model)
    lengths, inputs, outputs, arrival = resolve_lengths(req, arch, trace)
    dep = build_deployment(deployment_request(req, roles, round(lengths.mean_input) or 1, round(lengths.mean_output) or 1), cat)
    need = {"prefill": int(inputs.max()), "decode": int((inputs + outputs).max())}
    for role, table in dep.tables.items():
        if float(table.memory.kv_tokens[0]) < need[role]:
            raise NoFeasiblePlanError(f"{role} workers: the longest request ({need[role]} tokens) does not fit their KV cache", ["memory"])
    opts = at_prompt_lengths(arch, dep.opts, lengths.input_len)
    longest = int((inputs + outputs).max())
    (pre, pre_steps), (dec, dec_steps) = (engine_for(arch, dep.tables[r], getattr(opts, r), 0, longest) for r in ("prefill", "decode"))
    transfer = handover_s(arch, opts, inputs)  # each sampled request its own prompt
    stream = make_stream(inputs, outputs, rate_rps=wl.rate_rps, arrival_s=arrival, burstiness=wl.burstiness, seed=wl.seed)
    x, y = (int(opts.prefill_workers[0]), int(opts.decode_workers[0]))  # attention-DP ranks of each pool
    result = simulate_disagg(stream, pre, pre_steps, x, dataclasses.replace(dec, chunked=False), dec_steps, y, transfer)
    pcts = tuple(sorted(set(REPORTED_PERCENTILES) | {p for t in req.slo.values() for p in t.targets}))
    report = stream_report(result, slo=req.slo or None, percentiles=pcts, warmup_fraction=req.warmup_fraction)
    analytic = disagg_stream_metrics(arch, opts, lengths, np.array([wl.rate_rps]), burstiness=wl.burstiness, percentiles=pcts)
    best = float(disagg_max_rate(arch, opts, lengths)[0])
    return DisaggSimulation(req, dep, report, analytic, transfer * MS_PER_S, best)
