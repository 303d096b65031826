"""One configuration to predict (``guideopt predict``, ``predict --csv`` rows, ``validate``):
the contract's predict flags and CSV columns, layouts included."""

from __future__ import annotations

from pydantic import Field, model_validator

from guideopt.model.base import StrictModel
from guideopt.model.dtype import Dtype
from guideopt.model.limits import MAX_BATCH, MAX_GPUS, MAX_PARALLEL_SIZE, MAX_SEQUENCE_TOKENS


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
    attention_dp: int = Field(default=1, gt=0, le=MAX_PARALLEL_SIZE, description="attention data-parallel ranks per replica")
    moe_tp: int | None = Field(default=None, gt=0, le=MAX_PARALLEL_SIZE, description="TP of each expert; default tp·attention_dp/moe_ep")
    moe_ep: int = Field(default=1, gt=0, le=MAX_PARALLEL_SIZE, description="expert-parallel ranks of the MoE layers")

    @model_validator(mode="after")
    def _layout(self) -> PredictRequest:
        tp = self.resolved_tp
        per_replica = tp * self.attention_dp * self.pp
        if self.num_gpus is not None and self.num_gpus % per_replica:
            what = "tp·attention_dp·pp" if self.attention_dp > 1 else "tp·pp"
            raise ValueError(
                f"num_gpus: {self.num_gpus} is not a multiple of {what} = {per_replica} (give a multiple of {per_replica}, or leave num_gpus out)"
            )
        stage = tp * self.attention_dp
        if stage % self.moe_ep:
            raise ValueError(
                f"moe_ep: {self.moe_ep} does not divide the {stage} GPUs of a stage (tp × attention_dp; use a moe_ep that divides {stage})"
            )
        if self.moe_tp is not None and self.moe_tp * self.moe_ep != stage:
            raise ValueError(
                f"moe_tp: moe_tp × moe_ep must equal tp × attention_dp = {stage} GPUs per stage "
                f"(got moe_tp {self.moe_tp}, moe_ep {self.moe_ep}; use moe_tp {stage // self.moe_ep} or leave it out)"
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
        return max((self.num_gpus or 1) // (self.pp * self.attention_dp), 1)

    @property
    def replicas(self) -> int:
        per_replica = self.resolved_tp * self.attention_dp * self.pp
        return (self.num_gpus or per_replica) // per_replica
