"""Asymmetric pipelines across GPU types (issue 6, HexGen-style)."""

from __future__ import annotations

import numpy as np
import pytest
from plan_checker import check_plan

import guideopt.api as api
from guideopt.costs.pipeline import balanced_split
from guideopt.errors import NoFeasiblePlanError
from guideopt.model.request import PlanRequest

SEVENTY_B_ON_MIXED_48GB = dict(
    model="meta-llama/Llama-2-70b-hf",
    workload={"input_len": 512, "output_len": 256},
    budget={"usd_per_hour": 10},
    heterogeneous=True,
    gpus={"l40s": 2, "rtx-a6000": 2},
    parallelism={"pp": [1, 2]},
)


def test_70b_runs_on_two_48gb_cards_of_one_type_plus_two_of_another(catalog):
    result = api.plan(SEVENTY_B_ON_MIXED_48GB, catalog)
    plan = result.plans[0]
    assert plan.gpu_counts == {"l40s": 2, "rtx-a6000": 2}
    (group,) = plan.groups
    assert group.gpu == "mixed" and group.stages is not None and len(group.stages) == 2
    arch = catalog.model("meta-llama/Llama-2-70b-hf")
    assert sum(st["layers"] for st in group.stages) == arch.num_layers
    for st in group.stages:
        assert st["layers"] >= 1
        assert st["memory"]["total_per_gpu_gb"] <= st["memory"]["usable_gb"] + 1e-6 <= catalog.gpu(st["gpu"]).memory_gb + 1e-6
    m = group.metrics
    assert m.ttft_ms > 0 and m.tpot_ms > 0 and m.output_throughput_tok_s > 0
    assert check_plan(plan.model_dump(), PlanRequest(**SEVENTY_B_ON_MIXED_48GB), catalog) == []


def test_no_single_type_in_that_inventory_can_hold_the_model(catalog):
    request = dict(SEVENTY_B_ON_MIXED_48GB, heterogeneous=False)
    with pytest.raises(NoFeasiblePlanError):
        api.plan(request, catalog)
    assert api.plan(SEVENTY_B_ON_MIXED_48GB, catalog).homogeneous_best["plan"] is None


def test_pipelines_need_pp_2_allowed(catalog):
    with pytest.raises(NoFeasiblePlanError):
        api.plan(dict(SEVENTY_B_ON_MIXED_48GB, parallelism={"pp": [1]}), catalog)


def test_layers_follow_speed_when_memory_allows():
    class Arch:
        num_layers = 80

    # stage A twice as fast per layer: it takes about two thirds of the layers
    la = balanced_split(Arch, per_layer_a=np.array([1.0]), per_layer_b=np.array([2.0]), cap_a=np.array([80.0]), cap_b=np.array([80.0]))
    assert la[0] in (53.0, 54.0)
    # ... unless it cannot hold them
    la = balanced_split(Arch, per_layer_a=np.array([1.0]), per_layer_b=np.array([2.0]), cap_a=np.array([40.0]), cap_b=np.array([80.0]))
    assert la[0] == 40.0
    # no split fits: NaN
    la = balanced_split(Arch, per_layer_a=np.array([1.0]), per_layer_b=np.array([1.0]), cap_a=np.array([30.0]), cap_b=np.array([30.0]))
    assert np.isnan(la[0])


def test_slower_stage_sets_the_pace(catalog):
    """A two-stage pipeline over a faster and a slower GPU type is paced by its slower stage:
    its TPOT is no better than a uniform pipeline of the *faster* type with the same TP,
    batch and split (whose stages are both fast), and the layer split gives the faster stage
    at least as many layers as the slower one."""
    plan = api.plan(SEVENTY_B_ON_MIXED_48GB, catalog).plans[0]
    (group,) = plan.groups
    uniform = {}
    for st in group.stages:
        pred = api.predict(
            {
                "model": SEVENTY_B_ON_MIXED_48GB["model"],
                "gpu": st["gpu"],
                "num_gpus": 2 * st["tp"],
                "tp": st["tp"],
                "pp": 2,
                "batch": group.batch,
                "split": group.split,
                **SEVENTY_B_ON_MIXED_48GB["workload"],
            },
            catalog,
        )
        uniform[st["gpu"]] = pred.metrics.tpot_ms
    fast, slow = sorted(uniform, key=uniform.get)
    assert uniform[fast] < uniform[slow]  # the two types really differ in speed
    assert group.metrics.tpot_ms >= uniform[fast]
    layers = {st["gpu"]: st["layers"] for st in group.stages}
    assert layers[fast] >= layers[slow]
    used = [st["memory"]["total_per_gpu_gb"] / st["memory"]["gpu_memory_gb"] for st in group.stages]
    assert max(used) <= 1.0


def test_mixed_pipeline_launch_script_uses_ray_and_the_planned_layer_split(catalog, tmp_path):
    import subprocess

    from guideopt.io.launch import emit

    result = api.plan(SEVENTY_B_ON_MIXED_48GB, catalog)
    emit(result, tmp_path, request=SEVENTY_B_ON_MIXED_48GB)
    (script,) = sorted(tmp_path.glob("launch-rank1-*.sh"))
    text = script.read_text()
    stages = result.plans[0].groups[0].stages
    assert f"VLLM_PP_LAYER_PARTITION={stages[0]['layers']},{stages[1]['layers']}" in text
    assert "--distributed-executor-backend ray" in text and "ray start --head" in text
    assert "--pipeline-parallel-size 2" in text
    assert subprocess.run(["bash", "-n", str(script)]).returncode == 0


def test_mixed_pipeline_replicas_listen_on_distinct_ports(catalog, tmp_path):
    """Issue 12: every replica of a cross-type group used to start on port 8000."""
    import re

    from guideopt.io.launch import emit

    result = api.plan(SEVENTY_B_ON_MIXED_48GB, catalog)
    plan = result.plans[0]
    group = plan.groups[0].model_copy(update={"replicas": 3})
    two = result.model_copy(update={"plans": [plan.model_copy(update={"groups": [group]})]})
    (script,) = [p for p in emit(two, tmp_path, request=SEVENTY_B_ON_MIXED_48GB) if p.suffix == ".sh"]
    text = script.read_text()
    ports = re.findall(r"vllm serve .*--port (\d+)", text)
    assert ports == ["8000", "8001", "8002"]
    assert "node must be 0..5" in text and text.count('ray start --address="$HEAD_ADDRESS:6379"') == 3
