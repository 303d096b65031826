"""guideopt.calibration.validate: mapping measured rows onto predictable cases, errors and aggregation."""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path
from types import SimpleNamespace

import pytest

from guideopt.calibration import validate as v
from guideopt.errors import NoFeasiblePlanError

E2E_CSV = Path(__file__).resolve().parents[2] / "shared/data/measured/e2e.csv"

AIC = "NVIDIA aiconfigurator silicon_sample (real e2e measurements used to validate aiconfigurator)"
TRT_DOC = "TensorRT-LLM performance doc (v0.9.0)"
TRT_DOC_OLD = "TensorRT-LLM performance doc (v0.6.1 / v0.5 data)"
LMDEPLOY = "LMDeploy A100 FP16 benchmark"
ONLINE = "TensorRT-LLM perf overview online serving (Triton backend)"
NIM = "NVIDIA NIM LLM benchmarking docs"
AIC_NOTES = "aggregated (non-disaggregated) serving; client concurrency=16; moe_tp=1 moe_ep=1; gemm_quant=fp8"


def row(**kw) -> dict[str, str]:
    """A CSV row: a static TRT-LLM doc row on an H100 by default, overridden by ``kw``."""
    base = {
        "source": TRT_DOC,
        "source_locator": "loc",
        "framework": "TensorRT-LLM (gptSessionBenchmark, static batching)",
        "framework_version": "0.9.0",
        "gpu": "H100",
        "num_gpus": "1.0",
        "tp": "1.0",
        "pp": "",
        "model": "meta-llama/Llama-2-7b (table: LLaMA 7B)",
        "dtype": "fp16",
        "quant": "",
        "batch_or_concurrency": "64.0",
        "input_len": "128.0",
        "output_len": "128.0",
        "metric": "ttft",
        "value": "10.0",
        "unit": "ms",
        "notes": "",
    }
    base.update({k: str(x) for k, x in kw.items()})
    return base


def write_csv(tmp_path: Path, rows: list[dict[str, str]]) -> Path:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(v.CSV_COLUMNS), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    path = tmp_path / "e2e.csv"
    path.write_text(out.getvalue())
    return path


def one(tmp_path: Path, **kw) -> v.Case | v.Skip:
    (m,) = v.load_measurements(write_csv(tmp_path, [row(**kw)]))
    return v.to_case(m)


# --- loading ---------------------------------------------------------------------------


def test_load_parses_numbers_and_line_numbers(tmp_path):
    path = write_csv(tmp_path, [row(notes="two\nlines"), row(value="2.5", pp="")])
    first, second = v.load_measurements(path)
    assert (first.line, second.line) == (2, 4)  # the first row's quoted notes span two lines
    assert first.tp == 1.0 and first.pp is None and second.value == 2.5


def test_load_rejects_missing_columns(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("source,value\nx,1\n")
    with pytest.raises(Exception, match="missing column"):
        v.load_measurements(path)


# --- labels ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "label, gpu",
    [
        ("H100 80GB HBM3", "h100-sxm"),
        ("H100-SXM", "h100-sxm"),
        ("H100-SXM-80GB", "h100-sxm"),
        ("H100 SXM", "h100-sxm"),
        ("H100 80G", "h100-sxm"),
        ("H100", "h100-sxm"),
        ("H200-SXM", "h200-sxm"),
        ("H200 131GB HBM3", "h200-sxm"),
        ("H200-SXM-141GB", "h200-sxm"),
        ("H200", "h200-sxm"),
        ("A100-80G", "a100-sxm4-80gb"),
        ("A100 80G", "a100-sxm4-80gb"),
        ("A100", "a100-sxm4-80gb"),
        ("L40S", "l40s"),
        ("B200-SXM", "b200"),
        ("B200-SXM-180GB", "b200"),
        ("h100-sxm", "h100-sxm"),
        ("a10g", "a10g"),
        ("B300-SXM", "b300"),
        ("GB200", "gb200"),
        ("AMD Instinct MI250X", None),  # one GCD: half the board the catalog describes
    ],
)
def test_gpu_labels(label, gpu):
    assert v.gpu_id(label) == gpu


@pytest.mark.parametrize(
    "name, expected",
    [
        ("meta-llama/Llama-3.1-8B-Instruct", ("meta-llama/Llama-3.1-8B", None)),
        ("meta-llama/Llama-2-7b (table: llama2-7b)", ("meta-llama/Llama-2-7b-hf", None)),
        ("meta-llama/Llama-2-70b-chat-hf (MLPerf llama2-70b-99)", ("meta-llama/Llama-2-70b-hf", None)),
        (
            "meta-llama/Llama-3.3-70B-Instruct",
            ("meta-llama/Llama-3.3-70B-Instruct", None),
        ),  # its own catalog entry (Llama-3.1-70B architecture)
        ("mistralai/Mistral-7B (table: Mistral 7B)", ("mistralai/Mistral-7B-v0.1", None)),
        ("mistralai/Mixtral-8x7B (table: Mixtral 8x7B)", ("mistralai/Mixtral-8x7B-v0.1", None)),
        ('meta-llama/Meta-Llama-3-70B-Instruct (nightly suite: "llama-3 70B")', ("meta-llama/Meta-Llama-3-70B", None)),
        ("nvidia/Llama-3.1-8B-Instruct-FP8", ("meta-llama/Llama-3.1-8B", "fp8")),
        ("meta-llama/Llama-3.1-70B (table: LLaMA 3.1 70B)", ("meta-llama/Llama-3.1-70B", None)),
        ("Qwen/Qwen2-7B", ("Qwen/Qwen2-7B", None)),
        ("deepseek-ai/DeepSeek-R1", ("deepseek-ai/DeepSeek-R1", None)),
        ("EleutherAI/gpt-j-6b (table: GPT-J 6B)", None),
    ],
)
def test_model_names(name, expected):
    assert v.model_id(name) == expected


@pytest.mark.parametrize(
    "label, fw, proxy",
    [
        ("vLLM", "vllm", False),
        ("vLLM (benchmark_latency)", "vllm", False),
        ("TensorRT-LLM + Triton tensorrtllm_backend", "trtllm", False),
        ("SGLang", "sglang", False),
        ("DeepSpeed-MII", "fastgen", False),
        ("FastGen", "fastgen", False),
        ("LMDeploy TurboMind (profile_generation)", "trtllm", True),
        ("NVIDIA NIM (LLM NIM container)", "trtllm", True),
    ],
)
def test_framework_labels(label, fw, proxy):
    rule = v.framework_rule(label)
    assert rule.framework == fw and (rule.proxy_of is not None) == proxy


# --- rows -> cases ---------------------------------------------------------------------


def test_static_doc_row_becomes_batch_case(tmp_path):
    case = one(tmp_path)
    assert isinstance(case, v.Case)
    assert case.request == {
        "model": "meta-llama/Llama-2-7b-hf",
        "gpu": "h100-sxm",
        "num_gpus": 1,
        "tp": 1,
        "pp": 1,
        "framework": "trtllm",
        "dtype": "fp16",
        "input_len": 128,
        "output_len": 128,
        "batch": 64,
    }
    assert (case.metric, case.measured, case.line, case.source) == ("ttft_ms", 10.0, 2, TRT_DOC)
    assert not case.framework_proxy


def test_per_gpu_throughput_is_multiplied_by_tp(tmp_path):
    case = one(tmp_path, metric="output_throughput", unit="tokens/s/GPU", value=1000, tp="4.0", num_gpus="4.0")
    assert (case.metric, case.measured, case.request["tp"]) == ("output_throughput_tok_s", 4000.0, 4)


def test_system_throughput_is_kept(tmp_path):
    case = one(tmp_path, metric="output_throughput", unit="tokens/s", value=1000, tp="2.0", num_gpus="2.0")
    assert case.measured == 1000.0


def test_throughput_of_unstated_scope_is_skipped_above_one_gpu(tmp_path):
    notes = "static batch; header (per-GPU vs total not stated; TP>1 rows ambiguous)"
    kw = dict(source=TRT_DOC_OLD, metric="output_throughput", unit="tokens/s", value=1000, notes=notes)
    assert isinstance(one(tmp_path, **kw), v.Case)  # one GPU: no ambiguity
    skip = one(tmp_path, tp="2.0", num_gpus="2.0", **kw)
    assert isinstance(skip, v.Skip) and "not stated" in skip.reason


@pytest.mark.parametrize(
    "metric, unit, value, target, expected",
    [
        ("ttft", "s", 1.5, "ttft_ms", 1500.0),
        ("itl", "s", 0.047, "tpot_ms", 47.0),
        ("tpot", "ns", 2.0e7, "tpot_ms", 20.0),
        ("e2e_latency", "ms", 2500.0, "batch_latency_s", 2.5),
        ("e2e_latency", "ns", 3.0e9, "batch_latency_s", 3.0),
        ("total_throughput", "tokens/s", 900.0, "total_throughput_tok_s", 900.0),
    ],
)
def test_unit_conversion(tmp_path, metric, unit, value, target, expected):
    case = one(tmp_path, metric=metric, unit=unit, value=value)
    assert case.metric == target and math.isclose(case.measured, expected)


def test_lmdeploy_is_trtllm_proxy_with_seconds(tmp_path):
    case = one(
        tmp_path,
        source=LMDEPLOY,
        framework="LMDeploy TurboMind (profile_generation)",
        gpu="A100-80G",
        model="meta-llama/Llama-2-13b (table: llama2-13b)",
        metric="ttft",
        unit="s",
        value="0.252",
        batch_or_concurrency="16.0",
    )
    assert case.framework_proxy and case.proxy_of == "LMDeploy TurboMind"
    assert case.request["framework"] == "trtllm" and case.request["gpu"] == "a100-sxm4-80gb"
    assert math.isclose(case.measured, 252.0) and case.request["batch"] == 16


def test_closed_loop_row_becomes_concurrency_case(tmp_path):
    case = one(
        tmp_path,
        source=AIC,
        framework="vLLM",
        gpu="H200-SXM",
        model="meta-llama/Llama-3.1-70B",
        dtype="fp8",
        quant="fp8",
        tp="4.0",
        num_gpus="4.0",
        pp="1.0",
        batch_or_concurrency="16.0",
        input_len="1024.0",
        output_len="1024.0",
        metric="tpot",
        value="12.5",
        notes=AIC_NOTES,
    )
    assert case.request["concurrency"] == 16 and "batch" not in case.request
    assert case.request["dtype"] == "fp8" and "kv_dtype" not in case.request
    assert (case.request["model"], case.request["gpu"], case.request["framework"]) == ("meta-llama/Llama-3.1-70B", "h200-sxm", "vllm")


def test_fp8_kv_cache_from_quant(tmp_path):
    case = one(tmp_path, dtype="fp8", quant="FP8 (FP8 weights+FP8 KV cache per doc build commands)")
    assert (case.request["dtype"], case.request["kv_dtype"]) == ("fp8", "fp8")


def test_fp8_checkpoint_sets_dtype(tmp_path):
    case = one(tmp_path, model="nvidia/Llama-3.1-8B-Instruct-FP8", dtype="", quant="")
    assert (case.request["model"], case.request["dtype"]) == ("meta-llama/Llama-3.1-8B", "fp8")


def test_int4_weight_only_and_unstated_precision(tmp_path):
    assert one(tmp_path, dtype="int4", quant="int4_wo").request["dtype"] == "int4"
    case = one(tmp_path, dtype="", quant="")
    assert case.request["dtype"] == v.DEFAULT_DTYPE and case.assumptions
    assert one(tmp_path, dtype="bf16 (model default; not stated)").request["dtype"] == "bf16"


def test_parallel_defaults(tmp_path):
    case = one(tmp_path, num_gpus="8.0", tp="", pp="2.0")
    assert (case.request["num_gpus"], case.request["tp"], case.request["pp"]) == (8, 4, 2)
    case = one(tmp_path, num_gpus="", tp="2.0", pp="")
    assert (case.request["num_gpus"], case.request["tp"], case.request["pp"]) == (2, 2, 1)


@pytest.mark.parametrize(
    "kw, reason",
    [
        (dict(gpu="AMD Instinct MI250X"), "GPU not in catalog"),
        (dict(model="tiiuae/falcon-180B (table: Falcon 180B)"), "model not in catalog"),
        (dict(model="internlm/internlm-20b (table: internlm-20b)"), "model not in catalog"),
        (dict(metric="requests_per_s", unit="req/s"), "metric not predicted"),
        (
            dict(source=ONLINE, batch_or_concurrency="", notes="request rate QPS=2 (open-loop arrival)"),
            "open-loop / variable lengths not modelled",
        ),
        (dict(source="MLPerf Inference v4.1 (closed, NVIDIA)", input_len="", output_len=""), "open-loop / variable lengths not modelled"),
        (dict(source=NIM, input_len="", output_len=""), "open-loop / variable lengths not modelled"),
        (
            dict(source=AIC, notes="client concurrency=8; moe_tp=1 moe_ep=8"),
            "MoE layout breaks moe_tp × moe_ep = tp × attention_dp",
        ),  # experts over 8 GPUs of a 1-GPU replica; DEP / TEP layouts: tests/test_mapping_moe.py
        (dict(unit="furlongs"), "unit not convertible"),
        (dict(value="0"), "measured value not positive"),
        (dict(framework="TGI"), "framework not modelled"),
    ],
)
def test_skip_reasons(tmp_path, kw, reason):
    skip = one(tmp_path, **kw)
    assert isinstance(skip, v.Skip) and skip.reason == reason and skip.line == 2


# --- validation ------------------------------------------------------------------------


def case(metric: str, measured: float, **request) -> v.Case:
    req = {"model": "meta-llama/Llama-2-7b-hf", "gpu": "h100-sxm", "framework": "vllm", "batch": 1, "input_len": 8, "output_len": 8}
    req.update(request)
    return v.Case(req, metric, measured, "src", "loc", 1, "vLLM")


def fake_predict(metrics: dict[str, float], calls: list | None = None):
    def predict_fn(request):
        if calls is not None:
            calls.append(dict(request))
        return SimpleNamespace(metrics=metrics, waves=1)

    return predict_fn


def test_ape_math_and_one_prediction_per_config():
    calls: list = []
    cases = [case("ttft_ms", 100.0), case("tpot_ms", 20.0), case("ttft_ms", 50.0, batch=4)]
    report = v.validate(cases, fake_predict({"ttft_ms": 110.0, "tpot_ms": 15.0}, calls))
    assert len(calls) == 2  # the two batch-1 cases share one prediction
    apes = [r.ape for r in report.results]
    assert apes == pytest.approx([0.10, 0.25, 1.20])
    assert [r.ratio for r in report.results] == pytest.approx([1.1, 0.75, 2.2])
    assert report.distinct_configs == 2


def test_prediction_errors_become_skips():
    def refuses(request):
        raise NoFeasiblePlanError("does not fit: needs 200 GB")

    report = v.validate([case("ttft_ms", 1.0), v.Skip("GPU not in catalog", "GB200")], refuses)
    assert not report.results
    assert {s.reason for s in report.skipped} == {"prediction: does not fit in memory", "GPU not in catalog"}


def test_closed_loop_failures_are_skipped_but_static_bugs_raise():
    def broken(request):
        raise ModuleNotFoundError("No module named 'guideopt.costs.serving'")

    report = v.validate([case("ttft_ms", 1.0, concurrency=8)], broken)
    assert report.skipped[0].reason == v.CLOSED_LOOP_UNAVAILABLE and "ModuleNotFoundError" in report.skipped[0].detail
    with pytest.raises(ModuleNotFoundError):
        v.validate([case("ttft_ms", 1.0)], broken)


def test_aggregation_by_hand():
    # measured 100 each; predictions give APEs 10 %, 20 %, 60 % for ttft and 50 % for tpot.
    results = [
        v.Result(case("ttft_ms", 100.0), 110.0),
        v.Result(case("ttft_ms", 100.0, batch=16), 80.0),
        v.Result(case("ttft_ms", 100.0, batch=128), 160.0),
        v.Result(case("tpot_ms", 100.0, gpu="a100-sxm4-80gb"), 150.0),
    ]
    report = v.Report(results=results, skipped=[v.Skip("fp4 not modelled", "nvfp4")] * 3)
    per = v.per_metric(report.results)
    assert per["ttft_ms"].count == 3
    assert per["ttft_ms"].median_ape == pytest.approx(0.2)
    assert per["ttft_ms"].mean_ape == pytest.approx(0.3)
    assert per["ttft_ms"].median_ratio == pytest.approx(1.1)
    assert per["tpot_ms"].median_ape == pytest.approx(0.5)
    by_batch = v.breakdown(report, "batch")
    assert set(by_batch) == {"1", "9-64", ">64"} and by_batch[">64"]["ttft_ms"].mean_ape == pytest.approx(0.6)
    assert set(v.cases_by(report, "gpu")) == {"a100-sxm4-80gb", "h100-sxm"}
    data = v.report_dict(report)
    assert data["metrics"]["ttft_ms"]["mape"] == pytest.approx(0.3)
    assert data["skip_reasons"] == {"fp4 not modelled": {"count": 3, "details": {"nvfp4": 3}}}
    md = v.report_markdown(report)
    assert "| ttft_ms | 3 | 20.0% | 30.0% | 1.10 |" in md and "| fp4 not modelled | 3 |" in md


@pytest.mark.parametrize("load, bucket", [(1, "1"), (2, "2-8"), (8, "2-8"), (9, "9-64"), (64, "9-64"), (65, ">64"), (2150, ">64")])
def test_batch_buckets(load, bucket):
    assert v.batch_bucket({"batch": load}) == bucket
    assert v.batch_bucket({"batch": 1, "concurrency": load}) == bucket


def test_cases_by_plain_cases():
    groups = v.cases_by([case("ttft_ms", 1.0), case("ttft_ms", 1.0, framework="sglang"), v.Skip("x")], "framework")
    assert {k: len(g) for k, g in groups.items()} == {"sglang": 1, "vllm": 1}


def test_real_predictions_on_synthetic_rows(tmp_path):
    rows = [row(metric="ttft", value="20"), row(metric="output_throughput", unit="tokens/s/GPU", value="3000")]
    report = v.validate_file(write_csv(tmp_path, rows))
    assert len(report.results) == 2 and report.distinct_configs == 1
    assert all(r.predicted > 0 and math.isfinite(r.ape) for r in report.results)


# --- the published data ----------------------------------------------------------------


@pytest.mark.skipif(not E2E_CSV.exists(), reason="shared/data/measured/e2e.csv not present")
def test_smoke_on_published_measurements():
    # Dense models here (MoE rows take minutes to predict: tests/test_accuracy_moe.py samples them).
    cases = v.cases_from_file(E2E_CSV, family="dense")[::10]  # every 10th row: the accuracy gate scores them all
    assert sum(isinstance(c, v.Case) for c in cases) >= 150
    report = v.validate(cases)
    metrics = v.per_metric(report.results)
    assert {"ttft_ms", "tpot_ms"} <= set(metrics)
    assert len(report.results) + len(report.skipped) == len(cases)
    assert "## Per metric" in v.report_markdown(report)


@pytest.mark.skipif(not E2E_CSV.exists(), reason="shared/data/measured/e2e.csv not present")
def test_most_published_rows_are_comparable():
    """Issue 20: the MoE, Blackwell and FP4 rows map onto predictable configurations (6,500 of 8,985)."""
    cases = v.cases_from_file(E2E_CSV)
    assert sum(isinstance(c, v.Case) for c in cases) >= 6500
