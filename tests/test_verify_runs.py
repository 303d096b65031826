"""The several-run check of a stream plan (``simulator/runs.py``): when it stops, what it decides."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from guideopt.model.workload import PercentileTargets
from guideopt.simulator.report import Distribution, StreamReport
from guideopt.simulator.runs import MAX_RUNS, MIN_RUNS, RUN_CONFIDENCE, check_runs, prediction_bound

TARGETS = {"ttft_ms": PercentileTargets(targets={90.0: 500.0}), "tpot_ms": PercentileTargets(targets={90.0: 50.0})}


def report(ttft: float, tpot: float) -> StreamReport:
    def d(v: float) -> Distribution:
        return Distribution(v, {50.0: v, 90.0: v, 99.0: v})

    return StreamReport(
        metrics={"ttft_ms": d(ttft), "tpot_ms": d(tpot), "e2e_ms": d(1.0), "queue_ms": d(0.0)},
        requests=100,
        duration_s=1.0,
        request_throughput_rps=1.0,
        output_throughput_tok_s=1.0,
        total_throughput_tok_s=1.0,
        goodput_rps=None,
        slo_attainment=None,
        kv_use_mean=0.0,
        kv_use_max=0.0,
        preemptions=0,
        steps=1,
    )


class Runs:
    """A fake simulator: run ``seed`` gives the ``seed``-th pair of values; records the seeds asked."""

    def __init__(self, values: list[tuple[float, float]], first_seed: int = 0) -> None:
        self.values, self.first, self.seeds = values, first_seed, []

    def __call__(self, seed: int) -> StreamReport:
        self.seeds.append(seed)
        return report(*self.values[seed - self.first])


def test_steady_runs_pass_after_the_fewest_runs():
    runs = Runs([(300.0, 40.0)] * MAX_RUNS, first_seed=7)
    v = check_runs(runs, 7, TARGETS)
    assert v.holds and runs.seeds == list(range(7, 7 + MIN_RUNS)) and v.failed_seed is None
    assert v.bound["ttft_ms"][90.0] == pytest.approx(300.0)


def test_the_first_run_that_misses_stops_the_check_and_names_its_seed():
    runs = Runs([(300.0, 40.0), (520.0, 40.0)] + [(300.0, 40.0)] * MAX_RUNS)
    v = check_runs(runs, 0, TARGETS)
    assert not v.holds and v.failed_seed == 1 and runs.seeds == [0, 1]


def test_runs_that_pass_but_spread_towards_the_bound_are_not_verified():
    """Every run meets P90 TPOT 50 ms, but the spread says the next may not: the issue's 8B
    plan (49.4 ms on one seed, 50.5-57 on others) is of this kind."""
    values = [(300.0, x) for x in (47.0, 49.5, 46.5, 49.8, 47.5, 49.9)]
    runs = Runs(values)
    v = check_runs(runs, 0, TARGETS)
    assert not v.holds and v.failed_seed is None and MIN_RUNS <= len(runs.seeds) <= MAX_RUNS
    assert v.bound["tpot_ms"][90.0] > 50.0


def test_without_targets_one_run_gives_the_figures():
    runs = Runs([(300.0, 40.0)] * MAX_RUNS)
    v = check_runs(runs, 0, {})
    assert v.holds and runs.seeds == [0] and v.bound == {}


def test_a_metric_no_request_has_meets_any_bound():
    runs = Runs([(300.0, math.nan)] * MAX_RUNS)
    assert check_runs(runs, 0, TARGETS).holds


values_lists = st.lists(st.floats(min_value=1.0, max_value=1e5), min_size=MIN_RUNS, max_size=MAX_RUNS)


@given(values_lists)
def test_the_bound_is_above_every_run_it_was_given(values):
    """With t·√(1+1/k) above the largest standardised value k runs can have ((k−1)/√k), the
    bound for the next run is never below a run already seen: a seen run cannot be a miss."""
    assert prediction_bound(np.array(values)) >= max(values) * (1 - 1e-9)


@given(values_lists)
def test_more_confidence_never_gives_a_lower_bound(values):
    v = np.array(values)
    assert prediction_bound(v, 0.99) >= prediction_bound(v, RUN_CONFIDENCE) * (1 - 1e-12)


def test_one_run_bounds_nothing():
    assert prediction_bound(np.array([100.0])) == math.inf


def test_runs_hovering_at_the_bound_stop_once_more_runs_cannot_help():
    """Runs just under the bound with little spread: even six of them would leave the bound
    above it, so the check stops after the fewest runs."""
    runs = Runs([(300.0, x) for x in (49.6, 49.9, 49.7, 49.8, 49.6, 49.9)])
    v = check_runs(runs, 0, TARGETS)
    assert not v.holds and len(runs.seeds) == MIN_RUNS
