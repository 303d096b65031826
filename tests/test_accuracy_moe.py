"""Regression gate on the mixture-of-experts rows (docs/accuracy-moe.md), on a fixed sample.

With the shipped calibration, whose engine MoE serving terms (``scripts/fit_moe_serving.py``) were fitted on
these TPOT rows: in sample for TPOT (docs/accuracy-moe.md has the leave-one-model-out figures, minutes of
``scripts/moe_accuracy.py --kernels``); the gate scores every SAMPLE_EVERY-th configuration in a fixed order.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import pytest

from guideopt.api import predict
from guideopt.calibration.aggregate import stats
from guideopt.calibration.mapping import Case, cases_from_file
from guideopt.calibration.validate import validate
from tests.test_accuracy import require_measurements

E2E = Path(__file__).resolve().parents[2] / "shared" / "data" / "measured" / "e2e.csv"
SAMPLE_EVERY = 12
# (workload, metric) -> median absolute error of the sample when last recorded (docs/accuracy-moe.md has all rows).
RECORDED_MEDIAN_APE = {("closed_loop", "tpot_ms"): 0.117, ("closed_loop", "ttft_ms"): 0.590}
SLACK = 0.03


@pytest.fixture(scope="module")
def sample_results(catalog):
    require_measurements(E2E)
    cases = [c for c in cases_from_file(E2E, catalog, family="moe") if isinstance(c, Case)]
    by_config: dict[tuple, list[Case]] = defaultdict(list)
    for c in cases:
        by_config[c.config_key].append(c)
    keys = sorted(by_config, key=repr)[::SAMPLE_EVERY]
    return validate([c for k in keys for c in by_config[k]], lambda r: predict(r, catalog)).results


@pytest.mark.parametrize(("workload", "metric"), sorted(RECORDED_MEDIAN_APE))
def test_moe_median_error_does_not_regress(sample_results, workload, metric):
    rows = [r for r in sample_results if r.case.workload == workload and r.case.metric == metric]
    assert len(rows) >= 100
    assert stats(rows).median_ape <= RECORDED_MEDIAN_APE[workload, metric] + SLACK


def test_moe_rows_span_the_families_and_layouts(sample_results):
    models = {r.case.request["model"] for r in sample_results}
    assert {"deepseek-ai/DeepSeek-R1", "Qwen/Qwen3.5-397B-A17B", "openai/gpt-oss-120b", "MiniMaxAI/MiniMax-M2.5"} <= models
    assert any(r.case.request.get("attention_dp", 1) > 1 for r in sample_results)
    assert any(r.case.request.get("moe_ep", 1) > 1 for r in sample_results)
