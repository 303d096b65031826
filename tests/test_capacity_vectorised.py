"""``capacity`` over many cases at once (issue 24): the cases of a sweep are priced as arrays
(per-option lengths in the stream model), and each must get exactly what it gets alone."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import LLAMA2_7B

from guideopt.analyses.capacity import CapacityRequest, capacities, capacity
from guideopt.analyses.capacity_cases import case_table
from guideopt.analyses.capacity_rate import stream_shapes
from guideopt.cli import main
from guideopt.costs.lengths import fixed_lengths
from guideopt.costs.stream import stream_metrics
from guideopt.errors import GuideoptError

CASES = [(128, 32), (128, 1), (1000, 64), (3000, 900), (2048, 2048), (4000, 200), (4096, 1)]  # the last: past the context


def _requests(**extra) -> list[CapacityRequest]:
    return [CapacityRequest(model=LLAMA2_7B, gpu="a100-sxm4-80gb", input_len=i, output_len=o, **extra) for i, o in CASES]


def _alone(req: CapacityRequest, catalog) -> dict | str:
    try:
        return capacity(req, catalog).as_dict()
    except GuideoptError as exc:
        return str(exc)


@pytest.mark.parametrize("extra", [{}, {"batch": 900}, {"rate": 4.0}, {"rate": 6.0, "ttft_ms": 400.0, "tpot_ms": 30.0}])
def test_cases_together_get_what_each_gets_alone(catalog, extra) -> None:
    reqs = _requests(**extra)
    alone = [_alone(r, catalog) for r in reqs]
    ok = [r for r, a in zip(reqs, alone) if isinstance(a, dict)]
    assert len(ok) >= 5, "most cases have an answer"
    together = [c.as_dict() for c in capacities(ok, catalog)]
    assert together == [a for a in alone if isinstance(a, dict)]


def test_a_failing_case_raises_its_own_error_in_request_order(catalog) -> None:
    reqs = _requests(rate=4.0, ttft_ms=100.0)  # long prompts miss 100 ms even when idle
    failing = [r for r in reqs if isinstance(_alone(r, catalog), str)]
    assert failing and len(failing) < len(reqs)
    with pytest.raises(GuideoptError) as raised:
        capacities(reqs, catalog)
    assert str(raised.value) == _alone(failing[0], catalog)


def test_per_option_lengths_match_each_option_priced_with_its_own_table(catalog) -> None:
    """The stream model with a length table per option is the shared-table model, option by option."""
    reqs = _requests(rate=4.0)[:-1]
    table = case_table(reqs, catalog, 1)
    opts, _ = stream_shapes(reqs, table, catalog, 256)
    assert opts.lengths is not None and opts.lengths.per_option
    load = np.array([0.5, 2.0, 1.0, 0.3, 0.2, 0.4])
    together = stream_metrics(table.arch, opts, opts.lengths, load, percentiles=(50.0, 90.0, 99.0))
    for j, (i, o) in enumerate(CASES[:-1]):
        one = dataclasses.replace(opts.take(np.array([j])), lengths=None)
        alone = stream_metrics(table.arch, one, fixed_lengths(i, o), load[j : j + 1], percentiles=(50.0, 90.0, 99.0))
        for metric in ("ttft_ms", "tpot_ms", "e2e_ms", "queue_ms"):
            a, b = together.dist(metric), alone.dist(metric)
            assert a.mean[j] == pytest.approx(float(b.mean[0]), rel=1e-9, abs=1e-9), (i, o, metric)
            for p in (50.0, 90.0, 99.0):
                assert a.percentiles[p][j] == pytest.approx(float(b.percentiles[p][0]), rel=1e-7, abs=1e-7), (i, o, metric, p)
        assert together.stable[j] == alone.stable[0]


def test_one_token_outputs_meet_any_tpot_bound(catalog) -> None:
    """No request of a one-token output has a TPOT: a TPOT SLO does not make the shape unservable."""
    req = CapacityRequest(model=LLAMA2_7B, gpu="a100-sxm4-80gb", input_len=1000, output_len=1, rate=4.0, ttft_ms=500.0, tpot_ms=40.0)
    out = capacity(req, catalog)
    assert out.replicas == 1 and out.metrics is not None and out.metrics.ttft_ms <= 500.0


def test_the_command_sweeps_a_grid_with_a_rate(catalog) -> None:
    args = ["capacity", "--model", LLAMA2_7B, "--gpu", "a100-sxm4-80gb", "--input-len", "128:2048:x2", "--output-len", "64,512"]
    result = CliRunner().invoke(main, [*args, "--rate", "4", "--csv"])
    assert result.exit_code == 0, result.output
    rows = result.output.strip().splitlines()[1:]
    assert len(rows) == 5 * 2
    replicas = [int(r.split(",")[6]) for r in rows]
    # more tokens per request never needs fewer replicas for the same load
    by_output = {o: [n for r, n in zip(rows, replicas) if r.split(",")[1] == o] for o in ("64", "512")}
    assert all(a <= b for seq in by_output.values() for a, b in zip(seq, seq[1:]))
    assert all(a <= b for a, b in zip(by_output["64"], by_output["512"]))
