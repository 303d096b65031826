"""What an engine version can run on a GPU, from its catalog capabilities.

Each check returns ``None`` when the combination runs, else the reason in words (naming the
engine, GPU and what is allowed instead). The option tables mask rows with these checks, so
the solver, ``predict`` and the infeasibility explanation all refuse the same things.
"""

from __future__ import annotations

from guideopt.model.dtype import Dtype
from guideopt.model.framework import Framework
from guideopt.model.gpu import Gpu


def _archs(archs: list[str]) -> str:
    return ", ".join(archs) if archs else "none"


def gpu_precision_reason(gpu: Gpu, dtype: Dtype) -> str | None:
    """A 16-bit precision the GPU's hardware lacks (catalog ``peak_tflops`` null): bf16 on
    Volta/Turing. fp8/fp4/int8/int4 weights may still run weight-only; the engines decide."""
    if dtype is Dtype.BF16 and gpu.peak_tflops.bf16 is None:
        return f"{gpu.id} ({gpu.arch}) has no bf16 support (use fp16)"
    return None


def runs_on_reason(fw: Framework, gpu: Gpu) -> str | None:
    cap = fw.capabilities
    if gpu.vendor.value not in fw.vendors:
        return f"{fw.id} does not run on {gpu.vendor.value.upper()} GPUs ({gpu.id})"
    if gpu.arch not in cap.architectures:
        return f"{fw.id} does not run on {gpu.arch} GPUs ({gpu.id}); it runs on {_archs(cap.architectures)}"
    return None


def weights_reason(fw: Framework, gpu: Gpu, dtype: Dtype) -> str | None:
    """Why ``fw`` cannot serve ``dtype`` weights on ``gpu`` (None: it can)."""
    reason = runs_on_reason(fw, gpu) or gpu_precision_reason(gpu, dtype)
    if reason:
        return reason
    archs = fw.capabilities.weight_dtypes.get(dtype.value)
    if archs is None:
        return f"{fw.id}: {dtype.value} weights not supported; allowed: {', '.join(fw.capabilities.weight_dtypes)} (or another engine)"
    if gpu.arch not in archs:
        return (
            f"{fw.id}: {dtype.value} weights not supported on {gpu.arch} GPUs ({gpu.id}); allowed on {_archs(archs)} "
            f"(choose such a GPU, or a precision {fw.id} serves on {gpu.id}: {_served_on(fw, gpu)})"
        )
    return None


def _served_on(fw: Framework, gpu: Gpu) -> str:
    """The weight precisions ``fw`` serves on ``gpu``."""
    ok = [d for d, archs in fw.capabilities.weight_dtypes.items() if gpu.arch in archs and gpu_precision_reason(gpu, Dtype(d)) is None]
    return ", ".join(ok) or "none"


def kv_reason(fw: Framework, gpu: Gpu, weights: Dtype, kv: Dtype) -> str | None:
    """Why ``fw`` cannot keep a ``kv`` KV cache beside ``weights`` on ``gpu`` (None: it can)."""
    cap = fw.capabilities
    if kv is weights and kv.is_float16:
        return None
    if cap.kv_follows_weights:
        return f"{fw.id}: {kv.value} KV cache not supported; allowed: the weights' dtype ({weights.value})"
    if kv.is_float16:
        return gpu_precision_reason(gpu, kv)  # the engine's 16-bit "auto" KV beside quantized weights
    archs = cap.kv_dtypes.get(kv.value)
    if archs is None:
        return f"{fw.id}: {kv.value} KV cache not supported; allowed: 16-bit"
    if gpu.arch not in archs:
        return f"{fw.id}: {kv.value} KV cache not supported on {gpu.arch} GPUs ({gpu.id}); allowed on {_archs(archs)}"
    return None


def option_reason(fw: Framework, gpu: Gpu, weights: Dtype, kv: Dtype) -> str | None:
    """The first reason ``fw`` cannot run ``weights`` weights with a ``kv`` KV cache on ``gpu``."""
    return weights_reason(fw, gpu, weights) or kv_reason(fw, gpu, weights, kv)


def layout_reason(fw: Framework, *, pp: int, gpus_per_replica: int, gpus_per_node: int) -> str | None:
    cap = fw.capabilities
    if pp > 1 and not cap.pipeline_parallel:
        return f"{fw.id} has no pipeline parallelism (use pp 1)"
    if gpus_per_replica > gpus_per_node and not cap.multi_node:
        return f"{fw.id} does not run one replica across nodes ({gpus_per_replica} GPUs > {gpus_per_node} per node)"
    return None


def moe_layout_reason(
    fw: Framework,
    *,
    attention_dp: int,
    moe_ep: int,
    gpus_per_replica: int,
    gpus_per_node: int,
    tp: int | None = None,
    moe_tp: int | None = None,
) -> str | None:
    """Why ``fw`` cannot run attention DP ``attention_dp`` with experts split over ``moe_ep`` ranks
    of ``moe_tp`` GPUs in a replica of ``gpus_per_replica`` GPUs (None: it can, or the layout is
    plain TP). ``tp`` is the attention TP inside each DP rank; ``tp``/``moe_tp`` None: not checked."""
    cap = fw.capabilities
    name = f"{fw.id} ({fw.name} {fw.version})"
    if moe_ep > 1 and not cap.expert_parallel:
        return f"{name} has no expert parallelism (use moe_ep 1, or an engine version with EP)"
    if attention_dp > 1 and not cap.attention_dp:
        return f"{name} has no attention data parallelism (use attention_dp 1, or an engine version with it)"
    if attention_dp > 1 and tp is not None and tp > 1 and not cap.attention_tp_with_dp:
        return f"{name} runs attention DP with one GPU per rank (use tp 1 with attention_dp {attention_dp * tp})"
    if moe_ep > 1 and moe_tp is not None and moe_tp > 1 and not cap.moe_tp_with_ep:
        return f"{name} splits the experts over every GPU of the instance with EP (use moe_tp 1, moe_ep {moe_ep * moe_tp})"
    if (moe_ep > 1 or attention_dp > 1) and gpus_per_replica > gpus_per_node and not cap.multi_node_ep:
        return (
            f"{name} does not run expert parallelism or attention DP across nodes "
            f"({gpus_per_replica} GPUs > {gpus_per_node} per node; keep the EP group on one node)"
        )
    return None


def mixed_pipeline_reason(fw: Framework, a: Gpu, b: Gpu, tp_a: int, tp_b: int) -> str | None:
    """Why one ``fw`` instance cannot pipeline stage A on ``a`` into stage B on ``b``."""
    cap = fw.capabilities
    if not cap.mixed_type_pipeline:
        return f"{fw.id} cannot run one pipeline over two GPU types"
    if a.vendor is not b.vendor:
        return f"one {fw.id} instance cannot span {a.vendor.value.upper()} ({a.id}) and {b.vendor.value.upper()} ({b.id}) GPUs"
    if cap.uniform_stage_tp and tp_a != tp_b:
        return f"{fw.id} uses one TP size for every pipeline stage"
    return None


def request_refusal(fw: Framework, gpu: Gpu, *, weights: Dtype, kv: Dtype, pp: int, gpus_per_replica: int) -> tuple[str, str] | None:
    """(request field, reason) when ``fw`` cannot run this one configuration (predict, capacity)."""
    if reason := runs_on_reason(fw, gpu):
        return "framework", reason
    if reason := layout_reason(fw, pp=pp, gpus_per_replica=gpus_per_replica, gpus_per_node=gpu.gpus_per_node):
        return ("pp" if pp > 1 and not fw.pipeline_parallel else "tp"), reason
    if reason := weights_reason(fw, gpu, weights):
        return "dtype", reason
    if reason := kv_reason(fw, gpu, weights, kv):
        return "kv_dtype", reason
    return None
