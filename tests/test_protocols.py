"""Benchmark protocols as data (``catalogs/protocols``) and ``simulate --protocol``."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from pydantic import ValidationError

from guideopt import api
from guideopt.analyses.protocol import expand_protocol, uniform_buckets
from guideopt.catalog import catalog_dir, load_catalog
from guideopt.cli import main
from guideopt.costs.lengths import bucket_lengths
from guideopt.errors import InvalidRequestError
from guideopt.model.protocol import BenchmarkProtocol, ClientStart, RangeForm
from guideopt.model.workload import LengthBucket
from guideopt.simulator.sampling import sample_table

CAT = load_catalog()
MODEL = ["--model", "meta-llama/Llama-3.1-8B", "--gpu", "h100-sxm"]
BUNDLED = {"mlperf-server", "mlperf-interactive", "vllm-bench-random", "inferencex-random", "aiperf-concurrency", "genai-perf-concurrency"}


def run(args: list[str]):
    return CliRunner().invoke(main, ["simulate", *MODEL, *args])


def request(**workload) -> dict:
    return {"model": "meta-llama/Llama-3.1-8B", "gpu": "h100-sxm", "workload": workload}


def mean_and_bounds(proto: BenchmarkProtocol, nominal: int) -> tuple[float, float, float]:
    table = bucket_lengths([LengthBucket(**b) for b in uniform_buckets(proto, nominal, nominal)])
    return table.mean_input, float(table.input_len.min()), float(table.input_len.max())


# ---------------------------------------------------------------- the catalog


def test_every_bundled_protocol_loads_from_its_file_and_cites_a_source():
    files = {p.stem for p in (catalog_dir() / "protocols").glob("*.yaml")}
    assert BUNDLED <= set(CAT.protocols) == files
    for proto in CAT.protocols.values():
        assert proto.sources and all(len(s) > 20 for s in proto.sources), proto.id
        assert "ASSUMED" in proto.notes, proto.id  # every bundled protocol states what it assumes


def test_the_bundled_figures_are_the_documented_ones():
    ix, vb = CAT.protocols["inferencex-random"], CAT.protocols["vllm-bench-random"]
    assert (ix.range_ratio, ix.range_form, ix.ignore_eos, ix.warmup_requests_per_client, ix.requests_per_client) == (
        0.8,
        RangeForm.BELOW,
        True,
        2,
        10,
    )
    assert (vb.range_ratio, vb.range_form, vb.num_requests) == (0.0, RangeForm.SYMMETRIC, 1000)
    server = CAT.protocols["mlperf-server"]
    assert server.arrival.value == "poisson" and server.percentiles == [99] and server.length_mix == "mlperf-openorca"
    assert all(p.client_start is ClientStart.TOGETHER for p in CAT.protocols.values() if p.arrival.value == "closed_loop")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"sources": []}, "sources"),
        ({"length_sampling": "dataset"}, "length_mix"),
        ({"client_start": None}, "client_start"),
        ({"arrival": "poisson"}, "client_start"),
        ({"range_form": "symmetric", "range_ratio": 1.0}, "range_ratio"),
    ],
)
def test_the_schema_refuses_an_inconsistent_protocol(change, message):
    data = {**CAT.protocols["inferencex-random"].model_dump(mode="json"), **change}
    with pytest.raises(ValidationError, match=message):
        BenchmarkProtocol.model_validate(data)


def test_a_dataset_protocol_must_name_a_bundled_mix(tmp_path):
    import shutil

    root = tmp_path / "catalogs"
    shutil.copytree(catalog_dir(), root)
    path = root / "protocols" / "mlperf-server.yaml"
    path.write_text(path.read_text().replace("length_mix: mlperf-openorca", "length_mix: no-such-mix"))
    load_catalog.cache_clear()
    try:
        with pytest.raises(Exception, match="length_mix: unknown mix 'no-such-mix'"):
            load_catalog(str(root))
    finally:
        load_catalog.cache_clear()


# ---------------------------------------------------------------- length sampling


def test_inferencex_range_has_the_documented_bounds_and_means():
    ix = CAT.protocols["inferencex-random"]
    assert ix.length_range(1024) == (819, 1024) and ix.length_range(8192) == (6553, 8192)
    for nominal, mean in ((1024, 921.5), (8192, 7372.5)):
        got, lo, hi = mean_and_bounds(ix, nominal)
        assert got == pytest.approx(mean, abs=0.5)
        assert ix.length_range(nominal)[0] <= lo < hi <= nominal


def test_symmetric_range_centres_on_the_nominal_length():
    vb = CAT.protocols["vllm-bench-random"].model_copy(update={"range_ratio": 0.5})
    assert vb.length_range(1000) == (500, 1500) and vb.length_range(1023) == (511, 1535)
    for nominal in (1000, 1023):
        got, lo, hi = mean_and_bounds(vb, nominal)
        assert got == pytest.approx(nominal, abs=0.5) and vb.length_range(nominal)[0] <= lo < hi <= vb.length_range(nominal)[1]
    assert CAT.protocols["vllm-bench-random"].length_range(1024) == (1024, 1024)  # the default r = 0: fixed


def test_below_form_at_ratio_zero_averages_half_the_length():
    """SGLang's bench_serving default (r = 0, [L*r, L]) averages about L/2 (length_mixes.md 7b)."""
    sg = CAT.protocols["inferencex-random"].model_copy(update={"range_ratio": 0.0})
    assert sg.length_range(1000) == (1, 1000)
    assert mean_and_bounds(sg, 1000)[0] == pytest.approx(500.5, abs=0.5)


def test_the_expanded_stream_samples_the_range_and_counts_requests():
    req, proto = expand_protocol(
        {**request(concurrency=8, lengths={"input_len": 1024, "output_len": 1024}), "protocol": "inferencex-random"}, CAT
    )
    assert proto is not None and proto.together and req.protocol is None
    assert req.workload.num_requests == 8 * 10 + 8 * 2 and req.warmup_fraction == pytest.approx(16 / 96)
    inputs, outputs = sample_table(bucket_lengths(req.workload.lengths.buckets), 20_000, np.random.default_rng(0))
    assert inputs.min() >= 819 and inputs.max() <= 1024 and outputs.min() >= 819 and outputs.max() <= 1024
    assert inputs.mean() == pytest.approx(921.5, abs=2.0) and outputs.mean() == pytest.approx(921.5, abs=2.0)


def test_a_dataset_protocol_uses_its_mix_unless_lengths_are_given():
    req, _ = expand_protocol({**request(rate_rps=2), "protocol": "mlperf-server"}, CAT)
    assert req.workload.lengths.mix == "mlperf-openorca"
    req, _ = expand_protocol({**request(rate_rps=2, lengths={"mix": "mlperf-cnn-dailymail"}), "protocol": "mlperf-server"}, CAT)
    assert req.workload.lengths.mix == "mlperf-cnn-dailymail"


# ---------------------------------------------------------------- simulate --protocol


def test_simulate_under_inferencex_reports_the_protocol_and_leaves_out_the_warmups():
    res = run(["--protocol", "inferencex-random", "--input-len", "1024", "--output-len", "1024", "--concurrency", "8", "--json"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.output)
    assert data["protocol"] == "inferencex-random" and data["concurrency"] == 8
    assert data["simulated"]["requests"] == 80  # CONC*10 measured; the 2*CONC warm-ups left out
    text = run(["--protocol", "inferencex-random", "--input-len", "256", "--output-len", "16", "--concurrency", "4"])
    assert text.exit_code == 0 and "under protocol inferencex-random" in text.output


def test_a_plain_run_records_no_protocol():
    res = run(["--concurrency", "4", "--input-len", "128", "--output-len", "8", "--num-requests", "20", "--json"])
    assert res.exit_code == 0 and json.loads(res.output)["protocol"] is None


CLOSED_LOOP = ["--framework", "trtllm", "--concurrency", "16", "--input-len", "2048", "--output-len", "256", "--num-requests", "96"]


def _ttft_mean(extra: list[str]) -> float:
    res = run([*CLOSED_LOOP, "--json", *extra])
    assert res.exit_code == 0, res.output
    return json.loads(res.output)["simulated"]["metrics"]["ttft_ms"]["mean"]


def test_clients_started_together_wait_longer_for_their_first_token_than_spread_ones():
    together, spread = _ttft_mean(["--protocol", "aiperf-concurrency"]), _ttft_mean([])
    assert together > 3.0 * spread  # a prefill-first engine holds a wave together (simulator/clients.py)


def test_a_spread_protocol_is_honoured():
    """A protocol's client_start decides: a ``spread`` copy of aiperf-concurrency runs as a plain (spread) closed loop."""
    spread = CAT.protocols["aiperf-concurrency"].model_copy(update={"id": "spread-loop", "client_start": ClientStart.SPREAD})
    cat = dataclasses.replace(CAT, protocols={**CAT.protocols, "spread-loop": spread})
    body = request(concurrency=16, lengths={"input_len": 2048, "output_len": 256}, num_requests=96)
    under = api.simulate({**body, "framework": "trtllm", "protocol": "spread-loop"}, catalog=cat)
    plain = api.simulate({**body, "framework": "trtllm"}, catalog=cat)
    together = api.simulate({**body, "framework": "trtllm", "protocol": "aiperf-concurrency"}, catalog=cat)
    assert under.protocol == "spread-loop" and under.report.metrics["ttft_ms"].mean == pytest.approx(plain.report.metrics["ttft_ms"].mean)
    assert together.report.metrics["ttft_ms"].mean > under.report.metrics["ttft_ms"].mean


@pytest.mark.parametrize(
    ("extra", "flag", "fix"),
    [
        (["--protocol", "mlperf-server", "--concurrency", "8"], "--concurrency", "--rate R"),
        (["--protocol", "mlperf-server", "--rate", "2", "--burstiness", "3"], "--burstiness", "drop it"),
        (["--protocol", "inferencex-random", "--concurrency", "8"], "--input-len", "--output-len N"),
        (["--protocol", "inferencex-random", "--concurrency", "8", "--input-len", "64"], "--output-len", "--output-len N"),
        (["--protocol", "inferencex-random", "--rate", "2", "--input-len", "64", "--output-len", "8"], "--rate", "--concurrency C"),
        (["--protocol", "aiperf-concurrency", "--concurrency", "2", "--lengths", "sharegpt"], "--lengths", "--input-len N"),
        (
            ["--protocol", "inferencex-random", "--concurrency", "2", "--input-len", "64", "--output-len", "8", "--warmup", "0.1"],
            "--warmup",
            "drop it",
        ),
        (
            ["--protocol", "mlperf-server", "--rate", "2", "--prefill-workers", "1", "--decode-workers", "1"],
            "--protocol",
            "drop --protocol",
        ),
    ],
)
def test_conflicting_flags_are_one_line_with_the_usage_exit_code(extra, flag, fix):
    res = run(extra)
    assert res.exit_code == InvalidRequestError.exit_code == 1, res.output
    lines = res.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {flag}: ") and fix in lines[0], res.output


def test_an_unknown_protocol_names_the_flag_and_lists_the_known_ids():
    res = run(["--protocol", "inferencex", "--concurrency", "2", "--input-len", "64", "--output-len", "8"])
    assert res.exit_code == 1, res.output
    line = res.output.strip()
    assert "\n" not in line and line.startswith("error: --protocol: unknown protocol 'inferencex'")
    assert all(pid in line for pid in CAT.protocols)


def test_the_library_names_the_request_key_on_a_conflict():
    with pytest.raises(InvalidRequestError) as info:
        expand_protocol({**request(concurrency=8, lengths={"input_len": 64, "output_len": 8}), "protocol": "mlperf-server"}, CAT)
    assert info.value.field == "workload.concurrency"


# ---------------------------------------------------------------- catalog protocols


def test_catalog_protocols_lists_every_protocol():
    res = CliRunner().invoke(main, ["catalog", "protocols", "--json"])
    assert res.exit_code == 0, res.output
    rows = {r["id"]: r for r in json.loads(res.output)}
    assert set(rows) == set(CAT.protocols)
    assert rows["inferencex-random"]["lengths"] == "uniform_range below r=0.8" and rows["mlperf-server"]["sources"]
    text = CliRunner().invoke(main, ["catalog", "protocols"])
    assert text.exit_code == 0 and all(pid in text.output for pid in CAT.protocols)


def test_the_docs_name_the_command():
    root = Path(__file__).resolve().parents[1]
    assert "--protocol" in (root / "docs" / "serving-model.md").read_text()
    assert "catalog gpus\\|models\\|frameworks\\|mixes\\|protocols" in (root / "README.md").read_text()


def test_the_validation_benchmark_is_the_bundled_protocol(catalog) -> None:
    """The closed-loop rows' benchmark (aiconfigurator's aiperf run) is read from catalogs/protocols by
    the closed-loop share fit and the serving report, not from a constant of their own."""
    from guideopt.calibration.fit_closed_loop import BENCH_PROTOCOL, BENCH_REQUESTS_PER_CLIENT

    proto = catalog.protocol(BENCH_PROTOCOL)
    assert proto.together and proto.requests_per_client == BENCH_REQUESTS_PER_CLIENT
    assert any("bench_run.sh.j2" in s for s in proto.sources)
