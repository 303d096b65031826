"""MoE dispatch and combine per layout (``costs.comm.moe_exchange_s``, ``roofline._comm_s``)."""

from __future__ import annotations

import numpy as np
import pytest

from guideopt.calibration.fit_moe import moe_shape
from guideopt.costs.comm import moe_exchange_s, ring_allreduce_s
from guideopt.costs.hardware import hardware_arrays
from guideopt.costs.ops import PassShape
from guideopt.costs.roofline import ACT_BYTES, _comm_s, _layout, forward_pass_s, layer_s
from guideopt.model.dtype import Dtype

MESSAGE_BYTES = 256 * 7168 * 2.0  # 256 tokens of DeepSeek's hidden size in bf16


@pytest.fixture(scope="module")
def hw(catalog):
    return hardware_arrays([catalog.gpu("h200-sxm")], [catalog.framework("trtllm")], [Dtype.FP8], catalog.calibration)


@pytest.fixture(scope="module")
def hw_gb200(catalog):
    return hardware_arrays([catalog.gpu("gb200")], [catalog.framework("trtllm")], [Dtype.FP4], catalog.calibration)


def test_tep_exchange_is_one_tp_allreduce(hw):
    # Without attention DP every TP GPU holds all tokens: its experts' outputs are summed by one all-reduce.
    for tp in (1.0, 2.0, 8.0):
        tep = moe_exchange_s(message_bytes=MESSAGE_BYTES, tp=tp, dp=1.0, hw=hw)
        assert float(tep[0]) == pytest.approx(float(ring_allreduce_s(message_bytes=MESSAGE_BYTES, tp=tp, hw=hw)[0]))
    assert float(moe_exchange_s(message_bytes=MESSAGE_BYTES, tp=1.0, dp=1.0, hw=hw)[0]) == 0.0


def test_dep_exchange_is_gather_and_scatter_of_the_other_ranks_tokens(hw):
    # Two calls, each moving the (dp − 1) other ranks' messages: linear in dp beyond the call latency.
    t2, t4, t8 = (float(moe_exchange_s(message_bytes=MESSAGE_BYTES, tp=1.0, dp=d, hw=hw)[0]) for d in (2.0, 4.0, 8.0))
    assert t2 < t4 < t8
    per_rank_bytes_s = (t8 - t4) / 4.0  # latency grows by 4·α_rank per call between 4 and 8 ranks
    latency_growth = 2 * 4 * float(hw.allreduce_latency_per_rank_s[0])
    assert per_rank_bytes_s * 4.0 == pytest.approx(2 * 4 * MESSAGE_BYTES / float(hw.link_bytes_per_s[0]) + latency_growth, rel=1e-6)


def test_dep_beyond_the_scale_up_domain_runs_over_the_nic(hw):
    inside = float(moe_exchange_s(message_bytes=MESSAGE_BYTES, tp=1.0, dp=8.0, hw=hw)[0])
    across = float(moe_exchange_s(message_bytes=MESSAGE_BYTES, tp=1.0, dp=16.0, hw=hw)[0])  # two 8-GPU H200 boards
    assert across > 2.0 * inside  # NIC bandwidth is a fraction of NVLink's


def test_nvl72_keeps_wide_ep_on_nvlink(hw_gb200):
    # 32 GB200 GPUs share one NVLink domain: the gather stays on NVLink and grows only with the bytes.
    t8, t32 = (float(moe_exchange_s(message_bytes=MESSAGE_BYTES, tp=1.0, dp=d, hw=hw_gb200)[0]) for d in (8.0, 32.0))
    assert t32 < 31.0 / 7.0 * t8 * 1.5


def test_layouts_broadcast_as_arrays(catalog, hw):
    # dp and ep may be per-row arrays broadcast with the other inputs.
    arch = catalog.model("deepseek-ai/DeepSeek-R1")
    dp = np.array([1.0, 1.0, 8.0])
    ep = np.array([1.0, 8.0, 8.0])
    tp = 8.0 / dp
    seqs = np.full(3, 32.0)
    shape = PassShape(seqs, seqs, seqs * 2048, seqs * 2048, seqs)
    hw3 = type(hw)(**{f: np.repeat(getattr(hw, f), 3) for f in hw.__dataclass_fields__})
    t = forward_pass_s(arch, shape, tp=tp, pp=1.0, w_bytes=1.0, kv_bytes=1.0, hw=hw3, dp=dp, ep=ep)
    assert t.shape == (3,) and np.all(t > 0)
    one = layer_s(arch, PassShape(*(np.array([32.0, 32.0, 65536.0, 65536.0, 32.0]))), 1.0, 1.0, 1.0, hw, flash=True, dp=8.0, ep=8.0)
    assert float(one[0]) > 0


def test_dense_layers_keep_two_allreduces(catalog, hw):
    # The MoE exchange touches MoE layers only: a dense layer's TP cost is its two all-reduces.
    arch = catalog.model("meta-llama/Llama-3.1-70B")
    shape = PassShape(*(np.array([v]) for v in (64.0, 64.0, 64.0 * 1024, 64.0 * 1024, 64.0)))
    lay = _layout(8.0, 1.0, 1.0)
    message = 64.0 * arch.hidden_size * ACT_BYTES
    got = _comm_s(arch.layer_groups[0], arch.hidden_size, shape, lay, hw)
    assert float(got[0]) == pytest.approx(2 * float(ring_allreduce_s(message_bytes=message, tp=8.0, hw=hw)[0]))


def test_moe_shape_names_the_kernel_rows_of_a_model(catalog):
    arch = catalog.model("deepseek-ai/DeepSeek-R1")
    assert moe_shape(arch.hidden_size, arch.moe) == (7168, 2048, 256, 8)
