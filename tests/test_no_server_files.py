"""Issue 25 items 4 and 6: the web API opens no file a request names, a length-mix id is
never a path, and simulations are bounded before any work."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from guideopt.catalog import load_length_mix
from guideopt.cli import main
from guideopt.errors import CatalogError
from guideopt.model.limits import MAX_SIMULATED_REQUESTS
from guideopt.web.app import FieldError, parse_request

STREAM = {"model": "meta-llama/Llama-3.1-8B", "budget": {"usd_per_hour": 10}}


@pytest.mark.parametrize(
    "lengths",
    [{"file": "/etc/passwd"}, {"file": "../../README.md"}, "/etc/hosts.csv", "trace.jsonl"],
)
def test_the_web_api_refuses_a_trace_file_named_by_the_client(lengths, tmp_path: Path) -> None:
    payload = {**STREAM, "workload": {"rate_rps": 2, "lengths": lengths}}
    with pytest.raises(FieldError) as info:
        parse_request(payload)
    assert info.value.field == "workload.lengths" and "reads no files" in str(info.value.message)


def test_the_web_api_still_takes_a_mix_id_and_inline_buckets() -> None:
    for lengths in ("sharegpt", {"buckets": [{"input_len": 100, "output_len": 20, "weight": 1.0}]}):
        req = parse_request({**STREAM, "workload": {"rate_rps": 2, "lengths": lengths}})
        assert req.workload.rate_rps == 2


@pytest.mark.parametrize("mix_id", ["../../README", "../models/meta-llama--Llama-2-7b-hf", "/etc/passwd"])
def test_a_length_mix_id_is_never_a_path(mix_id: str) -> None:
    with pytest.raises(CatalogError, match="unknown length mix"):
        load_length_mix(mix_id)


def test_simulated_requests_are_bounded_before_any_work(tmp_path: Path) -> None:
    too_many = str(MAX_SIMULATED_REQUESTS + 1)
    sim = CliRunner().invoke(
        main,
        ["simulate", "--model", "meta-llama/Llama-3.1-8B", "--gpu", "h100-sxm", "--rate", "2", "--input-len", "100", "--output-len", "50"]
        + ["--num-requests", too_many],
    )
    assert sim.exit_code == 1 and sim.stderr.strip().startswith("error: --num-requests:"), sim.output
    f = tmp_path / "c.yaml"
    f.write_text(
        "model: meta-llama/Llama-3.1-8B\n"
        f"workload: {{rate_rps: 2, input_len: 100, output_len: 50, num_requests: {too_many}}}\n"
        "budget: {usd_per_hour: 10}\n"
    )
    solve = CliRunner().invoke(main, ["solve", str(f)])
    assert solve.exit_code == 1 and "workload.num_requests" in solve.stderr and "200,000" in solve.stderr, solve.output
