"""Extract what the disaggregated launch outputs use from the published packages, for
``tests/test_launch_disagg.py`` (as ``extract_engine_flags.py`` does for the engines' flags).

Nothing is imported or installed: archives are read and parsed with ``ast``.

    python scripts/extract_disagg_flags.py vllm /work/pkgs/vllm-0.33.0-...whl   # adds "kv_transfer" to vllm-0.33.0.json
    python scripts/extract_disagg_flags.py vllm /work/pkgs/vllm-0.11.0-...whl
    python scripts/extract_disagg_flags.py sglang-router /tmp/sgr/sglang_router-0.3.2-...whl
    python scripts/extract_disagg_flags.py dynamo /tmp/dyn/ai_dynamo-1.6.1-py3-none-any.whl

(``pip download --no-deps sglang-router ai-dynamo -d /tmp/x``.) ``dynamo`` writes the flags of
``dynamo.frontend``, ``dynamo.vllm`` and ``dynamo.sglang`` and, since no CRD or Helm chart ships in
``ai-dynamo`` or ``ai-dynamo-runtime``, the JSON Schema of the package's own pydantic model of a
DynamoGraphDeployment (``dynamo/profiler/utils/config.py``: Config, Spec, Component, PodTemplate,
PodSpec, Container, MultinodeConfig) to ``tests/data/dynamo-dgd-v1beta1.schema.json``.
"""

from __future__ import annotations

import ast
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from extract_engine_flags import OUT_DIR, class_fields, literal_values, read_member, version_of

SCHEMA_OUT = OUT_DIR.parent / "dynamo-dgd-v1beta1.schema.json"
DGD_CLASSES = ("DgdModel", "Container", "PodSpec", "PodTemplate", "MultinodeConfig", "Component", "Spec", "Metadata", "Config")


def _connector_names(factory: str) -> list[str]:
    """Names registered with KVConnectorFactory.register_connector("Name", module, class)."""
    out = []
    for node in ast.walk(ast.parse(factory)):
        if isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "register_connector" and node.args:
            first = node.args[0]
            if isinstance(first, ast.Constant) and isinstance(first.value, str):
                out.append(first.value)
    return sorted(set(out))


def vllm(archive: Path) -> Path:
    """Add the --kv-transfer-config JSON keys and values to the engine's flag list."""
    cfg_file, cfg = read_member(archive, "vllm/config/kv_transfer.py")
    fac_file, factory = read_member(archive, "vllm/distributed/kv_transfer/kv_connector/factory.py")
    path = OUT_DIR / f"vllm-{version_of(archive)}.json"
    data = json.loads(path.read_text())
    roles = sorted(set(literal_values(cfg, "KVProducer")) | set(literal_values(cfg, "KVConsumer")))
    data["kv_transfer"] = {
        "files": [cfg_file, fac_file],
        "fields": sorted(class_fields(cfg, "KVTransferConfig")),
        "kv_role": roles,
        "kv_connector": _connector_names(factory),
    }
    path.write_text(json.dumps(data, indent=1) + "\n")
    return path


def _prefixed_flags(source: str) -> set[str]:
    """``--flag`` names of add_argument calls, where sglang-router writes f"--{prefix}flag"."""
    flags = set()
    for node in ast.walk(ast.parse(source)):
        if not (isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "add_argument"):
            continue
        for arg in node.args:
            if isinstance(arg, ast.Constant) and isinstance(arg.value, str) and arg.value.startswith("--"):
                flags.add(arg.value)
            elif isinstance(arg, ast.JoinedStr):
                text = "".join(v.value for v in arg.values if isinstance(v, ast.Constant) and isinstance(v.value, str))
                if text.startswith("--"):
                    flags.add(text)
    return flags


def sglang_router(archive: Path) -> Path:
    name, text = read_member(archive, "sglang_router/router_args.py")
    version = version_of(archive)
    record = {
        "engine": "sglang-router",
        "package": f"sglang-router=={version}",
        "version": version,
        "extracted_by": "scripts/extract_disagg_flags.py",
        "files": [name],
        "entry": "python -m sglang_router.launch_router",
        "flags": sorted(_prefixed_flags(text)),
    }
    path = OUT_DIR / f"sglang-router-{version}.json"
    path.write_text(json.dumps(record, indent=1) + "\n")
    return path


def _flag_names(source: str) -> tuple[set[str], dict[str, list[str]]]:
    """Dynamo's add_argument(group, flag_name="--x", choices=[...]) calls: flags and literal choices."""
    flags: set[str] = set()
    choices: dict[str, list[str]] = {}
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Call):
            continue
        kw = {k.arg: k.value for k in node.keywords}
        name = kw.get("flag_name")
        if isinstance(name, ast.Constant) and isinstance(name.value, str):
            flags.add(name.value)
            if getattr(node.func, "id", "") == "add_negatable_bool_argument":
                flags.add("--no-" + name.value[2:])
    return flags, choices


def _dgd_schema(config_source: str) -> dict:
    """JSON Schema of the package's own DGD model: its class definitions run on pydantic alone."""
    tree = ast.parse(config_source)
    classes = [n for n in tree.body if isinstance(n, ast.ClassDef) and n.name in DGD_CLASSES]
    for cls in classes:  # the planner component's defaults call into the runtime; not part of the model
        cls.decorator_list = []
    module = ast.Module(body=classes, type_ignores=[])
    namespace: dict = {}
    exec("from __future__ import annotations\nfrom typing import Any, Optional\nfrom pydantic import BaseModel, Field", namespace)
    exec(compile(module, "dynamo/profiler/utils/config.py", "exec"), namespace)
    for name in DGD_CLASSES[1:]:
        namespace[name].model_rebuild(_types_namespace=namespace)
    return namespace["Config"].model_json_schema(by_alias=True)


def dynamo(archive: Path) -> Path:
    version = version_of(archive)
    files = {
        "frontend": "dynamo/frontend/frontend_args.py",
        "vllm": "dynamo/vllm/backend_args.py",
        "sglang": "dynamo/sglang/backend_args.py",
    }
    workers = {}
    for key, suffix in files.items():
        _, text = read_member(archive, suffix)
        workers[key] = sorted(_flag_names(text)[0])
    cfg_file, cfg = read_member(archive, "dynamo/profiler/utils/config.py")
    _, services = read_member(archive, "dynamo/planner/monitoring/dgd_services.py")
    record = {
        "engine": "dynamo",
        "package": f"ai-dynamo=={version}",
        "version": version,
        "extracted_by": "scripts/extract_disagg_flags.py",
        "files": [*files.values(), cfg_file, "dynamo/planner/monitoring/dgd_services.py"],
        "flags": workers,
        "component_types": sorted(ast.literal_eval(_assigned(services, "V1BETA1_COMPONENT_TYPES"))),
    }
    schema = _dgd_schema(cfg)
    schema["$comment"] = f"generated from ai-dynamo=={version} {cfg_file} (Config and its parts) by scripts/extract_disagg_flags.py"
    SCHEMA_OUT.write_text(json.dumps(schema, indent=1) + "\n")
    path = OUT_DIR / f"dynamo-{version}.json"
    path.write_text(json.dumps(record, indent=1) + "\n")
    return path


def _assigned(source: str, name: str) -> str:
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == name for t in node.targets):
            return ast.unparse(node.value)
    raise SystemExit(f"{name} not found")


EXTRACTORS = {"vllm": vllm, "sglang-router": sglang_router, "dynamo": dynamo}


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] not in EXTRACTORS:
        print(__doc__, file=sys.stderr)
        return 2
    print(f"wrote {EXTRACTORS[argv[0]](Path(argv[1]))}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
