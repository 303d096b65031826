"""Kubernetes manifests for a plan group, written by ``--emit`` beside the launch scripts.

A group whose replicas fit on a node becomes a Deployment (one pod per replica); a group
whose replicas span nodes (or pipeline over two GPU types) becomes a LeaderWorkerSet
(leaderworkerset.x-k8s.io/v1, one leader + workers per replica). Each group also gets a
Service in front of its serving pods. GPUs are requested as the vendor's extended resource
and pods are pinned to nodes by the GPU product label (catalogs/kubernetes.yaml).
"""

from __future__ import annotations

import re
from typing import Any

import yaml

from guideopt.catalog import Catalog
from guideopt.io.launch.engines import options_yaml, planned_fraction, replica_command, replica_gpu_count
from guideopt.io.launch.layout import BASE_PORT, GroupLaunch
from guideopt.io.launch.script import _WAIT_FOR_RAY, DIST_INIT_BASE_PORT, DP_RPC_BASE_PORT, RAY_PORT, dp_node_args, dp_spans_nodes
from guideopt.model.gpu import Gpu
from guideopt.model.launch import MultiNode

LWS_API = "leaderworkerset.x-k8s.io/v1"
LWS_WORKER_INDEX_LABEL = "leaderworkerset.sigs.k8s.io/worker-index"  # set by the LWS controller; "0" on leaders
PROBE_PERIOD_S = 10
# Model loading takes minutes: allow up to 30 min of failed readiness checks before giving up.
PROBE_FAILURES = 180
SHM_SIZE = "16Gi"  # /dev/shm for NCCL/RCCL and the engines' worker processes (Docker's 64 MiB default is too small)
NAME_PREFIX = "guideopt-"


def _name(launch: GroupLaunch) -> str:
    return re.sub(r"[^a-z0-9-]", "-", (NAME_PREFIX + launch.stem).lower())[:63].rstrip("-")


def _probe(launch: GroupLaunch) -> dict[str, Any]:
    path = launch.framework.launch.health_path
    check: dict[str, Any] = {"httpGet": {"path": path, "port": BASE_PORT}} if path else {"tcpSocket": {"port": BASE_PORT}}
    return {**check, "periodSeconds": PROBE_PERIOD_S, "failureThreshold": PROBE_FAILURES}


def _script(launch: GroupLaunch, *lines: str) -> list[str]:
    spec = launch.framework.launch
    pre = [spec.install] if spec.install else []
    options = options_yaml(launch.group, spec)
    if options:
        pre += ["EXTRA_OPTIONS=/tmp/extra-options.yaml", "cat > \"$EXTRA_OPTIONS\" <<'YAML'", options.rstrip("\n"), "YAML"]
    return ["bash", "-c", "set -euo pipefail\n" + "\n".join([*pre, *lines])]


def _command(launch: GroupLaunch) -> str:
    """One replica's server command; every pod has its own address, so all use BASE_PORT."""
    fw = launch.framework
    fraction = planned_fraction(fw, launch.gpus[0], launch.group)
    return replica_command(launch.group, fw, BASE_PORT, None, fraction=fraction, max_len=launch.max_len, name=_name(launch))


def _container(launch: GroupLaunch, gpu: Gpu, gpus: int, command: list[str], catalog: Catalog, serving: bool) -> dict[str, Any]:
    kube = catalog.kubernetes
    container: dict[str, Any] = {
        "name": "engine",
        "image": launch.framework.launch.images[gpu.vendor],
        "command": command,
        "env": [{"name": "MODEL", "value": launch.model or "SET-ME"}],
        "resources": {"limits": {kube.resources[gpu.vendor]: gpus}},
        "volumeMounts": [{"name": "shm", "mountPath": "/dev/shm"}],
    }
    if serving:
        container["ports"] = [{"name": "http", "containerPort": BASE_PORT}]
        container["readinessProbe"] = _probe(launch)
    return container


def _pod(launch: GroupLaunch, gpu: Gpu, gpus: int, command: list[str], catalog: Catalog, labels: dict[str, str], serving: bool) -> dict:
    kube = catalog.kubernetes
    return {
        "metadata": {"labels": labels},
        "spec": {
            "nodeSelector": {kube.product_labels[gpu.vendor]: kube.products[gpu.id]},
            "containers": [_container(launch, gpu, gpus, command, catalog, serving)],
            "volumes": [{"name": "shm", "emptyDir": {"medium": "Memory", "sizeLimit": SHM_SIZE}}],
        },
    }


def _labels(launch: GroupLaunch) -> dict[str, str]:
    spec = launch.framework.launch
    return {
        "app.kubernetes.io/name": _name(launch),
        "app.kubernetes.io/part-of": "guideopt",
        "guideopt/engine": launch.framework.id,
        "guideopt/engine-version": re.sub(r"[^A-Za-z0-9._-]", "-", spec.version)[:63],
    }


def _deployment(launch: GroupLaunch, catalog: Catalog) -> dict[str, Any]:
    g, labels = launch.group, _labels(launch)
    command = _script(launch, f"exec {_command(launch)}")
    pod = _pod(launch, launch.gpus[0], replica_gpu_count(g), command, catalog, labels, serving=True)
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": _name(launch), "labels": labels},
        "spec": {"replicas": g.replicas, "selector": {"matchLabels": {"app.kubernetes.io/name": _name(launch)}}, "template": pod},
    }


def _roles(launch: GroupLaunch, catalog: Catalog) -> tuple[str, str]:
    """(leader, worker) shell lines of a replica that spans pods."""
    spec, size = launch.framework.launch, '"$LWS_GROUP_SIZE"'
    cmd = _command(launch)
    if spec.multi_node is MultiNode.RAY and dp_spans_nodes(launch):
        per_node, head = launch.replicas[0].gpus_per_node[0], '"$LWS_LEADER_ADDRESS"'
        start = f'"$((LWS_WORKER_INDEX * {per_node // (launch.group.tp * launch.group.pp)}))"'
        leader_args = dp_node_args(launch, per_node, 0, head=head, rpc_port=DP_RPC_BASE_PORT)
        worker_args = dp_node_args(launch, per_node, 1, head=head, rpc_port=DP_RPC_BASE_PORT, start=start)
        return f"exec {cmd} {leader_args}", f"exec {cmd} {worker_args}"
    if spec.multi_node is MultiNode.RAY:
        gpus = [int(st["tp"]) for st in launch.group.stages or []] if launch.mixed else [launch.replicas[0].gpus_per_node[0]] * 2
        env = "VLLM_PP_LAYER_PARTITION=" + ",".join(str(st["layers"]) for st in launch.group.stages or []) + " " if launch.mixed else ""
        leader = "\n".join(
            [
                _WAIT_FOR_RAY,
                f"ray start --head --port={RAY_PORT} --num-gpus={gpus[0]}",
                f"wait_for_ray_nodes {size}",
                f"exec env {env}{cmd} {spec.multi_node_args}",
            ]
        )
        return leader, f'exec ray start --address="$LWS_LEADER_ADDRESS:{RAY_PORT}" --num-gpus={gpus[-1]} --block'
    if spec.multi_node is MultiNode.NODE_RANK:
        args = spec.multi_node_args.format(
            nnodes=size, node_rank='"$LWS_WORKER_INDEX"', head='"$LWS_LEADER_ADDRESS"', dist_port=DIST_INIT_BASE_PORT
        )
        return f"exec {cmd} {args}", f"exec {cmd} {args}"
    slots = launch.replicas[0].gpus_per_node[0]
    hosts = (
        f'HOSTS="$LWS_LEADER_ADDRESS:{slots}"; for i in $(seq 1 $((LWS_GROUP_SIZE - 1))); do '
        f'HOSTS="$HOSTS,${{LWS_LEADER_ADDRESS%%.*}}-$i.${{LWS_LEADER_ADDRESS#*.}}:{slots}"; done'
    )
    launcher = spec.multi_node_launcher.format(world=sum(launch.replicas[0].gpus_per_node), hosts='"$HOSTS"')
    return f"{hosts}\nexec {launcher} {cmd}", "mkdir -p /run/sshd\nexec /usr/sbin/sshd -D  # joins the leader's MPI world"


def _leader_worker_set(launch: GroupLaunch, catalog: Catalog) -> dict[str, Any]:
    g, labels = launch.group, _labels(launch)
    first = launch.replicas[0]
    leader_cmd, worker_cmd = _roles(launch, catalog)
    gpu_a, gpu_b = launch.gpus[0], launch.gpus[-1]
    leader = _pod(launch, gpu_a, first.gpus_per_node[0], _script(launch, leader_cmd), catalog, labels, serving=True)
    worker = _pod(launch, gpu_b, first.gpus_per_node[-1], _script(launch, worker_cmd), catalog, labels, serving=False)
    return {
        "apiVersion": LWS_API,
        "kind": "LeaderWorkerSet",
        "metadata": {"name": _name(launch), "labels": labels},
        "spec": {
            "replicas": g.replicas,
            "leaderWorkerTemplate": {
                "size": len(first.nodes),
                "restartPolicy": "RecreateGroupOnPodRestart",
                "leaderTemplate": leader,
                "workerTemplate": worker,
            },
        },
    }


def _service(launch: GroupLaunch, spans: bool) -> dict[str, Any]:
    selector = {"app.kubernetes.io/name": _name(launch)}
    if spans:
        selector[LWS_WORKER_INDEX_LABEL] = "0"  # only leaders serve HTTP
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": _name(launch), "labels": _labels(launch)},
        "spec": {"selector": selector, "ports": [{"name": "http", "port": BASE_PORT, "targetPort": BASE_PORT}]},
    }


def group_manifests(launch: GroupLaunch, catalog: Catalog) -> list[dict[str, Any]]:
    """The workload and Service of one launchable group (empty when it cannot be launched)."""
    if launch.blocker or not launch.replicas:
        return []
    spans = launch.replicas[0].spans_nodes
    workload = _leader_worker_set(launch, catalog) if spans else _deployment(launch, catalog)
    return [workload, _service(launch, spans)]


class _PlainDumper(yaml.SafeDumper):
    """No YAML anchors/aliases: every manifest reads on its own."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def render_manifests(launch: GroupLaunch, catalog: Catalog) -> str:
    """A multi-document YAML file, with a comment header naming engine, version and caveats."""
    fw = launch.framework
    head = [f"# guideopt Kubernetes manifests: plan rank {launch.rank}, group {launch.index}; {fw.name} {fw.launch.version}"]
    head += [f"# NOTE: {n}" for n in launch.notes]
    if launch.blocker:
        head.append(f"# cannot launch this group as planned: {launch.blocker}")
    docs = group_manifests(launch, catalog)
    if docs and docs[0]["kind"] == "LeaderWorkerSet":
        head.append("# needs the LeaderWorkerSet controller (https://github.com/kubernetes-sigs/lws) installed in the cluster")
        if fw.launch.multi_node is MultiNode.MPI:
            head.append("# MPI: the leader's mpirun reaches the workers over SSH (the image needs sshd and a shared key)")
    body = "---\n".join(yaml.dump(d, Dumper=_PlainDumper, sort_keys=False, width=1000) for d in docs)
    return "\n".join(head) + "\n" + body
