"""Launch scripts and Kubernetes manifests of MoE layouts (attention DP, expert parallelism) for
every engine version: the flags that start them, checked against each version's flag list."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import yaml

from guideopt import api
from guideopt.catalog import load_catalog
from guideopt.io.launch import group_launch, render_script
from guideopt.io.launch.kubernetes import render_manifests
from guideopt.model.plan import Group
from tests.conftest import LLAMA2_7B
from tests.test_engine_flags import _check_flags, _family, engine_flags

CAT = load_catalog()
R1 = "deepseek-ai/DeepSeek-R1"
ENTRY = {"vllm": "vllm serve", "sglang": "sglang.launch_server", "trtllm": "trtllm-serve"}
MOE_FLAGS = ("--enable-expert-parallel", "--data-parallel", "--enable-dp-attention", "--dp-size", "--attn-dp-size", "--ep-size")


@pytest.fixture(scope="module")
def dense() -> Group:
    """A planned dense group on one H200 (tp 1): the template the MoE layouts are copied from."""
    req = {
        "model": LLAMA2_7B,
        "workload": {"input_len": 512, "output_len": 256},
        "budget": {"usd_per_hour": 20},
        "gpus": {"h200-sxm": 1},
        "parallelism": {"tp": [1], "pp": [1]},
    }
    return api.plan(req).plans[0].groups[0]


def _layout(dense: Group, fw_id: str, *, tp: int, attention_dp: int, moe_ep: int, moe_tp: int | None = 1, replicas: int = 1) -> Group:
    gpus = tp * attention_dp * replicas
    return dense.model_copy(
        update={
            "framework": fw_id,
            "tp": tp,
            "attention_dp": attention_dp,
            "moe_ep": moe_ep,
            "moe_tp": moe_tp,
            "dtype": "fp8",
            "kv_dtype": "fp8" if CAT.framework(fw_id).capabilities.kv_dtypes else "fp16",
            "replicas": replicas,
            "num_gpus": gpus,
        }
    )


def _emit(group: Group, tmp_path: Path) -> tuple[str, str]:
    launch = group_launch(group, rank=1, index=1, first_slot=0, model=R1, max_len=5000, catalog=CAT)
    assert launch.blocker is None, launch.blocker
    script = tmp_path / launch.script_name
    script.write_text(render_script(launch))
    subprocess.run(["bash", "-n", str(script)], check=True)
    return script.read_text(), render_manifests(launch, CAT)


def _server_lines(script: str, fw_id: str) -> list[str]:
    entry = ENTRY[_family(fw_id)]
    return [line.strip() for line in script.splitlines() if entry in line and not line.lstrip().startswith("#")]


def _flag(line: str, name: str) -> str:
    match = re.search(rf"{re.escape(name)} (\S+)", line)
    assert match, (name, line)
    return match.group(1)


@pytest.mark.parametrize("fw_id", ["vllm", "vllm-0.33"])
def test_dep8_on_vllm_is_data_parallel_8_with_expert_parallel(fw_id: str, dense: Group, tmp_path: Path) -> None:
    script, manifests = _emit(_layout(dense, fw_id, tp=1, attention_dp=8, moe_ep=8), tmp_path)
    (line,) = _server_lines(script, fw_id)
    assert "--data-parallel-size 8 --enable-expert-parallel" in line
    assert _flag(line, "--tensor-parallel-size") == "1"
    assert "CUDA_VISIBLE_DEVICES=0,1,2,3,4,5,6,7 " in line  # one replica on all 8 GPUs
    assert "attention DP 8, experts EP 8 x TP 1" in script
    _check_flags(line, fw_id, engine_flags(fw_id))
    (deployment, _) = list(yaml.safe_load_all(manifests))
    assert deployment["kind"] == "Deployment"
    assert deployment["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == 8


@pytest.mark.parametrize(("fw_id", "dp_flags"), [("sglang", "--enable-dp-attention --dp-size 8"), ("sglang-0.5.23", "--attn-dp-size 8")])
def test_dep8_on_sglang_runs_dp_attention_over_the_whole_tp_group(fw_id: str, dp_flags: str, dense: Group, tmp_path: Path) -> None:
    script, _ = _emit(_layout(dense, fw_id, tp=1, attention_dp=8, moe_ep=8), tmp_path)
    (line,) = _server_lines(script, fw_id)
    assert _flag(line, "--tp-size") == "8"  # SGLang's --tp-size is every GPU of the instance with dp attention
    assert dp_flags in line and "--ep-size 8" in line
    _check_flags(line, fw_id, engine_flags(fw_id))


@pytest.mark.parametrize("fw_id", ["trtllm", "trtllm-1.2"])
def test_dep8_on_trtllm_writes_the_moe_layout_into_the_options_file(fw_id: str, dense: Group, tmp_path: Path) -> None:
    script, manifests = _emit(_layout(dense, fw_id, tp=1, attention_dp=8, moe_ep=8), tmp_path)
    (line,) = _server_lines(script, fw_id)
    assert _flag(line, "--tp_size") == "8" and '--extra_llm_api_options "$EXTRA_OPTIONS"' in line
    _check_flags(line, fw_id, engine_flags(fw_id))
    body = script.split("<<'YAML'\n", 1)[1].split("\nYAML", 1)[0]
    options = yaml.safe_load(body)
    assert options["enable_attention_dp"] is True
    assert (options["moe_expert_parallel_size"], options["moe_tensor_parallel_size"]) == (8, 1)
    assert options["moe_config"]["backend"] == "CUTLASS" and options["kv_cache_config"]["dtype"] == "fp8"
    assert "enable_attention_dp: true" in manifests


def test_tep8_on_trtllm_splits_experts_without_attention_dp(dense: Group, tmp_path: Path) -> None:
    script, _ = _emit(_layout(dense, "trtllm", tp=8, attention_dp=1, moe_ep=8), tmp_path)
    (line,) = _server_lines(script, "trtllm")
    assert _flag(line, "--tp_size") == "8"
    assert "enable_attention_dp: false" in script and "moe_expert_parallel_size: 8" in script


@pytest.mark.parametrize("fw_id", ["vllm", "vllm-0.33", "sglang", "sglang-0.5.23", "trtllm", "trtllm-1.2", "fastgen"])
def test_a_dense_group_emits_no_moe_flags(fw_id: str, dense: Group, tmp_path: Path) -> None:
    group = dense.model_copy(update={"framework": fw_id})
    launch = group_launch(group, rank=1, index=1, first_slot=0, model=LLAMA2_7B, max_len=768, catalog=CAT)
    script = render_script(launch)
    assert not any(flag in script for flag in MOE_FLAGS)
    assert "enable_attention_dp" not in script and "moe_expert_parallel_size" not in script
    assert f"# layout: {group.replicas} replica(s) x (tp {group.tp} x pp {group.pp}) on" in script


def test_a_dense_vllm_command_is_the_template_alone(dense: Group) -> None:
    launch = group_launch(dense, rank=1, index=1, first_slot=0, model=LLAMA2_7B, max_len=None, catalog=CAT)
    line = launch.replicas[0].command
    assert line.startswith(f'vllm serve "$MODEL" --tensor-parallel-size {dense.tp} --pipeline-parallel-size {dense.pp} --max-num-seqs ')
    assert line.endswith("--port 8000") or " --dtype " in line


def test_fastgen_refuses_expert_parallel_layouts_in_one_line(dense: Group, tmp_path: Path) -> None:
    group = _layout(dense, "fastgen", tp=1, attention_dp=8, moe_ep=8).model_copy(update={"dtype": "fp16", "kv_dtype": "fp16"})
    launch = group_launch(group, rank=1, index=1, first_slot=0, model=R1, max_len=5000, catalog=CAT)
    assert launch.blocker and "no expert parallelism" in launch.blocker and "\n" not in launch.blocker
    assert "exit 1" in render_script(launch) and not launch.replicas


def test_vllm_refuses_experts_split_by_tp_under_ep(dense: Group) -> None:
    group = _layout(dense, "vllm-0.33", tp=8, attention_dp=1, moe_ep=4, moe_tp=2)
    launch = group_launch(group, rank=1, index=1, first_slot=0, model=R1, max_len=5000, catalog=CAT)
    assert launch.blocker and "moe_ep 8" in launch.blocker


def test_sglang_runs_experts_split_by_tp_under_ep(dense: Group, tmp_path: Path) -> None:
    script, _ = _emit(_layout(dense, "sglang-0.5.23", tp=8, attention_dp=1, moe_ep=4, moe_tp=2), tmp_path)
    (line,) = _server_lines(script, "sglang-0.5.23")
    assert _flag(line, "--tp-size") == "8" and "--ep-size 4" in line and "--attn-dp-size" not in line


def test_vllm_dep16_across_two_nodes_starts_data_parallel_ranks_per_node(dense: Group, tmp_path: Path) -> None:
    script, manifests = _emit(_layout(dense, "vllm-0.33", tp=1, attention_dp=16, moe_ep=16), tmp_path)
    head, worker = _server_lines(script, "vllm-0.33")
    for line in (head, worker):
        assert "--data-parallel-size 16 --enable-expert-parallel" in line
        assert '--data-parallel-size-local 8 --data-parallel-address "$HEAD_ADDRESS" --data-parallel-rpc-port 29550' in line
        _check_flags(line, "vllm-0.33", engine_flags("vllm-0.33"))
    assert "--headless" not in head and "--headless --data-parallel-start-rank 8" in worker
    assert "ray start" not in script
    lws = next(d for d in yaml.safe_load_all(manifests) if d["kind"] == "LeaderWorkerSet")
    worker_cmd = lws["spec"]["leaderWorkerTemplate"]["workerTemplate"]["spec"]["containers"][0]["command"][2]
    assert '--data-parallel-start-rank "$((LWS_WORKER_INDEX * 8))"' in worker_cmd


def test_sglang_dep16_across_two_nodes_uses_node_ranks(dense: Group, tmp_path: Path) -> None:
    script, _ = _emit(_layout(dense, "sglang", tp=1, attention_dp=16, moe_ep=16), tmp_path)
    lines = _server_lines(script, "sglang")
    assert len(lines) == 2 and all("--tp-size 16" in line and "--dp-size 16" in line and "--nnodes 2" in line for line in lines)
