"""How an engine version is started, as stored under ``launch:`` in
``catalogs/frameworks/*.yaml``. A newer engine version is a new catalog entry with its own
``launch`` block, not a code change.

Command templates are ``str.format`` strings over the fields listed in
``guideopt.io.launch.engines.replica_command``; ``$MODEL`` is left to the shell.
"""

from __future__ import annotations

from enum import Enum

from pydantic import Field

from guideopt.model.base import StrictModel
from guideopt.model.gpu import Vendor


class MultiNode(str, Enum):
    """How one replica larger than a node is started."""

    RAY = "ray"  # a Ray cluster over the replica's nodes; the head runs the server (vLLM)
    NODE_RANK = "node_rank"  # the same server command on every node with its rank (SGLang)
    MPI = "mpi"  # one MPI world started from the first node (TensorRT-LLM)
    NONE = "none"  # replicas never span nodes (FastGen)


class EngineLaunch(StrictModel):
    version: str = Field(description="engine release whose command line the template follows")
    images: dict[Vendor, str] = Field(min_length=1, description="container image per GPU vendor (Kubernetes manifests)")
    install: str = Field(default="", description="shell line that installs the engine in the image, when it has none")
    health_path: str | None = Field(description="HTTP readiness path; None: probe the TCP port")
    command: str = Field(description="starts ONE replica")
    max_len_arg: str = ""
    dtype_args: dict[str, str] = Field(default_factory=dict, description="weight precision -> extra arguments")
    kv_dtype_args: dict[str, str] = Field(default_factory=dict, description="KV-cache precision -> extra arguments")
    kv_dtype_options: dict[str, str] = Field(default_factory=dict, description="KV-cache precision -> YAML for the options file")
    extra_options_arg: str = Field(default="", description="argument that passes an options file ({path})")
    pre_quantized: dict[str, str] = Field(
        default_factory=dict, description="weight precision -> the pre-quantized checkpoint MODEL must name"
    )
    multi_node: MultiNode
    multi_node_args: str = Field(default="", description="arguments added when a replica spans nodes")
    multi_node_launcher: str = Field(default="", description="MPI launcher prefix ({world}, {hosts})")
    selects_gpus_by_env: bool = Field(default=True, description="False: the engine takes GPU indices itself (MII device_map)")
    seqs_capped_by_split: bool = Field(default=False, description="the engine refuses more sequences per pass than tokens per pass")
    max_context_default: int | None = Field(default=None, description="the engine's own per-sequence context cap, raised when needed")
    # MoE layouts (Group.attention_dp, moe_tp, moe_ep); "" where the engine version has no such flag.
    tp_counts_attention_dp: bool = Field(
        default=False, description="the {tp} flag is the instance's GPUs per stage, tp x attention_dp (SGLang, TRT-LLM)"
    )
    attention_dp_args: str = Field(default="", description="arguments that start attention DP ({attention_dp} ranks)")
    expert_parallel_args: str = Field(default="", description="arguments that split the experts over {moe_ep} ranks")
    moe_options: str = Field(
        default="", description="YAML for the options file of an EP / attention-DP layout ({attention_dp_on}, {moe_ep}, {moe_tp})"
    )
    dp_multi_node_args: str = Field(
        default="", description="arguments of every node of an attention-DP replica that spans nodes ({local}, {head}, {rpc_port})"
    )
    dp_worker_args: str = Field(default="", description="further arguments of its non-head nodes ({start}: first DP rank there)")


class KubernetesCatalog(StrictModel):
    """How GPUs are requested and selected on Kubernetes (``catalogs/kubernetes.yaml``)."""

    resources: dict[Vendor, str] = Field(description="extended resource per vendor (device plugin)")
    product_labels: dict[Vendor, str] = Field(description="node label that names the GPU product, per vendor")
    products: dict[str, str] = Field(description="catalog GPU id -> value of its product label")
    sources: list[str] = Field(min_length=1)
