"""Launch outputs of disaggregated plans: a script per pool, a router script and a Dynamo
DynamoGraphDeployment, for each stack; flags checked against the packages' extracted lists
(tests/data/engine_flags, scripts/extract_disagg_flags.py), the manifest against the DGD schema
generated from ai-dynamo 1.6.1's own model (tests/data/dynamo-dgd-v1beta1.schema.json)."""

from __future__ import annotations

import functools
import json
import re
import shlex
import subprocess
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
import yaml

from guideopt import api
from guideopt.io.launch import emit
from guideopt.io.launch.dynamo import DGD_API, DGD_KIND
from guideopt.model.plan import Group, Plan, PlanResult
from tests.test_engine_flags import CAT, _check_flags, _run_node, _server_lines, _stub_dir, engine_flags

DATA = Path(__file__).resolve().parent / "data"
DGD_SCHEMA = json.loads((DATA / "dynamo-dgd-v1beta1.schema.json").read_text())
DYNAMO = json.loads((DATA / "engine_flags" / "dynamo-1.6.1.json").read_text())
SGLANG_ROUTER = json.loads((DATA / "engine_flags" / "sglang-router-0.3.2.json").read_text())
K8S_VERSION = kubernetes_validate.latest_version()
FRAMEWORKS = ["vllm-0.33", "vllm", "sglang-0.5.23", "sglang", "trtllm-1.2"]
TP_FLAG = {"vllm": "--tensor-parallel-size", "sglang": "--tp-size", "trtllm": "--tp_size"}


def _request(fw_id: str) -> dict:
    return {
        "model": "meta-llama/Llama-3.1-70B",
        "workload": {"rate_rps": 8, "input_len": 8000, "output_len": 500},
        "slo": {"ttft_ms": 3000, "tpot_ms": 40},
        "budget": {"usd_per_hour": 150},
        "gpus": {"h100-sxm": {}, "h200-sxm": {}},
        "framework": fw_id,
        "disaggregation": "only",
        "top": 2,
    }


@functools.cache
def _plan(fw_id: str) -> PlanResult:
    return api.plan(_request(fw_id))


def _emit(fw_id: str, tmp_path: Path) -> tuple[PlanResult, dict[str, Path]]:
    result = _plan(fw_id)
    assert result.plans and all(p.kv_transfer for p in result.plans)
    paths = emit(result, tmp_path / "out", request=_request(fw_id))
    return result, {p.name: p for p in paths}


def _pools(plan: Plan) -> dict[str, Group]:
    return {str(g.role): g for g in plan.groups}


def _family(fw_id: str) -> str:
    return CAT.framework(fw_id).calibration_id


@pytest.mark.parametrize("fw_id", FRAMEWORKS)
def test_pool_scripts_start_their_role_with_the_packages_flags(fw_id: str, tmp_path: Path) -> None:
    result, files = _emit(fw_id, tmp_path)
    flags, fam = engine_flags(fw_id), _family(fw_id)
    stubs = _stub_dir(tmp_path)
    for plan in result.plans:
        for role, group in _pools(plan).items():
            script = files[f"launch-rank{plan.rank}-{role}-{group.gpu}-{fw_id}.sh"]
            text = script.read_text()
            assert subprocess.run(["bash", "-n", str(script)], capture_output=True).returncode == 0
            lines = _server_lines(text, fw_id)
            assert len(lines) == group.replicas  # one server per worker (no replica spans nodes here)
            for line in lines:
                _check_flags(line, fw_id, flags)
                tokens = shlex.split(line[line.index(line.split()[2]) :])
                tp = tokens[tokens.index(TP_FLAG[fam]) + 1]
                assert int(tp) == group.tp * (group.attention_dp if CAT.framework(fw_id).launch.tp_counts_attention_dp else 1)
                if fam == "vllm":
                    cfg = json.loads(tokens[tokens.index("--kv-transfer-config") + 1])
                    known = flags["kv_transfer"]
                    assert set(cfg) <= set(known["fields"]) and cfg["kv_role"] in known["kv_role"]
                    assert (
                        cfg["kv_connector"] in known["kv_connector"]
                        and cfg["kv_connector"] in CAT.framework(fw_id).capabilities.kv_connectors
                    )
                    for var in re.findall(r"\b(VLLM_[A-Z_]+)=", line):
                        assert var in flags["env"]
                elif fam == "sglang":
                    assert tokens[tokens.index("--disaggregation-mode") + 1] == role
                    backend = tokens[tokens.index("--disaggregation-transfer-backend") + 1]
                    assert backend in flags["choices"]["--disaggregation-transfer-backend"]
                    assert ("--disaggregation-bootstrap-port" in tokens) == (role == "prefill")
                else:
                    assert "--extra_llm_api_options" in tokens
            if fam == "trtllm":
                options = yaml.safe_load(text.split("<<'YAML'\n", 1)[1].split("\nYAML", 1)[0])
                assert options["cache_transceiver_config"]["backend"] in CAT.framework(fw_id).capabilities.kv_connectors
                assert options.get("disable_overlap_scheduler", False) == (role == "prefill")
            run = _run_node(script, 0, stubs, tmp_path / f"{script.stem}.log", NODE_ADDRESS="10.0.0.9", STUB_SLEEP_S="0.3")
            assert run.returncode == 0, run.stderr


def _router_command(log: Path) -> list[str]:
    return shlex.split(log.read_text().splitlines()[-1])


@pytest.mark.parametrize("fw_id", FRAMEWORKS)
def test_router_script_names_every_worker_of_both_pools(fw_id: str, tmp_path: Path) -> None:
    result, files = _emit(fw_id, tmp_path)
    fam = _family(fw_id)
    stubs = _stub_dir(tmp_path)
    (stubs / "curl").write_text("#!/usr/bin/env bash\nexit 0\n")
    (stubs / "curl").chmod(0o755)
    for plan in result.plans:
        pools = _pools(plan)
        script = files[f"launch-rank{plan.rank}-router-{fw_id}.sh"]
        assert subprocess.run(["bash", "-n", str(script)], capture_output=True).returncode == 0
        log, config = tmp_path / f"{script.stem}.log", tmp_path / f"{script.stem}.yaml"
        nodes = {"PREFILL_NODES": " ".join(f"10.0.1.{i}" for i in range(8)), "DECODE_NODES": " ".join(f"10.0.2.{i}" for i in range(8))}
        run = _run_node(script, 0, stubs, log, STUB_SLEEP_S="0.3", DISAGG_CONFIG=str(config), **nodes)
        assert run.returncode == 0, run.stderr
        args = _router_command(log)
        n_prefill, n_decode = pools["prefill"].replicas, pools["decode"].replicas
        if fam == "sglang":
            flags = {a for a in args if a.startswith("--")}
            assert args[:3] == ["python", "-m", "sglang_router.launch_router"] and flags <= set(SGLANG_ROUTER["flags"])
            assert "--pd-disaggregation" in args
            assert args.count("--prefill") == n_prefill and args.count("--decode") == n_decode
            urls = [args[i + 1] for i, a in enumerate(args) if a in ("--prefill", "--decode")]
            assert all(re.fullmatch(r"http://10\.0\.[12]\.\d:\d+", u) for u in urls) and len(set(urls)) == len(urls)
        elif fam == "vllm":
            assert args[args.index("--prefiller-ports") - 1].startswith("10.0.1.")
            hosts = args[args.index("--prefiller-hosts") + 1 : args.index("--prefiller-ports")]
            assert len(hosts) == n_prefill and len(args[args.index("--decoder-ports") + 1 :]) == n_decode
        else:
            assert args[:3] == ["trtllm-serve", "disaggregated", "-c"]
            cfg = yaml.safe_load(config.read_text())
            assert cfg["context_servers"]["num_instances"] == n_prefill == len(cfg["context_servers"]["urls"])
            assert cfg["generation_servers"]["num_instances"] == n_decode == len(cfg["generation_servers"]["urls"])
        missing = _run_node(script, 0, stubs, tmp_path / "none.log", DISAGG_CONFIG=str(config))
        assert missing.returncode != 0 and "PREFILL_NODES" in missing.stderr


def _check_keys(obj: dict, schema_def: str) -> None:
    """Only keys the package's own model names (its models allow extras; ours use none)."""
    assert set(obj) <= set(DGD_SCHEMA["$defs"][schema_def]["properties"]), (schema_def, set(obj))


@pytest.mark.parametrize("fw_id", [f for f in FRAMEWORKS if _family(f) in ("vllm", "sglang")])
def test_dynamo_graph_validates_and_starts_both_pools_and_the_frontend(fw_id: str, tmp_path: Path) -> None:
    result, files = _emit(fw_id, tmp_path)
    flags, fam = engine_flags(fw_id), _family(fw_id)
    for plan in result.plans:
        doc = yaml.safe_load(files[f"k8s-rank{plan.rank}-dynamo-{fw_id}.yaml"].read_text())
        jsonschema.validate(doc, DGD_SCHEMA)
        props = DGD_SCHEMA["properties"]
        assert (doc["apiVersion"], doc["kind"]) == (props["apiVersion"]["default"], props["kind"]["default"]) == (DGD_API, DGD_KIND)
        components = {c["name"]: c for c in doc["spec"]["components"]}
        assert set(components) == {"Frontend", "prefill", "decode"}
        assert {c["type"] for c in components.values()} == {"frontend", *DYNAMO["component_types"]}
        frontend = components["Frontend"]["podTemplate"]["spec"]["containers"][0]
        assert frontend["command"][-1] == "dynamo.frontend" and set(frontend["args"][::2]) <= set(DYNAMO["flags"]["frontend"])
        for role, group in _pools(plan).items():
            component = components[role]
            _check_keys(component, "Component")
            assert component["type"] == role and component["replicas"] == group.replicas
            pod = component["podTemplate"]
            _check_keys(pod, "PodTemplate")
            _check_keys(pod["spec"], "PodSpec") if "nodeSelector" not in pod["spec"] else None
            kubernetes_validate.validate(
                {"apiVersion": "v1", "kind": "PodTemplate", "metadata": {"name": "t"}, "template": pod}, K8S_VERSION, strict=True
            )
            (container,) = pod["spec"]["containers"]
            _check_keys(container, "Container")
            assert container["command"] == ["python3", "-m", f"dynamo.{fam}"]
            assert int(container["resources"]["limits"]["nvidia.com/gpu"]) == group.tp * group.attention_dp * group.pp
            args = container["args"]
            emitted = {a for a in args if a.startswith("--")}
            assert emitted <= set(flags["flags"]) | set(DYNAMO["flags"][fam]), emitted - set(flags["flags"]) - set(DYNAMO["flags"][fam])
            assert args[args.index("--disaggregation-mode") + 1] == role
            assert int(args[args.index(TP_FLAG[fam]) + 1]) == group.tp
            dynamo_only = {i for i, a in enumerate(args) if a in set(DYNAMO["flags"][fam]) - set(flags["flags"])}
            engine_args = [a for i, a in enumerate(args) if i not in dynamo_only and i - 1 not in dynamo_only]
            _check_flags(f"{'vllm serve' if fam == 'vllm' else 'sglang.launch_server'} {shlex.join(engine_args)}", fw_id, flags)


def test_plan_md_names_the_pools_the_router_and_the_kv_link(tmp_path: Path) -> None:
    result, files = _emit("sglang-0.5.23", tmp_path)
    text = files["PLAN.md"].read_text()
    plan = result.plans[0]
    kv = plan.kv_transfer or {}
    assert "Prefill pool: group" in text and "Decode pool: group" in text and "Router: `http://<router-host>:" in text
    assert f"crosses {kv['link']}" in text and "launch-rank1-router-sglang-0.5.23.sh" in text
    assert "k8s-rank1-dynamo-sglang-0.5.23.yaml" in text
    assert not any(name.startswith("k8s-rank1-prefill") for name in files)  # one graph, not one Deployment per pool


def test_trtllm_disaggregated_plan_writes_no_kubernetes_graph(tmp_path: Path) -> None:
    _, files = _emit("trtllm-1.2", tmp_path)
    text = files["k8s-rank1-dynamo-trtllm-1.2.yaml"].read_text()
    assert "not written" in text and yaml.safe_load(text) is None
