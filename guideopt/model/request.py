"""The planning request: one pydantic model behind both the CLI flags and constraints files.

Its structure is the constraints-file format of ``shared/docs/CONTRACT.md``.
"""

from __future__ import annotations

from enum import Enum

from pydantic import BaseModel, Field, StrictBool, ValidationInfo, field_validator, model_validator
from pydantic_core import PydanticCustomError

from guideopt.model.base import StrictModel
from guideopt.model.dtype import Dtype
from guideopt.model.framework import newest_per_engine
from guideopt.model.limits import (
    MAX_BATCH,
    MAX_BUDGET_USD_PER_HOUR,
    MAX_BURSTINESS,
    MAX_GPUS,
    MAX_PARALLEL_SIZE,
    MAX_SEQUENCE_TOKENS,
    MAX_SIMULATED_REQUESTS,
    MAX_SLO_MS,
    MAX_SLO_THROUGHPUT_TOK_S,
)
from guideopt.model.workload import (
    DEFAULT_NUM_REQUESTS,
    DEFAULT_PERCENTILE,
    POISSON_CV,
    Lengths,
    PercentileTargets,
    StreamWorkload,
    parse_percentile,
)
from guideopt.units import MS_PER_S


class Disaggregation(str, Enum):
    """Whether plans may split prefill and decode into two pools of workers (``disaggregation``)."""

    NEVER = "never"  # aggregated replicas only (the default)
    ALLOW = "allow"  # aggregated and disaggregated plans ranked together
    ONLY = "only"  # disaggregated plans only


class ObjectiveTerm(str, Enum):
    THROUGHPUT = "throughput"  # maximise whole-deployment output tokens/s
    LATENCY = "latency"  # minimise batch latency (per replica)
    TTFT = "ttft"
    TPOT = "tpot"
    COST = "cost"  # minimise $/hour
    USD_PER_MILLION_OUTPUT_TOKENS = "usd_per_million_output_tokens"  # minimise $/hour ÷ output tokens/hour × 10^6
    RATE = "rate"  # stream workloads: maximise the requests/s the plan sustains within the SLOs


DEFAULT_OBJECTIVE = (ObjectiveTerm.THROUGHPUT, ObjectiveTerm.LATENCY, ObjectiveTerm.COST)
# A stream at a given rate: the cheapest plan that serves it, then the lowest TTFT
# percentile, then the most headroom (requests/s it could sustain within the SLOs).
DEFAULT_STREAM_OBJECTIVE = (ObjectiveTerm.COST, ObjectiveTerm.TTFT, ObjectiveTerm.RATE)
DEFAULT_TP = (1, 2, 4, 8)
DEFAULT_PP = (1, 2, 4)
DEFAULT_TOP = 3
# Wall-clock limit of one plan request: a safety net only (issue 24). Searches are bounded
# by work (knapsack passes, CP-SAT deterministic time, simulation counts), so the same
# request gives the same plans on an idle or a loaded machine; measured plans take 0.1–3 s
# idle and up to three times that with two CPU-bound neighbours on two cores, so 60 s is
# only reached by a runaway search (then reported as `time_limit_reached`).
DEFAULT_TIME_LIMIT_S = 60.0
MAX_TIME_LIMIT_S = 3600.0
# Batch sizes the planner considers per replica when the workload leaves it free.
# Requests per verifying simulation run of a plan: ``simulate``'s default, so that each run is
# what `guideopt simulate --seed` replays at the plan's settings (a percentile SLO is judged per
# run; near capacity a shorter run sees less of the queue a longer one builds up).
VERIFY_NUM_REQUESTS = DEFAULT_NUM_REQUESTS
TRACE_SUFFIXES = (".csv", ".jsonl")  # a ``lengths`` string ending so is a trace file, else a mix id
MAX_LOAD_PROBE_RPS = 1e-3  # the load a ``rate_rps: max`` request is priced at while its highest load is searched
DEFAULT_BATCH_CHOICES = (1, 2, 4, 8, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512)


class Workload(StrictModel):
    """Offline (a static batch of fixed lengths; the default) or a request stream (``rate_rps``
    or ``concurrency`` given; lengths fixed by ``input_len``/``output_len`` or ``lengths``)."""

    # ``lengths`` comes first so that the length fields' validators see it
    # a string is shorthand (a mix id, or a trace file by its suffix), turned into Lengths on input
    lengths: Lengths | str | None = Field(
        default=None, description="stream: buckets, a length mix id or a trace file instead of input_len/output_len"
    )
    input_len: int | None = Field(
        default=None, gt=0, le=MAX_SEQUENCE_TOKENS, validate_default=True, description="prompt tokens per request"
    )
    output_len: int | None = Field(
        default=None, gt=0, le=MAX_SEQUENCE_TOKENS, validate_default=True, description="generated tokens per request"
    )
    batch: int | None = Field(
        default=None, gt=0, le=MAX_BATCH, description="fixed batch per replica; else the solver picks it (offline only)"
    )
    rate_rps: float | None = Field(
        default=None, gt=0, description="stream: mean arrival rate of the whole deployment, requests/s (max: the highest the budget serves)"
    )
    concurrency: int | None = Field(
        default=None, gt=0, description="stream: closed-loop clients of the whole deployment (max: the most the budget serves)"
    )
    burstiness: float = Field(
        default=POISSON_CV, gt=0, le=MAX_BURSTINESS, description="stream: coefficient of variation of inter-arrival times (1 = Poisson)"
    )
    num_requests: int = Field(
        default=VERIFY_NUM_REQUESTS, gt=0, le=MAX_SIMULATED_REQUESTS, description="stream: requests each verifying simulation samples"
    )
    seed: int = Field(default=0, ge=0, description="stream: seed of the verifying simulations")
    max_load: bool = Field(
        default=False,
        description="stream: find the highest load the budget and inventory serve within the SLOs (rate_rps: max or "
        "concurrency: max), and plan for it",
    )

    @model_validator(mode="before")
    @classmethod
    def _load_max(cls, data):
        """``rate_rps: max`` / ``concurrency: max``: search the load (``max_load``); the probe load
        that stands in meanwhile is the smallest one (one milli-request/s, or one client)."""
        if not isinstance(data, dict):
            return data
        out = dict(data)
        for key, probe in (("rate_rps", MAX_LOAD_PROBE_RPS), ("concurrency", 1)):
            if isinstance(out.get(key), str) and out[key].strip().lower() == "max":
                out[key], out["max_load"] = probe, True
        return out

    @field_validator("lengths", mode="before")
    @classmethod
    def _lengths_shorthand(cls, value):
        """``lengths: sharegpt`` names a mix; ``lengths: trace.csv`` (or .jsonl) a trace file."""
        if isinstance(value, str):
            return {"file": value} if value.lower().endswith(TRACE_SUFFIXES) else {"mix": value}
        return value

    @field_validator("input_len", "output_len")
    @classmethod
    def _required_without_lengths(cls, value: int | None, info: ValidationInfo) -> int | None:
        if value is None and info.data.get("lengths") is None:
            raise PydanticCustomError("missing", "Field required (or, for a stream, give lengths)")
        return value

    @model_validator(mode="after")
    def _lengths_given_once(self) -> Workload:
        fixed = self.input_len is not None or self.output_len is not None
        if self.lengths is not None and fixed:
            raise ValueError("give input_len/output_len or lengths, not both")
        if self.rate_rps is not None and self.concurrency is not None:
            raise ValueError("give rate_rps or concurrency, not both")
        if not self.is_stream and self.lengths is not None:
            raise ValueError("lengths describe a stream: give rate_rps or concurrency too")
        if self.is_stream and self.batch is not None:
            raise ValueError("batch is for offline workloads; a stream's running-request cap is chosen by the solver")
        return self

    @property
    def length_spec(self) -> Lengths | None:
        """``lengths`` as validated (never the string shorthand: it is expanded on input)."""
        return self.lengths if isinstance(self.lengths, Lengths) else None

    @property
    def is_stream(self) -> bool:
        return self.rate_rps is not None or self.concurrency is not None

    def stream(self) -> StreamWorkload:
        """The phase-1 stream schema of this workload (a stream only)."""
        lengths = self.length_spec or Lengths(input_len=self.input_len, output_len=self.output_len)
        return StreamWorkload(
            rate_rps=self.rate_rps,
            concurrency=self.concurrency,
            burstiness=self.burstiness,
            lengths=lengths,
            num_requests=self.num_requests,
            seed=self.seed,
        )


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
    ep: list[int] | None = Field(
        default=None,
        min_length=1,
        description="MoE models: allowed expert-parallel sizes (default: experts split by TP only, or one expert rank per GPU)",
    )
    attention_dp: list[int] | None = Field(
        default=None, min_length=1, description="MoE models: allowed attention data-parallel ranks per replica (default 1-64)"
    )

    @field_validator("tp", "pp", "ep", "attention_dp")
    @classmethod
    def _positive(cls, values: list[int] | None) -> list[int] | None:
        if values is None:
            return None
        bad = [v for v in values if v < 1]
        if bad:
            raise ValueError(f"values must be >= 1, got {bad}")
        big = [v for v in values if v > MAX_PARALLEL_SIZE]
        if big:
            raise ValueError(f"values must be at most {MAX_PARALLEL_SIZE}, got {big} (no scale-up domain is larger)")
        return sorted(set(values))


SloValue = float | dict[str, float]


class Slo(StrictModel):
    """Latency bounds. Offline: plain numbers bound the static batch's TTFT/TPOT. Stream: a
    plain number bounds the ``percentile``-th percentile; ``{p90: 800, p99: 1500}`` bounds
    each percentile named."""

    ttft_ms: SloValue | None = Field(default=None, description="ms; or per percentile, e.g. {p90: 800}")
    tpot_ms: SloValue | None = Field(default=None, description="ms; or per percentile, e.g. {p99: 60}")
    batch_latency_s: float | None = Field(default=None, gt=0, le=MAX_SLO_MS / MS_PER_S)
    min_output_throughput_tok_s: float | None = Field(default=None, gt=0, le=MAX_SLO_THROUGHPUT_TOK_S)
    percentile: float = Field(default=DEFAULT_PERCENTILE, gt=0, lt=100, description="stream: the percentile a plain SLO number bounds")

    @field_validator("ttft_ms", "tpot_ms")
    @classmethod
    def _positive_bounds(cls, value: SloValue | None) -> SloValue | None:
        if isinstance(value, dict):
            if not value:
                raise ValueError("give at least one percentile, e.g. {p90: 800}")
            out = {}
            for key, bound in value.items():
                parse_percentile(key, str(key))
                if bound <= 0:
                    raise ValueError(f"{key}: {bound} must be > 0 ms")
                if bound > MAX_SLO_MS:
                    raise ValueError(f"{key}: {bound} must be <= {MAX_SLO_MS:,.0f} ms")
                out[str(key)] = float(bound)
            return out
        if value is not None and value <= 0:
            raise ValueError("must be > 0 ms")
        if value is not None and value > MAX_SLO_MS:
            raise ValueError(f"must be <= {MAX_SLO_MS:,.0f} ms")
        return value

    def stream_targets(self) -> dict[str, PercentileTargets]:
        """Per metric, the bounds per percentile a stream must meet."""
        out: dict[str, PercentileTargets] = {}
        for metric in ("ttft_ms", "tpot_ms"):
            value = getattr(self, metric)
            if isinstance(value, dict):
                out[metric] = PercentileTargets(targets={parse_percentile(k, f"slo.{metric}.{k}"): v for k, v in value.items()})
            elif value is not None:
                out[metric] = PercentileTargets(targets={self.percentile: float(value)})
        return out


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
    heterogeneous: StrictBool = False  # true/false only: "yes" or 1 is refused, as on every input surface
    disaggregation: Disaggregation = Field(
        default=Disaggregation.NEVER, description="never | allow | only: plans with separate prefill and decode pools (request streams)"
    )
    time_limit_s: float = Field(
        default=DEFAULT_TIME_LIMIT_S,
        gt=0,
        le=MAX_TIME_LIMIT_S,
        description=(
            "wall-clock safety net of the search (searches are bounded by work); when it hits, the plans found so far "
            "come back with status feasible"
        ),
    )
    robust: StrictBool = Field(
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

    @model_validator(mode="before")
    @classmethod
    def _stream_objective(cls, data):
        """A stream with no objective given: the cheapest plan for its rate first."""
        if isinstance(data, dict) and "objective" not in data:
            wl = data.get("workload")
            wl = wl.model_dump() if isinstance(wl, BaseModel) else wl
            if isinstance(wl, dict) and (wl.get("rate_rps") is not None or wl.get("concurrency") is not None):
                data = {**data, "objective": list(DEFAULT_STREAM_OBJECTIVE)}
        return data

    @model_validator(mode="after")
    def _slo_forms(self) -> PlanRequest:
        if self.workload.is_stream:
            return self
        for metric in ("ttft_ms", "tpot_ms"):
            if isinstance(getattr(self.slo, metric), dict):
                raise ValueError(f"slo.{metric}: per-percentile bounds need a stream (give workload.rate_rps), or give one number")
        if ObjectiveTerm.RATE in self.objective:
            raise ValueError("objective: rate needs a stream (give workload.rate_rps or workload.concurrency)")
        return self

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
        """Engine versions to plan over: 'any' is the newest version of each engine family (never
        every version of each); named ids, older versions included, are taken as given."""
        if self.framework == "any":
            return newest_per_engine(known)
        return [self.framework] if isinstance(self.framework, str) else list(self.framework)
