"""Extract the command-line flags (or config keys) of a published engine package into
``tests/data/engine_flags/<engine>-<version>.json``, which ``tests/test_engine_flags.py``
checks every emitted launch command against.

Nothing is imported or installed: the package archive is read and its sources parsed
with ``ast``, so this runs without a GPU stack. Get the archives with
``pip download --no-deps vllm==0.11.0 vllm==0.33.0 sglang==0.5.3 sglang==0.5.23 deepspeed-mii==0.3.3 deepspeed==0.17.6``
(TensorRT-LLM: ``pip download --no-deps tensorrt-llm==1.0.0 --extra-index-url https://pypi.nvidia.com``), then e.g.

    python scripts/extract_engine_flags.py vllm /tmp/vllm-0.11.0-cp38-abi3-manylinux1_x86_64.whl
    python scripts/extract_engine_flags.py sglang /tmp/sglang-0.5.3-py3-none-any.whl
    python scripts/extract_engine_flags.py trtllm /tmp/tensorrt_llm-1.0.0-...whl
    python scripts/extract_engine_flags.py fastgen /tmp/deepspeed_mii-0.3.3-py3-none-any.whl /tmp/deepspeed-0.17.6.tar.gz
"""

from __future__ import annotations

import ast
import json
import re
import sys
import tarfile
import zipfile
from pathlib import Path

OUT_DIR = Path(__file__).resolve().parent.parent / "tests" / "data" / "engine_flags"


def read_member(archive: Path, suffix: str) -> tuple[str, str]:
    """(member name, text) of the file in a wheel (zip) or sdist (tar.gz) ending in ``suffix``."""
    if archive.suffix == ".whl":
        with zipfile.ZipFile(archive) as zf:
            name = next(n for n in zf.namelist() if n.endswith(suffix))
            return name, zf.read(name).decode()
    with tarfile.open(archive) as tf:
        member = next(m for m in tf.getmembers() if m.name.endswith(suffix))
        handle = tf.extractfile(member)
        assert handle is not None
        return member.name, handle.read().decode()


def call_flags(source: str, method: str) -> set[str]:
    """Every "--flag" string passed to a call of ``method`` (add_argument, option)."""
    flags = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == method:
            flags |= {a.value for a in node.args if isinstance(a, ast.Constant) and isinstance(a.value, str) and a.value.startswith("--")}
    return flags


def _constant_lists(tree: ast.AST) -> dict[str, list[str]]:
    """Module-level NAME = [constants] assignments (choice lists referenced by name)."""
    out = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and isinstance(node.value, (ast.List, ast.Tuple)):
            values = [e.value for e in node.value.elts if isinstance(e, ast.Constant) and isinstance(e.value, str)]
            if values and len(values) == len(node.value.elts):
                out.update({t.id: values for t in node.targets if isinstance(t, ast.Name)})
    return out


def call_choices(source: str, method: str) -> dict[str, list[str]]:
    """flag -> its literal ``choices`` (a list of strings, inline or a module-level name)."""
    tree = ast.parse(source)
    named = _constant_lists(tree)
    out: dict[str, list[str]] = {}
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == method):
            continue
        flags = [a.value for a in node.args if isinstance(a, ast.Constant) and isinstance(a.value, str) and a.value.startswith("--")]
        for kw in node.keywords:
            if kw.arg != "choices":
                continue
            if isinstance(kw.value, (ast.List, ast.Tuple)):
                values = [e.value for e in kw.value.elts if isinstance(e, ast.Constant) and isinstance(e.value, str)]
                values = values if len(values) == len(kw.value.elts) else []
            else:
                values = named.get(kw.value.id, []) if isinstance(kw.value, ast.Name) else []
            out.update({f: values for f in flags if values})
    return out


def literal_values(source: str, name: str) -> list[str]:
    """The strings of ``NAME = Literal[...]`` (vLLM types its choices this way)."""
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == name for t in node.targets):
            sub = node.value
            if isinstance(sub, ast.Subscript) and isinstance(sub.slice, ast.Tuple):
                return [e.value for e in sub.slice.elts if isinstance(e, ast.Constant)]
    raise SystemExit(f"Literal {name} not found")


# vLLM builds these flags' choices from Literal types of its config classes
# (engine/arg_utils.py get_kwargs): flag -> (file, Literal name).
VLLM_LITERAL_CHOICES = {
    "--dtype": ("vllm/config/model.py", "ModelDType"),
    "--kv-cache-dtype": ("vllm/config/cache.py", "CacheDType"),
    "--distributed-executor-backend": ("vllm/config/parallel.py", "DistributedExecutorBackend"),
    "--quantization": ("vllm/model_executor/layers/quantization/__init__.py", "QuantizationMethods"),
}


def class_fields(source: str, name: str) -> set[str]:
    """Annotated attributes of class ``name`` (dataclass / pydantic fields)."""
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ClassDef) and node.name == name:
            return {s.target.id for s in node.body if isinstance(s, ast.AnnAssign) and isinstance(s.target, ast.Name)}
    raise SystemExit(f"class {name} not found")


def dict_keys(source: str, name: str) -> set[str]:
    """String keys of the dict literal assigned to ``name``."""
    for node in ast.walk(ast.parse(source)):
        targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(node, ast.AnnAssign) else []
        if any(isinstance(t, ast.Name) and t.id == name for t in targets) and isinstance(node.value, ast.Dict):
            return {k.value for k in node.value.keys if isinstance(k, ast.Constant)}
    raise SystemExit(f"dict {name} not found")


def version_of(archive: Path) -> str:
    match = re.search(r"-(\d+(?:\.\d+)+)", archive.name)
    if not match:
        raise SystemExit(f"no version in {archive.name}")
    return match.group(1)


def vllm(archive: Path) -> dict:
    args_file, args = read_member(archive, "vllm/engine/arg_utils.py")
    try:
        cli_file, cli = read_member(archive, "vllm/entrypoints/openai/cli_args.py")
    except StopIteration:  # moved to entrypoints/common/ (0.3x), FrontendArgs over a BaseFrontendArgs
        cli_file, cli = read_member(archive, "vllm/entrypoints/common/cli_args.py")
    envs_file, envs = read_member(archive, "vllm/envs.py")
    flags = call_flags(args, "add_argument") | call_flags(cli, "add_argument")
    frontend = class_fields(cli, "FrontendArgs") | (class_fields(cli, "BaseFrontendArgs") if "class BaseFrontendArgs" in cli else set())
    flags |= {"--" + f.replace("_", "-") for f in frontend}
    choices = {**call_choices(args, "add_argument"), **call_choices(cli, "add_argument")}
    typed = {flag: (read_member(archive, path), name) for flag, (path, name) in VLLM_LITERAL_CHOICES.items()}
    choices.update({flag: literal_values(text, name) for flag, ((_, text), name) in typed.items()})
    return {
        "files": [args_file, cli_file, envs_file, *sorted({f for (f, _), _ in typed.values()})],
        "flags": sorted(flags),
        "choices": dict(sorted(choices.items())),
        "env": sorted(dict_keys(envs, "environment_variables")),
    }


def read_members(archive: Path, prefix: str) -> list[tuple[str, str]]:
    """(name, text) of every .py file of a wheel under ``prefix``."""
    with zipfile.ZipFile(archive) as zf:
        return [(n, zf.read(n).decode()) for n in sorted(zf.namelist()) if n.startswith(prefix) and n.endswith(".py")]


def _keyword(call: ast.Call, name: str) -> ast.expr | None:
    return next((k.value for k in call.keywords if k.arg == name), None)


def _strings(node: ast.expr | None, named: dict[str, list[str]]) -> list[str]:
    if isinstance(node, (ast.List, ast.Tuple)):
        values = [e.value for e in node.elts if isinstance(e, ast.Constant) and isinstance(e.value, str)]
        return values if len(values) == len(node.elts) else []
    return named.get(node.id, []) if isinstance(node, ast.Name) else []


def _arg_field(target: str, annotation: ast.expr, named: dict[str, list[str]]) -> tuple[list[str], list[str]]:
    """(flags, choices) of one ``name: A[T, "help" | Arg(...)]`` field (SGLang >= 0.5.2x), as
    arg_groups/arg_utils.py add_cli_args_from_dataclass registers it; ([], []) when not a CLI field."""
    if not (isinstance(annotation, ast.Subscript) and isinstance(annotation.value, ast.Name) and annotation.value.id == "A"):
        return [], []
    parts = annotation.slice.elts if isinstance(annotation.slice, ast.Tuple) else []
    meta = parts[1] if len(parts) > 1 else None
    literal = [
        e.value
        for sub in ast.walk(parts[0] if parts else annotation)
        if isinstance(sub, ast.Subscript) and isinstance(sub.value, ast.Name) and sub.value.id == "Literal"
        for e in (sub.slice.elts if isinstance(sub.slice, ast.Tuple) else [sub.slice])
        if isinstance(e, ast.Constant) and isinstance(e.value, str)
    ]
    name = "--" + target.replace("_", "-")
    if isinstance(meta, ast.Constant):
        return [name], literal
    if not (isinstance(meta, ast.Call) and isinstance(meta.func, ast.Name) and meta.func.id == "Arg"):
        return [], []
    no_cli = _keyword(meta, "no_cli")
    if isinstance(no_cli, ast.Constant) and no_cli.value is True:
        return [], []
    cli_name = _keyword(meta, "cli_name")
    if isinstance(cli_name, ast.Constant) and isinstance(cli_name.value, str):
        name = cli_name.value
    flags = [name, *_strings(_keyword(meta, "aliases"), named)]
    action = _keyword(meta, "action")
    if isinstance(action, ast.Attribute) and action.attr == "BooleanOptionalAction":
        flags.append("--no-" + name[2:])
    return flags, _strings(_keyword(meta, "choices"), named) or literal


def sglang_fields(files: list[tuple[str, str]]) -> tuple[set[str], dict[str, list[str]]]:
    """Flags and choices of SGLang's declarative server arguments (srt/arg_groups/fields/*.py)."""
    named: dict[str, list[str]] = {}
    for _, text in files:
        named.update(_constant_lists(ast.parse(text)))
    flags: set[str] = set()
    choices: dict[str, list[str]] = {}
    for _, text in files:
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
                names, values = _arg_field(node.target.id, node.annotation, named)
                flags |= set(names)
                choices.update({f: values for f in names if values})
    return flags, choices


def sglang(archive: Path) -> dict:
    name, text = read_member(archive, "sglang/srt/server_args.py")
    flags, choices = call_flags(text, "add_argument"), call_choices(text, "add_argument")
    fields = read_members(archive, "sglang/srt/arg_groups/") if archive.suffix == ".whl" else []
    if fields:  # 0.5.2x: arguments declared as fields, registered by add_cli_args_from_dataclass
        more, more_choices = sglang_fields(fields)
        flags |= more
        choices = {**more_choices, **choices}
    files = [name, *(n for n, _ in fields if "/fields/" in n or n.endswith(("choices.py", "arg_utils.py")))]
    return {"files": files, "flags": sorted(flags), "choices": dict(sorted(choices.items()))}


def trtllm(archive: Path) -> dict:
    name, text = read_member(archive, "tensorrt_llm/commands/serve.py")
    return {"files": [name], "flags": sorted(call_flags(text, "option")), "choices": dict(sorted(call_choices(text, "option").items()))}


def fastgen(archive: Path, deepspeed: Path) -> dict:
    cfg_file, cfg = read_member(archive, "mii/config.py")
    mgr_file, mgr = read_member(deepspeed, "deepspeed/inference/v2/ragged/manager_configs.py")
    eng_file, eng = read_member(deepspeed, "deepspeed/inference/v2/config_v2.py")
    return {
        "files": [
            cfg_file,
            f"deepspeed-{version_of(deepspeed)}/{mgr_file.split('/', 1)[1]}",
            f"deepspeed-{version_of(deepspeed)}/{eng_file.split('/', 1)[1]}",
        ],
        "serve_kwargs": sorted(class_fields(cfg, "ModelConfig") | class_fields(cfg, "MIIConfig")),
        "inference_engine_config": sorted(class_fields(eng, "RaggedInferenceEngineConfig")),
        "state_manager": sorted(class_fields(mgr, "DSStateManagerConfig")),
    }


EXTRACTORS = {"vllm": vllm, "sglang": sglang, "trtllm": trtllm, "fastgen": fastgen}
PACKAGES = {"vllm": "vllm", "sglang": "sglang", "trtllm": "tensorrt-llm", "fastgen": "deepspeed-mii"}


def main(argv: list[str]) -> int:
    if len(argv) < 2 or argv[0] not in EXTRACTORS:
        print(__doc__, file=sys.stderr)
        return 2
    engine, archives = argv[0], [Path(a) for a in argv[1:]]
    data = EXTRACTORS[engine](*archives)
    version = version_of(archives[0])
    record = {
        "engine": engine,
        "package": f"{PACKAGES[engine]}=={version}",
        "version": version,
        "extracted_by": "scripts/extract_engine_flags.py",
        **data,
    }
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    out = OUT_DIR / f"{engine}-{version}.json"
    out.write_text(json.dumps(record, indent=1) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
