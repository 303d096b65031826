"""Stream workload schemas, named length mixes and trace files."""

from __future__ import annotations

import json

import numpy as np
import pytest
from pydantic import ValidationError

from guideopt.catalog import length_mix_ids, load_length_mix
from guideopt.costs.lengths import bucket_lengths, mix_lengths, sample_lengths
from guideopt.errors import CatalogError, InvalidRequestError
from guideopt.io.traces import read_trace
from guideopt.model.workload import LengthBucket, Lengths, StreamWorkload, parse_percentile, parse_stream_slo
from guideopt.simulator.sampling import arrival_times, sample_mix


@pytest.mark.parametrize(("key", "value"), [("p90", 90.0), ("P99", 99.0), ("p99.9", 99.9), (50, 50.0), ("12.5", 12.5)])
def test_percentile_keys(key, value):
    assert parse_percentile(key, "slo.ttft_ms") == value


@pytest.mark.parametrize("key", ["p0", "p100", 0, 100, -5, "p150", "median"])
def test_percentile_outside_the_open_interval_names_the_field(key):
    with pytest.raises(ValueError, match=r"^slo\.ttft_ms"):
        parse_percentile(key, "slo.ttft_ms")


def test_stream_slo_per_percentile_and_bare_numbers():
    slo = parse_stream_slo({"ttft_ms": {"p90": 800, "p99": 1500}, "tpot_ms": 60})
    assert slo["ttft_ms"].targets == {90.0: 800.0, 99.0: 1500.0}
    assert slo["tpot_ms"].targets == {90.0: 60.0}  # a bare number applies at P90
    with pytest.raises(ValueError, match=r"slo\.e2e_s: unknown"):
        parse_stream_slo({"e2e_s": 3})
    with pytest.raises(ValueError, match=r"slo\.tpot_ms\.p90: .* positive"):
        parse_stream_slo({"tpot_ms": {"p90": -1}})


def test_lengths_take_exactly_one_form():
    assert Lengths(input_len=10, output_len=5).mix is None
    for bad in ({}, {"input_len": 10}, {"input_len": 10, "output_len": 5, "mix": "sharegpt"}, {"mix": "a", "file": "b.csv"}):
        with pytest.raises(ValidationError):
            Lengths.model_validate(bad)


def test_stream_needs_one_arrival_rule_and_a_positive_rate():
    lengths = {"input_len": 10, "output_len": 5}
    assert StreamWorkload.model_validate({"rate_rps": 2, "lengths": lengths}).burstiness == 1.0
    for bad in ({"lengths": lengths}, {"rate_rps": 2, "concurrency": 3, "lengths": lengths}, {"rate_rps": 0, "lengths": lengths}):
        with pytest.raises(ValidationError):
            StreamWorkload.model_validate(bad)
    # a trace may carry its own arrival times
    assert StreamWorkload.model_validate({"lengths": {"file": "t.csv"}}).rate_rps is None


@pytest.mark.parametrize("mix_id", length_mix_ids())
def test_bundled_mixes_are_sourced_and_discretise_to_their_statistics(mix_id):
    mix = load_length_mix(mix_id)
    assert mix.id == mix_id and mix.sources and mix.input.source and mix.output.source
    table = mix_lengths(mix)
    assert table.weight.sum() == pytest.approx(1.0)
    assert (table.input_len <= mix.input.max).all() and (table.output_len <= mix.output.max).all()
    # the bucket median of each side is the published median (within rounding of the mid-quantile grid)
    for side, values in ((mix.input, table.input_len), (mix.output, table.output_len)):
        order = np.argsort(values)
        cdf = np.cumsum(table.weight[order])
        median = values[order][np.searchsorted(cdf, 0.5)]
        assert abs(median - side.median) / side.median < 0.35
    # sampling reproduces the published means (log-normal, clipped at max) within 10 %
    inputs, outputs = sample_mix(mix, 200_000, np.random.default_rng(0))
    for side, sample in ((mix.input, inputs), (mix.output, outputs)):
        if side.max > 4 * side.mean:  # clipping at max moves the mean little
            assert sample.mean() == pytest.approx(side.mean, rel=0.1)


def test_unknown_mix_suggests_the_close_one():
    with pytest.raises(CatalogError, match="did you mean 'sharegpt'"):
        load_length_mix("sharegtp")


def test_buckets_and_trace_tables_are_normalised():
    t = bucket_lengths([LengthBucket(input_len=100, output_len=10, weight=3), LengthBucket(input_len=200, output_len=20)])
    assert t.weight.tolist() == [0.75, 0.25] and t.mean_input == pytest.approx(125.0)
    s = sample_lengths(np.array([5, 5, 7]), np.array([1, 1, 2]))
    assert s.weight.tolist() == pytest.approx([2 / 3, 1 / 3])


@pytest.mark.parametrize("cv", [0.5, 1.0, 2.0])
def test_arrivals_have_the_asked_rate_and_burstiness(cv):
    t = arrival_times(4.0, 200_000, np.random.default_rng(1), cv)
    gaps = np.diff(t)
    assert gaps.mean() == pytest.approx(0.25, rel=0.02)
    assert gaps.std() / gaps.mean() == pytest.approx(cv, rel=0.05)
    assert t[0] == 0.0


def test_trace_csv_and_jsonl(tmp_path):
    csv_path = tmp_path / "t.csv"
    csv_path.write_text("input_len,output_len,arrival_s\n100,10,0.0\n\n200,20,0.5\n")
    tr = read_trace(csv_path)
    assert tr.input_len.tolist() == [100, 200] and tr.arrival_s is not None and tr.arrival_s.tolist() == [0.0, 0.5]
    jl = tmp_path / "t.jsonl"
    jl.write_text(json.dumps({"input_len": 5, "output_len": 3}) + "\n\n" + json.dumps({"input_len": 6, "output_len": 4}) + "\n")
    tr = read_trace(jl)
    assert tr.output_len.tolist() == [3, 4] and tr.arrival_s is None and len(tr) == 2


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("empty.csv", "", r"empty"),
        ("header.csv", "input_len,output_len\n", r"no requests"),
        ("cols.csv", "input,output\n1,2\n", r"cols\.csv:1: missing column input_len"),
        ("num.csv", "input_len,output_len\n10,5\n10,x\n", r"num\.csv:3: output_len: 'x' is not a whole number"),
        ("zero.csv", "input_len,output_len\n0,5\n", r"zero\.csv:2: input_len: '0' must be a whole number >= 1"),
        ("frac.csv", "input_len,output_len\n1.5,5\n", r"frac\.csv:2: input_len"),
        ("arr.csv", "input_len,output_len,arrival_s\n1,5,0\n2,3,\n", r"arr\.csv:3: arrival_s: missing"),
        ("neg.csv", "input_len,output_len,arrival_s\n1,5,-1\n", r"neg\.csv:2: arrival_s"),
        ("bad.jsonl", '{"input_len": 1, "output_len": 2}\n{oops\n', r"bad\.jsonl:2: not valid JSON"),
        ("list.jsonl", "[1, 2]\n", r"list\.jsonl:1: expected an object"),
        ("miss.jsonl", '{"input_len": 4}\n', r"miss\.jsonl:1: output_len: missing"),
    ],
)
def test_malformed_traces_name_the_line_and_the_fix(tmp_path, name, text, message):
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(InvalidRequestError, match=message) as err:
        read_trace(path)
    assert "\n" not in str(err.value)


def test_trace_limits(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("input_len,output_len\n10,5\n4000,200\n")
    with pytest.raises(InvalidRequestError, match=r"t\.csv:3: input_len\+output_len = 4200 exceeds the model's context of 4096"):
        read_trace(path, max_context=4096)
    with pytest.raises(InvalidRequestError, match="more than 1 requests, the simulation limit"):
        read_trace(path, max_requests=1)
    with pytest.raises(InvalidRequestError, match="does not exist"):
        read_trace(tmp_path / "nope.csv")
