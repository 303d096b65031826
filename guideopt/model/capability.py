"""What an engine version can run, as stored under ``capabilities:`` in
``catalogs/frameworks/*.yaml``, and the GPU architectures of ``catalogs/architectures.yaml``.

Every list names GPU architecture families (the ``arch`` of ``catalogs/gpus/*.yaml``); each
fact carries its source (file and line in the engine's code or docs) in the catalog.
"""

from __future__ import annotations

from pydantic import Field

from guideopt.model.base import StrictModel
from guideopt.model.gpu import Vendor


class Architecture(StrictModel):
    """A GPU architecture family: its vendor and compiler target (compute capability or gfx)."""

    vendor: Vendor
    target: str = Field(description="CUDA compute capability (sm_80) or ROCm gfx target (gfx942)")
    calibrate_as: str | None = Field(
        default=None,
        description="a family without fitted efficiencies of its own takes this family's (not the all-GPU median): "
        "the nearest in memory system and kernel stack",
    )
    source: str


def unknown_fallbacks(archs: dict[str, Architecture]) -> list[str]:
    """Families whose ``calibrate_as`` names no family of their vendor."""
    return sorted(
        n for n, a in archs.items() if a.calibrate_as and (a.calibrate_as not in archs or archs[a.calibrate_as].vendor is not a.vendor)
    )


class Capabilities(StrictModel):
    """Where and how an engine version runs; anything not listed is refused."""

    vendors: list[Vendor] = Field(min_length=1, description="GPU vendors of its architectures (checked against them)")
    architectures: list[str] = Field(min_length=1, description="architecture families the engine runs on")
    weight_dtypes: dict[str, list[str]] = Field(min_length=1, description="weight precision -> architectures where the engine serves it")
    kv_dtypes: dict[str, list[str]] = Field(
        default_factory=dict,
        description="KV-cache precision other than the weights' own 16-bit one -> architectures where it is allowed",
    )
    kv_follows_weights: bool = Field(default=False, description="the KV cache always has the weights' dtype (FastGen)")
    pipeline_parallel: bool = True
    multi_node: bool = Field(default=True, description="one replica may span nodes")
    mixed_type_pipeline: bool = Field(default=False, description="one instance may run its pipeline stages on different GPU types")
    uniform_stage_tp: bool = Field(default=True, description="every pipeline stage has the same TP size (one --tp flag)")
    expert_parallel: bool = Field(default=False, description="MoE experts split over ranks (EP) instead of tensor-parallel")
    attention_dp: bool = Field(default=False, description="attention data-parallel ranks inside one instance, with EP for the experts")
    multi_node_ep: bool = Field(default=False, description="one EP / attention-DP group may span nodes (wide EP)")
    redundant_experts: bool = Field(default=False, description="redundant (replicated) experts with a load balancer (EPLB)")
    moe_tp_with_ep: bool = Field(default=False, description="experts split over fewer EP ranks than GPUs, each by TP (moe_tp > 1)")
    attention_tp_with_dp: bool = Field(default=True, description="attention TP > 1 inside each attention-DP rank")
    disaggregation: bool = Field(default=False, description="prefill and decode workers that hand the KV cache over a connector")
    kv_connectors: list[str] = Field(default_factory=list, description="KV-transfer backends for disaggregated serving, the default first")
    disaggregation_mixed_types: bool = Field(
        default=False, description="prefill and decode workers on different GPU types (of one vendor) with different TP"
    )
    sources: list[str] = Field(min_length=1)
