"""Serving-framework profile as stored in ``catalogs/frameworks/*.yaml``.

Only the defaults that decide memory and batching live here (from the engines' source,
see ``shared/reference/frameworks.md``); fitted speed parameters live in
``catalogs/calibration.yaml``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from enum import Enum

from pydantic import Field

from guideopt.model.base import StrictModel
from guideopt.model.capability import Capabilities
from guideopt.model.launch import EngineLaunch

# A version entry's id: its engine family's id, a dash and the version ("vllm-0.33"). The
# family's own id ("vllm") is its base entry: the version the calibration was fitted with.
VERSION_ID = re.compile(r"^(?P<engine>[a-z0-9]+(?:-[a-z][a-z0-9]*)*)-(?P<version>\d+(?:\.\d+)*)$")


def parse_version(text: str) -> tuple[int, ...]:
    """The leading numeric release of a version string ("1.2.0rc6" -> (1, 2, 0))."""
    match = re.match(r"\d+(?:\.\d+)*", text)
    return tuple(int(p) for p in match.group(0).split(".")) if match else ()


def split_version_id(framework_id: str) -> tuple[str, tuple[int, ...]]:
    """(engine family, version) of a catalog framework id; a base id has the empty version."""
    match = VERSION_ID.match(framework_id)
    return (match["engine"], parse_version(match["version"])) if match else (framework_id, ())


def newest_per_engine(framework_ids: Iterable[str]) -> list[str]:
    """One id per engine family, its newest version: version ids rank by version above the
    family's base id (catalog.py checks that they are newer)."""
    best: dict[str, tuple[tuple[int, ...], str]] = {}
    for fw_id in framework_ids:
        engine, version = split_version_id(fw_id)
        if engine not in best or version > best[engine][0]:
            best[engine] = (version, fw_id)
    return sorted(fw_id for _, fw_id in best.values())


class MemoryFractionOf(str, Enum):
    """What the framework's memory fraction is a fraction of."""

    TOTAL = "total"  # vLLM gpu_memory_utilization: weights, activations, non-torch and KV within a fraction of the GPU
    WEIGHTS_AND_KV = "weights_and_kv"  # SGLang mem_fraction_static = (weights + KV pool) / GPU memory
    FREE_AFTER_LOAD = "free_after_load"  # TRT-LLM free_gpu_memory_fraction: of what is left after weights
    RESERVE = "reserve"  # DeepSpeed-FastGen: everything but a fixed reserve


class Framework(StrictModel):
    id: str = Field(pattern=r"^[a-z0-9][a-z0-9.-]*$", description="engine family (vllm) or family-version (vllm-0.33)")
    name: str
    engine: str | None = Field(
        default=None, description="engine family whose calibration this version shares (default: the id); a newer version is a new entry"
    )
    version: str = Field(description="engine version whose defaults, capabilities and launch template these are")
    memory_fraction: float = Field(gt=0, le=1)
    memory_fraction_of: MemoryFractionOf
    reserve_gib: float = Field(ge=0, description="memory the engine keeps back beyond its fraction (FastGen's RESERVE size)")
    non_torch_gib: float = Field(ge=0, description="CUDA context, cuBLAS workspace and allocator slack per GPU")
    comm_buffer_gib_per_tp: float = Field(ge=0, description="NCCL / custom all-reduce buffers per GPU when TP > 1")
    cuda_graph_gib: float = Field(ge=0, description="CUDA-graph memory per GPU")
    cuda_graph_in_budget: bool = Field(
        default=False, description="graph memory counted inside the memory fraction (vLLM >= 0.21) rather than in the headroom"
    )
    kv_block_tokens: int = Field(ge=1, description="KV-cache page (block) size in tokens")
    max_num_batched_tokens: int = Field(gt=0, description="default token budget per forward pass (split size)")
    max_num_seqs: int = Field(gt=0, description="default max sequences per forward pass")
    chunked_prefill: bool = Field(
        description="prefill split into chunks of the token budget (vLLM V1 chunked prefill, FastGen Dynamic SplitFuse)"
    )
    split_sizes: list[int] = Field(min_length=1, description="token budgets the planner may choose")
    capabilities: Capabilities
    memory_rule: ReservedMemoryRule | None = Field(
        default=None, description="the engine derives its memory fraction and chunk size from the GPU (SGLang >= 0.5)"
    )
    flash_attention: bool = True
    async_scheduling: bool = Field(
        default=False,
        description="by default the engine schedules step n+1 while step n runs on the GPU, hiding its per-step CPU cost "
        "(calibration ``async_decode_step_overhead_ms``, where fitted); false: off, or not read from this version's source",
    )
    launch: EngineLaunch
    sources: list[str] = Field(min_length=1)
    notes: str = ""

    @property
    def calibration_id(self) -> str:
        """Key of this engine's fitted speed parameters in catalogs/calibration.yaml."""
        return self.engine or self.id

    @property
    def pipeline_parallel(self) -> bool:
        return self.capabilities.pipeline_parallel

    @property
    def precisions(self) -> list[str]:
        """Weight precisions it serves on some architecture."""
        return list(self.capabilities.weight_dtypes)

    @property
    def vendors(self) -> list[str]:
        return [v.value for v in self.capabilities.vendors]


class GpuMemoryBand(StrictModel):
    """Defaults for GPUs with less than ``below_gib`` of memory (SGLang's bands)."""

    below_gib: float = Field(gt=0, allow_inf_nan=True)  # .inf: the last band has no upper bound
    chunk_tokens: int = Field(gt=0, description="chunked_prefill_size default")
    graph_max_batch: tuple[int, int] = Field(description="cuda_graph_max_bs at TP below / at or above the TP threshold")


class ReservedMemoryRule(StrictModel):
    """SGLang >= 0.5: mem_fraction_static = round((gpu_mem - reserved) / gpu_mem, 3), MiB, where
    reserved = base + per_chunk_token x max(chunk, min_chunk) + per_graph_batch x graph_max_bs
    + per_parallel_rank x tp x pp, at least large_gpu_min_reserved on GPUs over large_gpu_gib."""

    base_mib: float = Field(ge=0)
    per_chunk_token_mib: float = Field(ge=0)
    min_chunk_tokens: int = Field(ge=0)
    per_graph_batch_mib: float = Field(ge=0)
    per_parallel_rank_mib: float = Field(ge=0)
    large_gpu_gib: float = Field(gt=0)
    large_gpu_min_reserved_mib: float = Field(ge=0)
    graph_tp_threshold: int = Field(ge=1)
    fraction_digits: int = Field(ge=0)
    bands: list[GpuMemoryBand] = Field(min_length=1)
    sources: list[str] = Field(min_length=1)
