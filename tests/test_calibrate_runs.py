"""Issue 25 item 10: ``guideopt calibrate`` reads open-loop vLLM / SGLang runs, says which runs
it skipped and why, counts a file or run given twice once, and refuses impossible numbers."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import LLAMA2_7B

from guideopt.analyses.simulate import run_simulation
from guideopt.calibration.bench_runs import RunContext, json_cases
from guideopt.calibration.cases import Skip
from guideopt.calibration.predictions import PredictionTable
from guideopt.calibration.user_data import load_user_files
from guideopt.calibration.user_report import skip_lines, skipped_runs
from guideopt.cli import main
from guideopt.errors import InvalidRequestError
from guideopt.model.workload import SimulateRequest

CTX = RunContext(model=LLAMA2_7B, gpu="h100-sxm", framework="vllm")
FLAGS = ["--model", LLAMA2_7B, "--gpu", "h100-sxm", "--framework", "vllm"]


def vllm_run(rate: float | str = 4.0, cap: int | None = None, **extra) -> dict:
    """A `vllm bench serve --save-result` file (vllm 0.11 keys), numbers consistent with each other."""
    completed, duration_s = 200, 50.0
    run = {
        "backend": "vllm",
        "model_id": LLAMA2_7B,
        "request_rate": rate,
        "burstiness": 1.0,
        "max_concurrency": cap,
        "duration": duration_s,
        "completed": completed,
        "total_input_tokens": completed * 512,
        "total_output_tokens": completed * 128,
        "request_throughput": completed / duration_s,
        "output_throughput": completed * 128 / duration_s,
        "mean_ttft_ms": 25.0,
        "median_ttft_ms": 24.0,
        "p99_ttft_ms": 60.0,
        "mean_tpot_ms": 8.0,
        "median_tpot_ms": 8.0,
        "p99_tpot_ms": 11.0,
    }
    return {**run, **extra}


def write(path: Path, *runs: dict) -> Path:
    path.write_text("\n".join(json.dumps(r) for r in runs) + "\n")
    return path


def test_an_open_loop_vllm_run_is_compared_with_the_stream_model_at_its_rate(catalog, tmp_path):
    cases = json_cases(write(tmp_path / "r4.json", vllm_run(4.0)), CTX, catalog)
    assert {c.metric for c in cases} == {"ttft_ms", "tpot_ms"}  # an open loop's throughput is its offered rate
    req = cases[0].request
    assert (req["rate_rps"], req["burstiness"], req["input_len"], req["output_len"]) == (4.0, 1.0, 512, 128)
    predicted = PredictionTable([req], catalog)(req)
    sim = SimulateRequest.model_validate(
        {
            "model": LLAMA2_7B,
            "gpu": "h100-sxm",
            "dtype": "fp16",
            "workload": {"rate_rps": 4.0, "lengths": {"input_len": 512, "output_len": 128}, "num_requests": 20},
        }
    )
    analytic = run_simulation(sim, catalog=catalog).analytic  # `guideopt simulate`'s analytic column
    assert predicted["ttft_ms"] == pytest.approx(float(analytic.ttft_ms.mean[0]))
    assert predicted["tpot_ms"] == pytest.approx(float(analytic.tpot_ms.mean[0]))


def test_an_sglang_request_rate_run_and_a_cap_never_reached_are_open_loops(catalog, tmp_path):
    sglang = {k: v for k, v in vllm_run(2.0).items() if k not in ("burstiness", "model_id")} | {"backend": "sglang", "concurrency": 3.1}
    (case, *_) = json_cases(write(tmp_path / "s.jsonl", sglang), CTX, catalog)
    assert (case.workload, case.request["rate_rps"], case.request["burstiness"]) == ("open_loop", 2.0, 1.0)
    never_reached = vllm_run(4.0, cap=64, max_concurrent_requests=9)
    (case, *_) = json_cases(write(tmp_path / "c.json", never_reached), CTX, catalog)
    assert case.request["rate_rps"] == 4.0 and "concurrency" not in case.request


@pytest.mark.parametrize(
    ("run", "reason"),
    [
        (vllm_run("inf"), "every prompt at once"),
        (vllm_run(4.0, cap=8), "both request_rate 4 and max_concurrency 8"),
        (vllm_run(4.0, ramp_up_strategy="linear"), "a ramp-up run"),
        ({**vllm_run(), "request_rate": "trace"}, "a trace replay"),
    ],
)
def test_runs_not_modelled_are_skipped_with_their_reason(catalog, tmp_path, run, reason):
    (skip,) = json_cases(write(tmp_path / "run.json", run), CTX, catalog)
    assert isinstance(skip, Skip) and reason in skip.detail
    (line,) = skip_lines(skipped_runs([skip]))
    assert line.startswith(f"skipped {tmp_path / 'run.json'}: line 1: run not modelled: ") and reason in line


def test_every_skipped_run_is_named_on_stderr_and_counted(tmp_path):
    burst = write(tmp_path / "burst.json", vllm_run("inf"))
    moe = write(tmp_path / "moe.json", vllm_run(2.0, model_id="mistralai/Mixtral-8x7B-v0.1"))
    res = CliRunner().invoke(main, ["calibrate", str(burst), str(moe), *FLAGS[2:], "--out", str(tmp_path / "o.yaml")])
    assert res.exit_code == 1
    lines = res.stderr.strip().splitlines()
    assert lines[0].startswith(f"skipped {burst}: line 1: run not modelled: every prompt at once")
    assert lines[1].startswith(f"skipped {moe}: line 1: MoE model: engine terms are fitted on dense models only")
    assert lines[-1].startswith("error: ") and "no row can be compared (2 runs or rows skipped: see above)" in lines[-1]


def test_a_file_or_run_given_twice_counts_once(catalog, tmp_path):
    one = write(tmp_path / "a.json", vllm_run(4.0))
    copy = write(tmp_path / "b.json", vllm_run(4.0))
    lines = write(tmp_path / "c.jsonl", vllm_run(2.0), vllm_run(2.0), vllm_run(4.0))
    data = load_user_files([str(one), str(one), str(copy), str(lines)], CTX, catalog)
    assert len(data.cases) == 4  # the 4 req/s run and the 2 req/s run, two metrics each
    assert [f.file for f in data.files] == ["a.json", "c.jsonl"]
    assert data.duplicates == [
        f"{one}: given more than once (sha256 {data.files[0].sha256[:12]}…; counted once)",
        f"{copy}: the same content as {one} (sha256 {data.files[0].sha256[:12]}…; counted once)",
        f"{lines}: line 2: the same run as {lines}: line 1 (counted once)",
        f"{lines}: line 3: the same run as {one} (counted once)",
    ]


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"mean_ttft_ms": -3.0}, "key 'mean_ttft_ms': -3 is not positive"),
        ({"mean_tpot_ms": 0.0}, "key 'mean_tpot_ms': 0 is not positive"),
        ({"mean_ttft_ms": math.nan}, "key 'mean_ttft_ms': nan is not a number"),
        ({"mean_ttft_ms": 9e10}, "key 'mean_ttft_ms': 9e+10 ms is over a day"),
        ({"mean_ttft_ms": 500.0, "mean_e2el_ms": 400.0}, "key 'mean_ttft_ms': 500 ms exceeds mean_e2el_ms 400 ms"),
        ({"p99_ttft_ms": 900.0, "p99_e2e_latency_ms": 800.0}, "key 'p99_ttft_ms': 900 ms exceeds p99_e2e_latency_ms"),
        ({"output_throughput": 900.0}, "key 'output_throughput': 900 tok/s disagrees with total_output_tokens / duration = 512"),
        ({"duration": 0.01, "output_throughput": 2_560_000.0}, "key 'output_throughput': 2.56e+06 tok/s is beyond what 1 x h100-sxm"),
        ({"burstiness": 1e300}, "key 'burstiness': 1e+300 is beyond 100"),
        ({"request_rate": -1}, "key 'request_rate': -1 is not a rate"),
    ],
)
def test_impossible_numbers_are_refused_naming_file_and_key(catalog, tmp_path, change, words):
    path = write(tmp_path / "run.json", vllm_run(4.0) | change)
    with pytest.raises(InvalidRequestError, match=r"run\.json: ") as err:
        json_cases(path, CTX, catalog)
    assert words in str(err.value)


def test_more_requests_in_flight_than_clients_is_refused(catalog, tmp_path):
    run = vllm_run("inf", cap=4, mean_e2el_ms=2000.0)  # 200 requests x 2 s over 50 s: 8 in flight on average
    with pytest.raises(InvalidRequestError, match=r"key 'mean_e2el_ms': 2000 ms puts 8 requests in flight .* max_concurrency 4"):
        json_cases(write(tmp_path / "run.json", run), CTX, catalog)


def test_a_negative_value_in_a_users_csv_is_refused_with_its_line(catalog, tmp_path):
    path = tmp_path / "mine.csv"
    header = "source,source_locator,framework,framework_version,gpu,num_gpus,tp,pp,model,dtype,quant,batch_or_concurrency,input_len,output_len,metric,value,unit,notes"
    path.write_text(f"{header}\nlab,,vLLM,0.6,h100-sxm,1,1,1,{LLAMA2_7B},fp16,,8,128,128,tpot,-4,ms,static batch\n")
    with pytest.raises(InvalidRequestError, match=r"mine.csv: line 2: value: -4 is not positive"):
        load_user_files([str(path)], CTX, catalog)


def test_the_vectorised_predictions_are_predicts(catalog):
    from guideopt.api import predict

    reqs = [
        {"model": LLAMA2_7B, "gpu": "h100-sxm", "framework": "vllm", "dtype": "fp16", "input_len": 512, "output_len": 128, **load}
        for load in ({"batch": 8}, {"concurrency": 16}, {"batch": 64})
    ]
    table = PredictionTable(reqs, catalog)
    for req in reqs:
        assert table(req)["tpot_ms"] == predict(req, catalog).metrics.tpot_ms
