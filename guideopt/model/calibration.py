"""Fitted, physically meaningful efficiency parameters (``catalogs/calibration.yaml``).

Written by ``scripts/fit_calibration.py`` from ``shared/data/measured``; every fitted value
names the rows it came from. A GPU without measurements takes its architecture family's
values, and a family without any takes the ``default`` entry; ``resolve`` says which.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from guideopt.model.base import StrictModel
from guideopt.model.limits import MIN_ENGINE_EFFICIENCY


class DeviceEfficiency(StrictModel):
    """Achieved fractions of a GPU's datasheet peaks in an LLM engine."""

    compute_eff: float = Field(gt=0, le=1, description="achieved fraction of dense peak FLOP/s for large GEMMs")
    mem_eff: float = Field(gt=0, le=1, description="achieved fraction of peak HBM bandwidth for weight/KV streaming")
    attn_compute_eff: float = Field(gt=0, le=1, description="achieved fraction of peak FLOP/s in (flash) attention")
    attn_mem_eff: float = Field(gt=0, le=1, description="achieved fraction of HBM bandwidth reading the KV cache in decode attention")
    kernel_overhead_us: float = Field(ge=0, le=100, description="fixed cost per kernel (launch, tail, sync)")
    compute_eff_fp8: float | None = Field(
        default=None, gt=0, le=1, description="achieved fraction of dense FP8 peak for large GEMMs (None: compute_eff)"
    )
    gemm_m_half_tokens: float = Field(
        default=0.0,
        ge=0,
        le=16384,
        description="GEMM rows (tokens) at which the achieved FLOP/s is half its large-m value: eff(m) = eff·m/(m + m_half)",
    )
    attn_kv_len_half_tokens: float = Field(
        default=0.0,
        ge=0,
        le=65536,
        description="KV length per sequence at which decode attention reaches half its streaming bandwidth: eff(L) = eff·L/(L + L_half)",
    )
    fitted_from: str = ""

    def gemm_eff(self, fp8: bool) -> float:
        return self.compute_eff_fp8 if fp8 and self.compute_eff_fp8 is not None else self.compute_eff


class LinkEfficiency(StrictModel):
    """Collective performance of a link class."""

    allreduce_latency_us: float = Field(gt=0, le=1000, description="fixed cost per all-reduce call")
    busbw_fraction: float = Field(gt=0, le=1, description="achieved ring bus bandwidth / unidirectional link spec")
    p2p_latency_us: float = Field(gt=0, le=1000, description="fixed cost per pipeline send/recv")
    allreduce_latency_per_rank_us: float = Field(
        default=0.0, ge=0, le=100, description="extra fixed cost per all-reduce call for each rank beyond two (TP t: (t−2)·this)"
    )
    fitted_from: str = ""


class FrameworkEfficiency(StrictModel):
    """Per-engine costs beyond the kernels."""

    decode_step_overhead_ms: float = Field(ge=0, le=100, description="CPU scheduling, sampling and detokenising per decode step")
    prefill_step_overhead_ms: float = Field(ge=0, le=1000, description="fixed cost per prefill forward pass")
    kernel_efficiency: float = Field(
        ge=MIN_ENGINE_EFFICIENCY,
        le=1,
        description="engine kernels' speed relative to the measured kernels; memory-bound work (weights, KV, decode)",
    )
    compute_efficiency: float | None = Field(
        default=None,
        ge=MIN_ENGINE_EFFICIENCY,
        le=1,
        description="the same for compute-bound work (GEMMs at many tokens, prompt attention): an engine's large-m GEMMs "
        "can be tuned apart from its decode kernels (vLLM on ROCm); None: kernel_efficiency",
    )
    per_seq_step_us: float = Field(
        default=0.0, ge=0, le=1000, description="CPU cost per sequence in a step: scheduling, sampling, detokenising"
    )
    per_token_step_us: float = Field(
        default=0.0, ge=0, le=100, description="CPU cost per new token in a step: input preparation (positions, slot mapping)"
    )
    kv_admission: Literal["current_usage", "full_length"] = Field(
        default="full_length",
        description="current_usage: admits by the KV a request holds now and preempts/recomputes when the cache runs out "
        "(vLLM, SGLang); full_length: reserves a request's whole length at admission (TensorRT-LLM GUARANTEED_NO_EVICT)",
    )
    allreduce_latency_us: float | None = Field(
        default=None,
        gt=0,
        le=1000,
        description="the engine's own all-reduce cost per call (custom all-reduce kernels) on ``allreduce_link``; None: the link's",
    )
    allreduce_link: str | None = Field(default=None, description="link class the engine's all-reduce latency was fitted on")
    pcie_busbw_fraction: float | None = Field(
        default=None,
        gt=0,
        le=1,
        description="achieved all-reduce bus bandwidth over PCIe inside this engine, as a fraction of the PCIe link "
        "(fitted on its multi-GPU PCIe rows); None: the pcie link class's kernel fit",
    )
    versions: list[str] = Field(default_factory=list, description="engine versions of the rows this fit came from")
    async_decode_step_overhead_ms: float | None = Field(
        default=None,
        ge=0,
        le=100,
        description="decode-step overhead of the engine's versions that schedule step n+1 while step n runs (catalog "
        "``async_scheduling``), fitted on rows of such versions; None: decode_step_overhead_ms",
    )
    moe_layer_overhead_us: float = Field(
        default=0.0,
        ge=0,
        le=1000,
        description="per MoE layer and forward pass, the engine's serving path beyond the fused-MoE kernel timings "
        "(routing, permutation, launch gaps), fitted on its MoE serving rows",
    )
    first_token_us_per_layer: float = Field(
        default=0.0,
        ge=0,
        le=20000,
        description="per request and model layer, the online server's time on a request's path to its first token outside "
        "the GPU steps (the form of aiconfigurator-core 0.12.0's vLLM _prefill_dispatch_overhead_ms), fitted on closed-loop "
        "TTFT rows; adds to TTFT and E2E of served streams, not to offline batches",
    )
    serving_terms_from: str = Field(
        default="", description="where async_decode_step_overhead_ms, moe_layer_overhead_us and first_token_us_per_layer came from"
    )
    fitted_from: str = ""


class ErrorBand(StrictModel):
    """10th and 90th percentiles of log(measured / predicted) in one regime, from held-out sources."""

    q10: float = Field(ge=-20, le=20)
    q90: float = Field(ge=-20, le=20)
    n: int = Field(ge=1, description="held-out residuals behind the percentiles")
    sources: int = Field(default=1, ge=1, description="distinct sources of those residuals")
    widening: float = Field(
        default=1.0,
        ge=1,
        le=20,
        description="factor the raw 10th-90th percentile half-widths were widened by around the median (q10/q90 above "
        "include it), chosen per metric kind so that about 80 % of a held-out source's rows fall inside",
    )


class ClosedLoopSync(StrictModel):
    """How far closed-loop clients stay in step. Clients that start together and send equal
    lengths finish together and send again together, so a prompt arrives with the prompts of
    the other clients in its wave and waits behind them (the simulator shows it: it starts
    all clients at once). The steady-state model assumes spread-out arrivals (share 0); share
    1 is the whole wave every round. Derived from the simulator under the benchmark protocol
    (``calibration/fit_closed_loop.py``), not fitted to measured TTFTs."""

    lockstep_share: float = Field(
        default=0.0,
        ge=0,
        le=1,
        description="share of the full lockstep wait (behind half the other running clients' prompts) added to closed-loop TTFT",
    )
    fitted_from: str = ""


class DisaggregationTerms(StrictModel):
    """Terms of disaggregated serving beyond the kernels and the link
    (``scripts/fit_disagg.py``, on the measured disaggregated runs' training folds)."""

    handoff_s: float = Field(
        default=0.0,
        ge=0,
        le=5,
        description="fixed cost per request handed from a prefill to a decode worker (router hop, KV transfer setup and "
        "handshake, the connector's scheduling of the decode side), added to the link's latency",
    )
    lockstep_share: float | None = Field(
        default=None,
        ge=0,
        le=1,
        description="share of the closed-loop wave wait on a prefill rank added to disaggregated TTFT; None: closed_loop.lockstep_share",
    )
    fitted_from: str = ""


class MoeKernelEfficiency(StrictModel):
    """An engine's fused-MoE (grouped GEMM) kernels against the dense GEMM model of the same GPU
    and precision: achieved FLOP/s = dense rate × compute_fraction × t/(t + m_half_tokens) ×
    w/(w + n_half_columns), t the tokens per active expert and w the expert's width per GPU; weight streaming at bandwidth_fraction of the dense rate; plus a
    fixed cost per MoE layer (routing, permutation, finalisation)."""

    compute_fraction: float = Field(default=1.0, gt=0, le=2)
    m_half_tokens: float = Field(default=0.0, ge=0, le=100_000)
    n_half_columns: float = Field(default=0.0, ge=0, le=100_000)
    bandwidth_fraction: float = Field(default=1.0, gt=0, le=2)
    overhead_us: float = Field(default=0.0, ge=0, le=10_000)
    fitted_from: str = ""


class MoeEfficiency(StrictModel):
    """Mixture-of-experts terms, fitted on measured MoE kernel timings (``scripts/fit_moe_kernels.py``).

    With routed tokens spread over ``ep`` ranks the step waits for the busiest; its load is
    the mean × (1 + imbalance_per_rank · log2(ep)). 0 means perfectly balanced routing."""

    imbalance_per_rank: float = Field(default=0.0, ge=0, le=1, description="busiest rank's excess load per doubling of expert ranks")
    engines: dict[str, MoeKernelEfficiency] = Field(
        default_factory=dict,
        description="fused-MoE kernels by engine calibration id (all precisions) and by engine and kernel path "
        "(``vllm:fp4``, ``vllm:fp4-weight-only``: the precision's own kernels, where the timings suffice)",
    )
    fitted_from: str = ""

    def kernels(self, engine: str, path: str = "") -> MoeKernelEfficiency:
        return self.engines.get(f"{engine}:{path}") or self.engines.get(engine) or MoeKernelEfficiency()


class Calibration(StrictModel):
    version: str
    generated_by: str
    default_device: DeviceEfficiency
    arch: dict[str, DeviceEfficiency] = Field(default_factory=dict)
    gpus: dict[str, DeviceEfficiency] = Field(default_factory=dict)
    links: dict[str, LinkEfficiency]
    frameworks: dict[str, FrameworkEfficiency]
    closed_loop: ClosedLoopSync = Field(default_factory=ClosedLoopSync)
    disaggregation: DisaggregationTerms = Field(default_factory=DisaggregationTerms)
    moe: MoeEfficiency = Field(default_factory=MoeEfficiency)
    intervals: dict[str, ErrorBand] = Field(
        default_factory=dict,
        description="prediction error bands by regime key (see guideopt.costs.intervals), from leave-one-source-out residuals",
    )

    @property
    def disagg_lockstep_share(self) -> float:
        """The wave-wait share of disaggregated closed loops: its own where fitted, else the aggregated one."""
        own = self.disaggregation.lockstep_share
        return self.closed_loop.lockstep_share if own is None else own

    def framework(self, framework_id: str, vendor: str) -> FrameworkEfficiency:
        """The engine's costs on a GPU vendor: ``<id>@<vendor>`` (e.g. vLLM's ROCm build) when fitted, else ``<id>``."""
        return self.frameworks.get(f"{framework_id}@{vendor}") or self.frameworks[framework_id]

    def admits_current_usage(self, framework_id: str, vendor: str) -> bool:
        """Whether the engine admits by the KV a request holds now (and preempts), not its whole length."""
        return self.framework(framework_id, vendor).kv_admission == "current_usage"

    def with_family_fallbacks(self, fallbacks: dict[str, str]) -> Calibration:
        """Families without an entry of their own take another family's (``family: like``,
        from architectures.yaml ``calibrate_as``), saying so in ``fitted_from``."""
        added = {
            family: self.arch[like].model_copy(
                update={"fitted_from": f"no {family} rows: the {like} family's ({self.arch[like].fitted_from})"}
            )
            for family, like in sorted(fallbacks.items())
            if family not in self.arch and like in self.arch
        }
        return self.model_copy(update={"arch": {**self.arch, **added}}) if added else self

    def device(self, gpu_id: str, arch: str) -> tuple[DeviceEfficiency, str]:
        """The efficiency for a GPU and where it comes from: 'gpu', 'arch:<family>' or 'default'."""
        if gpu_id in self.gpus:
            return self.gpus[gpu_id], "gpu"
        if arch in self.arch:
            return self.arch[arch], f"arch:{arch}"
        return self.default_device, "default"
