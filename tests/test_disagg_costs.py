"""The analytic model of disaggregated serving (``costs/disagg.py``): hand-checked KV bytes and
transfer times, the pools' limits, monotonicity, the stability edge and vectorisation."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from guideopt.catalog import load_catalog, load_length_mix
from guideopt.costs.disagg import DisaggOptions, disagg_max_rate, disagg_stream_metrics, kv_bytes_per_prompt_token, kv_transfer_s
from guideopt.costs.disagg_pools import decode_pool
from guideopt.costs.hardware import HardwareArrays
from guideopt.costs.lengths import case_lengths, fixed_lengths, mix_lengths
from guideopt.costs.metrics import first_token_path_s
from guideopt.costs.step import StepConfig, mixed_step_s
from guideopt.costs.stream import StreamOptions
from tests.stream_helpers import config

PCTS = (50.0, 90.0, 99.0)
METRICS = ("ttft_ms", "tpot_ms", "e2e_ms", "queue_ms")
LENGTHS = fixed_lengths(2048, 256)


@pytest.fixture(scope="module")
def cat():
    return load_catalog()


@pytest.fixture(scope="module")
def h100():
    return config("8b-h100-vllm", 2048, 256)


def disagg(prefill: StreamOptions, decode: StreamOptions, n: int, **kw) -> DisaggOptions:
    """``n`` options of the given worker shapes (one row repeated, or ``n`` rows); ``kw`` overrides per-option fields."""
    fields = {
        "prefill_workers": 1.0,
        "decode_workers": 1.0,
        "kv_link_gb_s": 50.0,
        "kv_link_latency_s": 1e-3,
        "kv_bytes_per_token": 131072.0,
        "layerwise": False,
    } | kw
    arrays = {k: np.broadcast_to(np.asarray(v), (n,)).copy() for k, v in fields.items()}

    def rows(o: StreamOptions) -> StreamOptions:
        return o if len(o) == n else o.take([0] * n)

    return DisaggOptions(prefill=rows(prefill), decode=rows(decode), **arrays)


def concat(*opts: StreamOptions) -> StreamOptions:
    """One StreamOptions holding the rows of several (no per-option lengths)."""

    def cat_(values):
        return np.concatenate([np.atleast_1d(np.asarray(v, dtype=float)) for v in values])

    cfgs = [o.cfg for o in opts]
    cfg = StepConfig(
        tp=cat_([c.tp for c in cfgs]),
        pp=cat_([c.pp for c in cfgs]),
        w_bytes=cat_([c.w_bytes for c in cfgs]),
        kv_bytes=cat_([c.kv_bytes for c in cfgs]),
        flash=cfgs[0].flash,
        dp=cat_([c.dp for c in cfgs]),
        ep=cat_([c.ep for c in cfgs]),
    )
    hw = HardwareArrays(**{f: cat_([getattr(o.hw, f) for o in opts]) for f in HardwareArrays.__dataclass_fields__})
    rest = {f: cat_([getattr(o, f) for o in opts]) for f in ("running_cap", "token_budget", "kv_tokens", "kv_keep")}
    bools = {f: cat_([getattr(o, f) for o in opts]) > 0 for f in ("chunked", "reserve_kv")}
    return StreamOptions(cfg=cfg, hw=hw, **rest, **bools)


# ---- (c) KV bytes and transfer time from config numbers ----


def test_dense_gqa_bytes_and_transfer_by_hand(cat, h100):
    arch = cat.model("meta-llama/Llama-3.1-8B")
    per_token = 32 * 8 * 128 * 2 * 2  # layers × KV heads × head dim × (K, V) × bf16
    assert per_token == 131072
    assert float(kv_bytes_per_prompt_token(arch, 2.0)) == per_token
    assert float(kv_bytes_per_prompt_token(arch, 2.0, 4096)) == per_token  # no window, no state: linear
    opts = disagg(h100.options, h100.options, 1, kv_link_gb_s=25.0, kv_link_latency_s=2e-3, kv_bytes_per_token=per_token)
    got = kv_transfer_s(arch, np.array([1000.0, 8000.0]), opts)
    want = np.array([1000.0, 8000.0]) * per_token / 25e9 + 2e-3
    assert np.allclose(got[0], want, rtol=1e-12)


def test_mla_bytes_by_hand(cat):
    arch = cat.model("deepseek-ai/DeepSeek-V3")
    latent = (512 + 64) * 61  # (kv_lora_rank + qk_rope_head_dim) × layers, one copy whatever the TP
    assert float(kv_bytes_per_prompt_token(arch, 1.0)) == latent  # fp8 cache
    assert float(kv_bytes_per_prompt_token(arch, 2.0)) == 2 * latent


def test_sliding_window_and_fixed_state(cat):
    oss = cat.model("openai/gpt-oss-20b")  # 24 layers, every other one a 128-token window; 8 KV heads × 64
    layer = 8 * 64 * 2 * 2
    assert float(kv_bytes_per_prompt_token(oss, 2.0, 128)) == 24 * layer
    assert float(kv_bytes_per_prompt_token(oss, 2.0, 10_000)) == pytest.approx((12 * layer * 10_000 + 12 * layer * 128) / 10_000)
    assert float(kv_bytes_per_prompt_token(oss, 2.0)) == 12 * layer
    qwen = cat.model("Qwen/Qwen3.5-27B")  # 16 GQA layers (4 KV heads × 256) and 48 DeltaNet states
    growth = 16 * 4 * 256 * 2 * 2
    got = kv_bytes_per_prompt_token(qwen, 2.0, np.array([1000.0, 4000.0])) * np.array([1000.0, 4000.0])
    assert np.allclose(got, growth * np.array([1000.0, 4000.0]) + qwen.state_bytes_per_seq(1))
    # broadcast: options × buckets
    assert kv_bytes_per_prompt_token(qwen, np.array([[1.0], [2.0]]), np.array([1000.0, 4000.0])).shape == (2, 2)


def test_layerwise_streaming_exposes_only_what_the_link_cannot_hide(cat, h100):
    arch = cat.model("meta-llama/Llama-3.1-8B")
    opts = disagg(h100.options, h100.options, 1, kv_link_gb_s=10.0, kv_link_latency_s=0.0, layerwise=True)
    wire = 4096 * 131072 / 10e9
    assert float(kv_transfer_s(arch, np.array([4096.0]), opts)[0, 0]) == pytest.approx(wire / 32)  # the link keeps pace
    slow_prefill = np.array([[10 * wire]])
    assert float(kv_transfer_s(arch, np.array([4096.0]), opts, prefill_s=slow_prefill)[0, 0]) == pytest.approx(wire / 32)
    fast_prefill = np.array([[wire / 4]])
    lag = wire - wire / 4 * 31 / 32
    assert float(kv_transfer_s(arch, np.array([4096.0]), opts, prefill_s=fast_prefill)[0, 0]) == pytest.approx(lag)


def test_tp_change_adds_a_copy_at_decode_memory_bandwidth(cat, h100):
    arch = cat.model("meta-llama/Llama-3.1-8B")
    tp2 = dataclasses.replace(h100.options, cfg=dataclasses.replace(h100.options.cfg, tp=np.array([2.0])))
    same = kv_transfer_s(arch, np.array([2048.0]), disagg(h100.options, h100.options, 1))
    mixed = kv_transfer_s(arch, np.array([2048.0]), disagg(h100.options, tp2, 1))
    copy = 2 * 2048 * 131072 / (2 * float(h100.options.hw.mem_bytes_per_s[0]))
    assert float(mixed[0, 0] - same[0, 0]) == pytest.approx(copy)
    mla = cat.model("deepseek-ai/DeepSeek-V3")  # latents are replicated per rank: nothing to re-lay
    assert np.allclose(
        kv_transfer_s(mla, np.array([2048.0]), disagg(h100.options, tp2, 1)),
        kv_transfer_s(mla, np.array([2048.0]), disagg(h100.options, h100.options, 1)),
    )


# ---- (a) limits ----


def test_fast_link_and_many_workers_reduce_to_one_prefill_one_transfer_one_decode_step(h100):
    arch, so = h100.arch, h100.options
    opts = disagg(so, so, 2, prefill_workers=64.0, decode_workers=64.0, kv_link_gb_s=1e9, kv_link_latency_s=0.0)
    m = disagg_stream_metrics(arch, opts, LENGTHS, np.array([1e-3, 50.0]), percentiles=PCTS)
    assert m.stable.all()
    cfg, hw = so.cfg, so.hw
    ctx = 2048 + 256 / 2  # prompt plus half the output
    for i in range(2):
        d_seen = min(float(m.steady.decodes[i]) + 1.0, float(m.steady.slots[i]))
        step = mixed_step_s(
            arch, cfg, hw, decodes=d_seen, decode_kv_tokens=d_seen * ctx, prefill_tokens=0.0, prefill_seqs=0.0, prefill_pair_count=0.0
        )
        assert float(m.tpot_ms.mean[i]) == pytest.approx(float(step[0]) * 1e3, rel=1e-9)
    assert float(m.steady.decodes[1]) > 1.0  # 50 req/s over 64 workers: the solved d is not trivial
    # Little's law on a decode worker: d = (λ / y)·(1 + E[O − 1])·TPOT
    assert float(m.steady.decodes[1]) == pytest.approx(50.0 / 64 * 256 * float(m.tpot_ms.mean[1]) / 1e3, rel=1e-9)
    prefill = mixed_step_s(
        arch, cfg, hw, decodes=0.0, decode_kv_tokens=0.0, prefill_tokens=2048.0, prefill_seqs=1.0, prefill_pair_count=2048 * 2049 / 2
    )
    one = mixed_step_s(arch, cfg, hw, decodes=1.0, decode_kv_tokens=ctx, prefill_tokens=0.0, prefill_seqs=0.0, prefill_pair_count=0.0)
    transfer = 2048 * 131072 / 1e18
    path = float(first_token_path_s(arch, hw)[0])  # the server's path to the first token, once
    assert float(m.ttft_ms.mean[0]) == pytest.approx((float(prefill[0]) + transfer + float(one[0]) + path) * 1e3, rel=1e-3)
    assert float(m.ttft_ms.percentiles[99.0][0]) == pytest.approx(float(m.ttft_ms.mean[0]), rel=1e-2)


def test_a_budget_smaller_than_the_prompt_prefills_in_passes(h100):
    arch, so = h100.arch, h100.options
    small = dataclasses.replace(so, token_budget=np.array([1024.0]))
    both = disagg(concat(so, small), concat(so, so), 2, kv_link_gb_s=1e9, kv_link_latency_s=0.0)
    m = disagg_stream_metrics(arch, both, LENGTHS, np.array([1e-3, 1e-3]))
    # two passes pay the prefill-step overhead twice and run smaller GEMMs
    assert m.ttft_ms.mean[1] > m.ttft_ms.mean[0]
    assert m.steady.prefill_service_s[1] > m.steady.prefill_service_s[0]


# ---- (b) monotonicity ----


@pytest.mark.parametrize("cap, mix, burst", [(None, None, 1.0), (8, "sharegpt", 2.0)])
def test_more_workers_and_lower_rates_never_hurt(cap, mix, burst):
    """Also where the decode slots bind (a running cap of 8) and arrivals come in bursts."""
    conf = config("8b-h100-vllm", 2048, 256, cap)
    arch, so = conf.arch, conf.options
    lengths = LENGTHS if mix is None else mix_lengths(load_length_mix(mix))
    xs, ys = np.arange(1.0, 7.0), np.arange(1.0, 7.0)
    xx, yy = (a.ravel() for a in np.meshgrid(xs, ys, indexing="ij"))
    opts = disagg(so, so, xx.size, prefill_workers=xx, decode_workers=yy, layerwise=True)
    top = float(disagg_max_rate(arch, opts.take([0]), lengths)[0])  # x = y = 1: every option sustains it
    for frac in (0.3, 0.95):
        m = disagg_stream_metrics(arch, opts, lengths, np.full(xx.size, frac * top), burstiness=burst, percentiles=PCTS)
        assert m.stable.all()
        ttft = m.ttft_ms.mean.reshape(6, 6)
        tpot = m.tpot_ms.mean.reshape(6, 6)
        assert np.all(np.diff(ttft, axis=0) <= 1e-9 * ttft[1:])  # more prefill workers
        assert np.all(np.diff(ttft, axis=1) <= 1e-9 * ttft[:, 1:])  # more decode workers: no TTFT lost either
        assert np.all(np.diff(tpot, axis=1) <= 1e-9 * tpot[:, 1:])  # more decode workers
        for p in PCTS:
            assert np.all(np.diff(m.ttft_ms.percentiles[p].reshape(6, 6), axis=0) <= 1e-6)
            assert np.all(np.diff(m.tpot_ms.percentiles[p].reshape(6, 6), axis=1) <= 1e-6)
    one = disagg(so, so, 1)
    rates = np.linspace(0.02, 0.98, 25) * float(disagg_max_rate(arch, one, lengths)[0])
    m = disagg_stream_metrics(arch, one.take([0] * rates.size), lengths, rates, burstiness=burst, percentiles=PCTS)
    for metric in METRICS:
        d = m.dist(metric)
        assert np.all(np.diff(d.mean) >= -1e-9 * d.mean[1:]), metric
        if metric in ("ttft_ms", "tpot_ms"):  # E2E mixes 121 buckets' normals: its median may dip by < 0.1 %
            for p in PCTS:
                assert np.all(np.diff(d.percentiles[p]) >= -1e-6), (metric, p)


# ---- (d) the stability edge ----


@pytest.mark.parametrize("x, y, out", [(1.0, 1.0, 256), (8.0, 1.0, 2048), (1.0, 8.0, 64)])
def test_max_rate_is_the_stability_edge(h100, x, y, out):
    arch, so = h100.arch, h100.options
    lengths = fixed_lengths(2048, out)
    opts = disagg(so, so, 1, prefill_workers=x, decode_workers=y)
    top = float(disagg_max_rate(arch, opts, lengths)[0])
    m = disagg_stream_metrics(arch, opts.take([0, 0]), lengths, np.array([0.999, 1.001]) * top)
    assert m.stable.tolist() == [True, False]
    assert np.isfinite(m.ttft_ms.mean[0])
    pool = decode_pool(arch, so, lengths, np.array([0.999 * top / y]))
    assert float(pool.decodes[0]) <= float(pool.slots[0])


def test_the_slower_pool_sets_the_rate(h100):
    arch, so = h100.arch, h100.options
    opts = disagg(so, so, 3, prefill_workers=np.array([1.0, 2.0, 1.0]), decode_workers=np.array([1.0, 1.0, 2.0]))
    r = disagg_max_rate(arch, opts, fixed_lengths(8192, 64))  # prompt-heavy: the prefill pool binds
    assert r[1] == pytest.approx(2 * r[0]) and r[2] == pytest.approx(r[0])
    r = disagg_max_rate(arch, opts, fixed_lengths(128, 4096))  # output-heavy: the decode pool binds
    assert r[2] == pytest.approx(2 * r[0]) and r[1] == pytest.approx(r[0])


# ---- (e) vectorised ----


def test_a_batch_of_options_equals_each_alone():
    a100, h100 = config("8b-a100-vllm", 2048, 256), config("8b-h100-vllm", 2048, 256)
    arch = h100.arch
    prefill = concat(h100.options, a100.options, h100.options, a100.options)
    decode = concat(a100.options, h100.options, h100.options, a100.options)
    fields = {
        "prefill_workers": np.array([1.0, 3.0, 2.0, 1.0]),
        "decode_workers": np.array([2.0, 1.0, 4.0, 1.0]),
        "kv_link_gb_s": np.array([50.0, 400.0, 12.5, 50.0]),
        "kv_link_latency_s": np.array([1e-3, 1e-5, 5e-3, 0.0]),
        "kv_bytes_per_token": np.full(4, 131072.0),
        "layerwise": np.array([True, False, True, False]),
    }
    opts = DisaggOptions(prefill=prefill, decode=decode, **fields)
    rate = 0.7 * disagg_max_rate(arch, opts, LENGTHS)
    together = disagg_stream_metrics(arch, opts, LENGTHS, rate, burstiness=1.5, percentiles=PCTS)
    for i in range(4):
        alone = disagg_stream_metrics(arch, opts.take([i]), LENGTHS, rate[[i]], burstiness=1.5, percentiles=PCTS)
        assert float(disagg_max_rate(arch, opts.take([i]), LENGTHS)[0]) == pytest.approx(rate[i] / 0.7, rel=1e-12)
        for metric in METRICS:
            d, e = together.dist(metric), alone.dist(metric)
            assert d.mean[i] == pytest.approx(e.mean[0], rel=1e-9), metric
            for p in PCTS:
                assert d.percentiles[p][i] == pytest.approx(e.percentiles[p][0], rel=1e-6), (metric, p)
        for name in ("running", "kv_use", "stable", "output_throughput_tok_s"):
            assert getattr(together, name)[i] == pytest.approx(getattr(alone, name)[0], rel=1e-9), name


def test_options_carrying_their_own_lengths_equal_shared_lengths(h100):
    arch, so = h100.arch, h100.options
    own = case_lengths([512, 4096], [1024, 128])
    with_lengths = dataclasses.replace(so.take([0, 0]), lengths=own)
    opts = disagg(so, so, 2, layerwise=True)
    opts = dataclasses.replace(opts, prefill=with_lengths, decode=with_lengths)
    rate = np.array([3.0, 3.0])
    m = disagg_stream_metrics(arch, opts, LENGTHS, rate, percentiles=PCTS)
    for i, (inp, out) in enumerate([(512, 1024), (4096, 128)]):
        one = disagg_stream_metrics(arch, disagg(so, so, 1, layerwise=True), fixed_lengths(inp, out), rate[[i]], percentiles=PCTS)
        for metric in METRICS:
            assert m.dist(metric).mean[i] == pytest.approx(one.dist(metric).mean[0], rel=1e-9), metric
            assert m.dist(metric).percentiles[90.0][i] == pytest.approx(one.dist(metric).percentiles[90.0][0], rel=1e-6), metric
