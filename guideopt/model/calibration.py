"""Fitted, physically meaningful efficiency parameters (``catalogs/calibration.yaml``).

Written by ``scripts/fit_calibration.py`` from ``shared/data/measured``; every fitted value
names the rows it came from. A GPU without measurements takes its architecture family's
values, and a family without any takes the ``default`` entry; ``resolve`` says which.
"""

from __future__ import annotations

from pydantic import Field

from guideopt.model.base import StrictModel


class DeviceEfficiency(StrictModel):
    """Achieved fractions of a GPU's datasheet peaks in an LLM engine."""

    compute_eff: float = Field(gt=0, le=1, description="achieved fraction of dense peak FLOP/s for large GEMMs")
    mem_eff: float = Field(gt=0, le=1, description="achieved fraction of peak HBM bandwidth for weight/KV streaming")
    attn_compute_eff: float = Field(gt=0, le=1, description="achieved fraction of peak FLOP/s in (flash) attention")
    attn_mem_eff: float = Field(gt=0, le=1, description="achieved fraction of HBM bandwidth reading the KV cache in decode attention")
    kernel_overhead_us: float = Field(ge=0, le=100, description="fixed cost per kernel (launch, tail, sync)")
    fitted_from: str = ""


class LinkEfficiency(StrictModel):
    """Collective performance of a link class."""

    allreduce_latency_us: float = Field(gt=0, le=1000, description="fixed cost per all-reduce call")
    busbw_fraction: float = Field(gt=0, le=1, description="achieved ring bus bandwidth / unidirectional link spec")
    p2p_latency_us: float = Field(gt=0, le=1000, description="fixed cost per pipeline send/recv")
    fitted_from: str = ""


class FrameworkEfficiency(StrictModel):
    """Per-engine costs beyond the kernels."""

    decode_step_overhead_ms: float = Field(ge=0, le=100, description="CPU scheduling, sampling and detokenising per decode step")
    prefill_step_overhead_ms: float = Field(ge=0, le=1000, description="fixed cost per prefill forward pass")
    kernel_efficiency: float = Field(gt=0, le=1, description="engine kernels' speed relative to the best (TRT-LLM = 1)")
    fitted_from: str = ""


class Calibration(StrictModel):
    version: str
    generated_by: str
    default_device: DeviceEfficiency
    arch: dict[str, DeviceEfficiency] = Field(default_factory=dict)
    gpus: dict[str, DeviceEfficiency] = Field(default_factory=dict)
    links: dict[str, LinkEfficiency]
    frameworks: dict[str, FrameworkEfficiency]

    def device(self, gpu_id: str, arch: str) -> tuple[DeviceEfficiency, str]:
        """The efficiency for a GPU and where it comes from: 'gpu', 'arch:<family>' or 'default'."""
        if gpu_id in self.gpus:
            return self.gpus[gpu_id], "gpu"
        if arch in self.arch:
            return self.arch[arch], f"arch:{arch}"
        return self.default_device, "default"
