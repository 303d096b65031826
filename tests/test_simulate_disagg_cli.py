"""``guideopt simulate`` on a disaggregated deployment: both pools simulated beside the analytic model; bad flags."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from guideopt.cli import main

BASE = ["simulate", "--model", "meta-llama/Llama-2-7b-hf", "--gpu", "a100-sxm4-80gb", "--framework", "vllm-0.33"]
POOLS = ["--prefill-workers", "2", "--decode-workers", "1"]


def _run(args: list[str]):
    return CliRunner().invoke(main, BASE + args)


@pytest.mark.parametrize("lengths", [["--input-len", "3000", "--output-len", "200"], ["--lengths", "sharegpt"]])
def test_both_pools_are_simulated_beside_the_analytic_model(lengths):
    result = _run([*POOLS, "--rate", "4", *lengths, "--num-requests", "1500", "--json"])
    assert result.exit_code == 0, result.output
    d = json.loads(result.stdout)
    assert d["disaggregated"]["prefill"]["workers"] == 2 and d["disaggregated"]["decode"]["workers"] == 1 and d["num_gpus"] == 3
    sim, ana = d["simulated"]["metrics"], d["analytic"]["metrics"]
    assert d["analytic"]["stable"] and d["simulated"]["requests"] > 1000
    assert ana["ttft_ms"]["mean"] == pytest.approx(sim["ttft_ms"]["mean"], rel=0.25)
    assert ana["tpot_ms"]["mean"] == pytest.approx(sim["tpot_ms"]["mean"], rel=0.15)


def test_more_decode_workers_never_raise_the_simulated_tpot():
    args = ["--prefill-workers", "2", "--rate", "6", "--input-len", "2000", "--output-len", "300", "--num-requests", "1200", "--json"]
    tpot = [json.loads(_run([*args, "--decode-workers", str(y)]).stdout)["simulated"]["metrics"]["tpot_ms"]["mean"] for y in (1, 2, 3)]
    assert tpot[0] >= tpot[1] >= tpot[2]


@pytest.mark.parametrize(
    "args,needle",
    [
        (["--prefill-workers", "2", "--rate", "4"], "--decode-workers: a disaggregated deployment needs both pools"),
        ([*POOLS, "--concurrency", "8"], "--concurrency: a disaggregated deployment is simulated at a request rate"),
        ([*POOLS, "--rate", "4", "--tp", "2"], "--tp: a disaggregated deployment takes each pool's layout"),
        ([*POOLS, "--rate", "4", "--decode-tp", "0"], "--decode-tp: must be > 0"),
        ([*POOLS, "--rate", "4", "--framework", "fastgen"], "does not serve disaggregated prefill/decode"),
    ],
)
def test_bad_disaggregated_flags_are_one_line(args, needle):
    base = [a for a in BASE if a not in ("--framework", "vllm-0.33")] if "--framework" in args else BASE
    result = CliRunner().invoke(main, base + args + ["--input-len", "1000", "--output-len", "100"])
    assert result.exit_code == 1, result.output
    assert needle in result.output and len(result.output.strip().splitlines()) == 1
