"""Launch scripts for a plan: the engine command that starts each replica, and a PLAN.md.

For every plan group this renders the command that starts ONE replica on its engine with
the planned layout (TP, PP), batch (max sequences), split (token budget per forward pass)
and memory fraction, then starts ``replicas`` of them, each on its own GPUs and port.

Engine command lines change between releases, so each engine's template names the version
it was written for (``EngineCli.version``); that version goes into every script header.
The memory fraction passed is the catalog profile's (what the memory prediction assumed),
so the engine reserves the KV cache the plan was sized for.
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from guideopt.catalog import Catalog, load_catalog
from guideopt.errors import CatalogError, InvalidRequestError
from guideopt.model.plan import Group, Plan, PlanResult
from guideopt.model.request import PlanRequest
from guideopt.model.validation import validated

# First HTTP port of a plan; every replica of the plan gets the next one, so that groups
# sharing a host never collide. 8000 is vLLM's and trtllm-serve's default port.
BASE_PORT = 8000
HOST = "0.0.0.0"  # listen on every interface: a router or load balancer sits in front
PLAN_FILE = "PLAN.md"
SCRIPT_MODE = 0o755  # rwx for the owner, r-x for the rest
MULTI_GPU_MARKER = "mixed"  # Group.gpu of a replica whose pipeline spans GPU types

# DeepSpeed-MII side ports (its defaults), moved per replica so that co-located replicas
# do not collide: gRPC port_number 50050, torch.distributed 29500, ZMQ 25555. MII also
# opens one port per TP worker after port_number, so each replica gets a block of 16
# (its load-balancer port plus up to 15 workers; TP is at most 8 here).
MII_GRPC_BASE_PORT = 50050
MII_GRPC_PORTS_PER_REPLICA = 16
MII_TORCH_DIST_BASE_PORT = 29500
MII_ZMQ_BASE_PORT = 25555


@dataclass(frozen=True)
class EngineCli:
    """How one engine is started from the shell, for the version it was written for."""

    engine: str  # framework id in the catalog
    name: str
    version: str  # engine release whose documented CLI the template follows
    template: str  # one replica; str.format fields: tp pp batch split fraction port host max_len seqs
    max_len_arg: str  # appended when the request gives lengths ("" when the engine has none)
    dtype_args: Mapping[str, str]  # weight precision -> extra arguments
    kv_dtype_args: Mapping[str, str]  # KV-cache precision -> extra arguments
    dtype_notes: Mapping[str, str] = field(default_factory=dict)  # precision -> what the user must provide
    supports_pp: bool = True
    selects_gpus_by_env: bool = True  # False: the engine takes GPU indices itself (MII's device_map)
    seqs_capped_by_split: bool = False  # the engine refuses more sequences per pass than tokens per pass


_PRE_QUANTIZED = "MODEL must be a pre-quantized {what} checkpoint; the engine reads the method from its config.json"
_INT4 = _PRE_QUANTIZED.format(what="4-bit AWQ or GPTQ")
_INT8 = _PRE_QUANTIZED.format(what="8-bit (W8A8 / SmoothQuant)")

# vLLM 0.11 `vllm serve` (docs.vllm.ai serve CLI / EngineArgs). --dtype takes
# auto|half|float16|bfloat16|float|float32; --quantization fp8 quantizes a 16-bit checkpoint
# online; --kv-cache-dtype takes auto|fp8|fp8_e4m3|fp8_e5m2.
VLLM = EngineCli(
    engine="vllm",
    name="vLLM",
    version="0.11",
    template=(
        'vllm serve "$MODEL" --tensor-parallel-size {tp} --pipeline-parallel-size {pp} --max-num-seqs {seqs}'
        " --max-num-batched-tokens {split} --gpu-memory-utilization {fraction} --host {host} --port {port}"
    ),
    max_len_arg="--max-model-len {max_len}",
    dtype_args={"fp16": "--dtype float16", "bf16": "--dtype bfloat16", "fp8": "--quantization fp8"},
    kv_dtype_args={"fp8": "--kv-cache-dtype fp8"},
    dtype_notes={"int4": _INT4, "int8": _INT8},
    seqs_capped_by_split=True,  # SchedulerConfig: max_num_batched_tokens must be >= max_num_seqs
)

# SGLang 0.5 `python -m sglang.launch_server` (server_args.py). --pp-size exists from about
# 0.4.8; --kv-cache-dtype takes auto|fp8_e5m2|fp8_e4m3 (no plain "fp8").
SGLANG = EngineCli(
    engine="sglang",
    name="SGLang",
    version="0.5",
    template=(
        'python -m sglang.launch_server --model-path "$MODEL" --tp-size {tp} --pp-size {pp}'
        " --max-running-requests {batch} --chunked-prefill-size {split} --mem-fraction-static {fraction}"
        " --host {host} --port {port}"
    ),
    max_len_arg="--context-length {max_len}",
    dtype_args={"fp16": "--dtype float16", "bf16": "--dtype bfloat16", "fp8": "--quantization fp8"},
    kv_dtype_args={"fp8": "--kv-cache-dtype fp8_e4m3"},
    dtype_notes={"int4": _INT4, "int8": _INT8},
)

# TensorRT-LLM 1.0 `trtllm-serve` (PyTorch backend). It has no precision flags: the
# precision comes from the checkpoint; an FP8 KV cache is set through
# --extra_llm_api_options (kv_cache_config.dtype: fp8).
_TRT_QUANT = "MODEL must be a checkpoint quantized to {what} with TensorRT Model Optimizer (trtllm-serve has no precision flag)"
TRTLLM = EngineCli(
    engine="trtllm",
    name="TensorRT-LLM",
    version="1.0",
    template=(
        'trtllm-serve "$MODEL" --tp_size {tp} --pp_size {pp} --max_batch_size {batch} --max_num_tokens {split}'
        " --kv_cache_free_gpu_memory_fraction {fraction} --host {host} --port {port}"
    ),
    max_len_arg="--max_seq_len {max_len}",
    dtype_args={},
    kv_dtype_args={},
    dtype_notes={
        "fp16": "weights load in the checkpoint's 16-bit dtype (set dtype: float16 in --extra_llm_api_options to force fp16)",
        "bf16": "weights load in the checkpoint's 16-bit dtype (set dtype: bfloat16 in --extra_llm_api_options to force bf16)",
        "fp8": _TRT_QUANT.format(what="FP8"),
        "int8": _TRT_QUANT.format(what="INT8"),
        "int4": _TRT_QUANT.format(what="INT4 AWQ"),
    },
)

# DeepSpeed-MII 0.3 (FastGen, `mii.serve`). MII ignores CUDA_VISIBLE_DEVICES (its config
# says so) and takes GPU indices in device_map; the ragged engine's token budget is
# state_manager.max_ragged_batch_size and its sequence cap max_ragged_sequence_count
# (which must not exceed the token budget). No pipeline parallelism, 16-bit weights only.
FASTGEN = EngineCli(
    engine="fastgen",
    name="DeepSpeed-MII (FastGen)",
    version="0.3",
    template=(
        'python -c \'import os, mii; mii.serve(os.environ["MODEL"], deployment_name="{name}", tensor_parallel={tp},'
        " replica_num=1, device_map={device_map}, {max_len}enable_restful_api=True, restful_api_port={port},"
        " port_number={grpc_port}, torch_dist_port={dist_port}, zmq_port_number={zmq_port},"
        ' inference_engine_config={{"state_manager": {{"max_ragged_batch_size": {split},'
        ' "max_ragged_sequence_count": {seqs}}}}})\''
    ),
    max_len_arg="max_length={max_len}, ",
    dtype_args={"fp16": "", "bf16": ""},
    kv_dtype_args={},
    supports_pp=False,
    selects_gpus_by_env=False,
    seqs_capped_by_split=True,  # DSStateManagerConfig: max_ragged_sequence_count <= max_ragged_batch_size
)

ENGINES: dict[str, EngineCli] = {e.engine: e for e in (VLLM, SGLANG, TRTLLM, FASTGEN)}
_16_BIT = ("fp16", "bf16")


def engine_cli(engine: str) -> EngineCli:
    """The launch template of an engine id; unknown ids are a catalog error."""
    try:
        return ENGINES[engine]
    except KeyError:
        raise CatalogError(f"framework {engine!r} has no launch template (known: {', '.join(sorted(ENGINES))})") from None


@dataclass(frozen=True)
class Replica:
    index: int
    node: int  # which launch host of the group (0 when the group fits on one node)
    gpus: tuple[int, ...] | None  # GPU indices on its node; None when one replica spans nodes
    port: int
    command: str  # the shell line that starts it (without the GPU selection)


@dataclass
class GroupLaunch:
    """Everything needed to start one plan group."""

    rank: int
    index: int  # 1-based position of the group in its plan
    group: Group
    engine: EngineCli | None
    model: str | None
    gpus_per_node: int | None
    replicas: list[Replica] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # caveats written into the script
    blocker: str | None = None  # why the group cannot be launched as planned

    @property
    def script_name(self) -> str:
        group = "" if self.index == 1 else f"g{self.index}-"  # later groups of a multi-group plan
        return f"launch-rank{self.rank}-{group}{self.group.gpu}-{self.group.framework}.sh"

    @property
    def nodes(self) -> int:
        return max((r.node for r in self.replicas), default=0) + 1


# ----------------------------------------------------------------------------- commands


def replica_command(
    group: Group,
    port: int,
    gpus: tuple[int, ...] | None,
    *,
    fraction: float,
    max_len: int | None = None,
    slot: int = 0,
    name: str = "replica",
) -> str:
    """The shell line that starts ONE replica of ``group`` (its model is ``$MODEL``).

    ``slot`` numbers the replica within its plan; engines that open side ports (MII)
    offset them by it. ``max_len`` (input + output tokens) caps the context so that the
    engine sizes its KV cache for the planned sequences.
    """
    cli = engine_cli(group.framework)
    extra = [cli.dtype_args.get(group.dtype, ""), cli.kv_dtype_args.get(group.kv_dtype, "")]
    max_len_text = cli.max_len_arg.format(max_len=max_len) if max_len else ""
    if max_len_text and "{max_len}" not in cli.template:
        extra.append(max_len_text)
    device_map = {"localhost": [list(gpus)]} if gpus is not None else "auto"
    command = cli.template.format(
        tp=group.tp,
        pp=group.pp,
        batch=group.batch,
        split=group.split,
        fraction=f"{fraction:g}",
        host=HOST,
        port=port,
        max_len=max_len_text,
        seqs=sequences_per_pass(group, cli),
        name=name,
        device_map=_py_literal(device_map),
        grpc_port=MII_GRPC_BASE_PORT + slot * MII_GRPC_PORTS_PER_REPLICA,
        dist_port=MII_TORCH_DIST_BASE_PORT + slot,
        zmq_port=MII_ZMQ_BASE_PORT + slot,
    )
    return " ".join([command] + [e for e in extra if e])


def sequences_per_pass(group: Group, cli: EngineCli) -> int:
    """The engine's cap on sequences in flight: the planned batch, unless the engine
    refuses more sequences than its token budget per pass."""
    return min(group.batch, group.split) if cli.seqs_capped_by_split else group.batch


def _py_literal(value: Any) -> str:
    """A Python literal that survives inside the single-quoted ``python -c`` program."""
    return repr(value).replace("'", '"')


def replica_gpus(replica: int, gpus_per_replica: int, gpus_per_node: int) -> tuple[int, tuple[int, ...] | None]:
    """(launch host, GPU indices on it) of replica ``replica``: replicas fill nodes in order,
    replica r on GPUs r·tp·pp … (r+1)·tp·pp−1 of a node. A replica larger than a node is a
    multi-node cluster of its own, started from its head node, with no index range (None)."""
    if gpus_per_replica > gpus_per_node:
        return replica, None
    per_node = gpus_per_node // gpus_per_replica
    node, slot = divmod(replica, per_node)
    first = slot * gpus_per_replica
    return node, tuple(range(first, first + gpus_per_replica))


# ----------------------------------------------------------------------------- groups


def _model_arg(request: PlanRequest | None) -> str | None:
    """What the engine should load: the catalog id, or the folder of a local config.json."""
    if request is None:
        return None
    if request.model.endswith(".json"):
        return str(Path(request.model).parent)
    return request.model


# A pipeline across GPU types runs as one vLLM instance over a Ray cluster of the stage
# nodes; VLLM_PP_LAYER_PARTITION (vLLM >= 0.6) gives each stage its planned layer count.
RAY_PORT = 6379
MIXED_PIPELINE_ENGINES = ("vllm",)


def _blocker(group: Group, cli: EngineCli | None) -> str | None:
    if group.gpu == MULTI_GPU_MARKER:
        if group.framework not in MIXED_PIPELINE_ENGINES:
            return f"a pipeline spanning GPU types needs a multi-node launch that {group.framework} cannot express (vLLM can)"
        if len({st["tp"] for st in group.stages or []}) > 1:
            return "vLLM needs the same TP on every pipeline stage; re-plan with one TP size (parallelism.tp)"
    if cli is None:
        return f"no launch template for engine {group.framework!r} (known: {', '.join(sorted(ENGINES))})"
    if group.pp > 1 and not cli.supports_pp:
        return f"{cli.name} has no pipeline parallelism; this plan needs pp={group.pp} (re-plan with --pp 1)"
    known = set(cli.dtype_args) | set(cli.dtype_notes)
    if group.dtype not in known:
        return f"{cli.name} cannot serve {group.dtype} weights (re-plan with --dtype {' or --dtype '.join(_16_BIT)})"
    return None


def _notes(group: Group, cli: EngineCli) -> list[str]:
    notes = []
    if group.dtype in cli.dtype_notes:
        notes.append(cli.dtype_notes[group.dtype])
    if group.kv_dtype not in _16_BIT and group.kv_dtype not in cli.kv_dtype_args:
        notes.append(
            f"the plan assumes a {group.kv_dtype} KV cache, which {cli.name} {cli.version} cannot be told from "
            "this command line: set it in the engine's config, or expect less KV room than planned"
        )
    if sequences_per_pass(group, cli) < group.batch:
        notes.append(
            f"{cli.name} allows at most {group.split} sequences per pass (its token budget), so the batch of "
            f"{group.batch} runs {group.split} at a time"
        )
    return notes


def group_launch(
    group: Group,
    *,
    rank: int,
    index: int,
    first_slot: int,
    model: str | None,
    max_len: int | None,
    catalog: Catalog,
    base_port: int = BASE_PORT,
) -> GroupLaunch:
    """The replicas of one plan group: nodes, GPU ranges, ports and commands.

    ``first_slot`` is the number of replicas of earlier groups in the plan: replica r of
    this group listens on ``base_port + first_slot + r``.
    """
    cli = ENGINES.get(group.framework)
    launch = GroupLaunch(rank=rank, index=index, group=group, engine=cli, model=model, gpus_per_node=None)
    launch.blocker = _blocker(group, cli)
    if launch.blocker or cli is None:
        return launch
    if group.gpu == MULTI_GPU_MARKER:  # one Ray cluster per replica; each stage on its own node
        return _mixed_launch(
            launch,
            group,
            model=model,
            max_len=max_len,
            first_slot=first_slot,
            base_port=base_port,
            fraction=catalog.framework(group.framework).memory_fraction,
        )
    launch.gpus_per_node = catalog.gpu(group.gpu).gpus_per_node
    launch.notes = _notes(group, cli)
    fraction = catalog.framework(group.framework).memory_fraction  # what the memory prediction assumed
    per_replica = group.tp * group.pp
    for r in range(group.replicas):
        node, gpus = replica_gpus(r, per_replica, launch.gpus_per_node)
        slot = first_slot + r
        port = base_port + slot
        name = f"guideopt-rank{rank}-g{index}-r{r}"
        command = replica_command(group, port, gpus, fraction=fraction, max_len=max_len, slot=slot, name=name)
        launch.replicas.append(Replica(index=r, node=node, gpus=gpus, port=port, command=command))
    if per_replica > launch.gpus_per_node:
        launch.notes.append(
            f"one replica needs {per_replica} GPUs but a {group.gpu} node has {launch.gpus_per_node}: "
            f"start a multi-node {cli.name} cluster first and run each line on its head node"
        )
    return launch


def _mixed_launch(launch: GroupLaunch, group: Group, *, model, max_len, first_slot: int, base_port: int, fraction: float) -> GroupLaunch:
    assert launch.engine is not None
    launch.notes = _notes(group, launch.engine) + [
        "each replica is one vLLM instance over a Ray cluster of its two stage nodes; run this script on both "
        "(node 2r: first stage, Ray head; node 2r+1: second stage) with HEAD_ADDRESS set"
    ]
    for r in range(group.replicas):
        port = base_port + first_slot + r
        command = replica_command(group, port, None, fraction=fraction, max_len=max_len, slot=first_slot + r, name=f"guideopt-mixed-r{r}")
        launch.replicas.append(Replica(index=r, node=2 * r, gpus=None, port=port, command=command))
    return launch


def plan_launches(plan: Plan, *, request: PlanRequest | None, catalog: Catalog, base_port: int = BASE_PORT) -> list[GroupLaunch]:
    """One GroupLaunch per group of ``plan``; ports run on across groups."""
    model = _model_arg(request)
    max_len = request.workload.input_len + request.workload.output_len if request else None
    launches = []
    slot = 0
    for index, group in enumerate(plan.groups, start=1):
        launches.append(
            group_launch(
                group, rank=plan.rank, index=index, first_slot=slot, model=model, max_len=max_len, catalog=catalog, base_port=base_port
            )
        )
        slot += group.replicas
    return launches


# ----------------------------------------------------------------------------- scripts


def _header(launch: GroupLaunch, catalog: Catalog) -> list[str]:
    g = launch.group
    cli = launch.engine
    lines = ["#!/usr/bin/env bash", f"# guideopt launch script: plan rank {launch.rank}, group {launch.index}"]
    if cli is not None:
        lines.append(f"# engine: {cli.name}; command line written for {cli.name} {cli.version} (check the flags if yours differs)")
        if g.framework in catalog.frameworks:
            lines.append(f"# engine defaults the predictions assumed: {cli.name} {catalog.framework(g.framework).version}")
    lines += [
        f"# layout: {g.replicas} replica(s) x (tp {g.tp} x pp {g.pp}) on {g.num_gpus} x {g.gpu}; "
        f"batch {g.batch}, split {g.split}, weights {g.dtype}, KV {g.kv_dtype}",
        f"# predicted per replica: TTFT {g.metrics.ttft_ms:.0f} ms, TPOT {g.metrics.tpot_ms:.1f} ms; "
        f"group: {g.metrics.output_throughput_tok_s:.0f} output tok/s, ${g.usd_per_hour:.2f}/h (predictions, not measurements)",
    ]
    lines += [f"# NOTE: {note}" for note in launch.notes]
    return lines


def _replica_line(replica: Replica, cli: EngineCli) -> str:
    if replica.gpus is None:
        where = "its own multi-node cluster"
    else:
        where = ("GPU " if len(replica.gpus) == 1 else "GPUs ") + ",".join(map(str, replica.gpus))
    env = f"CUDA_VISIBLE_DEVICES={','.join(map(str, replica.gpus))} " if replica.gpus is not None and cli.selects_gpus_by_env else ""
    return f"# replica {replica.index}: {where}, port {replica.port}\n{env}{replica.command} &"


def _body(launch: GroupLaunch) -> list[str]:
    assert launch.engine is not None
    if launch.nodes == 1:
        return [_replica_line(r, launch.engine) for r in launch.replicas]
    lines = [
        f'NODE="${{1:-0}}"  # which of the {launch.nodes} launch hosts of this group this is (0..{launch.nodes - 1})',
        'case "$NODE" in',
    ]
    for node in range(launch.nodes):
        mine = [r for r in launch.replicas if r.node == node]
        lines.append(f"  {node})")
        lines += ["    " + line.replace("\n", "\n    ") for line in (_replica_line(r, launch.engine) for r in mine)]
        lines.append("    ;;")
    lines += [f'  *) echo "node must be 0..{launch.nodes - 1}, got $NODE" >&2; exit 1 ;;', "esac"]
    return lines


def render_script(launch: GroupLaunch, catalog: Catalog | None = None) -> str:
    """The bash script that starts every replica of one group in the background and waits."""
    cat = catalog or load_catalog()
    lines = _header(launch, cat) + ["set -euo pipefail", ""]
    if launch.blocker:
        lines += [f"echo {shlex.quote('cannot launch this group as planned: ' + launch.blocker)} >&2", "exit 1"]
        return "\n".join(lines) + "\n"
    if launch.model:
        lines += [
            f"DEFAULT_MODEL={shlex.quote(launch.model)}",
            'MODEL="${MODEL:-$DEFAULT_MODEL}"  # set MODEL=/path/to/weights to load a local copy',
        ]
    else:
        lines.append('MODEL="${MODEL:?set MODEL to the model id or path}"')
    lines += ["export MODEL", ""]
    body = _mixed_pipeline_body(launch) if launch.group.gpu == MULTI_GPU_MARKER else _body(launch)
    lines += body + ["", "wait", ""]
    return "\n".join(lines)


def _mixed_pipeline_body(launch: GroupLaunch) -> list[str]:
    """Replica r runs on two nodes, 2r (first stage's GPU type, Ray head) and 2r+1 (second
    stage's type), joined in a Ray cluster; the head starts vLLM with the planned layer split."""
    group = launch.group
    stages = group.stages or []
    partition = ",".join(str(st["layers"]) for st in stages)
    command = launch.replicas[0].command if launch.replicas else ""
    lines = [
        f'NODE="${{1:?give the node number 0..{2 * group.replicas - 1}: even = {stages[0]["gpu"]} node (Ray head), odd = {stages[-1]["gpu"]} node}}"',
        f'HEAD_ADDRESS="${{HEAD_ADDRESS:?set HEAD_ADDRESS to the IP of the {stages[0]["gpu"]} node of this replica}}"',
        "if [ $((NODE % 2)) -eq 0 ]; then",
        f"  ray start --head --port {RAY_PORT}",
        f"  VLLM_PP_LAYER_PARTITION={partition} {command} --distributed-executor-backend ray &",
        "else",
        f'  ray start --address="$HEAD_ADDRESS:{RAY_PORT}" --block &',
        "fi",
    ]
    described = ", ".join("{} tp{} {} layers".format(st["gpu"], st["tp"], st["layers"]) for st in stages)
    return [f"# stages: {described}; vLLM places pipeline ranks on the head node first"] + lines


# ----------------------------------------------------------------------------- PLAN.md


def _gpu_in_words(request: PlanRequest, gpu_id: str) -> str:
    allowance = request.allowance(gpu_id)
    limit = f" (up to {allowance.max})" if allowance.max is not None else ""
    price = f" at ${allowance.usd_per_hour:g}/h each" if allowance.usd_per_hour is not None else ""
    return f"{gpu_id}{limit}{price}"


def request_in_words(request: PlanRequest | None) -> str:
    """One paragraph restating the request."""
    if request is None:
        return "The request was not recorded with this plan."
    w = request.workload
    batch = f"a fixed batch of {w.batch} per replica" if w.batch else "the batch chosen by the planner"
    gpus = ", ".join(_gpu_in_words(request, g) for g in request.gpus) if request.gpus else "any GPU in the catalog"
    frameworks = request.framework if isinstance(request.framework, str) else ", ".join(request.framework)
    slo = {k: v for k, v in request.slo.model_dump().items() if v is not None}
    slo_text = ", ".join(f"{k} {v:g}" for k, v in slo.items()) or "none"
    limits = f"; at most {request.parallelism.max_gpus} GPUs" if request.parallelism.max_gpus else ""
    return (
        f"Serve `{request.model}` with {w.input_len} input and {w.output_len} output tokens per request, {batch}, "
        f"for at most ${request.budget.usd_per_hour:g}/h{limits}. GPUs: {gpus}. Engines: {frameworks}. "
        f"Weights: {', '.join(d.value for d in request.precision)}. SLOs: {slo_text}. "
        f"Objective: {' > '.join(t.value for t in request.objective)}."
    )


_TABLE_HEAD = (
    "| group | GPUs | layout | engine | dtype | batch | split | $/h | TTFT ms | TPOT ms | batch s "
    "| out tok/s | mem GB/GPU | traffic | script |"
)


def _group_row(launch: GroupLaunch, share: float) -> str:
    g = launch.group
    m = g.metrics
    cells = [
        launch.index,
        f"{g.num_gpus} x {g.gpu}",
        f"{g.replicas} x (tp{g.tp} pp{g.pp})",
        g.framework,
        g.dtype,
        g.batch,
        g.split,
        f"{g.usd_per_hour:.2f}",
        f"{m.ttft_ms:.0f}",
        f"{m.tpot_ms:.1f}",
        f"{m.batch_latency_s:.2f}",
        f"{m.output_throughput_tok_s:,.0f}",
        f"{g.memory.total_per_gpu_gb:.1f} of {g.memory.gpu_memory_gb:.0f}",
        f"{share:.0%}",
        f"`{launch.script_name}`",
    ]
    return "| " + " | ".join(str(c) for c in cells) + " |"


def traffic_shares(plan: Plan) -> list[float]:
    """Each group's share of requests, in proportion to its predicted output throughput."""
    total = sum(g.metrics.output_throughput_tok_s for g in plan.groups)
    if total <= 0:
        return [1.0 / len(plan.groups)] * len(plan.groups)
    return [g.metrics.output_throughput_tok_s / total for g in plan.groups]


def _traffic_text(launches: list[GroupLaunch], shares: list[float]) -> str:
    parts = []
    for launch, share in zip(launches, shares):
        ports = [r.port for r in launch.replicas]
        where = f"ports {ports[0]}-{ports[-1]}" if len(ports) > 1 else f"port {ports[0]}" if ports else "no launchable replica"
        parts.append(
            f"{share:.0%} to group {launch.index} ({launch.group.replicas} replica(s), {share / launch.group.replicas:.1%} each, {where})"
        )
    return "Traffic: send " + "; ".join(parts) + "."


def plan_section(plan: Plan, launches: list[GroupLaunch]) -> str:
    """The Markdown section of one ranked plan."""
    m = plan.metrics
    shares = traffic_shares(plan)
    lines = [
        f"## Rank {plan.rank}: {plan.num_gpus} GPUs, ${plan.usd_per_hour:.2f}/h",
        "",
        f"Predicted: {m.output_throughput_tok_s:,.0f} output tok/s in all; TTFT {m.ttft_ms:.0f} ms, "
        f"TPOT {m.tpot_ms:.1f} ms, batch latency {m.batch_latency_s:.2f} s (worst group, per replica).",
        "",
        _TABLE_HEAD,
        "|" + "---|" * _TABLE_HEAD.count(" | ") + "---|",
    ]
    lines += [_group_row(launch, share) for launch, share in zip(launches, shares)]
    lines += ["", _traffic_text(launches, shares)]
    for launch in launches:
        if launch.blocker:
            lines.append(f"\n**Group {launch.index} cannot be launched as planned:** {launch.blocker}.")
        lines += [f"\nGroup {launch.index} note: {note}." for note in launch.notes]
    return "\n".join(lines)


CAVEAT = (
    "All figures are predictions of guideopt's calibrated roofline model for a static batch "
    "(B requests of the given lengths submitted together), not measurements; expect errors of tens of percent "
    "(see docs/accuracy.md) and check with a benchmark on the real engine before committing. "
    "Each script names the engine version its command line was written for; flags may differ in other versions."
)


def plan_markdown(result: PlanResult, launches: list[list[GroupLaunch]], request: PlanRequest | None = None) -> str:
    title = f"# Deployment plan for `{request.model}`" if request else "# Deployment plan"
    lines = [
        title,
        "",
        request_in_words(request),
        "",
        f"Solver status: {result.status}; objective {' > '.join(result.objective)}; "
        f"{len(result.plans)} ranked plan(s), rank 1 is the best. Start a plan's groups with their scripts "
        "(`MODEL=/path/to/weights ./launch-….sh` to load local weights; multi-node groups take the node number as $1).",
        "",
    ]
    for plan, plan_launches_ in zip(result.plans, launches):
        lines += [plan_section(plan, plan_launches_), ""]
    lines += ["## Caveats", "", CAVEAT, ""]
    return "\n".join(lines)


# ----------------------------------------------------------------------------- emit


def _as_request(request: PlanRequest | Mapping[str, Any] | None) -> PlanRequest | None:
    if request is None or isinstance(request, PlanRequest):
        return request
    return validated(PlanRequest, request)


def _write(path: Path, text: str, executable: bool = False) -> Path:
    path.write_text(text)
    if executable:
        os.chmod(path, SCRIPT_MODE)
    return path


def emit(
    result: PlanResult,
    directory: str | os.PathLike[str],
    *,
    request: PlanRequest | Mapping[str, Any] | None = None,
    catalog: Catalog | None = None,
) -> list[Path]:
    """Write one executable launch script per plan group and a PLAN.md into ``directory``.

    Returns the written paths (scripts first, PLAN.md last).
    """
    if not result.plans:
        raise InvalidRequestError("emit: the plan result has no plans to write (solve a feasible request first)")
    cat = catalog or load_catalog()
    req = _as_request(request)
    out = Path(directory)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InvalidRequestError(f"emit: cannot create directory {out} ({exc.strerror or exc})") from None
    launches = [plan_launches(plan, request=req, catalog=cat) for plan in result.plans]
    paths = [
        _write(out / launch.script_name, render_script(launch, cat), executable=True)
        for plan_launches_ in launches
        for launch in plan_launches_
    ]
    paths.append(_write(out / PLAN_FILE, plan_markdown(result, launches, req)))
    return paths
