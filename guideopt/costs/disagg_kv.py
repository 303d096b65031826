"""The KV hand-over of disaggregated serving: bytes per prompt and seconds per request.

Bytes: what the model's cache holds for a prompt, one copy of every layer
(``ModelArch.kv_bytes_per_seq`` at TP 1, the one place layer kinds are summed): full
attention 2·kv_heads·head_dim elements per token, MLA the latent (kv_lora_rank +
qk_rope_head_dim) per token plus the DSA indexer keys, sliding windows capped at the
window, linear-attention and state-space layers their fixed state per sequence (fp32).

Time per request, per option × length bucket:

  wire     = bytes / link bandwidth
  exposed  = wire                                      cache moved after the prompt
           = max(wire / L, wire − prefill·(L−1)/L)     layer by layer (L layers): layer i is
                                                       sent once computed, so the link either
                                                       keeps up (only the last layer's share
                                                       is left) or lags by what it cannot hide
  relayout = 2·head-split bytes / (tp_d·pp_d · HBM B/s of the decode GPU)   when TP differs
  transfer = latency + exposed + relayout                latency: the link's, plus the fitted
                                                       per-request hand-off cost (``kv_link``)

The re-layout is a physical stand-in for the KV layout conversion a connector does when
the two roles split the KV heads differently (vLLM's NIXL connector for heterogeneous TP,
Dynamo's block permute): each decode GPU reads and writes its share of the head-split
cache once at its achieved HBM bandwidth. MLA latents are replicated on every TP rank
(``MlaAttention.kv_elems_per_token``), so they need none.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from guideopt.costs.disagg_options import DisaggOptions
from guideopt.model.gpu import Gpu
from guideopt.model.layers import MlaAttention
from guideopt.model.link import NetworkLink
from guideopt.model.llm import ModelArch
from guideopt.units import BYTES_PER_S_PER_GB_S

READ_AND_WRITE = 2.0  # a copy reads and writes every byte


def kv_bytes_per_prompt_token(arch: ModelArch, kv_bytes, prompt_tokens=None) -> np.ndarray:
    """Whole-model KV bytes per prompt token (all layers, one copy) at ``kv_bytes`` per element.

    Without ``prompt_tokens``: what one more token adds (full attention and MLA; windows and
    fixed states add nothing once full). With it: the mean over a prompt of that many tokens
    (windows capped, fixed states spread over the prompt). ``kv_bytes`` and
    ``prompt_tokens`` broadcast elementwise (pass ``kv[:, None]`` and the bucket lengths for
    options × buckets)."""
    if prompt_tokens is None:
        kv = np.asarray(kv_bytes, dtype=float)
        values, inverse = np.unique(kv, return_inverse=True)
        per = np.array([arch.kv_bytes_per_token(float(v), 1) for v in values])
        return per[inverse.ravel()].reshape(kv.shape)
    kv, tokens = np.broadcast_arrays(np.asarray(kv_bytes, dtype=float), np.asarray(prompt_tokens, dtype=float))
    pairs = np.stack([kv.ravel(), tokens.ravel()], axis=1)
    distinct, inverse = np.unique(pairs, axis=0, return_inverse=True)
    per = np.array([arch.kv_bytes_per_seq(float(t), float(k), 1) / max(float(t), 1.0) for k, t in distinct])
    return per[inverse.ravel()].reshape(kv.shape)


def prompt_kv_bytes(prompt_tokens, opts: DisaggOptions) -> np.ndarray:
    """Bytes one request's hand-over moves, per option × bucket (``prompt_tokens``: buckets,
    or options × buckets)."""
    return opts.column("kv_bytes_per_token") * np.asarray(prompt_tokens, dtype=float)


def head_split_share(arch: ModelArch) -> float:
    """Share of the per-token cache that TP splits by heads (all but MLA latents), which a
    TP change must re-lay; 1 for a model whose cache is all fixed state."""
    total = sum(g.count * g.kv_growth_bytes_per_token(1.0) for g in arch.layer_groups)
    latent = sum(g.count * g.kv_growth_bytes_per_token(1.0) for g in arch.layer_groups if isinstance(g.attention, MlaAttention))
    return 1.0 if total <= 0 else 1.0 - latent / total


def exposed_wire_s(wire_s, prefill_s, layers: int, layerwise) -> np.ndarray:
    """The part of the wire time the request waits for after its prompt is done
    (``layerwise``: bool, broadcast against ``wire_s``)."""
    wire = np.asarray(wire_s, dtype=float)
    if prefill_s is None:  # the connector keeps pace with the prompt
        hidden = wire * (1.0 - 1.0 / layers)
    else:
        hidden = np.minimum(np.asarray(prefill_s, dtype=float) * (layers - 1.0) / layers, wire * (1.0 - 1.0 / layers))
    return np.where(layerwise, wire - hidden, wire)


def relayout_s(arch: ModelArch, kv_bytes, opts: DisaggOptions) -> np.ndarray:
    """Seconds to re-lay a request's cache on the decode worker when the roles' TP differ."""
    tp_p = np.asarray(opts.prefill.cfg.tp, dtype=float)
    tp_d = np.asarray(opts.decode.cfg.tp, dtype=float)
    gpus = tp_d * np.asarray(opts.decode.cfg.pp, dtype=float)
    rate = np.broadcast_to(gpus * np.asarray(opts.decode.hw.mem_bytes_per_s, dtype=float), (len(opts),))[:, None]
    differ = np.broadcast_to(tp_p != tp_d, (len(opts),))[:, None]
    return np.where(differ, READ_AND_WRITE * head_split_share(arch) * np.asarray(kv_bytes) / rate, 0.0)


def kv_transfer_s(arch: ModelArch, prompt_tokens, opts: DisaggOptions, prefill_s=None) -> np.ndarray:
    """Seconds a request waits for its KV hand-over after its prompt, per option × bucket.

    ``prefill_s`` (per option × bucket): the prompt's prefill time, which layer-wise
    streaming hides the wire time behind; None: the link keeps pace (only the last layer's
    share is exposed)."""
    kv = prompt_kv_bytes(prompt_tokens, opts)
    wire = kv / (opts.column("kv_link_gb_s") * BYTES_PER_S_PER_GB_S)
    exposed = exposed_wire_s(wire, prefill_s, arch.num_layers, opts.column("layerwise") > 0)
    return opts.column("kv_link_latency_s") + exposed + relayout_s(arch, kv, opts)


def kv_link(
    gpus_p: Sequence[Gpu], gpus_d: Sequence[Gpu], rank_gpus_p, rank_gpus_d, group_gpus, network: NetworkLink, handoff_s: float = 0.0
):
    """(on NVLink, GB/s, latency s) of each group's KV hand-over, per group.

    Latency: the network's small-message latency plus ``handoff_s``, the fixed cost of
    handing a request from one pool to the other (``Calibration.disaggregation.handoff_s``:
    router hop, transfer setup and handshake, the decode side's scheduling), on any link.

    ``gpus_p``/``gpus_d``: each group's prefill and decode GPU type; ``rank_gpus_*``: GPUs of
    one worker rank (tp·pp: its KV shards, each sent by its own GPU); ``group_gpus``: all the
    group's GPUs. Both roles on one GPU type inside one scale-up domain hand over on NVLink,
    else over each GPU's scale-out NIC (``network``'s bandwidth where the GPU lists none), the
    slower side's; shards move in parallel, so the bandwidth is a GPU's × the fewer shards."""
    same = np.array([a.id == b.id for a, b in zip(gpus_p, gpus_d)], dtype=bool)
    domain = np.array([g.scale_up_domain_gpus for g in gpus_p], dtype=float)
    link_bw = np.array([g.link_bw_unidir_gb_s for g in gpus_p], dtype=float)
    nvlink = same & (np.asarray(group_gpus, dtype=float) <= domain) & (link_bw > 0)
    nic_p, nic_d = (np.array([g.scale_out_nic_gb_s_per_gpu or network.bw_gb_s for g in gs], dtype=float) for gs in (gpus_p, gpus_d))
    shards = np.minimum(np.asarray(rank_gpus_p, dtype=float), np.asarray(rank_gpus_d, dtype=float))
    bw = np.where(nvlink, link_bw, np.minimum(nic_p, nic_d)) * shards
    return nvlink, bw, np.full(same.size, network.latency_us / 1e6 + handoff_s)
