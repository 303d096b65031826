"""Launch outputs tied to the engines: every engine x vendor x layout the solver can return
is one the engine supports, its script starts something on every node (run against stub
binaries), and every flag it emits exists in the engine version the catalog names
(tests/data/engine_flags, extracted by scripts/extract_engine_flags.py)."""

from __future__ import annotations

import ast
import json
import os
import re
import shlex
import subprocess
from pathlib import Path

import pytest

from guideopt import api
from guideopt.catalog import load_catalog
from guideopt.costs.capability import layout_reason, mixed_pipeline_reason, option_reason
from guideopt.errors import NoFeasiblePlanError
from guideopt.io.launch import emit
from guideopt.model.dtype import Dtype
from guideopt.model.plan import Group, PlanResult
from tests.conftest import LLAMA2_7B, LLAMA2_70B

CAT = load_catalog()
FLAGS_DIR = Path(__file__).resolve().parent / "data" / "engine_flags"
ENTRY = {"vllm": "vllm serve", "sglang": "sglang.launch_server", "trtllm": "trtllm-serve", "fastgen": "mii.serve("}
VENDOR_GPU = {"nvidia": "h100-sxm", "amd": "mi300x"}
LAYOUTS = {"single-gpu": ([1], [1]), "tp-in-node": ([2], [1]), "multi-node": ([8], [2])}
MIXED = {"nvidia": {"l40s": 2, "rtx-a6000": 2}, "amd": {"mi250": 2, "mi250x": 2}}
STUBS = ("vllm", "ray", "python", "trtllm-serve", "mpirun")
STUB_RUN_S = 20
STUB_SLEEP_S = 0.5  # stub servers stay up this long, so every one logs before the first exits


def _family(fw_id: str) -> str:
    """The engine family of a catalog id (vllm-0.33 -> vllm): its entry point and flag-list name."""
    return CAT.framework(fw_id).calibration_id


def engine_flags(fw_id: str) -> dict:
    fw = CAT.framework(fw_id)
    path = FLAGS_DIR / f"{_family(fw_id)}-{fw.launch.version}.json"
    assert path.is_file(), f"no flag list for {fw_id} {fw.launch.version} (run scripts/extract_engine_flags.py)"
    return json.loads(path.read_text())


def test_every_flag_list_names_the_catalog_version() -> None:
    for fw in CAT.frameworks.values():
        data = engine_flags(fw.id)
        assert data["version"] == fw.launch.version and data["files"]


def _plan(fw_id: str, vendor: str, layout: str) -> tuple[dict, PlanResult | None]:
    if layout == "cross-type":
        req = {
            "model": LLAMA2_70B,
            "workload": {"input_len": 512, "output_len": 256},
            "budget": {"usd_per_hour": 60},
            "heterogeneous": True,
            "gpus": MIXED[vendor],
            "parallelism": {"pp": [2]},
            "framework": fw_id,
        }
    else:
        tp, pp = LAYOUTS[layout]
        req = {
            "model": LLAMA2_7B,
            "workload": {"input_len": 512, "output_len": 256},
            "budget": {"usd_per_hour": 100 if layout == "multi-node" else 20},
            "gpus": {VENDOR_GPU[vendor]: {}},
            "parallelism": {"tp": tp, "pp": pp},
            "framework": fw_id,
        }
    try:
        return req, api.plan(req)
    except NoFeasiblePlanError:
        return req, None


def _supported(group: Group) -> bool:
    fw = CAT.framework(group.framework)
    gpus = [CAT.gpu(s["gpu"]) for s in group.stages] if group.stages else [CAT.gpu(group.gpu)]
    if any(option_reason(fw, g, Dtype(group.dtype), Dtype(group.kv_dtype)) for g in gpus):
        return False
    if group.stages:
        return mixed_pipeline_reason(fw, gpus[0], gpus[1], group.stages[0]["tp"], group.stages[1]["tp"]) is None
    return layout_reason(fw, pp=group.pp, gpus_per_replica=group.tp * group.pp, gpus_per_node=gpus[0].gpus_per_node) is None


def _expected_feasible(fw_id: str, vendor: str, layout: str) -> bool:
    fw = CAT.framework(fw_id)
    gpus = [CAT.gpu(g) for g in MIXED[vendor]] if layout == "cross-type" else [CAT.gpu(VENDOR_GPU[vendor])]
    if layout != "cross-type" and any(option_reason(fw, g, Dtype.FP16, Dtype.FP16) for g in gpus):
        return False
    if layout == "cross-type":  # 70B fits only as a pipeline over both types: where the engine can run one
        return mixed_pipeline_reason(fw, gpus[0], gpus[1], 2, 2) is None and all(
            option_reason(fw, g, Dtype.FP16, Dtype.FP16) is None for g in gpus
        )
    tp, pp = LAYOUTS[layout]
    return layout_reason(fw, pp=pp[0], gpus_per_replica=tp[0] * pp[0], gpus_per_node=gpus[0].gpus_per_node) is None


def _server_lines(script: str, fw_id: str) -> list[str]:
    return [line.strip() for line in script.splitlines() if ENTRY[_family(fw_id)] in line and not line.lstrip().startswith("#")]


def _check_flags(line: str, fw_id: str, flags: dict) -> None:
    if _family(fw_id) == "fastgen":
        program = shlex.split(line[line.index("python -c") :])[2]
        call = next(n for n in ast.walk(ast.parse(program)) if isinstance(n, ast.Call) and getattr(n.func, "attr", "") == "serve")
        names = {k.arg for k in call.keywords}
        assert names <= set(flags["serve_kwargs"]), names - set(flags["serve_kwargs"])
        engine = next(ast.literal_eval(k.value) for k in call.keywords if k.arg == "inference_engine_config")
        assert set(engine) <= set(flags["inference_engine_config"])
        assert set(engine["state_manager"]) <= set(flags["state_manager"])
        return
    emitted = set(re.findall(r"(?<![\w-])--[A-Za-z][\w-]*", line[line.index(ENTRY[_family(fw_id)]) :]))
    assert emitted and emitted <= set(flags["flags"]), sorted(emitted - set(flags["flags"]))
    tokens = shlex.split(line[line.index(ENTRY[_family(fw_id)]) :])
    for flag, value in zip(tokens, tokens[1:]):
        if flag in flags.get("choices", {}):
            assert value in flags["choices"][flag], (flag, value)
    for var in re.findall(r"\b(VLLM_[A-Z_]+)=", line):
        assert var in flags["env"], var


def _stub_dir(tmp_path: Path) -> Path:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name in STUBS:  # log the call; "python" also answers the Ray node count
        stub = bin_dir / name
        stub.write_text(
            f'#!/usr/bin/env bash\necho "{name} $*" >> "$STUB_LOG"\n[ "{name}" = python ] && echo 99\nsleep "${{STUB_SLEEP_S:-0}}"\nexit "${{STUB_EXIT:-0}}"\n'
        )
        stub.chmod(0o755)
    return bin_dir


def _run_node(script: Path, node: int, stubs: Path, log: Path, **extra: str) -> subprocess.CompletedProcess:
    env = {
        **extra,
        "PATH": f"{stubs}:{os.environ['PATH']}",
        "STUB_LOG": str(log),
        "HEAD_ADDRESS": "10.0.0.1",
        "HOSTS": "a:8,b:8",
        "MODEL": "m",
    }
    return subprocess.run(["bash", str(script), str(node)], env=env, capture_output=True, text=True, timeout=STUB_RUN_S)


CASES = [(fw, vendor, layout) for fw in sorted(CAT.frameworks) for vendor in VENDOR_GPU for layout in [*LAYOUTS, "cross-type"]]


@pytest.mark.parametrize(("fw_id", "vendor", "layout"), CASES)
def test_engine_vendor_layout(fw_id: str, vendor: str, layout: str, tmp_path: Path) -> None:
    req, result = _plan(fw_id, vendor, layout)
    assert (result is not None) == _expected_feasible(fw_id, vendor, layout)
    if result is None:
        return
    flags = engine_flags(fw_id)
    paths = emit(result, tmp_path / "out", request=req)
    stubs = _stub_dir(tmp_path)
    groups = [group for plan in result.plans for group in plan.groups]
    assert all(_supported(group) for group in groups)
    if (fw_id, vendor, layout) == ("vllm", "nvidia", "cross-type"):
        assert any(group.stages for group in groups)  # the case exists: a pipeline over two GPU types
    for script in (p for p in paths if p.suffix == ".sh"):
        text = script.read_text()
        lines = _server_lines(text, fw_id)
        assert lines, script.name
        for line in lines:
            _check_flags(line, fw_id, flags)
        nodes = int(m.group(1)) + 1 if (m := re.search(r"node must be 0\.\.(\d+)", text)) else 1
        ports = set()
        for node in range(nodes):  # every node runs something: a server, a Ray worker, or joins the MPI world
            log = tmp_path / f"{script.stem}-{node}.log"
            run = _run_node(script, node, stubs, log, STUB_SLEEP_S=str(STUB_SLEEP_S))
            assert run.returncode == 0, run.stderr
            started = log.read_text().splitlines() if log.exists() else []
            assert started or "part of the MPI world" in run.stdout, (script.name, node)
            ports |= {int(p) for line in started for p in re.findall(r"(?:--port |restful_api_port=)(\d+)", line)}
        assert len(ports) == len(_server_lines(text, fw_id)) or layout in ("multi-node", "cross-type")


def test_supervisor_stops_every_server_when_one_exits(tmp_path: Path) -> None:
    req, result = _plan("vllm", "nvidia", "single-gpu")
    assert result is not None and result.plans[0].groups[0].replicas > 1
    script = next(p for p in emit(result, tmp_path / "out", request=req) if p.suffix == ".sh")
    stubs = _stub_dir(tmp_path)
    (stubs / "vllm").write_text(  # replica 0 fails at once; the others would run for a minute
        '#!/usr/bin/env bash\necho "vllm $*" >> "$STUB_LOG"\ncase "$*" in *"--port 8000 "*) exit 7 ;; esac\nsleep 60\n'
    )
    run = _run_node(script, 0, stubs, tmp_path / "log", STOP_GRACE_S="2")
    assert run.returncode == 7 and "stopping the others" in run.stderr


@pytest.mark.parametrize("fw_id", sorted(CAT.frameworks))
def test_every_precision_an_engine_serves_maps_to_its_flags(fw_id: str) -> None:
    """Weight and KV precisions (with their flag values) exist in the engine version named."""
    from guideopt.io.launch import replica_command

    fw, flags = CAT.framework(fw_id), engine_flags(fw_id)
    req = {"model": LLAMA2_7B, "workload": {"input_len": 512, "output_len": 256}, "budget": {"usd_per_hour": 20}, "gpus": {"h100-sxm": 2}}
    base = api.plan({**req, "framework": fw_id}).plans[0].groups[0]
    checked = 0
    for dtype in fw.capabilities.weight_dtypes:
        for kv in {Dtype(dtype) if Dtype(dtype).is_float16 else Dtype.FP16, *map(Dtype, fw.capabilities.kv_dtypes)}:
            group = base.model_copy(update={"dtype": dtype, "kv_dtype": kv.value})
            line = "start env " + replica_command(group, fw, 8000, (0,), fraction=0.9, max_len=768)
            _check_flags(line, fw_id, flags)
            checked += 1
    assert checked >= len(fw.capabilities.weight_dtypes)


def test_the_flag_check_catches_unknown_flags_and_values() -> None:
    vllm, sglang = engine_flags("vllm"), engine_flags("sglang")
    with pytest.raises(AssertionError):
        _check_flags('vllm serve "$MODEL" --tensor-parallel 2', "vllm", vllm)
    with pytest.raises(AssertionError):
        _check_flags("python -m sglang.launch_server --model-path m --kv-cache-dtype fp8", "sglang", sglang)  # 0.5.3: fp8_e4m3/fp8_e5m2
    _check_flags("python -m sglang.launch_server --model-path m --kv-cache-dtype fp8_e4m3", "sglang", sglang)
