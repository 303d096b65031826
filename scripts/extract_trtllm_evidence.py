"""Check the TensorRT-LLM flags and LLM API keys that guideopt's launch outputs write against the
best readable evidence, into ``tests/data/engine_flags/trtllm-from-dynamo-<version>.json``
(``tests/test_trtllm_evidence.py`` checks every emitted flag and key against it).

The tensorrt-llm wheel is not readable here: PyPI serves a stub that fetches it from
pypi.nvidia.com. The evidence is therefore SECOND-HAND: the code that drives TensorRT-LLM,

* ai-dynamo (its ``trtllm`` extra pins ``tensorrt-llm==1.3.0rc29``): ``dynamo/trtllm`` builds
  ``tensorrt_llm.LLM(**engine_args)`` from an ``arg_map`` of LLM API keys and merges a YAML options
  file over it with TensorRT-LLM's own ``update_llm_args_with_extra_options`` (the function
  ``trtllm-serve --extra_llm_api_options`` uses); its profiler writes the options of
  disaggregated workers (``cache_transceiver_config``, ``disable_overlap_scheduler``);
* aiconfigurator-core (TensorRT-LLM 1.0-1.3 models): the defaults it assumes.

An LLM API key counts as confirmed where one of these packages passes it to TensorRT-LLM with that
spelling. The ``trtllm-serve`` flag spellings, the ``trtllm-serve disaggregated`` config and the
MPI launcher appear in neither package: they stay "recalled". Nothing is imported or installed;
the archives are parsed with ``ast``. Get them with ``pip download --no-deps ai-dynamo==1.6.1
aiconfigurator-core==0.12.0``, then

    python scripts/extract_trtllm_evidence.py /tmp/dyn/ai_dynamo-1.6.1-py3-none-any.whl \\
        /work/pkgs/aiconfigurator_core-0.12.0-cp311-abi3-manylinux_2_28_x86_64.whl
"""

from __future__ import annotations

import ast
import json
import re
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from extract_engine_flags import OUT_DIR, read_member, version_of

WORKER = "dynamo/trtllm/workers/llm_worker.py"  # arg_map: the LLM API keys of tensorrt_llm.LLM(...)
ENGINE = "dynamo/trtllm/engine.py"  # Backend enum; attention_dp_size from enable_attention_dp
WORKER_ARGS = "dynamo/trtllm/backend_args.py"  # Dynamo's own flags and their defaults
MODIFIER = "dynamo/profiler/utils/config_modifiers/trtllm.py"  # options the profiler writes
MODIFIER_TEST = "dynamo/profiler/tests/unit/test_trtllm_override_merge.py"  # a disaggregated worker's options
AIC_BACKEND = "aiconfigurator_core/sdk/backends/trtllm_backend.py"

# What guideopt writes (catalogs/frameworks/trtllm*.yaml launch block, guideopt/io/launch/roles.py,
# router.py). trtllm-serve flag -> the LLM API key it sets (None: the server's own, no LLM API key).
SERVE_FLAGS: dict[str, str | None] = {
    "--backend": "backend",
    "--tp_size": "tensor_parallel_size",
    "--pp_size": "pipeline_parallel_size",
    "--max_batch_size": "max_batch_size",
    "--max_num_tokens": "max_num_tokens",
    "--max_seq_len": "max_seq_len",
    "--kv_cache_free_gpu_memory_fraction": "kv_cache_config.free_gpu_memory_fraction",
    "--extra_llm_api_options": "update_llm_args_with_extra_options",  # the YAML merged over the LLM args
    "--host": None,
    "--port": None,
}
# LLM API options file (--extra_llm_api_options YAML): dotted key -> the value guideopt writes (None: varies).
OPTIONS: dict[str, Any] = {
    "kv_cache_config.dtype": "fp8",
    "enable_attention_dp": None,
    "moe_expert_parallel_size": None,
    "moe_tensor_parallel_size": None,
    "moe_config.backend": "CUTLASS",
    "cache_transceiver_config.backend": "DEFAULT",
    "disable_overlap_scheduler": True,
}
ROUTER_COMMAND = ["trtllm-serve", "disaggregated", "-c"]
ROUTER_KEYS = [
    "hostname",
    "port",
    "backend",
    "context_servers.num_instances",
    "context_servers.urls",
    "generation_servers.num_instances",
    "generation_servers.urls",
]
MULTI_NODE = {"launcher": "trtllm-llmapi-launch", "mpirun_flags": ["--allow-run-as-root", "-np", "-H"]}
RECALLED = "recalled"
CONFIRMED = "confirmed"


def _cite(name: str, node: ast.AST) -> str:
    return f"{name}:{getattr(node, 'lineno', 0)}"


def _line_of(name: str, text: str, needle: str) -> str:
    """``file:line`` of the first line holding ``needle`` (a fact the code states in one line)."""
    for number, line in enumerate(text.splitlines(), 1):
        if needle in line:
            return f"{name}:{number}"
    raise SystemExit(f"{needle!r} not in {name}")


def _literal(node: ast.AST) -> Any:
    """The value of a literal (None for an expression: only literals are evidence of a value)."""
    try:
        return ast.literal_eval(node)
    except ValueError:
        return None


def _flatten(node: ast.Dict, name: str, prefix: str = "") -> list[tuple[str, Any, str]]:
    """(dotted key, value, cite) of each key of a dict literal, nested dicts included."""
    out = []
    for key, value in zip(node.keys, node.values):
        if not (isinstance(key, ast.Constant) and isinstance(key.value, str)):
            continue
        dotted = prefix + key.value
        if isinstance(value, ast.Dict):
            out.append((dotted, None, _cite(name, key)))
            out += _flatten(value, name, dotted + ".")
        else:
            out.append((dotted, _literal(value), _cite(name, key)))
    return out


def _arg_map(name: str, text: str) -> list[tuple[str, Any, str]]:
    """Keys of the ``arg_map = {...}`` dict Dynamo passes to ``tensorrt_llm.LLM``."""
    for node in ast.walk(ast.parse(text)):
        if not isinstance(node, ast.Assign) or not isinstance(node.value, ast.Dict):
            continue
        if any(getattr(t, "id", "") == "arg_map" for t in node.targets):
            return _flatten(node.value, name)
    raise SystemExit(f"arg_map not found in {name}")


def _call_dicts(name: str, text: str, functions: tuple[str, ...]) -> list[tuple[str, Any, str]]:
    """Keys of dict literals passed to calls of ``functions`` (dotted override keys stay dotted)."""
    out = []
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.Call) and (getattr(node.func, "id", "") or getattr(node.func, "attr", "")) in functions:
            out += [entry for arg in node.args if isinstance(arg, ast.Dict) for entry in _flatten(arg, name)]
    return out


def _call_kwargs(name: str, text: str, function: str, prefix: str) -> list[tuple[str, Any, str]]:
    """Keyword arguments of calls of ``function`` as ``prefix.keyword`` keys (KvCacheConfig(...))."""
    out = []
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.Call) and getattr(node.func, "id", "") == function:
            out += [(f"{prefix}.{k.arg}", None, _cite(name, k.value)) for k in node.keywords if k.arg]
    return out


def _enum_values(name: str, text: str, cls: str) -> list[tuple[str, Any, str]]:
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.ClassDef) and node.name == cls:
            return [
                ("backend", s.value.value, _cite(name, s))
                for s in node.body
                if isinstance(s, ast.Assign) and isinstance(s.value, ast.Constant)
            ]
    raise SystemExit(f"class {cls} not in {name}")


def _flag_defaults(name: str, text: str) -> dict[str, tuple[Any, str]]:
    """Dynamo's add_argument(group, flag_name="--x", default=<literal>) calls."""
    out: dict[str, tuple[Any, str]] = {}
    for node in ast.walk(ast.parse(text)):
        if not isinstance(node, ast.Call):
            continue
        kw = {k.arg: k.value for k in node.keywords}
        flag, default = kw.get("flag_name"), kw.get("default")
        if isinstance(flag, ast.Constant) and isinstance(default, ast.Constant):
            out[str(flag.value)] = (default.value, _cite(name, default))
    return out


def _module_constants(name: str, text: str) -> dict[str, tuple[Any, str]]:
    out = {}
    for node in ast.parse(text).body:
        if isinstance(node, (ast.Assign, ast.AnnAssign)) and isinstance(node.value, ast.Constant):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            out.update({t.id: (node.value.value, _cite(name, node)) for t in targets if isinstance(t, ast.Name)})
    return out


def _target(dynamo: Path) -> dict:
    """The tensorrt-llm version the Dynamo package's ``trtllm`` extra pins (its METADATA)."""
    name, text = read_member(dynamo, ".dist-info/METADATA")
    for number, line in enumerate(text.splitlines(), 1):
        if match := re.match(r"Requires-Dist: tensorrt-llm==(\S+?);", line):
            return {"version": match.group(1), "cited": f"{name}:{number}"}
    raise SystemExit("no tensorrt-llm pin in the METADATA")


def _llm_api(dynamo: Path) -> tuple[dict[str, list[str]], dict[str, list[Any]]]:
    """Every LLM API key the Dynamo package passes to TensorRT-LLM, with its cites and literal values."""
    entries = []
    name, text = read_member(dynamo, WORKER)
    entries += _arg_map(name, text) + _call_kwargs(name, text, "KvCacheConfig", "kv_cache_config")
    entries.append(("update_llm_args_with_extra_options", None, _line_of(name, text, "update_llm_args_with_extra_options(")))
    name, text = read_member(dynamo, MODIFIER)
    entries += _call_dicts(name, text, ("_merge_overrides_into_args",))
    name, text = read_member(dynamo, MODIFIER_TEST)
    entries += _call_dicts(name, text, ("dumps",))
    name, text = read_member(dynamo, ENGINE)
    entries += _enum_values(name, text, "Backend")
    keys: dict[str, list[str]] = {}
    values: dict[str, list[Any]] = {}
    for key, value, cite in entries:
        keys.setdefault(key, []).append(cite)
        if isinstance(value, (str, bool, int, float)) and value not in values.setdefault(key, []):
            values[key].append(value)
    return dict(sorted(keys.items())), {k: v for k, v in sorted(values.items()) if v}


def _defaults(dynamo: Path, aic: Path) -> dict[str, dict]:
    """The defaults both packages assume for the keys the catalog's defaults come from."""
    name, text = read_member(dynamo, WORKER_ARGS)
    flags = _flag_defaults(name, text)
    aic_name, aic_text = read_member(aic, AIC_BACKEND)
    consts = _module_constants(aic_name, aic_text)
    pairs = {
        "kv_cache_config.free_gpu_memory_fraction": [
            flags["--free-gpu-memory-fraction"],
            consts["TRTLLM_DEFAULT_FREE_GPU_MEMORY_FRACTION"],
        ],
        "max_num_tokens": [consts["TRTLLM_DEFAULT_MAX_NUM_TOKENS"]],
        "kv_cache_config.tokens_per_block": [flags["--kv-block-size"]],  # Dynamo's router block, set to the engine's
    }
    return {key: {"values": sorted({v for v, _ in found}), "cited": [c for _, c in found]} for key, found in pairs.items()}


def _facts(dynamo: Path) -> dict[str, str]:
    name, text = read_member(dynamo, ENGINE)
    args_name, args_text = read_member(dynamo, WORKER_ARGS)
    return {
        "attention DP runs over tensor_parallel_size ranks (attention TP 1)": _line_of(
            name, text, "return tensor_parallel_size if enable_attention_dp else 1"
        ),
        "the code also runs TensorRT-LLM before 1.3.0rc21 (BuildConfig)": _line_of(
            args_name, args_text, "trtllm >= 1.3.0rc21 removed BuildConfig"
        ),
    }


def _status(key: str, keys: dict[str, list[str]]) -> dict:
    return {"status": CONFIRMED if key in keys else RECALLED, "cited": keys.get(key, [])}


def _flag_status(key: str | None, keys: dict[str, list[str]]) -> dict:
    if key is None:
        return {"sets": None, "status": "server option, no LLM API key"}
    return {"sets": key, **_status(key, keys)}


def _value_status(key: str, value: Any, values: dict[str, list[Any]]) -> dict:
    if value is None:
        return {"value": "set by the plan"}
    return {"value": value, "value_status": CONFIRMED if value in values.get(key, []) else RECALLED}


def record(dynamo: Path, aic: Path) -> dict:
    keys, values = _llm_api(dynamo)
    version = version_of(dynamo)
    return {
        "engine": "trtllm",
        "evidence": (
            "SECOND-HAND: from the packages that drive TensorRT-LLM (ai-dynamo's trtllm backend and profiler, "
            "aiconfigurator-core's TensorRT-LLM backend), NOT from the tensorrt-llm wheel (served only from "
            "pypi.nvidia.com, unreachable here). 'confirmed': the package passes that key (or value) to TensorRT-LLM "
            "with that spelling; 'recalled': nothing readable shows it. trtllm-serve's flag spellings are all recalled "
            "(trtllm-1.2.1.json); 'sets' names the LLM API key each flag sets."
        ),
        "package": f"ai-dynamo=={version}",
        "also": f"aiconfigurator-core=={version_of(aic)}",
        "tensorrt_llm": _target(dynamo),
        "extracted_by": "scripts/extract_trtllm_evidence.py",
        "files": [WORKER, ENGINE, WORKER_ARGS, MODIFIER, MODIFIER_TEST, AIC_BACKEND],
        "llm_api_keys": keys,
        "llm_api_values": values,
        "defaults": _defaults(dynamo, aic),
        "facts": _facts(dynamo),
        "serve_flags": {flag: {"spelling": RECALLED, **_flag_status(key, keys)} for flag, key in SERVE_FLAGS.items()},
        "options_file_keys": {key: {**_status(key, keys), **_value_status(key, value, values)} for key, value in OPTIONS.items()},
        "router": {"command": ROUTER_COMMAND, "config_keys": ROUTER_KEYS, "status": RECALLED},
        "multi_node": {**MULTI_NODE, "status": RECALLED},
    }


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    dynamo, aic = Path(argv[0]), Path(argv[1])
    out = OUT_DIR / f"trtllm-from-dynamo-{version_of(dynamo)}.json"
    out.write_text(json.dumps(record(dynamo, aic), indent=1) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
