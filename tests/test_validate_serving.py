"""`guideopt validate FILE --serving`: the stream models against the serving rows of the measured data."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from guideopt.cli import main

E2E = Path(__file__).resolve().parents[2] / "shared" / "data" / "measured" / "e2e.csv"

if not E2E.exists():
    if os.environ.get("CI"):
        raise RuntimeError(f"{E2E} is missing: CI needs ../shared beside the checkout")
    pytest.skip("../shared/data/measured/e2e.csv not found (outside CI)", allow_module_level=True)


def test_serving_validation_reports_each_source_metric_and_percentile():
    res = CliRunner().invoke(main, ["validate", str(E2E), "--serving", "--max-configs", "2", "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    keys = {(r["source"], r["metric"], r["statistic"]) for r in out["rows"]}
    for source in ("TRT-LLM online", "MLPerf Server", "aiconfigurator closed loop"):
        assert (source, "tpot_ms", "mean") in keys and (source, "ttft_ms", "mean") in keys
    assert ("MLPerf Server", "ttft_ms", "p99") in keys and ("MLPerf Server", "tpot_ms", "p99") in keys
    for r in out["rows"]:
        assert r["n"] >= 1
    assert out["configurations"] > out["skipped"] >= 0
