"""The rate bounds that order and prune stream options (``costs/stream_bounds.py``) are
upper bounds: just above each, the stream model says the option is unstable or misses the
target the bound is about. Checked on real option tables, dense and MoE."""

from __future__ import annotations

import numpy as np
import pytest

from guideopt.costs.stream_bounds import full_decode_rate_bound, rate_bounds, tpot_rate_bound, tpot_target_s
from guideopt.model.request import PlanRequest
from guideopt.model.workload import PercentileTargets
from guideopt.solver.options import resolve_gpus
from guideopt.solver.stream_options import build_stream_space
from guideopt.solver.stream_rates import meets_targets_at, slo_rates

ABOVE = 1.03  # just above a bound (its slack is 1 %)


def _space(catalog, model: str, gpus: dict, tpot_ms: float):
    req = PlanRequest.model_validate(
        {
            "model": model,
            "workload": {"input_len": 1500, "output_len": 300, "rate_rps": 5},
            "budget": {"usd_per_hour": 200},
            "gpus": gpus,
            "slo": {"tpot_ms": tpot_ms},
        }
    )
    gs = resolve_gpus(req, catalog)
    return build_stream_space(req, catalog, gs, [g.usd_per_hour for g in gs], prune=False)


@pytest.mark.parametrize(
    ("model", "gpus", "tpot_ms"),
    [
        ("meta-llama/Llama-3.1-8B", {"l4": {}, "a100-sxm4-80gb": {}}, 30.0),
        ("Qwen/Qwen3-30B-A3B", {"h100-sxm": {}}, 25.0),
    ],
)
def test_the_tpot_bound_is_an_upper_bound(catalog, model, gpus, tpot_ms):
    space = _space(catalog, model, gpus, tpot_ms)
    opts, lengths = space.options, space.lengths
    rng = np.random.default_rng(0)
    rows = rng.choice(len(opts), size=min(200, len(opts)), replace=False)
    sub = opts.take(rows)
    target_s = tpot_target_s(space.targets)
    assert target_s == pytest.approx(tpot_ms / 1000)
    slots = np.maximum(np.minimum(sub.running_cap, np.floor(sub.kv_tokens / (1500 + 150))), 1.0)
    bound = tpot_rate_bound(space.arch, sub, lengths, slots, target_s, (np.arange(rows.size), np.arange(rows.size)))
    tpot_only = {"tpot_ms": PercentileTargets(targets={50.0: tpot_ms})}
    live = bound > 0
    assert live.any()
    above = meets_targets_at(space.arch, sub.take(np.nonzero(live)[0]), lengths, tpot_only, 1.0, bound[live] * ABOVE)
    assert not above.any(), "an option meets its median-TPOT target above its TPOT bound"
    # and the SLO rate the search finds never exceeds the combined bound
    found = slo_rates(space.arch, sub, lengths, space.targets, 1.0)
    assert np.all(found <= rate_bounds(space.arch, sub, lengths, None, space.targets) * (1 + 1e-9))


def test_the_full_decode_bound_is_an_upper_bound(catalog):
    space = _space(catalog, "meta-llama/Llama-3.1-8B", {"a100-sxm4-80gb": {}}, 1000.0)
    opts, lengths = space.options, space.lengths
    slots = np.maximum(np.minimum(opts.running_cap, np.floor(opts.kv_tokens / (1500 + 150))), 1.0)
    bound = full_decode_rate_bound(space.arch, opts, lengths, slots)
    stable_only: dict = {}
    ok = meets_targets_at(space.arch, opts, lengths, stable_only, 1.0, bound * ABOVE)
    assert not ok.any(), "an option is stable above its full-decode bound"
