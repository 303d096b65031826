"""Benchmark length mixes given by their published percentiles (MLPerf datasets): the planner's
quantile table and the simulator's draws both follow the percentiles, and bad percentiles are refused."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from guideopt.catalog import length_mix_ids, load_length_mix
from guideopt.costs.lengths import mix_lengths, side_quantiles
from guideopt.model.workload import LengthMoments
from guideopt.simulator.sampling import sample_mix

MLPERF = ("mlperf-openorca", "mlperf-cnn-dailymail", "mlperf-llama3-1-405b", "mlperf-deepseek-r1")


def test_the_mlperf_datasets_are_bundled() -> None:
    assert set(MLPERF) <= set(length_mix_ids())


@pytest.mark.parametrize("mix_id", MLPERF)
def test_quantiles_pass_through_the_published_percentiles(mix_id: str) -> None:
    mix = load_length_mix(mix_id)
    for side in (mix.input, mix.output):
        if side.percentiles is None:
            continue
        probs = sorted(side.percentiles)
        assert side_quantiles(side, np.array(probs)).tolist() == [min(round(side.percentiles[q]), side.max) for q in probs]
        assert side_quantiles(side, np.array([0.0, 1.0])).tolist() == [side.min, side.max]


@pytest.mark.parametrize("mix_id", length_mix_ids())
def test_the_planners_table_keeps_each_mixs_mean(mix_id: str) -> None:
    mix = load_length_mix(mix_id)
    t = mix_lengths(mix)
    for got, side in ((t.input_len, mix.input), (t.output_len, mix.output)):
        assert float((got * t.weight).sum()) == pytest.approx(side.mean, rel=0.08)


@pytest.mark.parametrize("mix_id", ["mlperf-deepseek-r1", "mlperf-llama3-1-405b"])
def test_the_simulator_draws_follow_the_percentiles(mix_id: str) -> None:
    mix = load_length_mix(mix_id)
    inputs, outputs = sample_mix(mix, 40_000, np.random.default_rng(0))
    for drawn, side in ((inputs, mix.input), (outputs, mix.output)):
        for q in (0.1, 0.5, 0.9):
            assert np.quantile(drawn, q) == pytest.approx(side.percentiles[q], rel=0.03)


def test_a_left_skewed_side_needs_its_percentiles() -> None:
    with pytest.raises(ValidationError, match="give percentiles"):
        LengthMoments(median=900, mean=800, max=3000, source="s")
    side = LengthMoments(median=900, mean=800, max=3000, min=50, percentiles={0.1: 120, 0.5: 900, 0.9: 1300}, source="s")
    assert side_quantiles(side, np.array([0.5])).tolist() == [900]


@pytest.mark.parametrize(
    ("percentiles", "message"),
    [({0.5: 100, 0.9: 90}, "must not decrease"), ({0.0: 5, 0.5: 100}, "strictly between 0 and 1"), ({0.5: 5000}, "must not decrease")],
)
def test_bad_percentiles_are_refused(percentiles: dict[float, float], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        LengthMoments(median=100, mean=120, max=1000, min=1, percentiles=percentiles, source="s")


def test_catalog_mixes_lists_every_bundled_mix() -> None:
    import json

    from click.testing import CliRunner

    from guideopt.cli import main

    out = CliRunner().invoke(main, ["catalog", "mixes", "--json"])
    assert out.exit_code == 0, out.output
    rows = {r["id"]: r for r in json.loads(out.output)}
    assert set(rows) == set(length_mix_ids())
    assert rows["mlperf-deepseek-r1"]["percentiles"] and not rows["sharegpt"]["percentiles"]
    assert rows["mlperf-openorca"]["input_mean"] == pytest.approx(222.33)
