"""Predict a measured configuration: open-loop runs by the stream model, the rest by ``predict``.

An open-loop run (``vllm bench serve --request-rate R``, SGLang ``bench_serving
--request-rate R``) is compared with the analytic stream model (``costs/stream.py``, the
"analytic" column of ``guideopt simulate``) at the run's rate and burstiness, on one
replica of the run's layout with the run's mean lengths: its mean TTFT and TPOT. The
simulator is not used here: a fit evaluates every configuration a few dozen times.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from guideopt.errors import GuideoptError

OPEN_LOOP_KEY = "rate_rps"  # a case's request is an open-loop run when it carries its rate
STREAM_FIELDS = ("model", "gpu", "tp", "pp", "framework", "dtype", "kv_dtype")


class BeyondSustainableRate(GuideoptError):
    """The stream model says the run's rate is beyond the configuration: its queue would grow without bound."""


def predict_open_loop(request: Mapping[str, Any], rates_rps: Sequence[float], catalog: Any) -> list[dict[str, float] | GuideoptError]:
    """Mean TTFT and TPOT of one configuration at each of ``rates_rps`` (one stream-model call
    for a whole rate sweep); a rate beyond the configuration is a ``BeyondSustainableRate``."""
    from guideopt.analyses.simulate import configuration
    from guideopt.costs.lengths import fixed_lengths
    from guideopt.costs.stream import stream_metrics
    from guideopt.model.validation import validated
    from guideopt.model.workload import SimulateRequest

    lengths = fixed_lengths(int(request["input_len"]), int(request["output_len"]))
    workload = {"rate_rps": max(rates_rps), "burstiness": request.get("burstiness", 1.0), "lengths": {"input_len": 1, "output_len": 1}}
    sim = validated(SimulateRequest, {**{k: request[k] for k in STREAM_FIELDS if request.get(k) is not None}, "workload": workload})
    conf = configuration(sim, lengths, lengths.max_total, catalog)
    lam = np.asarray(rates_rps, dtype=float)
    opts = conf.options.take(np.zeros(lam.size, dtype=int))
    m = stream_metrics(conf.arch, opts, lengths, lam, burstiness=sim.workload.burstiness, percentiles=())
    return [
        {"ttft_ms": float(m.ttft_ms.mean[i]), "tpot_ms": float(m.tpot_ms.mean[i])}
        if m.stable[i]
        else BeyondSustainableRate(f"{rate:g} req/s is beyond what guideopt's stream model sustains on this configuration")
        for i, rate in enumerate(lam)
    ]
