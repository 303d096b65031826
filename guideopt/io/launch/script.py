"""The bash script that starts every replica of one plan group and supervises them.

Every server runs in the background under a supervisor: the script waits on all of them,
and when one stops (or the script is interrupted) it stops the others. Replicas larger
than a node are started per node: vLLM over a Ray cluster (head and workers), SGLang with
its node rank, TensorRT-LLM as one MPI world from the first node.
"""

from __future__ import annotations

import shlex

from guideopt.io.launch.engines import moe_tp, options_yaml
from guideopt.io.launch.layout import GroupLaunch, Replica, tpot_text
from guideopt.io.launch.roles import NODE_ADDRESS_LINE, needs_node_address
from guideopt.model.gpu import Vendor
from guideopt.model.launch import MultiNode
from guideopt.model.plan import Group

RAY_PORT = 6379  # Ray's default GCS port
# Rendezvous port of a multi-node SGLang replica (any free port the replica's nodes share);
# offset by the replica's slot so that replicas never share one.
DIST_INIT_BASE_PORT = 20000
RAY_POLL_S = 5
# Data-parallel RPC port of a vLLM attention-DP replica across nodes (config/parallel.py default
# data_parallel_rpc_port 29550), offset by the replica's slot.
DP_RPC_BASE_PORT = 29550

_SUPERVISOR = r"""PIDS=()
ON_EXIT=":"
STOP_GRACE_S="${STOP_GRACE_S:-30}"  # seconds the servers get to shut down before they are killed
start() { setsid -w "$@" & PIDS+=("$!"); }  # one server in the background, in its own process group
signal_all() { for pid in "${PIDS[@]}"; do kill "-$1" -- "-$pid" 2>/dev/null || true; done; }
stop_all() {  # stop every server with all its worker processes
  trap - EXIT INT TERM
  eval "$ON_EXIT" || true
  signal_all TERM
  for _ in $(seq "$STOP_GRACE_S"); do jobs -rp | grep -q . || break; sleep 1; done
  signal_all KILL
  wait || true
}
trap stop_all EXIT INT TERM"""

_WAIT_FOR_RAY = (
    "wait_for_ray_nodes() {  # until $1 nodes have joined this Ray cluster\n"
    '  until [ "$(python -c \'import ray; ray.init(address="auto", logging_level="ERROR"); '
    'print(sum(n["Alive"] for n in ray.nodes()))\' 2>/dev/null)" -ge "$1" ] 2>/dev/null; do sleep ' + str(RAY_POLL_S) + "; done\n"
    "}"
)

_WAIT_ALL = "\n".join(
    [
        'if [ "${#PIDS[@]}" -eq 0 ]; then exit 0; fi',
        "status=0",
        "wait -n || status=$?",
        'echo "a server of this group stopped (exit $status); stopping the others" >&2',
        'exit "$status"',
    ]
)


def gpu_env(launch: GroupLaunch, gpus: tuple[int, ...] | None) -> str:
    """``env`` assignments that select a replica's GPUs on a shared node. On AMD both
    variables get the same list (vLLM's platforms/rocm.py asserts they agree)."""
    if gpus is None or not launch.framework.launch.selects_gpus_by_env:
        return ""
    ids = ",".join(map(str, gpus))
    names = ["CUDA_VISIBLE_DEVICES"] + (["HIP_VISIBLE_DEVICES"] if launch.vendor is Vendor.AMD else [])
    return " ".join(f"{n}={ids}" for n in names) + " "


def dp_spans_nodes(launch: GroupLaunch) -> bool:
    """An attention-DP replica across nodes that the engine starts per node (vLLM: every node runs
    its own DP ranks, the head with the API server) rather than as one Ray cluster."""
    return launch.group.attention_dp > 1 and bool(launch.framework.launch.dp_multi_node_args)


def dp_node_args(launch: GroupLaunch, gpus: int, pos: int, *, head: str, rpc_port: int, start: str | None = None) -> str:
    """The data-parallel arguments of the ``pos``-th node (``gpus`` GPUs) of a replica; ``start``
    overrides its first DP rank (a shell expression on Kubernetes)."""
    spec, g = launch.framework.launch, launch.group
    local = gpus // (g.tp * g.pp)
    args = spec.dp_multi_node_args.format(local=local, head=head, rpc_port=rpc_port)
    return args + (" " + spec.dp_worker_args.format(start=start or pos * local) if pos else "")


def _moe_text(g: Group) -> str:
    """The MoE part of the layout comment ("" for a dense layout, whose comment is unchanged)."""
    text = f" x attention DP {g.attention_dp}" if g.attention_dp > 1 else ""
    return text + (f", experts EP {g.moe_ep} x TP {moe_tp(g)}" if g.moe_ep > 1 else "")


def _header(launch: GroupLaunch) -> list[str]:
    g, fw = launch.group, launch.framework
    lines = [
        "#!/usr/bin/env bash",
        f"# guideopt launch script: plan rank {launch.rank}, group {launch.index}",
        f"# engine: {fw.name} {fw.launch.version} (command line and defaults written for this version; check the flags if yours differs)",
        f"# layout: {g.replicas} replica(s) x (tp {g.tp}{_moe_text(g)} x pp {g.pp}) on {g.num_gpus} x {g.gpu}; "
        f"batch {g.batch}, split {g.split}, weights {g.dtype}, KV {g.kv_dtype}",
        f"# predicted per replica: TTFT {g.metrics.ttft_ms:.0f} ms, TPOT {tpot_text(g.metrics.tpot_ms)}; "
        f"group: {g.metrics.output_throughput_tok_s:.0f} output tok/s, ${g.usd_per_hour:.2f}/h (predictions, not measurements)",
    ]
    if g.role:
        lines.append(f"# disaggregated: the {g.role} pool of the plan ({g.replicas} worker(s)); start the other pool and the router too")
    if launch.nodes > 1:
        lines.append(f"# run on each of the group's {launch.nodes} nodes with its node number: ./{launch.script_name} NODE")
    return lines + [f"# NOTE: {note}" for note in launch.notes]


def _model_lines(launch: GroupLaunch) -> list[str]:
    need = launch.framework.launch.pre_quantized.get(launch.group.dtype)
    if need and not launch.ships_quantized:
        what = f"{need} of {launch.model}" if launch.model else need
        return [f'MODEL="${{MODEL:?{shlex.quote("set MODEL to " + what)[1:-1]}}}"']
    if launch.model:
        return [
            f"DEFAULT_MODEL={shlex.quote(launch.model)}",
            'MODEL="${MODEL:-$DEFAULT_MODEL}"  # set MODEL=/path/to/weights to load a local copy',
        ]
    return ['MODEL="${MODEL:?set MODEL to the model id or path}"']


def _options_lines(launch: GroupLaunch) -> list[str]:
    text = options_yaml(launch.group, launch.framework.launch)
    if not text:
        return []
    return ['EXTRA_OPTIONS="$(mktemp --suffix .yaml)"', "cat > \"$EXTRA_OPTIONS\" <<'YAML'", text.rstrip("\n"), "YAML"]


def _single(launch: GroupLaunch, r: Replica) -> list[str]:
    if r.gpus is None:
        where = "all GPUs"
    else:
        where = ("GPU " if len(r.gpus) == 1 else "GPUs ") + ",".join(map(str, r.gpus))
    return [f"# replica {r.index}: {where}, port {r.port}", f"start env {gpu_env(launch, r.gpus)}{r.command}"]


def _spanning(launch: GroupLaunch, r: Replica, node: int) -> list[str]:
    """The lines node ``node`` runs for replica ``r``, which spans several nodes."""
    spec = launch.framework.launch
    pos, head, k = r.nodes.index(node), r.nodes[0], len(r.nodes)
    gpus = r.gpus_per_node[pos]
    intro = f"# replica {r.index}: node {pos + 1} of {k} ({gpus} GPUs{', ' + launch.gpus[pos].id if launch.mixed else ''}); HEAD_ADDRESS = node {head}"
    if spec.multi_node is MultiNode.RAY and dp_spans_nodes(launch):
        args = dp_node_args(launch, gpus, pos, head='"$HEAD_ADDRESS"', rpc_port=DP_RPC_BASE_PORT + r.slot)
        return [intro + (f", serves port {r.port}" if not pos else ""), f"start env {r.command} {args}"]
    if spec.multi_node is MultiNode.RAY:
        if pos:
            return [intro, f'start ray start --address="$HEAD_ADDRESS:{RAY_PORT}" --num-gpus={gpus} --block']
        env = ""
        if launch.mixed:
            env = "VLLM_PP_LAYER_PARTITION=" + ",".join(str(st["layers"]) for st in launch.group.stages or []) + " "
        return [
            intro + f", serves port {r.port}",
            f"ray start --head --port={RAY_PORT} --num-gpus={gpus}",
            'ON_EXIT="ray stop --force >/dev/null 2>&1"',
            f"wait_for_ray_nodes {k}",
            f"start env {env}{r.command} {spec.multi_node_args}",
        ]
    if spec.multi_node is MultiNode.NODE_RANK:
        args = spec.multi_node_args.format(nnodes=k, node_rank=pos, head='"$HEAD_ADDRESS"', dist_port=DIST_INIT_BASE_PORT + r.slot)
        return [intro + (f", serves port {r.port}" if not pos else ""), f"start env {r.command} {args}"]
    if spec.multi_node is MultiNode.MPI:
        if pos:
            return [intro, f'echo "node {node}: part of the MPI world that node {head} starts (keep sshd running here)"']
        launcher = spec.multi_node_launcher.format(world=sum(r.gpus_per_node), hosts='"$HOSTS"')
        return [
            intro + f", serves port {r.port}; HOSTS = the replica's nodes as host:{gpus},... ({k} entries)",
            f'HOSTS="${{HOSTS:?set HOSTS to the {k} nodes of replica {r.index} as host:slots,...}}"',
            f"start {launcher} {r.command}",
        ]
    return [intro, f"echo {shlex.quote(f'{launch.framework.id} cannot run one replica across nodes')} >&2", "exit 1"]


def _node_lines(launch: GroupLaunch, node: int) -> list[str]:
    lines: list[str] = []
    for r in launch.replicas:
        if node in r.nodes:
            lines += _spanning(launch, r, node) if r.spans_nodes else _single(launch, r)
    return lines


def _body(launch: GroupLaunch) -> list[str]:
    if launch.nodes == 1:
        return _node_lines(launch, 0)
    spans = any(r.spans_nodes for r in launch.replicas)
    lines = [f'NODE="${{1:?give the node number of this host, 0..{launch.nodes - 1}}}"']
    if spans:
        lines.append('HEAD_ADDRESS="${HEAD_ADDRESS:-}"  # address of the first node of this node\'s replica (multi-node replicas)')
    if spans and launch.framework.launch.multi_node is MultiNode.RAY and not dp_spans_nodes(launch):
        lines.append(_WAIT_FOR_RAY)
    lines.append('case "$NODE" in')
    for node in range(launch.nodes):
        mine = _node_lines(launch, node)
        mode = launch.framework.launch.multi_node  # who dials the head: every SGLang rank, the Ray workers, no MPI host
        first = {MultiNode.NODE_RANK: 0, MultiNode.RAY: 1}.get(mode, len(launch.replicas[0].nodes))
        first = 0 if dp_spans_nodes(launch) else first  # every vLLM DP node names the head's address
        needs_head = any(node in r.nodes[first:] and r.spans_nodes for r in launch.replicas)
        check = ['    : "${HEAD_ADDRESS:?set HEAD_ADDRESS to the address of the first node of this replica}"'] if needs_head else []
        lines += [f"  {node})", *check, *("    " + line for line in mine), "    ;;"]
    lines += [f'  *) echo "node must be 0..{launch.nodes - 1}, got $NODE" >&2; exit 2 ;;', "esac"]
    return lines


def render_script(launch: GroupLaunch) -> str:
    """The bash script that starts every replica of one group and supervises them."""
    lines = [*_header(launch), "set -euo pipefail", ""]
    if launch.blocker:
        lines += [f"echo {shlex.quote('cannot launch this group as planned: ' + launch.blocker)} >&2", "exit 1"]
        return "\n".join(lines) + "\n"
    address = [NODE_ADDRESS_LINE] if needs_node_address(launch.group, launch.framework) else []
    lines += [
        *_model_lines(launch),
        "export MODEL",
        *address,
        *_options_lines(launch),
        "",
        _SUPERVISOR,
        "",
        *_body(launch),
        "",
        _WAIT_ALL,
        "",
    ]
    return "\n".join(lines)
