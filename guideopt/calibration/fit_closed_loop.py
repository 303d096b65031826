"""Stage 3 of the calibration: how far closed-loop clients stay in step (``Calibration.closed_loop``).

A closed-loop benchmark starts its clients together and, with equal lengths, they finish
and send again together: a prompt waits behind the prompts of its wave. The steady-state
model (``costs/serving.py``) assumes spread-out arrivals; ``lockstep_wait_s`` is the wait
behind a whole wave, and TTFT adds the share ``lockstep_share`` of it.

The share is not fitted to measured TTFTs. It comes from the discrete-event simulator, which
has no such term: each closed-loop configuration of the measured rows (their shapes only) is
simulated under the benchmark protocol, all clients starting together and each sending
``BENCH_REQUESTS_PER_CLIENT`` requests, and its share is (simulated − steady) / wave, the
steady state and the wave from the analytic model at shares 0 and 1 (TTFT is linear in the
share). The shipped share is the median over configurations. No measured value enters, so
a held-out source changes nothing here.

Only engines that chunk prefill are simulated for it: there the simulator mixes prompt
chunks into the decode steps as vLLM and SGLang do (their share comes out 0.04-0.13). The
simulator's prefill-first model (TensorRT-LLM with chunked context off runs waiting prompts
alone) holds a wave together for good (share ≈ 1), which the TensorRT-LLM rows do not show
(Llama-3.1-70B on B200/H200 at 4-64 clients: 8192-token prompts measured at 0.4-0.6 of the
share-1 prediction); TensorRT-LLM's PyTorch executor batches new prompts with the decodes.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np

from guideopt.calibration.mapping import Case
from guideopt.errors import GuideoptError
from guideopt.model.calibration import Calibration, ClosedLoopSync

# Requests each client sends in the benchmark the closed-loop rows come from: aiconfigurator's
# generated benchmark (aiconfigurator 0.12.0, generator/config/backend_templates/benchmark/
# bench_run.sh.j2) runs `aiperf profile --concurrency C --num-requests C×AICONFIGURATOR_BENCH_MULTI_ROUND`
# with that variable's default 20, after `--warmup-request-count 2C`, with fixed ISL/OSL and
# ignore_eos; the profiling phase starts its C clients together.
BENCH_PROTOCOL = "aiconfigurator-aiperf"  # catalogs/protocols: that benchmark as data (its requests per client)
BENCH_REQUESTS_PER_CLIENT = 20  # the protocol's requests_per_client (tests/test_protocols.py keeps them equal)
# Configurations simulated (evenly spread over the rows) and the largest simulation.
MAX_CONFIGS = 24
MAX_SIM_REQUESTS = 6000


def closed_loop_ttft(case: Case) -> bool:
    """Closed-loop TTFT rows, including those of an engine another profile stands in for (NIM)."""
    return case.workload == "closed_loop" and case.metric == "ttft_ms"


def with_share(catalog, cal: Calibration, share: float, note: str = ""):
    return dataclasses.replace(
        catalog, calibration=cal.model_copy(update={"closed_loop": ClosedLoopSync(lockstep_share=share, fitted_from=note)})
    )


@dataclass(frozen=True)
class ShareSample:
    request: dict
    steady_ms: float
    wave_ms: float
    simulated_ms: float

    @property
    def share(self) -> float:
        return (self.simulated_ms - self.steady_ms) / self.wave_ms if self.wave_ms > 0 else float("nan")


def _configs(catalog, cases: list[Case]) -> list[dict]:
    """Distinct closed-loop configurations of engines that chunk prefill (see the module note)."""
    chunked = {c.config_key: c.request for c in cases if closed_loop_ttft(c) and catalog.framework(c.request["framework"]).chunked_prefill}
    distinct = list(chunked.values())
    stride = max(1, -(-len(distinct) // MAX_CONFIGS))
    return distinct[::stride]


def simulated_ttft_ms(catalog, req: dict, requests_per_client: int | None = None) -> float:
    """Mean TTFT the simulator gives one closed-loop configuration under the benchmark protocol
    (``BENCH_PROTOCOL`` in catalogs/protocols: its requests per client and its clients' start)."""
    from guideopt.analyses.predict import default_split
    from guideopt.analyses.simulate import run_simulation
    from guideopt.model.predict_request import PredictRequest
    from guideopt.model.workload import SimulateRequest

    proto = catalog.protocol(BENCH_PROTOCOL)
    per_client = requests_per_client or proto.requests_per_client or BENCH_REQUESTS_PER_CLIENT
    pr = PredictRequest.model_validate(req)
    fw, gpu = catalog.framework(pr.framework), catalog.gpu(pr.gpu)
    clients = math.ceil(int(req["concurrency"]) / max(pr.replicas, 1))
    sim = SimulateRequest.model_validate(
        {
            "model": pr.model,
            "gpu": pr.gpu,
            "tp": pr.resolved_tp,
            "pp": pr.pp,
            "framework": pr.framework,
            "dtype": pr.dtype.value,
            "kv_dtype": pr.kv_dtype.value if pr.kv_dtype else None,
            "running_cap": pr.max_num_seqs,
            "token_budget": default_split(pr, fw, gpu),
            "workload": {
                "concurrency": clients,
                "lengths": {"input_len": pr.input_len, "output_len": pr.output_len},
                "num_requests": min(clients * per_client, MAX_SIM_REQUESTS),
            },
        }
    )
    return float(run_simulation(sim, catalog=catalog, clients_together=proto.together).report.metrics["ttft_ms"].mean)


def share_samples(catalog, cal: Calibration, cases: list[Case]) -> list[ShareSample]:
    from guideopt.api import predict

    steady_cat, wave_cat = with_share(catalog, cal, 0.0), with_share(catalog, cal, 1.0)
    out = []
    for req in _configs(catalog, cases):
        try:
            t0 = predict(req, steady_cat).metrics.ttft_ms
            t1 = predict(req, wave_cat).metrics.ttft_ms
            sim = simulated_ttft_ms(steady_cat, req)
        except GuideoptError:
            continue
        if t1 > t0 and np.isfinite(sim):
            out.append(ShareSample(req, t0, t1 - t0, sim))
    return out


def fit_closed_loop(catalog, cal: Calibration, cases: list[Case]) -> ClosedLoopSync:
    samples = share_samples(catalog, cal, cases)
    if not samples:
        return ClosedLoopSync(lockstep_share=0.0, fitted_from="no closed-loop configurations: steady state")
    shares = np.clip([s.share for s in samples], 0.0, 1.0)
    q25, median, q75 = np.percentile(shares, [25, 50, 75])
    note = (
        f"simulator, {len(samples)} closed-loop configurations of the e2e.csv rows (shapes only), all clients starting together, "
        f"{BENCH_REQUESTS_PER_CLIENT} requests each; median share, quartiles {q25:.3f}-{q75:.3f}"
    )
    return ClosedLoopSync(lockstep_share=round(float(median), 4), fitted_from=note)
