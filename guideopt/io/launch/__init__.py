"""Launch outputs for a plan: a supervised bash script and a Kubernetes manifest per plan
group, and a PLAN.md (engines.py: one replica's command from the catalog; layout.py: nodes,
GPUs and ports; script.py: bash; kubernetes.py: manifests; planmd.py: PLAN.md; emit.py: writing them)."""

from guideopt.io.launch.emit import emit
from guideopt.io.launch.engines import HOST, MULTI_GPU_MARKER, replica_command, sequences_per_pass
from guideopt.io.launch.layout import BASE_PORT, GroupLaunch, Replica, group_launch, plan_launches, replica_gpus
from guideopt.io.launch.planmd import PLAN_FILE, plan_markdown, plan_section, request_in_words, traffic_shares
from guideopt.io.launch.script import render_script

__all__ = [
    "BASE_PORT",
    "HOST",
    "MULTI_GPU_MARKER",
    "PLAN_FILE",
    "GroupLaunch",
    "Replica",
    "emit",
    "group_launch",
    "plan_launches",
    "plan_markdown",
    "plan_section",
    "render_script",
    "replica_command",
    "replica_gpus",
    "request_in_words",
    "sequences_per_pass",
    "traffic_shares",
]
