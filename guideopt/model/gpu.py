"""GPU specification as stored in ``catalogs/gpus/*.yaml``."""

from __future__ import annotations

from enum import Enum

from pydantic import Field, model_validator

from guideopt.model.base import StrictModel
from guideopt.model.dtype import Dtype
from guideopt.model.limits import MAX_BUDGET_USD_PER_HOUR
from guideopt.units import BYTES_PER_GIB, BYTES_PER_S_PER_GB_S, FLOPS_PER_TFLOPS, S_PER_US


class Vendor(str, Enum):
    NVIDIA = "nvidia"
    AMD = "amd"


class LinkClass(str, Enum):
    """Scale-up fabric between GPUs of one node (see catalogs/links.yaml)."""

    NVSWITCH = "nvswitch"  # all-to-all NVLink through NVSwitch (HGX/DGX)
    NVLINK_BRIDGE = "nvlink_bridge"  # 2-way bridge between pairs; PCIe beyond the pair
    XGMI = "xgmi"  # AMD Infinity Fabric mesh
    PCIE = "pcie"  # no GPU-to-GPU fabric


class PriceGrade(str, Enum):
    """How far a catalog price can be trusted (shared/reference/prices.csv and README)."""

    PROVIDER_CATALOG = "provider-catalog"  # a cloud provider's own machine-readable price list, this exact GPU
    SECONDARY_SOURCE = "secondary-source"  # a third-party page quoting the provider's price for this GPU
    LOW_RELIABILITY = "low-reliability"  # a marketplace aggregator listing (may be stale or wrong)
    ESTIMATE = "estimate"  # derived from another GPU's price, or recalled without a source
    USER_SUPPLIED = "user-supplied"  # from the user's own --prices file

    @property
    def is_weak(self) -> bool:
        """Worth a note next to any plan that uses the price."""
        return self in (PriceGrade.LOW_RELIABILITY, PriceGrade.ESTIMATE)


class PeakTflops(StrictModel):
    """Dense (not 2:4 sparse) tensor-core throughput per precision, in TFLOPS/TOPS.

    ``None`` means the GPU has no tensor path for that precision: such weights are
    dequantised and multiplied at the 16-bit rate (weight-only quantisation).
    """

    fp16: float = Field(gt=0)
    bf16: float | None = Field(default=None, gt=0)
    fp8: float | None = Field(default=None, gt=0)
    int8: float | None = Field(default=None, gt=0)
    int4: float | None = Field(default=None, gt=0)


class Gpu(StrictModel):
    id: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$")
    name: str
    vendor: Vendor
    arch: str = Field(
        description="architecture family (volta, turing, ampere, ada, hopper, blackwell, cdna2, cdna3); calibration falls back to it"
    )
    memory_gib: float = Field(gt=0, description="HBM/GDDR capacity in GiB (2^30 bytes)")
    hbm_bw_gb_s: float = Field(gt=0, description="peak memory bandwidth, GB/s (10^9)")
    peak_tflops: PeakTflops
    link: LinkClass
    link_bw_unidir_gb_s: float = Field(ge=0, description="scale-up bandwidth per GPU per direction, GB/s; 0 without a fabric")
    pcie_bw_unidir_gb_s: float = Field(gt=0)
    gpus_per_node: int = Field(ge=1)
    l2_cache_mb: float | None = Field(
        default=None,
        gt=0,
        description="last-level on-die cache, MB (10^6 bytes); kernel timings whose working set fits in it measure the "
        "cache, not HBM, and are left out of the bandwidth fits. None: not published",
    )
    usd_per_hour: float = Field(gt=0, description="on-demand price per GPU-hour")
    price_grade: PriceGrade = Field(description="how far usd_per_hour can be trusted")
    price_source: str
    price_date: str
    sources: list[str] = Field(min_length=1)
    notes: str = ""

    @model_validator(mode="after")
    def _fabric_has_bandwidth(self) -> Gpu:
        if self.link is not LinkClass.PCIE and self.link_bw_unidir_gb_s <= 0:
            raise ValueError(f"link_bw_unidir_gb_s must be > 0 for link {self.link.value}")
        return self

    @property
    def memory_bytes(self) -> float:
        return self.memory_gib * BYTES_PER_GIB

    @property
    def memory_gb(self) -> float:
        return self.memory_bytes / 1e9

    @property
    def hbm_bw_bytes_per_s(self) -> float:
        return self.hbm_bw_gb_s * BYTES_PER_S_PER_GB_S

    def tensor_flops_per_s(self, dtype: Dtype) -> float:
        """Dense peak FLOP/s for GEMMs whose weights are stored in ``dtype``.

        fp8/int8 use their own tensor path when the GPU has one (W8A8); otherwise, and
        always for int4 (W4A16, as AWQ/GPTQ/Marlin kernels do), the math runs at 16-bit.
        """
        half = self.peak_tflops.bf16 if dtype is Dtype.BF16 and self.peak_tflops.bf16 else self.peak_tflops.fp16
        native = {Dtype.FP8: self.peak_tflops.fp8, Dtype.INT8: self.peak_tflops.int8}.get(dtype)
        return (native or half) * FLOPS_PER_TFLOPS

    def link_bw_bytes_per_s(self) -> float:
        """Per-direction GPU-to-GPU bandwidth inside a node (PCIe when there is no fabric)."""
        bw = self.link_bw_unidir_gb_s if self.link is not LinkClass.PCIE else self.pcie_bw_unidir_gb_s
        return bw * BYTES_PER_S_PER_GB_S


class GpuPrice(StrictModel):
    """One GPU's price in a price set."""

    usd_per_hour: float = Field(gt=0, le=MAX_BUDGET_USD_PER_HOUR, description="price per GPU-hour")
    price_grade: PriceGrade = PriceGrade.USER_SUPPLIED
    source: str = ""


class PriceSet(StrictModel):
    """Where GPUs can be bought and at what price (``catalogs/prices/*.yaml`` or ``--prices FILE``).

    A plan with a price set uses only the GPUs it lists, at its prices.
    """

    name: str = Field(default="", description="the set's name (a provider id for the bundled sets)")
    provider: str = ""
    gpus: dict[str, float | GpuPrice] = Field(min_length=1, description="GPU id: a price, or {usd_per_hour, price_grade, source}")

    def prices(self) -> dict[str, GpuPrice]:
        return {k: v if isinstance(v, GpuPrice) else GpuPrice(usd_per_hour=v) for k, v in self.gpus.items()}


__all__ = ["S_PER_US", "Gpu", "GpuPrice", "LinkClass", "PeakTflops", "PriceGrade", "PriceSet", "Vendor"]
