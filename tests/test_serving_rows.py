"""How the stream validation reads MLPerf Server rows (guideopt.calibration.serving)."""

from __future__ import annotations

import pytest

from guideopt.calibration.measurements import Measurement
from guideopt.calibration.serving import mlperf_server

NOTES = "benchmark=llama2-70b; scenario=Server; target_qps=8.6 (Poisson arrivals); statistic=mean"


def _row(line: int, metric: str, value: float, quant: str = "", notes: str = NOTES) -> Measurement:
    return Measurement(
        line=line,
        source="MLPerf Inference v4.1 (closed, submitter AMD)",
        source_locator="",
        framework="vLLM 0.4.3+rocm614",
        framework_version="",
        gpu="AMD Instinct MI300X-NPS1-SPX-192GB-750W",
        num_gpus=8.0,
        tp=1.0,
        pp=None,
        model="Llama-2-70b-chat-hf",
        dtype="",
        quant=quant,
        batch_or_concurrency=None,
        input_len=None,
        output_len=None,
        metric=metric,
        value=value,
        unit="ns",
        notes=notes,
    )


@pytest.mark.parametrize(
    "quant,notes,dtype",
    [
        ("weight_data_types=fp8 (submission metadata)", NOTES, "fp8"),  # FP8 named in the quant column
        ("", NOTES + "; runs Quark FP8 weights while metadata says UNSET", "fp8"),  # or only in the notes
        ("", NOTES, "fp16"),
    ],
)
def test_mlperf_precision_comes_from_quant_or_notes(quant, notes, dtype):
    rows = [_row(1, "ttft", 4e8, quant, notes), _row(2, "tpot", 3e7, quant, notes)]
    (_source, case, measured), *_ = list(mlperf_server(rows))
    assert case["dtype"] == dtype
    assert case["rate"] == pytest.approx(8.6 / 8)  # one model copy per GPU: the rate per replica
    assert measured[("ttft_ms", "mean")][0] == pytest.approx(400.0) and measured[("tpot_ms", "mean")][0] == pytest.approx(30.0)


def test_the_capacity_table_keeps_each_configurations_highest_stable_rate() -> None:
    """Issue 22: the analytic sustainable rate against the highest rate a stable (MLPerf) run reached."""
    from guideopt.calibration.serving import capacity_markdown, keep_highest_rate

    capacity: dict = {}
    case = {"gpu": "H100", "model": "Llama-2-70b", "tp": 1, "framework": "TensorRT-LLM", "dtype": "fp8", "lengths": ("mix", "x")}
    for rate in (8.0, 10.0, 9.0):
        keep_highest_rate(capacity, "MLPerf Server", {**case, "rate": rate}, 9.5)
    (row,) = capacity.values()
    assert row["measured_max_rps"] == 10.0 and row["ratio"] == pytest.approx(0.95)
    table = "\n".join(capacity_markdown({"capacity": [row]}))
    assert "| MLPerf Server | 1 | 0.95 | 1 | 0.95 / 0.95 |" in table
