"""The command that starts ONE replica of a plan group, from the engine's catalog entry.

Each engine's ``launch`` block (catalogs/frameworks/*.yaml) holds its command template, its
precision arguments and the version they were written for; nothing engine-specific lives
here but the names of the template fields.
"""

from __future__ import annotations

from typing import Any

from guideopt.costs.capability import kv_reason, layout_reason, mixed_pipeline_reason, moe_layout_reason, weights_reason
from guideopt.costs.engine_defaults import memory_fraction
from guideopt.io.launch.roles import role_options
from guideopt.model.dtype import Dtype
from guideopt.model.framework import Framework
from guideopt.model.gpu import Gpu
from guideopt.model.launch import EngineLaunch
from guideopt.model.plan import Group

HOST = "0.0.0.0"  # listen on every interface: a router or load balancer sits in front
MULTI_GPU_MARKER = "mixed"  # Group.gpu of a replica whose pipeline spans GPU types (contract)

# DeepSpeed-MII side ports (its defaults, mii/config.py), moved per replica so that
# co-located replicas do not collide: gRPC port_number 50050, torch_dist_port 29500,
# zmq_port_number 25555. MII also opens one port per TP worker after port_number, so each
# replica gets a block of 16 (its load-balancer port plus up to 15 workers; TP <= 8 here).
MII_GRPC_BASE_PORT = 50050
MII_GRPC_PORTS_PER_REPLICA = 16
MII_TORCH_DIST_BASE_PORT = 29500
MII_ZMQ_BASE_PORT = 25555


def sequences_per_pass(group: Group, launch: EngineLaunch) -> int:
    """The engine's cap on sequences in flight: the planned batch, unless the engine
    refuses more sequences than its token budget per pass."""
    return min(group.batch, group.split) if launch.seqs_capped_by_split else group.batch


def replica_gpu_count(group: Group) -> int:
    """GPUs of one replica: tp x attention_dp x pp."""
    return group.tp * group.attention_dp * group.pp


def moe_tp(group: Group) -> int:
    """GPUs each expert is split over: the plan's, else what EP leaves of tp x attention_dp."""
    return group.moe_tp or max(1, group.tp * group.attention_dp // group.moe_ep)


def is_moe_layout(group: Group) -> bool:
    return group.attention_dp > 1 or group.moe_ep > 1


def options_yaml(group: Group, launch: EngineLaunch) -> str:
    """The LLM API options file (TensorRT-LLM) of this group: KV precision and MoE layout; "" when none."""
    parts = [launch.kv_dtype_options.get(group.kv_dtype, "")]
    if launch.moe_options and is_moe_layout(group):
        on = "true" if group.attention_dp > 1 else "false"
        parts.append(launch.moe_options.format(attention_dp_on=on, moe_ep=group.moe_ep, moe_tp=moe_tp(group)))
    if launch.extra_options_arg:  # a disaggregated worker's KV transceiver (TensorRT-LLM)
        parts.append(role_options(group))
    return "".join(p if p.endswith("\n") else p + "\n" for p in parts if p)


def _moe_args(group: Group, launch: EngineLaunch) -> list[str]:
    out = []
    if group.attention_dp > 1 and launch.attention_dp_args:
        out.append(launch.attention_dp_args.format(attention_dp=group.attention_dp))
    if group.moe_ep > 1 and launch.expert_parallel_args:
        out.append(launch.expert_parallel_args.format(moe_ep=group.moe_ep))
    return out


def _py_literal(value: Any) -> str:
    """A Python literal that survives inside the single-quoted ``python -c`` program."""
    return repr(value).replace("'", '"')


def replica_command(
    group: Group,
    fw: Framework,
    port: int,
    gpus: tuple[int, ...] | None,
    *,
    fraction: float,
    max_len: int | None = None,
    slot: int = 0,
    name: str = "replica",
) -> str:
    """The shell line that starts ONE replica of ``group`` on ``fw`` (its model is ``$MODEL``).

    ``slot`` numbers the replica within its plan; engines that open side ports (MII)
    offset them by it. ``max_len`` (input + output tokens) caps the context so that the
    engine sizes its KV cache for the planned sequences.
    """
    launch = fw.launch
    extra = [launch.dtype_args.get(group.dtype, ""), launch.kv_dtype_args.get(group.kv_dtype, "")]
    max_len_text = launch.max_len_arg.format(max_len=max_len) if max_len and launch.max_len_arg else ""
    if max_len_text and "{max_len}" not in launch.command:
        extra.append(max_len_text)
    extra += _moe_args(group, launch)
    if options_yaml(group, launch):
        extra.append(launch.extra_options_arg.format(path='"$EXTRA_OPTIONS"'))
    device_map = {"localhost": [list(gpus)]} if gpus is not None else "auto"
    command = launch.command.format(
        tp=group.tp * group.attention_dp if launch.tp_counts_attention_dp else group.tp,
        pp=group.pp,
        batch=group.batch,
        split=group.split,
        fraction=f"{fraction:g}",
        host=HOST,
        port=port,
        max_len=max_len_text,
        seqs=sequences_per_pass(group, launch),
        name=name,
        device_map=_py_literal(device_map),
        grpc_port=MII_GRPC_BASE_PORT + slot * MII_GRPC_PORTS_PER_REPLICA,
        dist_port=MII_TORCH_DIST_BASE_PORT + slot,
        zmq_port=MII_ZMQ_BASE_PORT + slot,
        max_context=max(launch.max_context_default or 0, max_len or 0),
    )
    return " ".join([command] + [e for e in extra if e])


def planned_fraction(fw: Framework, gpu: Gpu, group: Group) -> float:
    """The memory fraction the plan's memory prediction assumed for this group."""
    # SGLang sizes its reserve by tp_size: every GPU of a stage, attention-DP ranks included
    return float(memory_fraction(fw, gpu_memory_bytes=gpu.memory_bytes, tp=group.tp * group.attention_dp, pp=group.pp, split=group.split))


def blocker(group: Group, fw: Framework, gpus: list[Gpu]) -> str | None:
    """Why ``fw`` cannot run ``group`` as planned (None: it can). The planner never returns
    such a group; a hand-edited plan can."""
    weights, kv = Dtype(group.dtype), Dtype(group.kv_dtype)
    for gpu in gpus:
        reason = weights_reason(fw, gpu, weights) or kv_reason(fw, gpu, weights, kv)
        if reason:
            return reason
    node = min(g.gpus_per_node for g in gpus)
    per_replica = replica_gpu_count(group) if len(gpus) == 1 else group.tp * group.attention_dp
    reason = layout_reason(fw, pp=group.pp, gpus_per_replica=per_replica, gpus_per_node=node) or moe_layout_reason(
        fw,
        attention_dp=group.attention_dp,
        moe_ep=group.moe_ep,
        gpus_per_replica=per_replica,
        gpus_per_node=node,
        tp=group.tp,
        moe_tp=moe_tp(group) if group.moe_ep > 1 else None,
    )
    if reason is None and is_moe_layout(group) and len(gpus) > 1:
        reason = "an expert-parallel or attention-DP layout cannot pipeline over two GPU types here"
    if reason is None and len(gpus) > 1:
        stages = group.stages or []
        reason = mixed_pipeline_reason(fw, gpus[0], gpus[-1], stages[0]["tp"], stages[-1]["tp"])
    return reason


def notes(group: Group, fw: Framework, ships_quantized: bool = False) -> list[str]:
    """Caveats written into the script and PLAN.md (``ships_quantized``: the model's own checkpoint
    is already in the planned precision, as DeepSeek-R1 in FP8 and gpt-oss in MXFP4)."""
    launch = fw.launch
    out = []
    if group.dtype in launch.pre_quantized and not ships_quantized:
        out.append(f"MODEL must name {launch.pre_quantized[group.dtype]}; the 16-bit checkpoint will not do")
    handled = set(launch.kv_dtype_args) | set(launch.kv_dtype_options)
    if not Dtype(group.kv_dtype).is_float16 and group.kv_dtype not in handled and not fw.capabilities.kv_follows_weights:
        out.append(f"the plan assumes a {group.kv_dtype} KV cache, which {fw.name} {launch.version} cannot be told from this command line")
    if sequences_per_pass(group, launch) < group.batch:
        out.append(
            f"{fw.name} allows at most {group.split} sequences per pass (its token budget), so the batch of "
            f"{group.batch} runs {group.split} at a time"
        )
    return out
