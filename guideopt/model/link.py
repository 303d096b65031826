"""A network link between nodes (the activation hop between pipeline stages on different GPU types)."""

from __future__ import annotations

from pydantic import Field

from guideopt.model.base import StrictModel
from guideopt.units import BYTES_PER_S_PER_GB_S, S_PER_US


class NetworkLink(StrictModel):
    """``catalogs/links.yaml``: ``network``."""

    bw_gb_s: float = Field(gt=0, description="per-GPU bandwidth per direction, GB/s")
    latency_us: float = Field(ge=0, description="small-message send/recv latency, microseconds")
    source: str = Field(min_length=1)

    @property
    def bytes_per_s(self) -> float:
        return self.bw_gb_s * BYTES_PER_S_PER_GB_S

    @property
    def latency_s(self) -> float:
        return self.latency_us * S_PER_US


class Links(StrictModel):
    network: NetworkLink
