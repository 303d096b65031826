"""The Kubernetes manifest of a disaggregated plan: one NVIDIA Dynamo DynamoGraphDeployment.

Its shape follows ai-dynamo 1.6.1 (``nvidia.com/v1beta1``; no CRD or Helm chart ships in the
``ai-dynamo`` or ``ai-dynamo-runtime`` packages, so the structure is the package's own pydantic
model, dynamo/profiler/utils/config.py, and its DGD templates,
dynamo/profiler/templates/dgd/{vllm,sglang}/disagg.yaml): ``spec.components`` lists a ``Frontend``
(type ``frontend``, ``python3 -m dynamo.frontend --http-port``: the router), a ``prefill`` and a
``decode`` component (types from dynamo/planner/monitoring/dgd_services.py), each with
``replicas`` = the pool's workers, a ``podTemplate`` whose ``main`` container runs
``python3 -m dynamo.<engine>`` with the engine's own flags plus ``--disaggregation-mode``, and
``multinode.nodeCount`` when a worker spans nodes. Dynamo 1.6.1's runtime images pin their
engines (vLLM 0.31.0, SGLang 0.5.21: the package's extras); the header says so. No graph is
written for TensorRT-LLM: Dynamo's worker (``python3 -m dynamo.trtllm``) takes flags of its own
(dynamo/trtllm/backend_args.py: ``--tensor-parallel-size``, ``--extra-engine-args``, …), not
trtllm-serve's, and the package's ``trtllm`` extra pins TensorRT-LLM 1.3.0rc29, not the catalog's 1.2.1.
"""

from __future__ import annotations

import re
import shlex
from typing import Any

import yaml

from guideopt.catalog import Catalog
from guideopt.io.launch.engines import planned_fraction, replica_command, replica_gpu_count
from guideopt.io.launch.kubernetes import SHM_SIZE, _PlainDumper
from guideopt.io.launch.layout import BASE_PORT, GroupLaunch
from guideopt.io.launch.roles import SGLANG_BOOTSTRAP_BASE_PORT, family, role_args
from guideopt.model.plan import Plan

DYNAMO_VERSION = "1.6.1"
DGD_API = "nvidia.com/v1beta1"
DGD_KIND = "DynamoGraphDeployment"
# Runtime images and the engine each pins (ai-dynamo 1.6.1 METADATA extras, templates' image names).
DYNAMO_IMAGES = {"vllm": "vllm-runtime", "sglang": "sglang-runtime"}
DYNAMO_PINNED = {"vllm": "vLLM 0.31.0", "sglang": "SGLang 0.5.21"}
DYNAMO_FAMILIES = tuple(DYNAMO_IMAGES)
# The engine entry point each command starts with, and what the Dynamo worker takes instead.
_ENTRY = {"vllm": (("vllm", "serve", "$MODEL"), "--model"), "sglang": (("python", "-m", "sglang.launch_server"), None)}
_DROP = {"vllm": ("--host", "--port"), "sglang": ("--port",)}


def manifest_name(plan: Plan, framework: str) -> str:
    return f"k8s-rank{plan.rank}-dynamo-{framework}.yaml"


def _name(plan: Plan, framework: str) -> str:
    return re.sub(r"[^a-z0-9-]", "-", f"guideopt-rank{plan.rank}-disagg-{framework}".lower())[:63].rstrip("-")


def image(fam: str) -> str:
    return f"nvcr.io/nvidia/ai-dynamo/{DYNAMO_IMAGES[fam]}:{DYNAMO_VERSION}"


def worker_args(launch: GroupLaunch) -> list[str]:
    """The Dynamo worker's arguments: the engine flags the plan sets, the model, the role."""
    g, fw = launch.group, launch.framework
    fam = family(fw)
    fraction = planned_fraction(fw, launch.gpus[0], g)
    aggregated = g.model_copy(update={"role": None})
    tokens = shlex.split(replica_command(aggregated, fw, BASE_PORT, None, fraction=fraction, max_len=launch.max_len))
    entry, model_flag = _ENTRY[fam]
    assert tuple(tokens[: len(entry)]) == entry, tokens[: len(entry)]
    tokens = tokens[len(entry) :]
    out = [model_flag, launch.model or "SET-ME"] if model_flag else []
    skip = False
    for token in tokens:
        if skip:
            skip = False
        elif token in _DROP[fam]:
            skip = True
        else:
            out.append(launch.model or "SET-ME" if token == "$MODEL" else token)
    role = shlex.split(role_args(g, fw, 0, bootstrap=SGLANG_BOOTSTRAP_BASE_PORT))
    if fam == "vllm":
        role = ["--disaggregation-mode", str(g.role), *role]
    return out + role


def _component(launch: GroupLaunch, catalog: Catalog) -> dict[str, Any]:
    g, gpu = launch.group, launch.gpus[0]
    kube, first = catalog.kubernetes, launch.replicas[0]
    per_pod = first.gpus_per_node[0]
    container = {
        "name": "main",
        "image": image(family(launch.framework)),
        "command": ["python3", "-m", f"dynamo.{family(launch.framework)}"],
        "args": worker_args(launch),
        "env": [{"name": "MODEL", "value": launch.model or "SET-ME"}],
        "resources": {"limits": {kube.resources[gpu.vendor]: str(per_pod)}},
        "volumeMounts": [{"name": "shm", "mountPath": "/dev/shm"}],
    }
    component: dict[str, Any] = {
        "name": g.role,
        "type": g.role,
        "replicas": g.replicas,
        "podTemplate": {
            "spec": {
                "nodeSelector": {kube.product_labels[gpu.vendor]: kube.products[gpu.id]},
                "containers": [container],
                "volumes": [{"name": "shm", "emptyDir": {"medium": "Memory", "sizeLimit": SHM_SIZE}}],
            }
        },
    }
    if first.spans_nodes:
        component["multinode"] = {"nodeCount": len(first.nodes)}
    assert per_pod * len(first.nodes) >= replica_gpu_count(g)
    return component


def _frontend(fam: str) -> dict[str, Any]:
    return {
        "name": "Frontend",
        "type": "frontend",
        "replicas": 1,
        "podTemplate": {
            "spec": {
                "containers": [
                    {
                        "name": "main",
                        "image": image(fam),
                        "command": ["python3", "-m", "dynamo.frontend"],
                        "args": ["--http-port", str(BASE_PORT)],
                    }
                ]
            }
        },
    }


def dgd(plan: Plan, prefill: GroupLaunch, decode: GroupLaunch, catalog: Catalog) -> dict[str, Any]:
    fw = prefill.framework
    fam = family(fw)
    labels = {"app.kubernetes.io/part-of": "guideopt", "guideopt/engine": fw.id, "guideopt/dynamo-version": DYNAMO_VERSION}
    return {
        "apiVersion": DGD_API,
        "kind": DGD_KIND,
        "metadata": {"name": _name(plan, fw.id), "labels": labels},
        "spec": {"components": [_frontend(fam), _component(prefill, catalog), _component(decode, catalog)]},
    }


def render_dgd(plan: Plan, prefill: GroupLaunch, decode: GroupLaunch, catalog: Catalog) -> str:
    """The DGD manifest (with a comment header), or only the header when the plan cannot run on Dynamo here."""
    fw = prefill.framework
    fam = family(fw)
    head = [
        f"# guideopt Kubernetes manifest: plan rank {plan.rank}, disaggregated; {fw.name} {fw.launch.version} under NVIDIA Dynamo {DYNAMO_VERSION}"
    ]
    why = prefill.blocker or decode.blocker
    if why or fam not in DYNAMO_FAMILIES:
        head.append(f"# not written: {why or f'{fw.name} is not emitted as a Dynamo graph here'}")
        return "\n".join(head) + "\n"
    head += [
        f"# needs the Dynamo {DYNAMO_VERSION} operator (its DynamoGraphDeployment CRD, {DGD_API}) installed in the cluster",
        f"# NOTE: the {image(fam)} image runs {DYNAMO_PINNED[fam]} (ai-dynamo {DYNAMO_VERSION} pins it), not "
        f"{fw.launch.version}; the flags were checked against {fw.launch.version}",
        f"# requests go to the Frontend component (port {BASE_PORT}); it routes prefill to the prefill workers and decode to the decode workers",
    ]
    head += [f"# NOTE: {note}" for launch in (prefill, decode) for note in launch.notes]
    return "\n".join(head) + "\n" + yaml.dump(dgd(plan, prefill, decode, catalog), Dumper=_PlainDumper, sort_keys=False, width=1000)
