"""One disaggregated deployment to predict (a ``predict --csv`` row with the prefill and decode
worker columns, as in aiconfigurator's silicon sample): x prefill workers and y decode
workers of one engine and precision on one GPU type, each role with its own layout, under a
load given as closed-loop clients (``concurrency``) or open-loop requests/s (``rate_rps``)."""

from __future__ import annotations

from pydantic import Field, model_validator

from guideopt.model.base import StrictModel
from guideopt.model.dtype import Dtype
from guideopt.model.limits import MAX_BATCH, MAX_GPUS, MAX_PARALLEL_SIZE, MAX_RATE_REQ_S, MAX_SEQUENCE_TOKENS

ROLES = ("prefill", "decode")
ROLE_FIELDS = ("workers", "tp", "attention_dp", "moe_ep")
DISAGG_FIELDS = tuple(f"{role}_{f}" for role in ROLES for f in ROLE_FIELDS)
# Columns of an aggregated row that a disaggregated one replaces by its per-role columns.
AGGREGATED_ONLY = ("tp", "pp", "batch", "attention_dp", "moe_tp", "moe_ep")


class DisaggPredictRequest(StrictModel):
    """One disaggregated deployment. Worker counts may be given as 0 so that the refusal
    names the field ("x or y of zero"); every other size is at least 1."""

    model: str = Field(min_length=1)
    gpu: str = Field(min_length=1)
    num_gpus: int | None = Field(default=None, gt=0, le=MAX_GPUS, description="both pools' GPUs (checked when given)")
    framework: str = "vllm"
    dtype: Dtype = Dtype.FP16
    kv_dtype: Dtype | None = None
    input_len: int = Field(gt=0, le=MAX_SEQUENCE_TOKENS)
    output_len: int = Field(gt=0, le=MAX_SEQUENCE_TOKENS)
    split: int | None = Field(default=None, gt=0, le=MAX_SEQUENCE_TOKENS, description="the prefill worker's token budget per pass")
    concurrency: int | None = Field(default=None, gt=0, le=MAX_BATCH, description="closed-loop clients of the whole deployment")
    rate_rps: float | None = Field(default=None, gt=0, le=MAX_RATE_REQ_S, description="open-loop (Poisson) requests/s")
    prefill_workers: int = Field(ge=0, le=MAX_GPUS)
    prefill_tp: int = Field(default=1, gt=0, le=MAX_PARALLEL_SIZE)
    prefill_attention_dp: int = Field(default=1, gt=0, le=MAX_PARALLEL_SIZE)
    prefill_moe_ep: int = Field(default=1, gt=0, le=MAX_PARALLEL_SIZE)
    decode_workers: int = Field(ge=0, le=MAX_GPUS)
    decode_tp: int = Field(default=1, gt=0, le=MAX_PARALLEL_SIZE)
    decode_attention_dp: int = Field(default=1, gt=0, le=MAX_PARALLEL_SIZE)
    decode_moe_ep: int = Field(default=1, gt=0, le=MAX_PARALLEL_SIZE)

    @model_validator(mode="after")
    def _checks(self) -> DisaggPredictRequest:
        for role in ROLES:
            if self.workers(role) == 0:
                raise ValueError(f"{role}_workers: a disaggregated deployment needs at least 1 {role} worker (give {role}_workers >= 1)")
        if (self.concurrency is None) == (self.rate_rps is None):
            raise ValueError("concurrency: give the load as concurrency (closed-loop clients) or rate_rps (requests/s), one of them")
        if self.num_gpus is not None and self.num_gpus != self.total_gpus:
            raise ValueError(
                f"num_gpus: {self.num_gpus} is not prefill_workers·prefill_tp·prefill_attention_dp + "
                f"decode_workers·decode_tp·decode_attention_dp = {self.total_gpus} (give {self.total_gpus} or leave it out)"
            )
        return self

    def workers(self, role: str) -> int:
        return int(getattr(self, f"{role}_workers"))

    def worker_gpus(self, role: str) -> int:
        """GPUs of one worker of ``role``: tp × attention_dp."""
        return int(getattr(self, f"{role}_tp")) * int(getattr(self, f"{role}_attention_dp"))

    @property
    def total_gpus(self) -> int:
        return sum(self.workers(r) * self.worker_gpus(r) for r in ROLES)
