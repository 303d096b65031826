"""GPU specification as stored in ``catalogs/gpus/*.yaml``."""

from __future__ import annotations

from enum import Enum
from typing import Annotated, Any

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
    ``fp4`` is the dense NVFP4/MXFP4 rate (Blackwell, CDNA4); Hopper and CDNA3 have none.
    """

    fp16: float = Field(gt=0)
    bf16: float | None = Field(default=None, gt=0)
    fp8: float | None = Field(default=None, gt=0)
    int8: float | None = Field(default=None, gt=0)
    int4: float | None = Field(default=None, gt=0)
    fp4: float | None = Field(default=None, gt=0)


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
    gpus_per_node: int = Field(ge=1, description="GPUs one host (OS node) drives; a replica wider than this is a multi-node launch")
    scale_up_domain_gpus: int = Field(
        ge=1,
        description="GPUs in one NVLink/xGMI domain: 8 on HGX and MI boards, 72 in an NVL72 rack (spanning 18 hosts). "
        "A TP group up to this size stays on the fast link. Absent: gpus_per_node on NVSwitch/xGMI, 2 for an NVLink "
        "bridge, 1 on PCIe only",
    )
    scale_out_nic_gb_s_per_gpu: float | None = Field(
        default=None,
        gt=0,
        description="scale-out network (InfiniBand/RoCE/EFA) bandwidth per GPU per direction, GB/s = Gbit/s / 8; "
        "None: not published (collectives beyond the node are then priced at PCIe speed)",
    )
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

    @model_validator(mode="before")
    @classmethod
    def _default_domain(cls, data: Any) -> Any:
        """An entry without ``scale_up_domain_gpus`` gets its link's usual domain."""
        if isinstance(data, dict) and data.get("scale_up_domain_gpus") is None:
            link = data.get("link")
            domain = {LinkClass.NVLINK_BRIDGE.value: 2, LinkClass.PCIE.value: 1}.get(str(getattr(link, "value", link)))
            data = {**data, "scale_up_domain_gpus": domain or data.get("gpus_per_node")}
        return data

    @model_validator(mode="after")
    def _fabric_has_bandwidth(self) -> Gpu:
        if self.link is not LinkClass.PCIE and self.link_bw_unidir_gb_s <= 0:
            raise ValueError(f"link_bw_unidir_gb_s must be > 0 for link {self.link.value}")
        switched = self.link in (LinkClass.NVSWITCH, LinkClass.XGMI)
        if switched and self.scale_up_domain_gpus < self.gpus_per_node:
            raise ValueError(f"scale_up_domain_gpus must be >= gpus_per_node ({self.gpus_per_node}) on {self.link.value}")
        if not switched and self.scale_up_domain_gpus > self.gpus_per_node:
            raise ValueError(f"scale_up_domain_gpus must be <= gpus_per_node ({self.gpus_per_node}) on {self.link.value}")
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

    def native_tflops(self, dtype: Dtype) -> float | None:
        """The dense tensor rate of ``dtype``'s own math path (fp8, int8, fp4), None where the
        GPU has none and such weights run weight-only (16-bit math)."""
        return {Dtype.FP8: self.peak_tflops.fp8, Dtype.INT8: self.peak_tflops.int8, Dtype.FP4: self.peak_tflops.fp4}.get(dtype)

    def tensor_flops_per_s(self, dtype: Dtype) -> float:
        """Dense peak FLOP/s for GEMMs whose weights are stored in ``dtype``.

        fp8/int8 use their own tensor path when the GPU has one (W8A8), and fp4 its FP4
        tensor cores (NVFP4/MXFP4 W4A4 on Blackwell and CDNA4). Otherwise the math runs at
        16-bit: int4 always (W4A16, as AWQ/GPTQ/Marlin kernels do), and fp4 on GPUs without
        FP4 tensor cores (Hopper, CDNA3, Ampere), where the engines keep the weights in
        4-bit storage and dequantise them into 16-bit GEMMs (vLLM's Marlin/Triton MXFP4 and
        NVFP4 paths), like int4.
        """
        half = self.peak_tflops.bf16 if dtype is Dtype.BF16 and self.peak_tflops.bf16 else self.peak_tflops.fp16
        return (self.native_tflops(dtype) or half) * FLOPS_PER_TFLOPS

    @property
    def scale_out_bytes_per_s(self) -> float | None:
        """Scale-out NIC bandwidth per GPU per direction, bytes/s (None: not published)."""
        nic = self.scale_out_nic_gb_s_per_gpu
        return None if nic is None else nic * BYTES_PER_S_PER_GB_S

    def link_bw_bytes_per_s(self) -> float:
        """Per-direction GPU-to-GPU bandwidth inside a node (PCIe when there is no fabric)."""
        bw = self.link_bw_unidir_gb_s if self.link is not LinkClass.PCIE else self.pcie_bw_unidir_gb_s
        return bw * BYTES_PER_S_PER_GB_S


class PriceTier(str, Enum):
    """How GPU-hours are bought (the ``tier`` column of shared/reference/prices.csv)."""

    ON_DEMAND = "on_demand"  # list price, no commitment: the catalog's and every set's default
    SPOT = "spot"  # interruptible / preemptible capacity
    RESERVED_1Y = "reserved_1y"  # a one-year commitment, per GPU-hour
    RESERVED_3Y = "reserved_3y"  # a three-year commitment, per GPU-hour
    CAPACITY_BLOCK = "capacity_block"  # hours booked ahead for a fixed window (AWS EC2 Capacity Blocks)

    def __str__(self) -> str:
        return self.value

    @classmethod
    def split_source(cls, source: str) -> tuple[str, PriceTier | None]:
        """``SET:TIER`` -> (SET, tier); a source without a known tier suffix is all SET (a
        Windows path's drive colon stays put)."""
        name, _, tier = source.rpartition(":")
        return (name, cls(tier)) if name and tier in cls._value2member_map_ else (source, None)


class GpuPrice(StrictModel):
    """One GPU's price in a price set."""

    usd_per_hour: float = Field(gt=0, le=MAX_BUDGET_USD_PER_HOUR, description="price per GPU-hour")
    price_grade: PriceGrade = PriceGrade.USER_SUPPLIED
    source: str = ""


PriceMap = dict[str, float | GpuPrice]


class PriceSet(StrictModel):
    """Where GPUs can be bought and at what price (``catalogs/prices/*.yaml`` or ``--prices FILE``).

    ``gpus`` holds the prices of the set's ``tier`` (on-demand unless it says otherwise);
    ``tiers`` may add other tiers' prices, ``--prices SET:TIER`` plans on one of them. A plan
    with a price set uses only the GPUs listed for the tier, at its prices.
    """

    name: str = Field(default="", description="the set's name (a provider id for the bundled sets)")
    provider: str = ""
    tier: PriceTier = Field(default=PriceTier.ON_DEMAND, description="the tier of the prices under gpus")
    gpus: PriceMap = Field(min_length=1, description="GPU id: a price, or {usd_per_hour, price_grade, source}")
    tiers: dict[PriceTier, Annotated[PriceMap, Field(min_length=1)]] = Field(
        default_factory=dict, description="other tiers' prices: tier -> {GPU id: a price, or {usd_per_hour, price_grade, source}}"
    )

    @model_validator(mode="after")
    def _bare_prices_bounded(self) -> PriceSet:
        """A bare price is bounded as ``GpuPrice.usd_per_hour`` is (0 or 1e12 $/h broke a plan further on)."""
        for where, prices in (("gpus", self.gpus), *((f"tiers.{t.value}", m) for t, m in self.tiers.items())):
            for gpu_id, price in prices.items():
                if isinstance(price, float | int) and not 0 < price <= MAX_BUDGET_USD_PER_HOUR:
                    raise ValueError(f"{where}.{gpu_id}: {price:g} must be a price per GPU-hour in (0, {MAX_BUDGET_USD_PER_HOUR:,.0f}]")
        return self

    @model_validator(mode="after")
    def _tier_once(self) -> PriceSet:
        if self.tier in self.tiers:
            raise ValueError(f"tiers: {self.tier.value} is the set's own tier (its prices go under gpus)")
        return self

    @property
    def tier_names(self) -> list[str]:
        """The tiers this set prices, its own first."""
        return [self.tier.value, *(t.value for t in self.tiers)]

    def for_tier(self, tier: PriceTier) -> PriceSet | None:
        """The set narrowed to one tier's prices (None: it has none of that tier)."""
        if tier is self.tier:
            return self
        if tier not in self.tiers:
            return None
        return PriceSet(name=f"{self.name}:{tier.value}", provider=self.provider, tier=tier, gpus=self.tiers[tier])

    def prices(self) -> dict[str, GpuPrice]:
        return {k: v if isinstance(v, GpuPrice) else GpuPrice(usd_per_hour=v) for k, v in self.gpus.items()}


__all__ = ["S_PER_US", "Gpu", "GpuPrice", "LinkClass", "PeakTflops", "PriceGrade", "PriceSet", "PriceTier", "Vendor"]
