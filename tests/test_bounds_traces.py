"""Issue 25 item 5: traces are bounded before the work they cause. Their size is checked
before they are opened, their rows are counted while they are read, and the analytic model
prices at most ``MAX_LENGTH_BUCKETS`` buckets, however many distinct lengths a trace has."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from guideopt.analyses.simulate import configuration
from guideopt.catalog import load_catalog
from guideopt.costs.lengths import LengthTable, bucket_lengths, sample_lengths
from guideopt.costs.stream import stream_metrics
from guideopt.costs.stream_search import sustainable_rate
from guideopt.errors import InvalidRequestError
from guideopt.io import traces
from guideopt.io.traces import read_trace, trace_length_buckets
from guideopt.model.limits import MAX_LENGTH_BUCKETS
from guideopt.model.workload import LengthBucket, SimulateRequest


def _lognormal_trace(path: Path, rows: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(25)
    i = np.clip(np.round(rng.lognormal(np.log(600), 1.0, rows)), 1, 20_000)
    o = np.clip(np.round(rng.lognormal(np.log(200), 0.9, rows)), 1, 4_000)
    path.write_text("input_len,output_len\n" + "".join(f"{a:.0f},{b:.0f}\n" for a, b in zip(i, o)))
    return i, o


def test_a_trace_of_thousands_of_distinct_lengths_is_priced_from_a_bounded_table(tmp_path: Path) -> None:
    i, o = _lognormal_trace(tmp_path / "t.csv", 5_000)
    table = sample_lengths(i, o)
    assert len(table.weight) <= MAX_LENGTH_BUCKETS < len(np.unique(np.stack([i, o], 1), axis=0))
    assert table.weight.sum() == pytest.approx(1.0)
    assert table.mean_input == pytest.approx(i.mean(), abs=0.5) and table.mean_output == pytest.approx(o.mean(), abs=0.5)
    assert table.max_total == (i + o).max()  # memory and context checks see the longest request
    # the plan reads the same trace into buckets that make the very same table
    buckets = trace_length_buckets(tmp_path / "t.csv")["buckets"]
    assert sum(b["weight"] for b in buckets) == 5_000
    planned = bucket_lengths([LengthBucket(**b) for b in buckets])
    for a, b in zip((planned.input_len, planned.output_len, planned.weight), (table.input_len, table.output_len, table.weight)):
        assert np.array_equal(a, b)


def test_the_bounded_table_prices_a_trace_like_its_every_length() -> None:
    rng = np.random.default_rng(3)
    i = np.clip(np.round(rng.lognormal(np.log(600), 1.0, 600)), 1, 20_000)
    o = np.clip(np.round(rng.lognormal(np.log(200), 0.9, 600)), 1, 4_000)
    pairs, counts = np.unique(np.stack([i, o], 1), axis=0, return_counts=True)
    exact, condensed = LengthTable(pairs[:, 0], pairs[:, 1], counts / counts.sum()), sample_lengths(i, o)
    req = SimulateRequest.model_validate(
        {"model": "meta-llama/Llama-3.1-8B", "gpu": "h100-sxm", "workload": {"rate_rps": 1, "lengths": {"input_len": 1, "output_len": 1}}}
    )
    conf = configuration(req, exact, exact.max_total, load_catalog())
    rates = [float(sustainable_rate(conf.arch, conf.options, t)[0]) for t in (exact, condensed)]
    assert rates[1] == pytest.approx(rates[0], rel=0.01)
    at = np.array([0.8 * rates[0]])
    p90 = [stream_metrics(conf.arch, conf.options, t, at, percentiles=(90.0,)) for t in (exact, condensed)]
    for metric in ("ttft_ms", "tpot_ms"):
        assert float(p90[1].dist(metric).percentiles[90.0][0]) == pytest.approx(float(p90[0].dist(metric).percentiles[90.0][0]), rel=0.05)


def test_short_bucket_lists_are_kept_as_written() -> None:
    buckets = [LengthBucket(input_len=900, output_len=10, weight=1), LengthBucket(input_len=100, output_len=50, weight=3)]
    table = bucket_lengths(buckets)
    assert table.input_len.tolist() == [900, 100] and table.weight.tolist() == [0.25, 0.75]
    many = [LengthBucket(input_len=n, output_len=1 + n % 7) for n in range(1, 1_000)]
    assert len(bucket_lengths(many).weight) <= MAX_LENGTH_BUCKETS


def test_rows_are_counted_while_reading(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text("input_len,output_len\n" + "10,5\n" * 4 + "oops,5\n")
    with pytest.raises(InvalidRequestError, match=r"has more than 3 requests, the simulation limit \(use a sample"):
        read_trace(path, max_requests=3)  # stops at row 4: the bad row 5 is never parsed
    jsonl = tmp_path / "t.jsonl"
    jsonl.write_text('{"input_len": 10, "output_len": 5}\n' * 4 + "{oops\n")
    with pytest.raises(InvalidRequestError, match="more than 3 requests"):
        read_trace(jsonl, max_requests=3)


def test_a_trace_over_the_byte_limit_is_refused_before_it_is_opened(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "t.csv"
    path.write_bytes(b"input_len,output_len\n" + b"\xff" * 200)  # not UTF-8: opening it would fail differently
    monkeypatch.setattr(traces, "MAX_TRACE_FILE_BYTES", 100)
    with pytest.raises(InvalidRequestError, match=r"t\.csv is 221 bytes, over the 100-byte limit for a trace") as err:
        read_trace(path)
    assert "\n" not in str(err.value)


def test_a_line_over_the_line_limit_is_refused_without_holding_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(traces, "MAX_TRACE_LINE_CHARS", 64)
    path = tmp_path / "t.jsonl"
    path.write_text('{"input_len": 10, "output_len": 5}\n{"input_len": 10, "output_len": 5, "note": "' + "x" * 100 + '"}\n')
    with pytest.raises(InvalidRequestError, match=r"t\.jsonl:2: line over 64 characters"):
        read_trace(path)
    csv_path = tmp_path / "t.csv"
    csv_path.write_text("input_len,output_len\n" + "1," * 100)
    with pytest.raises(InvalidRequestError, match=r"t\.csv:2: line over 64 characters"):
        read_trace(csv_path)
