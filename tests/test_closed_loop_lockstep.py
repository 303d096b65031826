"""Closed-loop TTFT: prefill passes, the lockstep wait of clients in step, and its fit
(guideopt.costs.serving, guideopt.calibration.fit_closed_loop)."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given
from hypothesis import strategies as st

from guideopt import api
from guideopt.calibration.fit_closed_loop import fit_closed_loop, share_samples, simulated_ttft_ms, with_share
from guideopt.calibration.mapping import Case
from guideopt.calibration.overlay import CalibrationOverlay, apply_overlay
from guideopt.model.calibration import ClosedLoopSync

LLAMA8B = "meta-llama/Llama-3.1-8B"


def _with_share(catalog, share: float):
    return with_share(catalog, catalog.calibration, share)


def _closed(concurrency: int, **extra):
    req = {"model": LLAMA8B, "gpu": "h100-sxm", "framework": "vllm", "input_len": 1024, "output_len": 256}
    return {**req, "concurrency": concurrency, **extra}


def _ttft(catalog, req) -> float:
    return api.predict(req, catalog).metrics.ttft_ms


def test_share_zero_is_the_steady_state_and_ttft_is_linear_in_the_share(catalog):
    req = _closed(32)
    t0, t_half, t1 = (_ttft(_with_share(catalog, s), req) for s in (0.0, 0.5, 1.0))
    assert t1 > t0
    assert t_half == pytest.approx((t0 + t1) / 2.0, rel=1e-9)


def test_one_client_has_no_wave_to_wait_behind(catalog):
    req = _closed(1)
    assert _ttft(_with_share(catalog, 1.0), req) == pytest.approx(_ttft(_with_share(catalog, 0.0), req), rel=1e-12)


@given(c=st.integers(1, 128))
def test_lockstep_wait_grows_with_the_clients_in_step(catalog, c):
    full = _with_share(catalog, 1.0)
    steady = _with_share(catalog, 0.0)
    wave = _ttft(full, _closed(c)) - _ttft(steady, _closed(c))
    more = _ttft(full, _closed(c + 8)) - _ttft(steady, _closed(c + 8))
    assert more > wave >= 0.0


def test_wave_waits_behind_half_the_other_prompts(catalog):
    """With every client in step, a prompt waits on average behind (c−1)/2 prompts of I
    tokens: about (c−1)/2 × I / (tokens per step) steps of prefill."""
    steady = _with_share(catalog, 0.0)
    full = _with_share(catalog, 1.0)
    req = _closed(17, split=2048)
    wave_ms = _ttft(full, req) - _ttft(steady, req)
    one_prompt_ms = _ttft(steady, _closed(1, split=2048))  # about one prefill of I tokens
    # 8 prompts ahead, two prompts' worth of tokens per step at most: at least 4 prefill steps
    assert wave_ms > 4 * 0.5 * one_prompt_ms
    assert wave_ms < 8 * 2.0 * one_prompt_ms


def test_last_prefill_pass_carries_only_the_remainder(catalog):
    """A prompt a few tokens longer than the token budget takes one more small pass, not a
    second full one (it used to be priced as two full passes: TTFT nearly doubled)."""
    steady = _with_share(catalog, 0.0)
    at_budget = _ttft(steady, _closed(2, input_len=2040, split=2048))
    beyond = _ttft(steady, _closed(2, input_len=2060, split=2048))
    assert beyond > at_budget
    assert beyond < 1.3 * at_budget


def test_engine_without_chunked_prefill_runs_the_prompt_in_one_pass(catalog):
    """TensorRT-LLM (chunked context off) runs a prompt as long as its token budget whole,
    even beside decodes that use part of the budget."""
    steady = _with_share(catalog, 0.0)
    req = {"model": LLAMA8B, "gpu": "h100-sxm", "framework": "trtllm", "output_len": 256}
    short = _ttft(steady, {**req, "input_len": 4096, "concurrency": 4})
    long = _ttft(steady, {**req, "input_len": 8192, "concurrency": 4})
    assert long < 2.6 * short  # two passes of 8192 would be about 4×


def _cases(requests):
    return [
        Case(
            request=r,
            metric="ttft_ms",
            measured=1.0,
            source="synthetic",
            source_locator="",
            line=n,
            framework_label="x",
            workload="closed_loop",
        )
        for n, r in enumerate(requests)
    ]


def test_simulated_wave_lies_between_the_steady_state_and_the_whole_wave(catalog):
    """The simulator (no lockstep term: it starts all clients together) lands between the
    steady state (share 0) and the whole wave every round (share 1) for a chunking engine."""
    (sample,) = share_samples(catalog, catalog.calibration, _cases([_closed(32, split=2048)]))
    assert sample.steady_ms < sample.simulated_ms < sample.steady_ms + sample.wave_ms
    assert 0.0 < sample.share < 0.5


def test_more_requests_per_client_wash_the_first_wave_out(catalog):
    """The first round starts as one wave; the more rounds a benchmark runs, the less of its
    mean TTFT that wave is."""
    steady = _with_share(catalog, 0.0)
    req = _closed(32, split=2048)
    short = simulated_ttft_ms(steady, req, requests_per_client=5)
    long = simulated_ttft_ms(steady, req, requests_per_client=40)
    assert short > long > _ttft(steady, req)


def test_derived_share_uses_no_measured_value(catalog):
    """Rows with other measured values give the same share: only their shapes are simulated."""
    reqs = [_closed(c, split=2048) for c in (8, 48)]
    a = fit_closed_loop(catalog, catalog.calibration, _cases(reqs))
    cases = [dataclasses.replace(c, measured=c.measured * 1000.0) for c in _cases(reqs)]
    b = fit_closed_loop(catalog, catalog.calibration, cases)
    assert a == b
    assert 0.0 < a.lockstep_share < 1.0
    assert "2 closed-loop configurations" in a.fitted_from


def test_prefill_first_engines_are_not_simulated_for_the_share(catalog):
    """The simulator's prefill-first model holds a wave together for good; TensorRT-LLM's
    rows do not show that, so only chunking engines set the share (module note)."""
    req = {**_closed(16), "framework": "trtllm"}
    fitted = fit_closed_loop(catalog, catalog.calibration, _cases([req]))
    assert fitted.lockstep_share == 0.0 and "no closed-loop configurations" in fitted.fitted_from


def test_overlay_can_set_the_share(catalog):
    overlay = CalibrationOverlay(closed_loop=ClosedLoopSync(lockstep_share=0.0))
    assert apply_overlay(catalog.calibration, overlay).closed_loop.lockstep_share == 0.0
    assert apply_overlay(catalog.calibration, CalibrationOverlay()).closed_loop == catalog.calibration.closed_loop


def test_a_hand_written_overlay_turns_the_lockstep_wait_off(tmp_path, catalog):
    """`closed_loop: {lockstep_share: 0}` in an overlay (clients that do not start together)
    gives the steady state through the CLI, as README says."""
    import json

    from click.testing import CliRunner

    from guideopt.cli import main

    overlay = tmp_path / "overlay.yaml"
    overlay.write_text("closed_loop:\n  lockstep_share: 0\n")
    args = [
        "predict",
        "--model",
        LLAMA8B,
        "--gpu",
        "h100-sxm",
        "--input-len",
        "1024",
        "--output-len",
        "256",
        "--concurrency",
        "32",
        "--json",
    ]
    shipped = json.loads(CliRunner().invoke(main, args).output)["metrics"]["ttft_ms"]
    steady = json.loads(CliRunner().invoke(main, [*args, "--calibration", str(overlay)]).output)["metrics"]["ttft_ms"]
    assert steady == pytest.approx(_ttft(_with_share(catalog, 0.0), _closed(32)), rel=1e-9)
    assert shipped > steady


def test_predict_names_closed_loop_clients_not_a_batch():
    from click.testing import CliRunner

    from guideopt.cli import main

    args = ["predict", "--model", LLAMA8B, "--gpu", "h100-sxm", "--num-gpus", "2", "--tp", "1", "--input-len", "512", "--output-len", "128"]
    text = CliRunner().invoke(main, [*args, "--concurrency", "9"]).output
    assert "9 closed-loop clients (5 per replica)" in text and "wave(s)" not in text
    static = CliRunner().invoke(main, [*args, "--batch", "8"]).output
    assert "batch 8 (4 per replica, 1 wave(s))" in static
    payload = api.predict({**_closed(9), "num_gpus": 2, "tp": 1}).as_dict()
    assert payload["concurrency"] == 9 and payload["batch_per_replica"] == 5
    assert api.predict({**_closed(1), "concurrency": None, "batch": 8}).as_dict()["concurrency"] is None
