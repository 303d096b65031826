"""What a worker of a disaggregated plan adds to its engine's command: its role and the KV connector.

A disaggregated plan (``Plan.kv_transfer`` set) has a ``prefill`` and a ``decode`` group; each
group is a pool of workers started like an aggregated group's replicas, plus these arguments.
Sources, per engine family:

* vLLM (0.11.0 and 0.33.0 wheels): ``--kv-transfer-config`` takes a KVTransferConfig
  (vllm/config/kv_transfer.py: ``kv_connector``, ``kv_role`` in KVProducer | KVConsumer =
  kv_producer, kv_consumer, kv_both); ``NixlConnector`` is registered in
  distributed/kv_transfer/kv_connector/factory.py. NIXL's handshake listens on
  ``VLLM_NIXL_SIDE_CHANNEL_HOST``:``VLLM_NIXL_SIDE_CHANNEL_PORT`` (envs.py, default localhost:5600),
  so each worker gets its node's address and a port block of its own.
* SGLang (0.5.3 server_args.py; 0.5.23 arg_groups/fields/disagg.py): ``--disaggregation-mode
  prefill|decode``, ``--disaggregation-transfer-backend`` (default mooncake; nixl chosen here,
  the connector the other stacks use), ``--disaggregation-bootstrap-port`` on prefill servers
  (default 8998).
* TensorRT-LLM 1.2 (no wheel readable; second-hand from ai-dynamo 1.6.1, which drives TensorRT-LLM
  1.3.0rc29, tests/data/engine_flags/trtllm-from-dynamo-1.6.1.json): workers read
  ``cache_transceiver_config: {backend: DEFAULT}`` from their LLM API options file, context
  (prefill) workers also ``disable_overlap_scheduler: true`` — the options of Dynamo's own
  disaggregated prefill worker (dynamo/profiler/tests/unit/test_trtllm_override_merge.py:49-50;
  dynamo/profiler/utils/config_modifiers/trtllm.py:331-338 turns both off to make a prefill worker
  aggregated, :374-380 drops the transceiver of a decode worker).
"""

from __future__ import annotations

import json

from guideopt.model.framework import Framework
from guideopt.model.plan import Group, Plan

PREFILL, DECODE = "prefill", "decode"
ROLES = (PREFILL, DECODE)
# vLLM: the same connector and role on both pools (kv_both produces and consumes; NIXL pulls
# the prefill's blocks from the decode side).
VLLM_KV_TRANSFER = {"kv_connector": "NixlConnector", "kv_role": "kv_both"}
NIXL_SIDE_BASE_PORT = 5600  # vllm envs.py VLLM_NIXL_SIDE_CHANNEL_PORT default
NIXL_PORTS_PER_REPLICA = 16  # one per GPU rank of a replica, with room (replicas here are <= 8 GPUs a node)
SGLANG_TRANSFER_BACKEND = "nixl"
SGLANG_BOOTSTRAP_BASE_PORT = 8998  # sglang disaggregation_bootstrap_port default
NODE_ADDRESS_LINE = (
    "NODE_ADDRESS=\"${NODE_ADDRESS:-$(hostname -I | awk '{print $1}')}\"  # this host's address, as the other pool reaches it"
)
# TensorRT-LLM cache_transceiver_config.backend: DEFAULT lets the engine pick its transceiver; the
# value Dynamo 1.6.1 writes (test_trtllm_override_merge.py:49). UCX / NIXL name one (recalled).
TRTLLM_CACHE_BACKEND = "DEFAULT"


def family(fw: Framework) -> str:
    """The engine family (vllm, sglang, trtllm, fastgen) of a catalog entry."""
    return fw.calibration_id


def is_disaggregated(plan: Plan) -> bool:
    return plan.kv_transfer is not None and any(g.role in ROLES for g in plan.groups)


def pools(plan: Plan) -> tuple[int, int]:
    """0-based indices of the prefill and the decode group of a disaggregated plan."""
    roles = [g.role for g in plan.groups]
    return roles.index(PREFILL), roles.index(DECODE)


def vllm_kv_transfer_json() -> str:
    return json.dumps(VLLM_KV_TRANSFER, separators=(",", ":"))


def bootstrap_port(slot: int) -> int:
    """SGLang prefill bootstrap port of the replica in plan slot ``slot`` (co-located replicas differ)."""
    return SGLANG_BOOTSTRAP_BASE_PORT + slot


def role_args(group: Group, fw: Framework, slot: int, *, bootstrap: int | None = None) -> str:
    """Arguments a worker of ``group``'s role adds to its engine command ("" for an aggregated group)."""
    fam = family(fw)
    if group.role not in ROLES:
        return ""
    if fam == "vllm":
        return f"--kv-transfer-config '{vllm_kv_transfer_json()}'"
    if fam == "sglang":
        args = f"--disaggregation-mode {group.role} --disaggregation-transfer-backend {SGLANG_TRANSFER_BACKEND}"
        if group.role == PREFILL:
            args += f" --disaggregation-bootstrap-port {bootstrap if bootstrap is not None else bootstrap_port(slot)}"
        return args
    return ""  # TensorRT-LLM: in the options file (role_options)


def role_env(group: Group, fw: Framework, slot: int) -> str:
    """``VAR=value `` assignments before a worker's command (vLLM's NIXL side channel)."""
    if group.role not in ROLES or family(fw) != "vllm":
        return ""
    port = NIXL_SIDE_BASE_PORT + slot * NIXL_PORTS_PER_REPLICA
    return f'VLLM_NIXL_SIDE_CHANNEL_HOST="$NODE_ADDRESS" VLLM_NIXL_SIDE_CHANNEL_PORT={port} '


def needs_node_address(group: Group, fw: Framework) -> bool:
    return bool(role_env(group, fw, 0))


def role_options(group: Group) -> str:
    """YAML a TensorRT-LLM worker of this role adds to its LLM API options file ("" when aggregated)."""
    if group.role not in ROLES:
        return ""
    text = f"cache_transceiver_config:\n  backend: {TRTLLM_CACHE_BACKEND}\n"
    return text + ("disable_overlap_scheduler: true\n" if group.role == PREFILL else "")
