"""Where each replica of a plan group runs: its nodes, GPUs, port and command.

Replicas that fit on a node fill nodes in order (replica r on GPUs r·n … of its node, n =
tp·attention_dp·pp). A replica larger than a node takes ``ceil(n / GPUs per node)`` whole nodes of its own;
a cross-type pipeline replica takes two nodes, one per stage (first stage = head).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from guideopt.catalog import Catalog
from guideopt.io.launch.engines import MULTI_GPU_MARKER, blocker, notes, planned_fraction, replica_command, replica_gpu_count
from guideopt.io.launch.roles import role_args, role_env
from guideopt.model.framework import Framework
from guideopt.model.gpu import Gpu, Vendor
from guideopt.model.plan import Group, Plan
from guideopt.model.request import PlanRequest

# First HTTP port of a plan; every replica of the plan gets the next one, so that groups
# sharing a host never collide. 8000 is vLLM's and trtllm-serve's default port.
BASE_PORT = 8000


@dataclass(frozen=True)
class Replica:
    index: int
    nodes: tuple[int, ...]  # the group's launch hosts it runs on; the first is its head
    gpus: tuple[int, ...] | None  # GPU indices on its node when it shares one; None: whole nodes
    gpus_per_node: tuple[int, ...]  # GPUs it uses on each of its nodes
    slot: int  # the replica's position in its plan (ports are offset by it)
    port: int
    command: str  # the server command (without GPU selection or per-node arguments)

    @property
    def spans_nodes(self) -> bool:
        return len(self.nodes) > 1


@dataclass
class GroupLaunch:
    """Everything needed to start one plan group."""

    rank: int
    index: int  # 1-based position of the group in its plan
    group: Group
    framework: Framework
    gpus: list[Gpu]  # the group's GPU type, or one per pipeline stage of a cross-type group
    model: str | None
    max_len: int | None = None  # input + output tokens of the request (caps the engine's context)
    ships_quantized: bool = False  # the model's own checkpoint is already in the planned weight precision
    replicas: list[Replica] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # caveats written into the script
    blocker: str | None = None  # why the group cannot be launched as planned

    @property
    def stem(self) -> str:
        if self.group.role:  # a pool of a disaggregated plan
            return f"rank{self.rank}-{self.group.role}-{self.group.gpu}-{self.group.framework}"
        group = "" if self.index == 1 else f"g{self.index}-"  # later groups of a multi-group plan
        return f"rank{self.rank}-{group}{self.group.gpu}-{self.group.framework}"

    @property
    def script_name(self) -> str:
        return f"launch-{self.stem}.sh"

    @property
    def manifest_name(self) -> str:
        return f"k8s-{self.stem}.yaml"

    @property
    def nodes(self) -> int:
        return max((max(r.nodes) for r in self.replicas), default=0) + 1

    @property
    def vendor(self) -> Vendor:
        return self.gpus[0].vendor

    @property
    def mixed(self) -> bool:
        return self.group.gpu == MULTI_GPU_MARKER


def replica_gpus(replica: int, gpus_per_replica: int, gpus_per_node: int) -> tuple[int, tuple[int, ...] | None]:
    """(first launch host, GPU indices on it) of replica ``replica``. A replica larger than a
    node takes whole nodes of its own (no index range: None)."""
    if gpus_per_replica > gpus_per_node:
        return replica * math.ceil(gpus_per_replica / gpus_per_node), None
    per_node = gpus_per_node // gpus_per_replica
    node, slot = divmod(replica, per_node)
    first = slot * gpus_per_replica
    return node, tuple(range(first, first + gpus_per_replica))


def _node_shares(gpus_per_replica: int, gpus_per_node: int) -> tuple[int, ...]:
    full, rest = divmod(gpus_per_replica, gpus_per_node)
    return (gpus_per_node,) * full + ((rest,) if rest else ())


def _model_arg(request: PlanRequest | None) -> str | None:
    """What the engine should load: the catalog id, or the folder of a local config.json."""
    if request is None:
        return None
    if request.model.endswith(".json"):
        return str(Path(request.model).parent)
    return request.model


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
    fw = catalog.framework(group.framework)
    gpu_ids = [st["gpu"] for st in group.stages or []] if group.gpu == MULTI_GPU_MARKER else [group.gpu]
    launch = GroupLaunch(
        rank=rank, index=index, group=group, framework=fw, gpus=[catalog.gpu(g) for g in gpu_ids], model=model, max_len=max_len
    )
    launch.ships_quantized = model is not None and model in catalog.models and catalog.models[model].checkpoint_dtype == group.dtype
    launch.blocker = blocker(group, fw, launch.gpus)
    if launch.blocker:
        return launch
    launch.notes = notes(group, fw, launch.ships_quantized)
    fraction = planned_fraction(fw, launch.gpus[0], group)  # what the memory prediction assumed
    per_replica = replica_gpu_count(group)
    node_size = launch.gpus[0].gpus_per_node
    for r in range(group.replicas):
        slot = first_slot + r
        nodes: tuple[int, ...]
        gpus: tuple[int, ...] | None
        if launch.mixed:
            nodes, gpus, shares = (2 * r, 2 * r + 1), None, tuple(int(st["tp"]) for st in group.stages or [])
        else:
            first, gpus = replica_gpus(r, per_replica, node_size)
            shares = _node_shares(per_replica, node_size) if gpus is None else (per_replica,)
            nodes = tuple(range(first, first + len(shares)))
        command = replica_command(
            group, fw, base_port + slot, gpus, fraction=fraction, max_len=max_len, slot=slot, name=f"guideopt-rank{rank}-g{index}-r{r}"
        )
        if group.role:  # a worker of a disaggregated pool: its role and KV connector
            command = " ".join(part for part in (role_env(group, fw, slot) + command, role_args(group, fw, slot)) if part)
        launch.replicas.append(
            Replica(index=r, slot=slot, nodes=nodes, gpus=gpus, gpus_per_node=shares, port=base_port + slot, command=command)
        )
    return launch


def plan_launches(plan: Plan, *, request: PlanRequest | None, catalog: Catalog, base_port: int = BASE_PORT) -> list[GroupLaunch]:
    """One GroupLaunch per group of ``plan``; ports run on across groups."""
    model = _model_arg(request)
    wl = request.workload if request else None
    max_len = wl.input_len + wl.output_len if wl and wl.input_len and wl.output_len else None  # a stream of mixed lengths: the engine's own
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


def tpot_text(tpot_ms: float | None) -> str:
    """TPOT for a script comment or PLAN.md (there is none with one output token)."""
    return "n/a (one output token)" if tpot_ms is None else f"{tpot_ms:.1f} ms"
