"""The analytic stream model: monotonicity, the sustainable rate, percentiles and the
queueing pieces it is built from."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from guideopt.catalog import load_length_mix
from guideopt.costs.lengths import bucket_lengths, fixed_lengths, mix_lengths
from guideopt.costs.queueing import Wait, erlang_c, kingman_wait, merge_buckets, mixture_cdf, mixture_quantiles, slot_wait
from guideopt.costs.stream import stream_metrics
from guideopt.costs.stream_search import sustainable_rate
from guideopt.model.workload import LengthBucket
from tests.stream_helpers import config

PCTS = (50.0, 90.0, 99.0)


@pytest.fixture(scope="module")
def conf():
    return config("8b-a100-vllm", 512, 128)


@pytest.fixture(scope="module")
def best(conf):
    return float(sustainable_rate(conf.arch, conf.options, fixed_lengths(512, 128))[0])


@given(a=st.floats(0.02, 0.98), b=st.floats(0.02, 0.98))
def test_a_higher_rate_never_lowers_ttft_or_queueing(conf, best, a, b):
    lo, hi = sorted((a, b))
    m = stream_metrics(conf.arch, conf.options.take([0, 0]), fixed_lengths(512, 128), np.array([lo, hi]) * best, percentiles=PCTS)
    for metric in ("ttft_ms", "queue_ms", "e2e_ms", "tpot_ms"):
        d = m.dist(metric)
        assert d.mean[1] >= d.mean[0] * (1 - 1e-9), metric
        for p in PCTS:
            assert d.percentiles[p][1] >= d.percentiles[p][0] * (1 - 1e-9), (metric, p)


def test_percentiles_are_ordered_and_bracket_the_mean(conf, best):
    lengths = mix_lengths(load_length_mix("sharegpt"))
    rate = 0.5 * float(sustainable_rate(conf.arch, conf.options, lengths)[0])
    m = stream_metrics(conf.arch, conf.options, lengths, np.array([rate]), percentiles=PCTS)
    for metric in ("ttft_ms", "tpot_ms", "e2e_ms", "queue_ms"):
        d = m.dist(metric)
        p50, p90, p99 = (float(d.percentiles[p][0]) for p in PCTS)
        assert 0 < p50 <= p90 <= p99
    # output lengths vary 100-fold in the mix: E2E spreads far more than TPOT
    assert (
        m.e2e_ms.percentiles[99.0][0] / m.e2e_ms.percentiles[50.0][0] > 3 * m.tpot_ms.percentiles[99.0][0] / m.tpot_ms.percentiles[50.0][0]
    )


def test_sustainable_rate_is_the_stability_edge(conf, best):
    lengths = fixed_lengths(512, 128)
    m = stream_metrics(conf.arch, conf.options.take([0, 0]), lengths, np.array([0.97, 1.05]) * best)
    assert m.stable.tolist() == [True, False]
    # more prompt tokens per request: fewer requests per second
    longer = float(sustainable_rate(conf.arch, conf.options, fixed_lengths(2048, 128))[0])
    assert longer < best


def test_a_larger_running_cap_sustains_at_least_as_much():
    rates = [
        float(sustainable_rate(c.arch, c.options, fixed_lengths(512, 128))[0])
        for c in (config("8b-a100-vllm", 512, 128, cap) for cap in (8, 32, 128))
    ]
    assert rates == sorted(rates) and rates[0] < rates[-1]


def test_buckets_mix_the_per_length_answers(conf):
    short, long_ = fixed_lengths(128, 32), fixed_lengths(1024, 512)
    both = bucket_lengths([LengthBucket(input_len=128, output_len=32), LengthBucket(input_len=1024, output_len=512)])
    rate = np.array([1.0])
    e2e = [float(stream_metrics(conf.arch, conf.options, t, rate).e2e_ms.percentiles[50.0][0]) for t in (short, long_, both)]
    assert e2e[0] < e2e[2] < e2e[1]


def test_erlang_c_known_values():
    # M/M/1: P(wait) = ρ; M/M/2 with a = 1: C = 1/3 (textbook value)
    assert erlang_c(np.array([1.0]), np.array([0.6]))[0] == pytest.approx(0.6)
    assert erlang_c(np.array([2.0]), np.array([1.0]))[0] == pytest.approx(1.0 / 3.0)
    w = slot_wait(np.array([1.0]), np.array([0.5]), np.array([1.0]), 1.0, 1.0)
    assert w.mean_s[0] == pytest.approx(1.0)  # M/M/1: Wq = ρ/(μ−λ) = 0.5/0.5


def test_kingman_reduces_to_pollaczek_khinchine_for_poisson_arrivals():
    # M/D/1 (cs² = 0): Wq = ρ·s / (2(1−ρ))
    w = kingman_wait(np.array([0.8]), np.array([1.0]), 1.0, 0.0)
    assert w.mean_s[0] == pytest.approx(0.8 / (2 * 0.2))


def test_mixture_quantiles_match_sampling():
    rng = np.random.default_rng(0)
    mu = np.array([[1.0, 3.0]])
    sd = np.array([[0.2, 0.5]])
    wait = Wait(np.array([[0.3, 0.3]]), np.array([[2.0, 2.0]]))
    weight = np.array([0.7, 0.3])
    q = mixture_quantiles(mu, sd, wait, weight, (50.0, 90.0, 99.0))
    n = 400_000
    b = rng.choice(2, size=n, p=weight)
    x = mu[0, b] + sd[0, b] * rng.standard_normal(n) + np.where(rng.random(n) < 0.3, rng.exponential(2.0, n), 0.0)
    for p in (50.0, 90.0, 99.0):
        assert q[p][0] == pytest.approx(np.percentile(x, p), rel=0.02)


@pytest.fixture(scope="module")
def sharegpt_pair(conf):
    """The same option and rate under sharegpt lengths, with and without percentile values."""
    lengths = mix_lengths(load_length_mix("sharegpt"))
    rate = np.array([0.6 * float(sustainable_rate(conf.arch, conf.options, lengths)[0])])
    with_values = stream_metrics(conf.arch, conf.options, lengths, rate, percentiles=PCTS)
    bare = stream_metrics(conf.arch, conf.options, lengths, rate, percentiles=())
    return with_values, bare


@given(metric=st.sampled_from(["ttft_ms", "tpot_ms", "e2e_ms", "queue_ms"]), p=st.sampled_from(PCTS), scale=st.floats(0.5, 2.0))
def test_a_bound_tested_by_its_cdf_agrees_with_the_percentile(sharegpt_pair, metric, p, scale):
    with_values, bare = sharegpt_pair
    value = float(with_values.dist(metric).percentiles[p][0])
    bound = value * scale
    if abs(scale - 1.0) < 1e-6:  # within the bisection's resolution either answer is right
        return
    assert not bare.dist(metric).percentiles  # nothing was bisected
    assert bool(bare.dist(metric).within(p, bound)[0]) == (value <= bound)
    assert bool(with_values.dist(metric).within(p, bound)[0]) == (value <= bound)


def test_merging_buckets_by_length_keeps_the_mixture():
    rng = np.random.default_rng(1)
    keys = np.array([[3.0], [1.0], [3.0], [2.0], [1.0]])
    base = {1.0: (1.0, 0.1, 0.2, 0.5), 2.0: (2.0, 0.3, 0.0, 0.0), 3.0: (4.0, 0.2, 0.5, 1.5)}
    cols = np.array([[base[k][i] + 0.01 * o for k in keys[:, 0]] for o in range(3) for i in range(4)]).reshape(3, 4, 5)
    mu, sd, pw, th = (cols[:, i, :] for i in range(4))
    weight = rng.random(5)
    weight /= weight.sum()
    mu2, sd2, wait2, w2 = merge_buckets(mu, sd, Wait(pw, th), weight, keys)
    assert mu2.shape == (3, 3) and w2.sum() == pytest.approx(1.0)
    x = np.linspace(0.0, 8.0, 33)[None, :, None]
    full = mixture_cdf(x.repeat(3, 0), mu[:, None], sd[:, None], Wait(pw[:, None], th[:, None]), weight)
    merged = mixture_cdf(x.repeat(3, 0), mu2[:, None], sd2[:, None], Wait(wait2.p_wait[:, None], wait2.theta_s[:, None]), w2)
    np.testing.assert_allclose(merged, full, rtol=1e-12, atol=1e-15)
