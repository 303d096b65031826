"""The options of disaggregated serving: x prefill workers and y decode workers per group.

A group serves one request stream: prompts run on the prefill pool, their KV cache crosses
a link, and tokens are generated on the decode pool (``costs/disagg.py`` prices it). Each
array holds one value per option; the two ``StreamOptions`` describe one worker of each
role (a worker is the unit a ``StreamOptions`` row describes: an attention-DP rank where
the layout has dp > 1, so a worker of dp ranks counts dp).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from guideopt.costs.stream import StreamOptions


@dataclass(frozen=True)
class DisaggOptions:
    """One row per option (arrays of equal length, or scalars shared by every option).

    ``kv_bytes_per_token``: KV bytes one prompt token leaves behind for the whole model (all
    layers, one copy): what crosses the link. Per option, or per option × length bucket for
    models whose cache is not linear in the prompt (sliding windows, linear-attention
    states: the mean over each bucket's prompt, ``kv_bytes_per_prompt_token`` with
    ``prompt_tokens``); the bucket axis is last and broadcasts against the lengths.

    ``layerwise``: the connector streams the cache layer by layer while the prompt runs
    (NIXL in vLLM/Dynamo, Mooncake in SGLang), so only what the link has not caught up
    with, at least the last layer's share, is exposed; else the cache moves once the
    prompt is done (LMCache-style store-then-load)."""

    prefill: StreamOptions  # one prefill worker (token budget = its chunk size)
    decode: StreamOptions  # one decode worker (running cap, KV capacity)
    prefill_workers: np.ndarray  # x ≥ 1
    decode_workers: np.ndarray  # y ≥ 1
    kv_link_gb_s: np.ndarray  # bandwidth one request's KV hand-over gets, GB/s (decimal)
    kv_link_latency_s: np.ndarray  # fixed cost per hand-over (connection, handshake, first byte)
    kv_bytes_per_token: np.ndarray  # see the class docstring
    layerwise: np.ndarray  # bool

    def __len__(self) -> int:
        return len(self.decode)

    def take(self, idx) -> DisaggOptions:
        def sub(a):
            a = np.asarray(a)
            return a if a.ndim == 0 else a[idx]

        return DisaggOptions(
            prefill=self.prefill.take(idx),
            decode=self.decode.take(idx),
            prefill_workers=sub(self.prefill_workers),
            decode_workers=sub(self.decode_workers),
            kv_link_gb_s=sub(self.kv_link_gb_s),
            kv_link_latency_s=sub(self.kv_link_latency_s),
            kv_bytes_per_token=sub(self.kv_bytes_per_token),
            layerwise=sub(self.layerwise),
        )

    def column(self, name: str) -> np.ndarray:
        """A per-option field as a float column (options, 1) against length buckets;
        ``kv_bytes_per_token`` keeps its bucket axis where it has one."""
        a = np.asarray(getattr(self, name), dtype=float)
        if a.ndim == 2:
            return a
        return np.broadcast_to(a, (len(self),))[:, None]
