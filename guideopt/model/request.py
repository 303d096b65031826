"""The planning request: one pydantic model behind both the CLI flags and constraints files.

Its structure is the constraints-file format of ``shared/docs/CONTRACT.md``.
"""

from __future__ import annotations

from enum import Enum

from pydantic import Field, field_validator, model_validator

from guideopt.model.base import StrictModel
from guideopt.model.dtype import Dtype
from guideopt.model.limits import MAX_BATCH, MAX_BUDGET_USD_PER_HOUR, MAX_GPUS, MAX_PARALLEL_SIZE, MAX_SEQUENCE_TOKENS


class ObjectiveTerm(str, Enum):
    THROUGHPUT = "throughput"  # maximise whole-deployment output tokens/s
    LATENCY = "latency"  # minimise batch latency (per replica)
    TTFT = "ttft"
    TPOT = "tpot"
    COST = "cost"  # minimise $/hour
    USD_PER_MILLION_OUTPUT_TOKENS = "usd_per_million_output_tokens"  # minimise $/hour ÷ output tokens/hour × 10^6


DEFAULT_OBJECTIVE = (ObjectiveTerm.THROUGHPUT, ObjectiveTerm.LATENCY, ObjectiveTerm.COST)
DEFAULT_TP = (1, 2, 4, 8)
DEFAULT_PP = (1, 2, 4)
DEFAULT_TOP = 3
# Wall-clock limit of one plan request (issue 14: no plan command past 10 s whatever `top`
# is). 5 s leaves room for the option tables, the best single-type plan a mixed plan is
# compared with, and output; measured mixed-type top 50 needs well under 1 s of it.
DEFAULT_TIME_LIMIT_S = 5.0
MAX_TIME_LIMIT_S = 3600.0
# Batch sizes the planner considers per replica when the workload leaves it free.
DEFAULT_BATCH_CHOICES = (1, 2, 4, 8, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512)


class Workload(StrictModel):
    input_len: int = Field(gt=0, le=MAX_SEQUENCE_TOKENS, description="prompt tokens per request")
    output_len: int = Field(gt=0, le=MAX_SEQUENCE_TOKENS, description="generated tokens per request")
    batch: int | None = Field(default=None, gt=0, le=MAX_BATCH, description="fixed batch per replica; else the solver picks it")


class Budget(StrictModel):
    usd_per_hour: float = Field(gt=0, le=MAX_BUDGET_USD_PER_HOUR, description="ceiling on the deployment's $/hour")


class GpuAllowance(StrictModel):
    max: int | None = Field(default=None, ge=0, le=MAX_GPUS, description="GPUs of this type that can be had")
    usd_per_hour: float | None = Field(default=None, gt=0, le=MAX_BUDGET_USD_PER_HOUR, description="price override per GPU-hour")


class Parallelism(StrictModel):
    tp: list[int] = Field(default_factory=lambda: list(DEFAULT_TP), min_length=1)
    pp: list[int] = Field(default_factory=lambda: list(DEFAULT_PP), min_length=1)
    max_gpus: int | None = Field(default=None, gt=0, le=MAX_GPUS)
    max_nodes: int | None = Field(
        default=None, gt=0, le=MAX_GPUS, description="at most this many nodes (of gpus_per_node GPUs of one type, from the GPU catalog)"
    )

    @field_validator("tp", "pp")
    @classmethod
    def _positive(cls, values: list[int]) -> list[int]:
        bad = [v for v in values if v < 1]
        if bad:
            raise ValueError(f"values must be >= 1, got {bad}")
        big = [v for v in values if v > MAX_PARALLEL_SIZE]
        if big:
            raise ValueError(f"values must be at most {MAX_PARALLEL_SIZE}, got {big} (no scale-up domain is larger)")
        return sorted(set(values))


class Slo(StrictModel):
    ttft_ms: float | None = Field(default=None, gt=0)
    tpot_ms: float | None = Field(default=None, gt=0)
    batch_latency_s: float | None = Field(default=None, gt=0)
    min_output_throughput_tok_s: float | None = Field(default=None, gt=0)


class PlanRequest(StrictModel):
    model: str = Field(min_length=1, description="catalog id or path to a config.json")
    workload: Workload
    budget: Budget
    gpus: dict[str, int | GpuAllowance] | None = Field(default=None, description="allowed GPU types and how many of each")
    parallelism: Parallelism = Field(default_factory=Parallelism)
    framework: str | list[str] = Field(default="vllm", description="an id, a list of ids, or 'any'")
    precision: list[Dtype] = Field(default_factory=lambda: [Dtype.FP16], min_length=1)
    kv_dtype: Dtype | None = None
    slo: Slo = Field(default_factory=Slo)
    objective: list[ObjectiveTerm] = Field(default_factory=lambda: list(DEFAULT_OBJECTIVE), min_length=1)
    top: int = Field(default=DEFAULT_TOP, ge=1, le=50)
    heterogeneous: bool = False
    time_limit_s: float = Field(
        default=DEFAULT_TIME_LIMIT_S,
        gt=0,
        le=MAX_TIME_LIMIT_S,
        description="wall-clock limit of the search; when it hits, the plans found so far come back with status feasible",
    )
    robust: bool = Field(
        default=False, description="meet SLOs and budgets at the pessimistic end of the prediction intervals (held-out errors)"
    )

    @field_validator("objective")
    @classmethod
    def _no_repeats(cls, terms: list[ObjectiveTerm]) -> list[ObjectiveTerm]:
        if len(set(terms)) != len(terms):
            raise ValueError("objective terms must not repeat")
        return terms

    @field_validator("gpus")
    @classmethod
    def _lower_case_ids(cls, gpus):
        """GPU ids are lower-case (contract); accept any case and store the canonical id."""
        if gpus is None:
            return gpus
        return {str(k).lower(): v for k, v in gpus.items()}

    @field_validator("framework")
    @classmethod
    def _framework_not_empty(cls, value):
        if isinstance(value, list) and not value:
            raise ValueError("give at least one framework id, or 'any'")
        return value

    @model_validator(mode="after")
    def _gpu_counts(self) -> PlanRequest:
        for gpu_id, allowance in (self.gpus or {}).items():
            if isinstance(allowance, int) and allowance < 0:
                raise ValueError(f"gpus.{gpu_id}: count must be >= 0, got {allowance}")
            if isinstance(allowance, int) and allowance > MAX_GPUS:
                raise ValueError(f"gpus.{gpu_id}: count must be at most {MAX_GPUS:,}, got {allowance:,} (give the GPUs you can have)")
        return self

    def allowance(self, gpu_id: str) -> GpuAllowance:
        value = (self.gpus or {}).get(gpu_id)
        if value is None:
            return GpuAllowance()
        return GpuAllowance(max=value) if isinstance(value, int) else value

    def framework_ids(self, known: list[str]) -> list[str]:
        if self.framework == "any":
            return sorted(known)
        return [self.framework] if isinstance(self.framework, str) else list(self.framework)


class PredictRequest(StrictModel):
    """One configuration to predict (``guideopt predict``)."""

    model: str = Field(min_length=1)
    gpu: str = Field(min_length=1)
    num_gpus: int | None = Field(default=None, gt=0, le=MAX_GPUS, description="all GPUs; replicas = num_gpus / (tp·pp)")
    tp: int | None = Field(default=None, gt=0, le=MAX_PARALLEL_SIZE)
    pp: int = Field(default=1, gt=0, le=MAX_PARALLEL_SIZE)
    framework: str = "vllm"
    dtype: Dtype = Dtype.FP16
    kv_dtype: Dtype | None = None
    batch: int = Field(default=1, gt=0, le=MAX_BATCH, description="requests submitted together to the whole deployment")
    input_len: int = Field(gt=0, le=MAX_SEQUENCE_TOKENS)
    output_len: int = Field(gt=0, le=MAX_SEQUENCE_TOKENS)
    split: int | None = Field(
        default=None, gt=0, le=MAX_SEQUENCE_TOKENS, description="token budget per forward pass; default: the framework's"
    )
    concurrency: int | None = Field(default=None, gt=0, le=MAX_BATCH, description="closed-loop clients instead of a static batch")
    max_num_seqs: int | None = Field(
        default=None, gt=0, le=MAX_BATCH, description="sequences the engine may run at once (serving); default: the framework's"
    )
    h2o_keep: float = Field(default=1.0, gt=0, le=1, description="H2O heavy-hitter KV keep ratio (1 = full cache)")
    flash_attention: bool = True

    @model_validator(mode="after")
    def _layout(self) -> PredictRequest:
        tp = self.resolved_tp
        if self.num_gpus is not None and self.num_gpus % (tp * self.pp):
            raise ValueError(
                f"num_gpus: {self.num_gpus} is not a multiple of tp·pp = {tp * self.pp} (give a multiple of {tp * self.pp}, or leave num_gpus out)"
            )
        if self.concurrency is not None and "batch" in self.model_fields_set:
            raise ValueError(
                "concurrency: give a batch or a concurrency, not both (B requests submitted together, or C closed-loop clients)"
            )
        return self

    @property
    def resolved_tp(self) -> int:
        if self.tp is not None:
            return self.tp
        return max((self.num_gpus or 1) // self.pp, 1)

    @property
    def replicas(self) -> int:
        return (self.num_gpus or self.resolved_tp * self.pp) // (self.resolved_tp * self.pp)
