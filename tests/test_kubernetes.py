"""Kubernetes manifests written by ``--emit``: validated offline against the Kubernetes
schemas (kubernetes-validate bundles them); LeaderWorkerSet, a CRD, against a JSON schema
written from its documented API (tests/data/leaderworkerset-v1.schema.json) with its pod
templates validated as Kubernetes PodTemplates."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
import yaml

from guideopt.catalog import load_catalog
from guideopt.io.launch import emit
from guideopt.io.launch.kubernetes import LWS_WORKER_INDEX_LABEL
from tests.test_engine_flags import CASES, _plan

CAT = load_catalog()
K8S_VERSION = kubernetes_validate.latest_version()
LWS_SCHEMA = json.loads((Path(__file__).resolve().parent / "data" / "leaderworkerset-v1.schema.json").read_text())


def _validate(doc: dict) -> None:
    if doc["kind"] == "LeaderWorkerSet":
        jsonschema.validate(doc, LWS_SCHEMA)
        for role in ("leaderTemplate", "workerTemplate"):
            pod_template = {
                "apiVersion": "v1",
                "kind": "PodTemplate",
                "metadata": {"name": "t"},
                "template": doc["spec"]["leaderWorkerTemplate"][role],
            }
            kubernetes_validate.validate(pod_template, K8S_VERSION, strict=True)
    else:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def _pods(doc: dict) -> list[dict]:
    if doc["kind"] == "Deployment":
        return [doc["spec"]["template"]]
    if doc["kind"] == "LeaderWorkerSet":
        lwt = doc["spec"]["leaderWorkerTemplate"]
        return [lwt["leaderTemplate"], lwt["workerTemplate"]]
    return []


@pytest.mark.parametrize(("fw_id", "vendor", "layout"), [c for c in CASES if c[2] != "single-gpu"])
def test_manifests_validate_and_name_gpus_images_and_probes(fw_id: str, vendor: str, layout: str, tmp_path: Path) -> None:
    req, result = _plan(fw_id, vendor, layout)
    if result is None:
        return  # the engine cannot run this case (tests/test_engine_flags.py checks that)
    fw = CAT.framework(fw_id)
    kube = CAT.kubernetes
    manifests = [p for p in emit(result, tmp_path, request=req) if p.name.startswith("k8s-")]
    groups = [g for plan in result.plans for g in plan.groups]
    assert len(manifests) == len(groups)
    for path, group in zip(manifests, groups):
        docs = list(yaml.safe_load_all(path.read_text()))
        assert [d["kind"] for d in docs][1:] == ["Service"]
        workload, service = docs
        assert workload["kind"] == ("LeaderWorkerSet" if group.stages or group.tp * group.pp > 8 else "Deployment")
        for doc in docs:
            _validate(doc)
        assert f"{fw.name} {fw.launch.version}" in path.read_text().splitlines()[0]
        selector = service["spec"]["selector"]
        for pod in _pods(workload):
            assert {k: v for k, v in selector.items() if k != LWS_WORKER_INDEX_LABEL}.items() <= pod["metadata"]["labels"].items()
            (container,) = pod["spec"]["containers"]
            gpu_ids = [s["gpu"] for s in group.stages] if group.stages else [group.gpu]
            gpus = [CAT.gpu(g) for g in gpu_ids]
            assert container["image"] in {fw.launch.images[g.vendor] for g in gpus}
            (resource,) = container["resources"]["limits"]
            assert resource == kube.resources[gpus[0].vendor]
            (label, value), *_ = pod["spec"]["nodeSelector"].items()
            assert label == kube.product_labels[gpus[0].vendor] and value in {kube.products[g] for g in gpu_ids}
        serving = _pods(workload)[0]["spec"]["containers"][0]
        probe = serving["readinessProbe"]
        assert probe.get("httpGet", {}).get("path") == fw.launch.health_path or (fw.launch.health_path is None and "tcpSocket" in probe)
        assert group.replicas == workload["spec"]["replicas"]


def test_an_invalid_manifest_is_caught() -> None:
    """The validation is real: a misspelt field fails."""
    bad = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "x"}, "spec": {"ports": [{"prot": 80}]}}
    with pytest.raises(kubernetes_validate.ValidationError):
        _validate(bad)
    with pytest.raises(jsonschema.ValidationError):
        _validate({"apiVersion": "leaderworkerset.x-k8s.io/v1", "kind": "LeaderWorkerSet", "metadata": {"name": "x"}, "spec": {}})
