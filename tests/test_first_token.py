"""The online server's path to a request's first token (``first_token_us_per_layer``,
``costs.metrics.first_token_path_s``): it moves a served request's TTFT and E2E by layers × the
term in every evaluator (closed loop, open-loop stream model, simulator, disaggregated pools),
leaves TPOT and offline batches alone, and its fit on closed-loop TTFT rows
(``calibration/fit_first_token.py``)."""

from __future__ import annotations

import numpy as np
import pytest

from guideopt.analyses.disagg_deploy import predict_disagg
from guideopt.api import predict, simulate
from guideopt.calibration.cases import Case
from guideopt.calibration.fit_first_token import Probed, chosen, fit_values, held_out_predicted, with_term
from guideopt.model.disagg_request import DisaggPredictRequest

MODEL = "Qwen/Qwen3-30B-A3B"
US = 1500.0
BASE = {"model": MODEL, "gpu": "h100-sxm", "tp": 1, "num_gpus": 1, "framework": "sglang", "input_len": 1024, "output_len": 128}


@pytest.fixture(scope="module")
def pair(catalog):
    return with_term(catalog, {"sglang": 0.0, "vllm": 0.0}), with_term(catalog, {"sglang": US, "vllm": US})


def _path_ms(catalog) -> float:
    return catalog.model(MODEL).num_layers * US / 1000.0


def test_a_closed_loop_ttft_moves_by_the_path_and_tpot_does_not(pair) -> None:
    plain = pair[0]
    a, b = (predict({**BASE, "concurrency": 8}, c).metrics for c in pair)
    assert b.ttft_ms - a.ttft_ms == pytest.approx(_path_ms(plain), rel=1e-6)
    assert b.tpot_ms == pytest.approx(a.tpot_ms, rel=1e-9)


def test_an_offline_batch_has_no_server_path(pair) -> None:
    a, b = (predict({**BASE, "batch": 8}, c).metrics for c in pair)
    assert b.ttft_ms == pytest.approx(a.ttft_ms, rel=1e-12)


def _sim(catalog, **workload):
    req = {k: v for k, v in BASE.items() if k != "num_gpus"}
    lengths = {"input_len": req.pop("input_len"), "output_len": req.pop("output_len")}
    return simulate({**req, "workload": {"lengths": lengths, "num_requests": 60, **workload}}, catalog)


def test_the_simulator_and_the_stream_model_move_ttft_and_e2e_by_the_path(pair) -> None:
    plain = pair[0]
    a, b = (_sim(c, rate_rps=2.0).as_dict() for c in pair)
    shift = _path_ms(plain)
    for column in ("simulated", "analytic"):
        m_a, m_b = a[column]["metrics"], b[column]["metrics"]
        assert m_b["ttft_ms"]["mean"] - m_a["ttft_ms"]["mean"] == pytest.approx(shift, rel=1e-3)
        assert m_b["e2e_ms"]["mean"] - m_a["e2e_ms"]["mean"] == pytest.approx(shift, rel=1e-3)
        assert m_b["tpot_ms"]["mean"] == pytest.approx(m_a["tpot_ms"]["mean"], rel=1e-6)


def test_a_disaggregated_request_takes_the_path_once(pair) -> None:
    plain = pair[0]
    req = {k: v for k, v in BASE.items() if k not in ("tp", "num_gpus")}
    deployment = DisaggPredictRequest(**{**req, "framework": "vllm", "prefill_workers": 1, "decode_workers": 1, "rate_rps": 1e-4})
    a, b = (predict_disagg(deployment, c).metrics["ttft_ms"] for c in pair)
    assert b - a == pytest.approx(_path_ms(plain), rel=1e-3)


def _probed(values: dict[str, float], rng: np.random.Generator) -> Probed:
    """Rows of three models on two engines: measured TTFT = base + value · slope."""
    n = 90
    engine = np.array(["sglang", "vllm"] * (n // 2))
    unit = np.array(["a", "b", "c"] * (n // 3))
    base = rng.uniform(20.0, 400.0, n)
    slope = rng.uniform(0.03, 0.09, n)  # ms per µs per layer: the model's layers / 1000
    measured = base + np.array([values[e] for e in engine]) * slope
    cases = [
        Case(request={}, metric="ttft_ms", measured=1.0, source="s", source_locator="l", line=i, framework_label="x") for i in range(n)
    ]
    return Probed(cases, engine, unit, np.array(["b200"] * n), np.ones(n, dtype=bool), measured, base, slope)


def test_the_fit_recovers_the_values_that_generated_the_rows() -> None:
    fitted = fit_values(_probed({"sglang": 4100.0, "vllm": 600.0}, np.random.default_rng(3)))
    assert fitted == {"sglang": pytest.approx(4100.0, abs=25.0), "vllm": pytest.approx(600.0, abs=25.0)}


def test_the_term_is_kept_only_where_it_lowers_the_held_out_error() -> None:
    p = _probed({"sglang": 3000.0, "vllm": 0.0}, np.random.default_rng(5))
    assert chosen(p) == ["sglang"]
    held = held_out_predicted(p, engines=chosen(p))
    assert np.array_equal(held[p.engine == "vllm"], p.base[p.engine == "vllm"])


def test_a_held_out_unit_never_enters_its_own_fit() -> None:
    p = _probed({"sglang": 2000.0, "vllm": 1000.0}, np.random.default_rng(9))
    a = p.unit == "a"
    p.measured[a] += 4000.0 * p.slope[a]  # unit a alone would ask for 6000 and 5000
    held = held_out_predicted(p)
    assert np.median(held[a] / p.measured[a]) < 0.7  # predicted with the others' values, not its own


def test_calibrate_fits_the_path_on_a_users_closed_loop_ttft_rows(catalog) -> None:
    """``guideopt calibrate``: rows measured with a server path of 1,800 µs per layer give back about that."""
    from guideopt.calibration.fit_first_token import fit_user_first_token

    truth = with_term(catalog, {"vllm": 1800.0})
    shapes = [(4, 1024, 256), (8, 512, 128), (16, 2048, 256), (32, 1024, 512), (2, 4096, 128), (64, 256, 256)]
    cases = []
    for i, (c, inp, out) in enumerate(shapes):
        req = {
            "model": "meta-llama/Llama-3.1-8B",
            "gpu": "h100-sxm",
            "framework": "vllm",
            "concurrency": c,
            "input_len": inp,
            "output_len": out,
        }
        measured = predict(req, truth).metrics.ttft_ms
        cases.append(
            Case(
                request=req,
                metric="ttft_ms",
                measured=measured,
                source="mine.csv",
                source_locator="",
                line=i,
                framework_label="vllm",
                workload="closed_loop",
            )
        )
    got = fit_user_first_token(catalog, "vllm", catalog.calibration.frameworks["vllm"], cases)
    assert got is not None and got[1] == len(shapes)
    assert got[0] == pytest.approx(1800.0, abs=50.0)
    assert fit_user_first_token(catalog, "vllm", catalog.calibration.frameworks["vllm"], cases[:2]) is None  # too few rows
