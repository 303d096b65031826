"""The router of a disaggregated plan: the script that starts it in front of the two pools.

Each pool is started by its own group script (``launch-rank<R>-prefill-….sh``,
``launch-rank<R>-decode-….sh``, one node number per host); the router script runs on any host and
is given the pools' node addresses in node order (``PREFILL_NODES``, ``DECODE_NODES``), from which
it builds every worker's URL (the ports are the plan's). Routers, per engine family:

* SGLang: ``python -m sglang_router.launch_router --pd-disaggregation --prefill URL BOOTSTRAP_PORT
  … --decode URL … --host --port`` (flags from sglang-router 0.3.2, sglang_router/router_args.py).
* vLLM: the toy proxy of vLLM's NIXL integration tests
  (tests/v1/kv_connector/nixl_integration/toy_proxy_server.py at the engine's release tag; it is
  not in the wheel, so its path and flags ``--prefiller-hosts/-ports --decoder-hosts/-ports`` are
  recalled). Production routers: Dynamo (the Kubernetes manifest) or llm-d.
* TensorRT-LLM: ``trtllm-serve disaggregated -c CONFIG`` with ``hostname``, ``port``, ``backend``,
  ``context_servers`` and ``generation_servers`` (``num_instances``, ``urls``): recalled. Nothing
  readable confirms it (no wheel; ai-dynamo 1.6.1 routes TensorRT-LLM workers through its own
  frontend), so tests/data/engine_flags/trtllm-from-dynamo-1.6.1.json lists it as "recalled".
"""

from __future__ import annotations

import shlex

from guideopt.io.launch.layout import BASE_PORT, GroupLaunch
from guideopt.io.launch.roles import bootstrap_port, family
from guideopt.io.launch.script import _SUPERVISOR, _WAIT_ALL
from guideopt.model.plan import Plan

HOST = "0.0.0.0"
VLLM_PROXY_PATH = "tests/v1/kv_connector/nixl_integration/toy_proxy_server.py"  # in the vLLM repository (recalled)
SGLANG_ROUTER_PACKAGE = "sglang-router==0.3.2"
ROUTER_FAMILIES = ("vllm", "sglang", "trtllm")


def router_port(launches: list[GroupLaunch]) -> int:
    """The router's port: the next one after every worker's, so that it may share a host with them."""
    return BASE_PORT + sum(launch.group.replicas for launch in launches)


def router_name(plan: Plan, framework: str) -> str:
    return f"launch-rank{plan.rank}-router-{framework}.sh"


def router_in_words(launch: GroupLaunch) -> str:
    fam = family(launch.framework)
    if fam == "sglang":
        return f"SGLang router ({SGLANG_ROUTER_PACKAGE}, PD mode)"
    if fam == "vllm":
        return f"vLLM's toy NIXL proxy (from the v{launch.framework.launch.version} source tree; Dynamo or llm-d for production)"
    return f"trtllm-serve disaggregated ({launch.framework.launch.version})"


def _urls(launch: GroupLaunch, var: str) -> list[tuple[str, int, int]]:
    """(address expression, port, slot) of each worker of a pool, from its node addresses array."""
    return [(f"${{{var}[{r.nodes[0]}]}}", r.port, r.slot) for r in launch.replicas]


def _sglang(prefill: GroupLaunch, decode: GroupLaunch, port: int) -> list[str]:
    args = ["python -m sglang_router.launch_router --pd-disaggregation"]
    args += [f'--prefill "http://{a}:{p}" {bootstrap_port(s)}' for a, p, s in _urls(prefill, "P")]
    args += [f'--decode "http://{a}:{p}"' for a, p, _ in _urls(decode, "D")]
    args.append(f"--host {HOST} --port {port}")
    return [f"# needs {SGLANG_ROUTER_PACKAGE} (pip install {SGLANG_ROUTER_PACKAGE})", "start " + " \\\n  ".join(args)]


def _vllm(prefill: GroupLaunch, decode: GroupLaunch, port: int) -> list[str]:
    version = prefill.framework.launch.version
    url = f"https://raw.githubusercontent.com/vllm-project/vllm/v{version}/{VLLM_PROXY_PATH}"
    p, d = _urls(prefill, "P"), _urls(decode, "D")
    args = [
        'python "$PROXY"',
        f"--host {HOST} --port {port}",
        "--prefiller-hosts " + " ".join(f'"{a}"' for a, _, _ in p),
        "--prefiller-ports " + " ".join(str(q) for _, q, _ in p),
        "--decoder-hosts " + " ".join(f'"{a}"' for a, _, _ in d),
        "--decoder-ports " + " ".join(str(q) for _, q, _ in d),
    ]
    return [
        f'PROXY="${{PROXY:-toy_proxy_server.py}}"  # vLLM\'s NIXL test proxy (not in the wheel): {VLLM_PROXY_PATH}',
        f'[ -f "$PROXY" ] || curl -fsSL -o "$PROXY" {shlex.quote(url)}',
        "start " + " \\\n  ".join(args),
    ]


def _trtllm(prefill: GroupLaunch, decode: GroupLaunch, port: int) -> list[str]:
    lines = ['CONFIG="${DISAGG_CONFIG:-$(mktemp --suffix .yaml)}"', "{", f'  echo "hostname: {HOST}"', f'  echo "port: {port}"']
    lines += ['  echo "backend: pytorch"']
    for key, launch, var in (("context_servers", prefill, "P"), ("generation_servers", decode, "D")):
        lines += [f'  echo "{key}:"', f'  echo "  num_instances: {launch.group.replicas}"', '  echo "  urls:"']
        lines += [f'  echo "    - \\"{a}:{p}\\""' for a, p, _ in _urls(launch, var)]
    lines += ['} > "$CONFIG"', 'start trtllm-serve disaggregated -c "$CONFIG"']
    return lines


def render_router(plan: Plan, launches: list[GroupLaunch], prefill: GroupLaunch, decode: GroupLaunch) -> str:
    """The bash script that starts the router of a disaggregated plan in front of both pools."""
    fw = prefill.framework
    port = router_port(launches)
    kv = plan.kv_transfer or {}
    lines = [
        "#!/usr/bin/env bash",
        f"# guideopt launch script: plan rank {plan.rank}, router of the disaggregated plan (requests go here)",
        f"# engine: {fw.name} {fw.launch.version}; router: {router_in_words(prefill)}",
        f"# prefill pool: group {prefill.index}, {prefill.group.replicas} worker(s), ./{prefill.script_name}; "
        f"decode pool: group {decode.index}, {decode.group.replicas} worker(s), ./{decode.script_name}",
        f"# KV transfer: {kv.get('bytes_per_request', 0) / 1e9:.2f} GB per request over {kv.get('link', '?')}, "
        f"{kv.get('ms', 0):.1f} ms predicted",
        f"# run with the pools' node addresses in node order: PREFILL_NODES='a b …' DECODE_NODES='c …' ./{router_name(plan, fw.id)}",
        "set -euo pipefail",
        "",
    ]
    if prefill.blocker or decode.blocker or family(fw) not in ROUTER_FAMILIES:
        why = prefill.blocker or decode.blocker or f"{fw.name} has no disaggregated router here"
        return "\n".join([*lines, f"echo {shlex.quote('cannot launch this plan as planned: ' + why)} >&2", "exit 1", ""])
    need = {"P": (prefill, "PREFILL_NODES"), "D": (decode, "DECODE_NODES")}
    for var, (launch, env) in need.items():
        lines += [
            f'read -r -a {var} <<< "${{{env}:?set {env} to the {launch.nodes} node address(es) of {launch.script_name}, in node order}}"',
            f'if [ "${{#{var}[@]}}" -lt {launch.nodes} ]; then echo "{env} needs {launch.nodes} address(es)" >&2; exit 2; fi',
        ]
    body = {"sglang": _sglang, "vllm": _vllm, "trtllm": _trtllm}[family(fw)](prefill, decode, port)
    lines += ["", _SUPERVISOR, "", f"# router: port {port}", *body, "", _WAIT_ALL, ""]
    return "\n".join(lines)


def disagg_lines(plan: Plan, launches: list[GroupLaunch], manifest: str) -> list[str]:
    """PLAN.md's part for a disaggregated plan: the two pools' endpoints, the router, the KV link."""
    from guideopt.io.launch.roles import pools

    p, d = pools(plan)
    prefill, decode = launches[p], launches[d]
    kv = plan.kv_transfer or {}
    lines = [
        f"Disaggregated: requests go to the router, which sends each prompt to a prefill worker and its decode to a decode "
        f"worker; the KV cache ({kv.get('bytes_per_request', 0) / 1e9:.2f} GB per request) crosses {kv.get('link', '?')} "
        f"({kv.get('ms', 0):.1f} ms predicted).",
    ]
    for title, launch in (("Prefill pool", prefill), ("Decode pool", decode)):
        g = launch.group
        lines += [
            "",
            f"{title}: group {launch.index}, {g.replicas} worker(s) of {g.tp * g.attention_dp * g.pp} x {g.gpu}, `{launch.script_name}`:",
        ]
        for r in launch.replicas:
            extra = f", bootstrap port {bootstrap_port(r.slot)}" if family(launch.framework) == "sglang" and g.role == "prefill" else ""
            lines.append(f"- worker {r.index}: `http://<{g.role}-node{r.nodes[0]}>:{r.port}`{extra}")
    fw = prefill.framework
    lines += [
        "",
        f"Router: `http://<router-host>:{router_port(launches)}` — {router_in_words(prefill)}; start it with "
        f"`PREFILL_NODES='…' DECODE_NODES='…' ./{router_name(plan, fw.id)}` (the pools' node addresses in node order). "
        "Send every request there, none to the workers.",
        "",
        f"On Kubernetes: `kubectl apply -f {manifest}` (an NVIDIA Dynamo DynamoGraphDeployment: Frontend, prefill and decode)"
        if family(fw) in ("vllm", "sglang")
        else f"On Kubernetes: no manifest is written for {fw.name} disaggregated serving here (`{manifest}` says why).",
    ]
    return lines
