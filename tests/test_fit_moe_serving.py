"""The engines' MoE serving terms: asynchronous scheduling's decode-step overhead and the MoE
path's per-layer cost (``guideopt/calibration/fit_moe_serving.py``, ``costs/hardware.py``)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from guideopt.api import predict
from guideopt.calibration.cases import Case
from guideopt.calibration.fit_moe_serving import ASYNC, MOE_LAYER, Probed, chosen_terms, fit_terms, held_out_predicted, with_terms
from guideopt.calibration.labels import framework_rule, release
from guideopt.costs.hardware import hardware_arrays
from guideopt.model.dtype import Dtype


def _case(line: int, model: str) -> Case:
    return Case(request={"model": model}, metric="tpot_ms", measured=1.0, source="s", source_locator="l", line=line, framework_label="x")


def _probed(async_ms: float, layer_us: float, rng: np.random.Generator) -> Probed:
    """Rows of two models on one engine whose measured TPOT is exactly base + async·s_a + layer·s_m."""
    n = 40
    base = rng.uniform(5.0, 30.0, n)
    slope_a = np.where(np.arange(n) % 2 == 0, 1.0, 0.0)  # half the rows run an asynchronous version
    slope_m = rng.uniform(0.02, 0.09, n)  # ms per µs of per-layer cost: layers × passes per token
    models = np.array(["a" if i < n // 2 else "b" for i in range(n)])
    return Probed(
        cases=[_case(i, m) for i, m in enumerate(models)],
        engine=np.array(["vllm"] * n),
        model=models,
        unit=models,
        measured=base + async_ms * slope_a + layer_us * slope_m,
        base=base,
        slope={ASYNC: slope_a, MOE_LAYER: slope_m},
        sync_ms={"vllm": 1.8},
    )


@pytest.mark.parametrize(("async_ms", "layer_us"), [(0.0, 0.0), (0.35, 12.0), (1.8, 64.0)])
def test_the_fit_recovers_terms_that_generated_the_rows(async_ms: float, layer_us: float) -> None:
    p = _probed(async_ms, layer_us, np.random.default_rng(7))
    assert fit_terms(p) == {"vllm": {ASYNC: pytest.approx(async_ms), MOE_LAYER: pytest.approx(layer_us)}}
    for model in ("a", "b"):  # each fold fits on the other model's rows only
        assert fit_terms(p, p.unit != model)["vllm"][MOE_LAYER] == pytest.approx(layer_us), model


def test_without_asynchronous_rows_the_async_term_is_not_fitted() -> None:
    p = _probed(0.0, 20.0, np.random.default_rng(3))
    p = dataclasses.replace(p, slope={ASYNC: np.zeros(len(p.cases)), MOE_LAYER: p.slope[MOE_LAYER]})
    assert fit_terms(p)["vllm"] == {ASYNC: None, MOE_LAYER: pytest.approx(20.0)}
    assert fit_terms(p, fitted={"vllm": (ASYNC,)})["vllm"] == {ASYNC: None, MOE_LAYER: 0.0}


def test_a_term_is_kept_only_where_it_lowers_the_held_out_error() -> None:
    p = _probed(0.4, 25.0, np.random.default_rng(11))
    assert chosen_terms(p) == {"vllm": (ASYNC, MOE_LAYER)}
    before = dataclasses.replace(p, measured=p.before(np.arange(len(p.cases))))  # rows the old terms already explain
    assert chosen_terms(before) == {"vllm": ()}
    held = held_out_predicted(p, chosen_terms(p))
    assert np.median(np.abs(held / p.measured - 1)) < 1e-9


def test_a_held_out_model_never_enters_its_own_fit() -> None:
    p = _probed(0.5, 30.0, np.random.default_rng(5))
    bent = dataclasses.replace(p, measured=np.where(p.model == "b", p.measured * 3.0, p.measured))
    held, bent_held = held_out_predicted(p), held_out_predicted(bent)
    assert np.array_equal(held[p.model == "b"], bent_held[p.model == "b"])  # fitted on model a only
    assert not np.array_equal(held[p.model == "a"], bent_held[p.model == "a"])


@pytest.mark.parametrize(
    ("label", "version", "framework"),
    [("vLLM", "0.15.1", "vllm-0.33"), ("vLLM", "0.14.0", "vllm-0.33"), ("vLLM", "0.13.0", "vllm"), ("vLLM", "0.12.0", "vllm"),
     ("vLLM", "", "vllm"), ("vLLM", "nightly-5b8c30d", "vllm"), ("SGLang", "0.5.9", "sglang")],
)  # fmt: skip
def test_rows_of_asynchronous_vllm_versions_map_to_the_entry_that_schedules_ahead(label: str, version: str, framework: str) -> None:
    assert framework_rule(label, version).framework == framework


def test_release_numbers() -> None:
    assert release("0.15.1") == (0, 15, 1) and release("v1.2.0rc6.post2") == (1, 2, 0) and release("nightly-dev") is None


def _tpot(cat, framework: str) -> float:
    req = {"model": "meta-llama/Llama-3.1-8B", "gpu": "h100-sxm", "framework": framework, "input_len": 512, "output_len": 128, "batch": 8}
    return predict(req, cat).metrics.tpot_ms


def test_asynchronous_versions_pay_the_async_decode_overhead_and_others_do_not(catalog) -> None:
    sync_ms = catalog.calibration.frameworks["vllm"].decode_step_overhead_ms
    low, high = with_terms(catalog, {"vllm": {ASYNC: 0.0}}), with_terms(catalog, {"vllm": {ASYNC: sync_ms + 2.0}})
    assert catalog.framework("vllm-0.33").async_scheduling and not catalog.framework("vllm").async_scheduling
    assert _tpot(high, "vllm-0.33") - _tpot(low, "vllm-0.33") == pytest.approx(sync_ms + 2.0, rel=1e-6)
    assert _tpot(high, "vllm") == pytest.approx(_tpot(low, "vllm"), rel=1e-12)


def test_the_moe_layer_term_adds_to_every_moe_layer(catalog) -> None:
    gpu, fw = catalog.gpu("b200"), catalog.framework("sglang")
    plain = hardware_arrays([gpu], [fw], [Dtype.FP8], with_terms(catalog, {"sglang": {MOE_LAYER: 0.0}}).calibration)
    more = hardware_arrays([gpu], [fw], [Dtype.FP8], with_terms(catalog, {"sglang": {MOE_LAYER: 40.0}}).calibration)
    assert float(more.moe_overhead_s[0] - plain.moe_overhead_s[0]) == pytest.approx(40e-6)


def test_probe_varies_each_term_once_and_leaves_async_engines_to_their_own_overhead(catalog) -> None:
    """``probe`` with a stand-in for ``validate``: TPOT = 10 + the async overhead (where used) + layers · the MoE-layer cost."""
    from guideopt.calibration.fit_moe_serving import probe
    from guideopt.calibration.results import Report, Result

    cases = [
        Case(
            request={"model": "deepseek-ai/DeepSeek-R1", "framework": fw, "gpu": "b200"},
            metric="tpot_ms",
            measured=12.0,
            source="s",
            source_locator="l",
            line=i,
            framework_label=fw,
            workload="closed_loop",
        )
        for i, fw in enumerate(["vllm-0.33", "vllm", "sglang-0.5.23"])
    ]

    def run(cs, cat) -> Report:
        out = []
        for c in cs:
            fw = cat.framework(c.request["framework"])
            eff = cat.calibration.frameworks[fw.calibration_id]
            step = eff.async_decode_step_overhead_ms if fw.async_scheduling and eff.async_decode_step_overhead_ms is not None else 0.0
            out.append(Result(c, 10.0 + step + 0.06 * eff.moe_layer_overhead_us))
        return Report(results=out)

    p = probe(cases, catalog, run)
    assert p.base.tolist() == [10.0, 10.0, 10.0]
    assert p.slope[ASYNC].tolist() == pytest.approx([1.0, 0.0, 0.0])  # sglang's overlap scheduler is its decode overhead
    assert p.slope[MOE_LAYER].tolist() == pytest.approx([0.06] * 3)
    assert set(p.unit) == {p.unit[0]}  # one model: one held-out unit


def test_an_engine_fit_on_asynchronous_rows_moves_the_asynchronous_overhead_only(catalog) -> None:
    """``calibrate`` on runs of vLLM >= 0.14 (predicted as vllm-0.33) fits the overhead those rows pay and keeps
    the synchronous versions' one."""
    from conftest import LLAMA2_7B, model_cases, predict_request, with_engine_terms

    from guideopt.calibration.fit_engines import fit_engine

    truth = with_engine_terms(catalog, async_decode_step_overhead_ms=1.4, per_token_step_us=0.0)
    shapes = [(1, 128, 256), (4, 64, 512), (8, 512, 128), (16, 256, 256), (32, 128, 128), (2, 2048, 64)]
    reqs = [predict_request(LLAMA2_7B, "h100-sxm", framework="vllm-0.33", batch=b, input_len=i, output_len=o) for b, i, o in shapes]
    start = with_engine_terms(catalog, async_decode_step_overhead_ms=0.2, per_token_step_us=0.0)
    fitted, _ = fit_engine(start, start.calibration, "vllm", model_cases(truth, reqs))
    assert fitted.async_decode_step_overhead_ms == pytest.approx(1.4, abs=0.25)
    assert fitted.decode_step_overhead_ms == start.calibration.frameworks["vllm"].decode_step_overhead_ms
