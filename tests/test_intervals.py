"""Prediction intervals (held-out error bands per regime) and robust planning on them."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
from conftest import LLAMA2_7B, predict_request

from guideopt import api
from guideopt.calibration.intervals_fit import bands, coverage
from guideopt.calibration.mapping import Case
from guideopt.calibration.results import Result
from guideopt.costs.intervals import MIN_RESIDUALS, MIN_SOURCES, error_band, interval, pessimistic_factor, regime_keys
from guideopt.model.calibration import ErrorBand

TPOT_BAND = ErrorBand(q10=-0.1, q90=0.3, n=50, sources=3)
THROUGHPUT_BAND = ErrorBand(q10=-0.4, q90=0.05, n=50, sources=3)


def _with_bands(catalog, found):
    return dataclasses.replace(catalog, calibration=catalog.calibration.model_copy(update={"intervals": found}))


def test_regime_keys_back_off_from_specific_to_metric():
    keys = regime_keys("tpot_ms", "hopper", "vllm", 300, 8)
    assert keys == ["tpot_ms|hopper|vllm|>256|tp8+", "tpot_ms|hopper|vllm|>256", "tpot_ms|hopper|vllm", "tpot_ms|hopper", "tpot_ms"]
    assert regime_keys("output_throughput_tok_s", "cdna3", "vllm@amd", 1, 1)[0] == "throughput|cdna3|vllm@amd|1|tp1"


def test_a_regime_with_few_rows_backs_off():
    thin = ErrorBand(q10=-2.0, q90=2.0, n=MIN_RESIDUALS - 1, sources=3)
    found = error_band({"tpot_ms|hopper": thin, "tpot_ms": TPOT_BAND}, regime_keys("tpot_ms", "hopper", "vllm", 8, 1))
    assert found == TPOT_BAND
    one_source = ErrorBand(q10=-2.0, q90=2.0, n=500, sources=MIN_SOURCES - 1)  # many rows, one source: not enough
    found = error_band({"tpot_ms|hopper": one_source, "tpot_ms": TPOT_BAND}, regime_keys("tpot_ms", "hopper", "vllm", 8, 1))
    assert found == TPOT_BAND


def test_interval_is_prediction_times_exp_percentiles():
    lo, hi = interval(10.0, TPOT_BAND)
    assert lo == pytest.approx(10 * math.exp(-0.1)) and hi == pytest.approx(10 * math.exp(0.3))
    assert interval(10.0, None) == (10.0, 10.0)


def test_pessimistic_end_is_slower_time_and_lower_throughput():
    assert pessimistic_factor("tpot_ms", TPOT_BAND) == pytest.approx(math.exp(0.3))
    assert pessimistic_factor("output_throughput_tok_s", THROUGHPUT_BAND) == pytest.approx(math.exp(-0.4))
    # A band entirely on the good side leaves the prediction as the pessimistic end.
    assert pessimistic_factor("tpot_ms", ErrorBand(q10=-0.3, q90=-0.1, n=20, sources=3)) == 1.0


def test_predict_reports_low_and_high_metrics(catalog):
    cat = _with_bands(catalog, {"tpot_ms": TPOT_BAND, "throughput": THROUGHPUT_BAND})
    p = api.predict(predict_request(LLAMA2_7B, "h100-sxm", batch=8), cat)
    assert p.metrics_low.tpot_ms == pytest.approx(p.metrics.tpot_ms * math.exp(-0.1))
    assert p.metrics_high.tpot_ms == pytest.approx(p.metrics.tpot_ms * math.exp(0.3))
    assert p.metrics_low.output_throughput_tok_s < p.metrics.output_throughput_tok_s < p.metrics_high.output_throughput_tok_s
    assert p.metrics_low.ttft_ms == p.metrics_high.ttft_ms == p.metrics.ttft_ms  # no band for TTFT: a point
    d = p.as_dict()
    assert set(d["metrics_low"]) == set(d["metrics"]) == set(d["metrics_high"])


def _result(source: str, measured: float, predicted: float) -> Result:
    req = predict_request(LLAMA2_7B, "h100-sxm", framework="vllm", batch=8, tp=1, num_gpus=1)
    return Result(
        Case(request=req, metric="tpot_ms", measured=measured, source=source, source_locator="", line=1, framework_label="vllm"), predicted
    )


def test_bands_are_percentiles_of_log_errors():
    results = [_result("ab"[k % 2], measured=10 * math.exp(k / 100), predicted=10.0) for k in range(-50, 51)]
    found = bands(results, lambda g: "hopper", lambda f, g: f)
    b = found["tpot_ms"]
    # the 10th/90th percentiles are -0.4/+0.4 around a median of 0, widened by the factor chosen
    assert b.n == 101 and b.sources == 2 and b.widening >= 1.0
    assert b.q10 == pytest.approx(-0.4 * b.widening, abs=1e-4) and b.q90 == pytest.approx(0.4 * b.widening, abs=1e-4)
    assert found["tpot_ms|hopper|vllm|2-8|tp1"] == b
    assert bands([r for r in results if r.case.source == "a"], lambda g: "hopper", lambda f, g: f) == {}  # one source: no band


def test_coverage_uses_only_other_sources():
    """Sources a1-a3 err alike and cover each other (~80 %); b is far off and cannot be
    covered by bands built (and widened) without it; a band needs two sources besides the one held out."""
    spread = [math.exp(k / 100) for k in range(-20, 21)]
    alike = [_result(name, measured=10 * f, predicted=10.0) for name in ("a1", "a2", "a3") for f in spread]
    b = [_result("b", measured=30.0, predicted=10.0) for _ in range(20)]
    family, engine = (lambda g: "hopper"), (lambda f, g: f)
    assert coverage(alike, family, engine)["all"] == pytest.approx(0.8, abs=0.05)
    assert coverage(alike + b, family, engine)["source b"] == 0.0
    assert coverage([r for r in alike if r.case.source != "a3"], family, engine)["all"] == 0.0


def _shifted_sources(n_sources: int, rows: int, seed: int) -> list[Result]:
    """Sources whose errors differ by a per-source offset (engine version, host) on top of a
    common spread: the situation the widening is for."""
    rng = np.random.default_rng(seed)
    out = []
    for s in range(n_sources):
        offset = rng.normal(0.0, 0.3)
        out += [_result(f"s{s}", measured=10 * math.exp(offset + rng.normal(0.0, 0.1)), predicted=10.0) for _ in range(rows)]
    return out


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_widened_bands_cover_about_80_percent_of_held_out_sources(seed):
    results = _shifted_sources(12, 30, seed)
    family, engine = (lambda g: "hopper"), (lambda f, g: f)
    found = bands(results, family, engine)["tpot_ms"]
    assert found.widening > 1.0  # the other sources' raw spread under-covers a new source
    covered = coverage(results, family, engine)["all"]
    assert 0.65 <= covered <= 0.95


def test_widening_stretches_the_half_widths_around_the_median():
    results = _shifted_sources(12, 30, 0)
    family, engine = (lambda g: "hopper"), (lambda f, g: f)
    logs = np.log([r.measured / r.predicted for r in results])
    q10, q50, q90 = np.quantile(logs, (0.1, 0.5, 0.9))
    b = bands(results, family, engine)["tpot_ms"]
    assert b.q10 == pytest.approx(q50 - b.widening * (q50 - q10), abs=1e-4)
    assert b.q90 == pytest.approx(q50 + b.widening * (q90 - q50), abs=1e-4)


def test_robust_plans_meet_their_slo_at_the_pessimistic_end(catalog):
    cat = _with_bands(catalog, {"tpot_ms": TPOT_BAND, "throughput": THROUGHPUT_BAND})
    slo_ms = 25.0
    req = {
        "model": LLAMA2_7B,
        "workload": {"input_len": 512, "output_len": 128},
        "budget": {"usd_per_hour": 10},
        "gpus": {"h100-sxm": 2, "a100-sxm4-80gb": 2},
        "slo": {"tpot_ms": slo_ms},
        "robust": True,
        "top": 3,
    }
    robust = api.plan(req, cat)
    nominal = api.plan({**req, "robust": False}, cat)
    assert robust.plans
    for plan in robust.plans:
        for g in plan.groups:
            p = api.predict(
                {
                    "model": LLAMA2_7B,
                    "gpu": g.gpu,
                    "framework": g.framework,
                    "dtype": g.dtype,
                    "tp": g.tp,
                    "pp": g.pp,
                    "num_gpus": g.tp * g.pp,
                    "batch": g.batch,
                    "split": g.split,
                    "input_len": 512,
                    "output_len": 128,
                },
                cat,
            )
            assert p.metrics_high.tpot_ms <= slo_ms * (1 + 1e-3)
    # Planning for the pessimistic end never promises more throughput than the nominal plan.
    assert robust.plans[0].metrics.output_throughput_tok_s <= nominal.plans[0].metrics.output_throughput_tok_s * (1 + 1e-9)


def test_plan_groups_and_plans_carry_intervals(catalog):
    cat = _with_bands(catalog, {"tpot_ms": TPOT_BAND, "throughput": THROUGHPUT_BAND})
    req = {
        "model": LLAMA2_7B,
        "workload": {"input_len": 512, "output_len": 128},
        "budget": {"usd_per_hour": 10},
        "gpus": {"h100-sxm": 2, "a100-sxm4-80gb": 2},
        "top": 2,
    }
    result = api.plan(req, cat)
    for plan in result.plans:
        for g in plan.groups:
            assert g.metrics_low.tpot_ms == pytest.approx(g.metrics.tpot_ms * math.exp(-0.1))
            assert g.metrics_high.output_throughput_tok_s == pytest.approx(g.metrics.output_throughput_tok_s * math.exp(0.05))
        assert plan.metrics_low.output_throughput_tok_s == pytest.approx(sum(g.metrics_low.output_throughput_tok_s for g in plan.groups))
        assert plan.metrics_high.tpot_ms == pytest.approx(max(g.metrics_high.tpot_ms for g in plan.groups))
    dumped = result.model_dump()["plans"][0]
    assert {"metrics", "groups", "metrics_low", "metrics_high"} <= set(dumped)  # added beside the contract's keys


def test_constraints_file_accepts_robust(tmp_path):
    from guideopt.io.constraints_file import load

    path = tmp_path / "robust.yaml"
    path.write_text(f"model: {LLAMA2_7B}\nworkload: {{input_len: 512, output_len: 128}}\nbudget: {{usd_per_hour: 10}}\nrobust: true\n")
    loaded = load(str(path))
    request = getattr(loaded, "request", loaded)
    assert request.robust is True


def test_plan_table_shows_each_groups_interval(catalog):
    from guideopt.io.render import _fmt, plan_text

    request = {"model": LLAMA2_7B, "workload": {"input_len": 512, "output_len": 256}, "budget": {"usd_per_hour": 12}}
    result = api.plan(request, catalog)
    lines = plan_text(result).splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("prediction intervals"))
    first = next(line for line in lines[start:] if line.startswith("1 "))
    low, high = result.plans[0].groups[0].metrics_low, result.plans[0].groups[0].metrics_high
    assert low is not None and high is not None
    assert f"{_fmt(low.tpot_ms)} – {_fmt(high.tpot_ms)}" in first
    assert f"{_fmt(low.output_throughput_tok_s)} – {_fmt(high.output_throughput_tok_s)}" in first


def test_pessimistic_table_scales_each_option_by_its_own_regime(catalog):
    """The table-wide lookup (once per distinct regime) equals the per-option definition."""
    from guideopt.costs.intervals import TABLE_METRICS, pessimistic_table, regime_engine
    from guideopt.costs.tables import OptionSpace, build_option_table
    from guideopt.model.dtype import Dtype

    gpus = [catalog.gpu(g) for g in ("h100-sxm", "mi300x", "l40s")]
    space = OptionSpace(
        gpus=gpus,
        frameworks=[catalog.framework("vllm"), catalog.framework("sglang")],
        dtypes=[Dtype.FP16],
        tp=[1, 2, 8],
        pp=[1],
        batch=[1, 8, 64, 300],
        input_len=512,
        output_len=128,
        kv_dtype=None,
    )
    table = build_option_table(catalog.model(LLAMA2_7B), space, catalog.calibration)
    bands = catalog.calibration.intervals
    robust = pessimistic_table(table, bands)
    for field, metric in TABLE_METRICS.items():
        for i in range(len(table)):
            gpu, fw = space.gpus[int(table.gpu_idx[i])], space.frameworks[int(table.fw_idx[i])]
            keys = regime_keys(
                metric, gpu.arch, regime_engine(fw.calibration_id, gpu.vendor.value), float(table.batch[i]), float(table.tp[i])
            )
            expected = float(getattr(table.metrics, field)[i]) * pessimistic_factor(metric, error_band(bands, keys))
            assert float(getattr(robust.metrics, field)[i]) == pytest.approx(expected, rel=1e-12, nan_ok=True)


TTFT_BAND = ErrorBand(q10=-0.2, q90=0.6, n=50, sources=3)


def test_closed_loop_ttft_backs_off_to_the_static_ttft_band():
    keys = regime_keys("ttft_ms", "hopper", "vllm", 32, 2, closed_loop=True)
    assert keys[-1] == "ttft_ms@closed_loop" and all(k.startswith("ttft_ms@closed_loop") for k in keys)
    own = ErrorBand(q10=-1.0, q90=1.0, n=50, sources=3)
    assert error_band({"ttft_ms|hopper": TTFT_BAND, "ttft_ms@closed_loop": own}, keys) == own  # its own band first
    assert error_band({"ttft_ms|hopper": TTFT_BAND}, keys) == TTFT_BAND  # none of its own: the static one
    assert error_band({"ttft_ms@closed_loop": TTFT_BAND}, regime_keys("ttft_ms", "hopper", "vllm", 32, 2)) is None  # never the reverse


def test_predict_with_concurrency_takes_the_static_ttft_band_without_its_own(catalog):
    cat = _with_bands(catalog, {"ttft_ms": TTFT_BAND})
    req = {k: v for k, v in predict_request(LLAMA2_7B, "h100-sxm").items() if k != "batch"}
    p = api.predict({**req, "concurrency": 16}, cat)
    assert p.metrics_high.ttft_ms == pytest.approx(p.metrics.ttft_ms * math.exp(0.6))


def _ttft_result(source: str, measured: float, workload: str) -> Result:
    req = predict_request(LLAMA2_7B, "h100-sxm", framework="vllm", batch=8, tp=1, num_gpus=1)
    case = Case(
        request=req,
        metric="ttft_ms",
        measured=measured,
        source=source,
        source_locator="",
        line=1,
        framework_label="vllm",
        workload=workload,
    )
    return Result(case, 10.0)


def test_closed_loop_rows_never_shape_static_ttft_bands():
    static = [_ttft_result("ab"[k % 2], 10 * math.exp(k / 100), "static") for k in range(-20, 21)]
    closed = [_ttft_result("ab"[k % 2], 1000.0, "closed_loop") for k in range(40)]
    family, engine = (lambda g: "hopper"), (lambda f, g: f)
    assert bands(static + closed, family, engine)["ttft_ms"] == bands(static, family, engine)["ttft_ms"]
    # a closed-loop row with no band of its own is scored against the static band (and lies far outside it)
    assert coverage(static + [_ttft_result("c", 1000.0, "closed_loop")], family, engine)["ttft_ms@closed_loop"] == 0.0
    assert coverage(static + [_ttft_result("c", 10.0, "closed_loop")], family, engine)["ttft_ms@closed_loop"] == 1.0
