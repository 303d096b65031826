"""Constraints files (``guideopt solve FILE``): YAML, JSON or TOML read into a :class:`PlanRequest`.

The file's structure *is* :class:`guideopt.model.request.PlanRequest` (the same model behind
the ``plan`` flags), so the three formats give the same request for the same structure.
Every user error becomes one :class:`ConstraintsFileError` (an ``InvalidRequestError``)
of the form ``FILE:LINE: key.path: what is wrong (what would be right)``:

* syntax errors carry the parser's line;
* schema errors (unknown keys with a "did you mean", wrong types, out-of-range values,
  missing keys) carry the line of the offending key, found in the YAML node tree or, for
  JSON and TOML, by scanning the text (best effort: the nearest parent's line, else 1);
* catalog checks (unknown model, GPU or framework ids) are reported the same way.

When several things are wrong, the one nearest the top of the file is reported.
This module is library code: it never imports click.
"""

from __future__ import annotations

import difflib
import json
import math
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_args, get_origin

import yaml
from pydantic import BaseModel, ValidationError

from guideopt.catalog import Catalog, load_catalog
from guideopt.errors import CatalogError, InvalidRequestError
from guideopt.model.request import ObjectiveTerm, PlanRequest

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

FORMATS = {".yaml": "yaml", ".yml": "yaml", ".json": "json", ".toml": "toml"}

Segment = str | int  # a mapping key (str) or a list index (int)
KeyPath = tuple[Segment, ...]

# What a missing required key could look like (format-neutral).
_EXAMPLES: dict[str, str] = {
    "model": "model: meta-llama/Llama-3.1-8B",
    "workload": "workload: {input_len: 1024, output_len: 256}",
    "workload.input_len": "input_len: 1024",
    "workload.output_len": "output_len: 256",
    "budget": "budget: {usd_per_hour: 20}",
    "budget.usd_per_hour": "usd_per_hour: 20",
}


class ConstraintsFileError(InvalidRequestError):
    """A user error in a constraints file, located at ``path:line`` and a key path."""

    def __init__(self, path: str, line: int, key: str, problem: str) -> None:
        self.path, self.line, self.key, self.problem = path, line, key, problem
        where = f"{path}:{line}" if line > 0 else path
        super().__init__(_one_line(f"{where}: {key}: {problem}" if key else f"{where}: {problem}"))


def _one_line(text: str) -> str:
    """Escape characters that would break the message over lines or hide in a terminal."""
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)


# ---------------------------------------------------------------------- key paths


def render_path(path: Sequence[Segment]) -> str:
    """``("gpus", "l4", "max")`` -> ``gpus.l4.max``; list indices as ``precision[1]``."""
    out = ""
    for seg in path:
        if isinstance(seg, int):
            out += f"[{seg}]"
        else:
            key = seg if _PLAIN_KEY.fullmatch(seg) else json.dumps(seg)
            out += f".{key}" if out else key
    return out


_PLAIN_KEY = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_\-]*")


def parse_path(text: str) -> KeyPath:
    """The inverse of :func:`render_path` (for key paths named in solver messages)."""
    out: list[Segment] = []
    for part in text.split("."):
        m = re.fullmatch(r"([^\[\]]*)((?:\[\d+\])*)", part)
        if not m:
            out.append(part)
            continue
        if m.group(1):
            out.append(m.group(1))
        out.extend(int(i) for i in re.findall(r"\[(\d+)\]", m.group(2)))
    return tuple(out)


# ---------------------------------------------------------------------- locating keys


class Locator:
    """Maps a key path to the 1-based line where it is written (best effort)."""

    def line(self, path: Sequence[Segment]) -> int:  # pragma: no cover - interface
        raise NotImplementedError


class _YamlLocator(Locator):
    def __init__(self, root: yaml.Node | None) -> None:
        self.root = root

    def line(self, path: Sequence[Segment]) -> int:
        node = self.root
        if node is None:
            return 1
        line = 1 if isinstance(node, yaml.MappingNode) else node.start_mark.line + 1
        for seg in path:
            if isinstance(node, yaml.MappingNode):
                for key, value in node.value:
                    if isinstance(key, yaml.ScalarNode) and key.value == str(seg):
                        line, node = key.start_mark.line + 1, value
                        break
                else:
                    return line
            elif isinstance(node, yaml.SequenceNode) and isinstance(seg, int) and 0 <= seg < len(node.value):
                node = node.value[seg]
                line = node.start_mark.line + 1
            else:
                return line
        return line


def _strip_toml_comment(line: str) -> str:
    quote = ""
    for i, ch in enumerate(line):
        if quote:
            if ch == quote:
                quote = ""
        elif ch in "\"'":
            quote = ch
        elif ch == "#":
            return line[:i]
    return line


class _TextLocator(Locator):
    """JSON and TOML: find each key of the path at or after its parent's line."""

    def __init__(self, text: str, fmt: str) -> None:
        self.fmt = fmt
        lines = text.split("\n")  # the parsers count "\n" only
        self.lines = [_strip_toml_comment(s) for s in lines] if fmt == "toml" else lines

    def _pattern(self, key: str) -> re.Pattern[str]:
        if self.fmt == "json":
            return re.compile(re.escape(json.dumps(key)) + r"\s*:")
        names = "|".join(re.escape(k) for k in (key, json.dumps(key), f"'{key}'"))
        return re.compile(r"(?:^|[\s{,.\[])(?:" + names + r")\s*[=.\]]")

    def line(self, path: Sequence[Segment]) -> int:
        current = 0  # 0-based index of the parent's line
        found = 1
        for seg in path:
            if isinstance(seg, int):
                continue  # list items: stay on the list's line
            pattern = self._pattern(seg)
            for i in range(current, len(self.lines)):
                if pattern.search(self.lines[i]):
                    current, found = i, i + 1
                    break
            else:
                return found
        return found


# ---------------------------------------------------------------------- parsing


@dataclass
class LoadedFile:
    """A parsed constraints file: the request, and where each key is written."""

    path: str
    fmt: str
    request: PlanRequest
    locator: Locator = field(repr=False)

    def line_of(self, key_path: str | Sequence[Segment]) -> int:
        path = parse_path(key_path) if isinstance(key_path, str) else tuple(key_path)
        return self.locator.line(path)


class _Bool(str):
    """A YAML/JSON/TOML boolean where the schema wants a number or a string (shown as written)."""

    def __repr__(self) -> str:
        return str(self)


def _syntax(path: str, line: int, problem: str, fix: str) -> ConstraintsFileError:
    return ConstraintsFileError(path, max(line, 1), "syntax error", f"{problem} ({fix})")


def _parse_yaml(text: str, name: str) -> tuple[Any, Locator]:
    fix = "check the YAML near this line: indentation, ':' after each key, closed brackets and quotes"
    node: yaml.Node | None = None
    try:
        loader = yaml.SafeLoader(text)
        try:
            node = loader.get_single_node()
            data = loader.construct_document(node) if node is not None else None
        finally:
            loader.dispose()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = exc.problem or exc.context or "not valid YAML"
        raise _syntax(name, mark.line + 1 if mark else 1, problem, fix) from None
    except yaml.reader.ReaderError as exc:
        line = text.count("\n", 0, max(exc.position, 0)) + 1
        raise _syntax(
            name,
            line,
            f"unacceptable character #x{exc.character:04x}" if isinstance(exc.character, int) else "unacceptable character",
            "remove control characters; the file must be UTF-8 text",
        ) from None
    except yaml.YAMLError as exc:
        raise _syntax(name, 1, str(exc).splitlines()[0], fix) from None
    except (ValueError, TypeError, OverflowError) as exc:  # e.g. an impossible date such as 2024-13-01
        line = node.start_mark.line + 1 if node is not None else 1
        raise _syntax(name, line, f"a value cannot be read: {exc}", "quote values that are not meant as dates or numbers") from None
    dup = _yaml_duplicate(node, ())
    if dup is not None:
        line, path = dup
        raise ConstraintsFileError(name, line, render_path(path), "key given twice (keep one)")
    return data, _YamlLocator(node)


def _yaml_duplicate(node: yaml.Node | None, path: KeyPath, visited: set[int] | None = None) -> tuple[int, KeyPath] | None:
    """The first key written twice in one mapping (PyYAML would silently keep the last)."""
    visited = set() if visited is None else visited
    if node is None or id(node) in visited:  # aliases: each node once
        return None
    visited.add(id(node))
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key, value in node.value:
            if isinstance(key, yaml.ScalarNode):
                if key.value in seen and key.value != "<<":
                    return key.start_mark.line + 1, path + (key.value,)
                seen.add(key.value)
            hit = _yaml_duplicate(value, path + (str(getattr(key, "value", "?")),), visited)
            if hit is not None:
                return hit
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            hit = _yaml_duplicate(item, path + (i,), visited)
            if hit is not None:
                return hit
    return None


class _DuplicateKey(Exception):
    def __init__(self, key: str) -> None:
        self.key = key


def _unique_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _DuplicateKey(key)
        out[key] = value
    return out


def _parse_json(text: str, name: str) -> tuple[Any, Locator]:
    locator = _TextLocator(text, "json")
    try:
        data = json.loads(text, object_pairs_hook=_unique_pairs)
    except json.JSONDecodeError as exc:
        raise _syntax(
            name, exc.lineno, exc.msg, "check the JSON near this line: quotes around keys, commas between items, no trailing comma"
        ) from None
    except _DuplicateKey as exc:
        pattern = re.compile(re.escape(json.dumps(exc.key)) + r"\s*:")
        hits = [i + 1 for i, s in enumerate(locator.lines) if pattern.search(s)]
        line = hits[1] if len(hits) > 1 else (hits[0] if hits else 1)
        raise ConstraintsFileError(name, line, exc.key, "key given twice (keep one)") from None
    except RecursionError:
        raise _syntax(name, 1, "nested too deeply", "a constraints file needs only a few levels") from None
    return data, locator


_TOML_AT = re.compile(r"\(at line (\d+), column (\d+)\)")


def _parse_toml(text: str, name: str) -> tuple[Any, Locator]:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        msg = str(exc)
        m = _TOML_AT.search(msg)
        line = int(m.group(1)) if m else max(len(text.splitlines()), 1)
        problem = _TOML_AT.sub("", msg).replace("(at end of document)", "at the end of the file").strip()
        raise _syntax(name, line, problem, "check the TOML near this line: key = value, [section] headers, quotes and brackets") from None
    return data, _TextLocator(text, "toml")


_PARSERS = {"yaml": _parse_yaml, "json": _parse_json, "toml": _parse_toml}


def _booleans_as_text(value: Any, path: KeyPath) -> Any:
    """Booleans become strings except where the schema wants one, so ``input_len: true`` is an error."""
    if isinstance(value, bool):
        return value if path == ("heterogeneous",) else _Bool("true" if value else "false")
    if isinstance(value, dict):
        return {k: _booleans_as_text(v, path + (str(k),)) for k, v in value.items()}
    if isinstance(value, list):
        return [_booleans_as_text(v, path + (i,)) for i, v in enumerate(value)]
    return value


def _non_finite(value: Any, path: KeyPath) -> KeyPath | None:
    if isinstance(value, float) and not math.isfinite(value):
        return path
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for k, v in items:
        hit = _non_finite(v, path + ((str(k) if isinstance(value, dict) else k),))
        if hit is not None:
            return hit
    return None


# ---------------------------------------------------------------------- schema errors


def _submodel(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in get_args(annotation):
        found = _submodel(arg)
        if found is not None:
            return found
    return None


def _model_at(path: Sequence[Segment]) -> type[BaseModel] | None:
    """The pydantic model that holds the keys at ``path`` (None: not a fixed set of keys)."""
    model: type[BaseModel] | None = PlanRequest
    i = 0
    while i < len(path):
        if model is None:
            return None
        info = model.model_fields.get(str(path[i]))
        if info is None:
            return None
        annotation = info.annotation
        if get_origin(annotation) is dict or any(get_origin(a) is dict for a in get_args(annotation)):
            # gpus: {id: count | GpuAllowance}; skip the id
            i += 1
            if i >= len(path):
                return None
        model = _submodel(annotation)
        i += 1
    return model


def _show(value: Any) -> str:
    if value is None:
        return "an empty value"
    if isinstance(value, _Bool):
        return str(value)
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return repr(value)
    return repr(value) if isinstance(value, (str, int, float)) else f"{value} ({type(value).__name__})"


def _describe_field(path: Sequence[Segment]) -> str:
    parent = _model_at(path[:-1]) if path else None
    if parent is not None and path and isinstance(path[-1], str):
        info = parent.model_fields.get(path[-1])
        if info is not None and info.description:
            return info.description
    return ""


def _close(word: str, options: Sequence[str]) -> str | None:
    hits = difflib.get_close_matches(word, list(options), n=1, cutoff=0.6)
    if not hits:
        folded = {o.lower(): o for o in options}
        if word.lower() in folded:
            return folded[word.lower()]
    return hits[0] if hits else None


def _unknown_key(path: KeyPath) -> str:
    parent = _model_at(path[:-1])
    allowed = list(parent.model_fields) if parent is not None else []
    guess = _close(str(path[-1]), allowed)
    if guess:
        return f"unknown key (did you mean {guess!r}?)"
    if allowed:
        return f"unknown key (allowed here: {', '.join(allowed)})"
    return "unknown key (remove it)"


_UNION_HINTS = {
    "gpus": ("a GPU count or a mapping", "a count such as 4, or a mapping such as {max: 8, usd_per_hour: 0.70}"),
    "framework": ("a framework id or a list of ids", "an id such as vllm, a list such as [vllm, sglang], or any"),
}


def _union_message(path: KeyPath, value: Any) -> str:
    kinds, example = _UNION_HINTS.get(str(path[0]) if path else "", ("another kind of value", "see `guideopt schema`"))
    return f"expected {kinds}, got {_show(value)} (write {example})"


def _message(err: dict[str, Any], path: KeyPath) -> str:
    kind = err["type"]
    got = err.get("input")
    ctx = err.get("ctx") or {}
    what = _describe_field(path)
    if kind == "extra_forbidden":
        return _unknown_key(path)
    if kind == "missing":
        example = _EXAMPLES.get(render_path(path))
        return f"required key is missing (add {path[-1]}{' — ' + what if what else ''}{'; e.g. ' + example if example else ''})"
    if kind in ("int_parsing", "int_type", "int_from_float"):
        return f"expected a whole number, got {_show(got)} (write it without quotes or decimals, e.g. 4)"
    if kind in ("float_parsing", "float_type"):
        return f"expected a number, got {_show(got)} (write it without quotes, e.g. 12.5)"
    if kind in ("string_type", "string_too_short"):
        return f"expected a non-empty string, got {_show(got)} (write text{' — ' + what if what else ''})"
    if kind in ("bool_parsing", "bool_type"):
        return f"expected true or false, got {_show(got)} (write true or false)"
    if kind in ("list_type", "too_short"):
        shown = "an empty list" if kind == "too_short" else _show(got)
        example = {"objective": "[throughput, cost]", "precision": "[fp16, bf16]"}.get(str(path[-1]) if path else "", "[1, 2, 4]")
        return f"expected a non-empty list, got {shown} (e.g. {example})"
    if kind in ("model_type", "dict_type", "model_attributes_type"):
        model = _model_at(path)
        keys = ", ".join(model.model_fields) if model is not None else "GPU ids"
        return f"expected a mapping, got {_show(got)} (give keys: {keys})"
    if kind == "enum":
        options = [o.strip(" '") for o in re.split(r",| or ", str(ctx.get("expected", ""))) if o.strip(" '")]
        guess = _close(str(got), options) if isinstance(got, str) else None
        hint = f"did you mean {guess!r}? " if guess else ""
        noun = "an objective term" if path and path[0] == "objective" else "a precision"
        return f"{_show(got)} is not {noun} ({hint}one of {', '.join(options)})"
    if kind in ("greater_than", "greater_than_equal", "less_than", "less_than_equal"):
        op, key = {
            "greater_than": (">", "gt"),
            "greater_than_equal": (">=", "ge"),
            "less_than": ("<", "lt"),
            "less_than_equal": ("<=", "le"),
        }[kind]
        bound = ctx.get(key)
        bound_s = f"{bound:g}" if isinstance(bound, float) else str(bound)
        fix = {">": f"a number above {bound_s}", ">=": f"{bound_s} or more", "<": f"a number below {bound_s}", "<=": f"at most {bound_s}"}[
            op
        ]
        if bound_s == "0" and op == ">":
            fix = "a positive number"
        return f"must be {op} {bound_s}, got {_show(got)} (give {fix})"
    if kind == "invalid_key":
        return f"keys must be text, got {_show(got)} (quote the key)"
    if kind == "value_error":
        msg = str(err.get("msg", "")).removeprefix("Value error, ")
        msg = re.sub(r"^[\w.\-\[\]]+: ", "", msg)
        fix = {"objective": "list each term once", "tp": "use sizes >= 1", "pp": "use sizes >= 1"}.get(
            str(path[-1]) if path else "", "fix the value"
        )
        if msg.startswith("count must be"):
            fix = "give 0 or more GPUs"
        return f"{msg} ({fix})"
    return f"{err.get('msg', 'invalid value')} (see `guideopt schema`)"


def _is_tag(seg: Any) -> bool:
    """A pydantic union/validator tag in an error location, not a key of the file."""
    return isinstance(seg, str) and (seg in ("int", "str", "float", "bool") or "[" in seg or seg[:1].isupper())


def _real_path(loc: Sequence[Any], data: Any) -> tuple[KeyPath, str | None, KeyPath, Any]:
    """Drop union tags from a pydantic location.

    Returns the key path, the first union tag (None: not inside a union), the key path
    where that union sits, and the file's value there.
    """
    path: list[Segment] = []
    branch: str | None = None
    union_path: KeyPath = ()
    union_value: Any = None
    node: Any = data
    for seg in loc:
        if isinstance(node, dict) and (seg in node or str(seg) in node):
            key = seg if seg in node else str(seg)
            path.append(str(key))
            node = node[key]
        elif isinstance(node, list) and isinstance(seg, int) and 0 <= seg < len(node):
            path.append(seg)
            node = node[seg]
        elif _is_tag(seg):
            if branch is None:
                branch, union_path, union_value = str(seg), tuple(path), node
        else:
            path.append(str(seg))
            node = None
    return tuple(path), branch, union_path, union_value


def _branch_fits(branch: str, value: Any) -> bool:
    """Whether a union branch is the one meant by the value's kind (a mapping, a list, a scalar)."""
    scalar = branch in ("int", "str", "float", "bool")
    if isinstance(value, dict):
        return not scalar and not branch.startswith("list")
    if isinstance(value, list):
        return branch.startswith("list")
    return False  # a scalar that fits no scalar branch: say what the union accepts


def _schema_errors(exc: ValidationError, data: Any) -> list[tuple[KeyPath, str]]:
    located = []
    for err in exc.errors():
        loc = err["loc"]
        if err["type"] == "value_error" and not loc:
            # a model-level check naming its own key path ("gpus.h100: count must be ...")
            m = re.match(r"(?:Value error, )?([\w.\-\[\]]+): ", str(err.get("msg", "")))
            loc = parse_path(m.group(1)) if m else ()
        located.append((err, *_real_path(loc, data)))
    # Unions (gpus values, framework): report the branch that fits the value's kind, if any.
    fitting_unions = {u for _, _, b, u, v in located if b is not None and _branch_fits(b, v)}
    # A misspelt key is both unknown and missing: report it once, as unknown (with a "did you mean").
    unknown_under = {p[:-1] for e, p, *_ in located if e["type"] == "extra_forbidden"}
    out: list[tuple[KeyPath, str]] = []
    seen: set[KeyPath] = set()
    for err, path, branch, union_path, union_value in located:
        if err["type"] == "missing" and path[:-1] in unknown_under:
            continue
        if branch is not None and not _branch_fits(branch, union_value):
            if union_path in fitting_unions:
                continue
            path, message = union_path, _union_message(union_path, union_value)
        else:
            message = _message(dict(err), path)
        if path not in seen:
            seen.add(path)
            out.append((path, message))
    return out


# ---------------------------------------------------------------------- catalog checks


def _resolve_model(model: str, base: Path, catalog: Catalog) -> tuple[str | None, str | None]:
    """(model to plan with, problem); a config.json path is resolved against ``base``."""
    if model in catalog.models:
        return model, None
    candidate = Path(model).expanduser()
    if not candidate.is_absolute():
        candidate = base / candidate
    looks_like_path = model.endswith(".json") or model.startswith((".", "/", "~")) or candidate.is_dir()
    if looks_like_path:
        config = candidate / "config.json" if candidate.is_dir() else candidate
        if not config.is_file():
            return None, (
                f"file {model!r} does not exist (relative paths are read from the constraints file's folder "
                f"{base.resolve()}; give a catalog id or a config.json path)"
            )
        try:
            catalog.model(str(config))
        except CatalogError as exc:
            return None, f"{str(exc).removeprefix('model: ')} (give a Hugging Face config.json)"
        return str(config.resolve()), None
    guess = _close(model, list(catalog.models))
    hint = f"did you mean {guess!r}? " if guess else ""
    return None, f"unknown model {model!r} ({hint}see `guideopt catalog models`, or give a path to a config.json)"


def _catalog_errors(data: dict[str, Any], base: Path, catalog: Catalog) -> tuple[list[tuple[KeyPath, str]], str | None]:
    errors: list[tuple[KeyPath, str]] = []
    resolved: str | None = None
    model = data.get("model")
    if isinstance(model, str) and model and not isinstance(model, _Bool):
        resolved, problem = _resolve_model(model, base, catalog)
        if problem:
            errors.append((("model",), problem))
    gpus = data.get("gpus")
    if isinstance(gpus, dict):
        if not gpus:
            errors.append((("gpus",), "no GPU type is allowed (name at least one id, e.g. l4: 8, or leave gpus out for the whole catalog)"))
        for gpu_id in gpus:
            if str(gpu_id) not in catalog.gpus:
                guess = _close(str(gpu_id), list(catalog.gpus))
                hint = f"did you mean {guess!r}? " if guess else ""
                errors.append((("gpus", str(gpu_id)), f"unknown GPU id {str(gpu_id)!r} ({hint}see `guideopt catalog gpus`)"))
    framework = data.get("framework")
    known = list(catalog.frameworks)
    if isinstance(framework, str) and not isinstance(framework, _Bool):
        if framework != "any" and framework not in known:
            errors.append((("framework",), _unknown_framework(framework, known)))
    elif isinstance(framework, list):
        if not framework:
            errors.append((("framework",), f"no framework is allowed (list at least one of {', '.join(known)}, or write any)"))
        for i, fw in enumerate(framework):
            if fw == "any":
                errors.append((("framework", i), "any cannot be one item of a list (write framework: any on its own)"))
            elif isinstance(fw, str) and not isinstance(fw, _Bool) and fw not in known:
                errors.append((("framework", i), _unknown_framework(fw, known)))
    return errors, resolved


def _unknown_framework(fw: str, known: list[str]) -> str:
    guess = _close(fw, known)
    hint = f"did you mean {guess!r}? " if guess else ""
    return f"unknown framework {fw!r} ({hint}one of {', '.join(known)}, or any)"


# ---------------------------------------------------------------------- entry points


def load(path: str | Path, catalog: Catalog | None = None) -> LoadedFile:
    """Read, validate and check a constraints file; raise ConstraintsFileError on the first problem."""
    name = str(path)
    p = Path(path)
    fmt = FORMATS.get(p.suffix.lower())
    if fmt is None:
        raise ConstraintsFileError(name, 0, "", f"unknown file type {p.suffix or '(none)'!r} (name it .yaml, .yml, .json or .toml)")
    try:
        raw = p.read_bytes()
    except OSError as exc:
        raise ConstraintsFileError(name, 0, "", f"cannot read the file ({exc.strerror or exc})") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise _syntax(name, line, "the file is not UTF-8 text", "save it as UTF-8") from None
    return loads(text, fmt, name=name, base=p.parent, catalog=catalog)


def loads(text: str, fmt: str, name: str = "<constraints>", base: str | Path = ".", catalog: Catalog | None = None) -> LoadedFile:
    """Like :func:`load` for text already in memory (``fmt``: yaml, json or toml)."""
    try:
        return _loads(text, fmt, name, Path(base), catalog)
    except RecursionError:
        raise _syntax(name, 1, "the file nests too deeply or refers to itself", "a constraints file needs only a few levels") from None


def _loads(text: str, fmt: str, name: str, base: Path, catalog: Catalog | None) -> LoadedFile:
    if fmt not in _PARSERS:
        raise ConstraintsFileError(name, 0, "", f"unknown format {fmt!r} (use yaml, json or toml)")
    empty = ConstraintsFileError(name, 1, "(top level)", "the file is empty (give at least model, workload and budget; see examples/)")
    if not text.strip():
        raise empty
    data, locator = _PARSERS[fmt](text, name)
    if data is None or (isinstance(data, dict) and not data and fmt != "json"):
        raise empty
    if not isinstance(data, dict):
        raise ConstraintsFileError(
            name,
            locator.line(()),
            "(top level)",
            f"expected a mapping of keys, got {_show(data)} (start with model:, workload: and budget:)",
        )
    bad = _non_finite(data, ())
    if bad is not None:
        raise ConstraintsFileError(name, locator.line(bad), render_path(bad), "must be a finite number (give a number such as 20)")
    data = _booleans_as_text(data, ())
    problems: list[tuple[KeyPath, str]] = []
    request: PlanRequest | None = None
    try:
        request = PlanRequest.model_validate(data)
    except ValidationError as exc:
        problems.extend(_schema_errors(exc, data))
    cat = catalog or load_catalog()
    catalog_problems, resolved_model = _catalog_errors(data, base, cat)
    problems.extend(catalog_problems)
    if problems:
        located = [(locator.line(path), i, path, msg) for i, (path, msg) in enumerate(problems)]
        line, _, path, msg = min(located)
        raise ConstraintsFileError(name, line, render_path(path) or "(top level)", msg)
    assert request is not None
    if resolved_model and resolved_model != request.model:
        request = request.model_copy(update={"model": resolved_model})
    return LoadedFile(path=name, fmt=fmt, request=request, locator=locator)


def load_request(path: str | Path, catalog: Catalog | None = None) -> PlanRequest:
    """The PlanRequest of a constraints file (.yaml/.yml, .json or .toml)."""
    return load(path, catalog).request


# ---------------------------------------------------------------------- JSON Schema

_DESCRIPTIONS: dict[str, str] = {
    "model": "Hugging Face id from `guideopt catalog models`, or a path to a config.json (relative to this file)",
    "workload": "The static batch to plan for: B requests of input_len tokens, each generating output_len tokens",
    "budget": "Spending ceiling for the whole deployment",
    "gpus": "Allowed GPU types (ids from `guideopt catalog gpus`), each with how many can be had (a count) or "
    "{max, usd_per_hour} to also override the price; leave out to allow the whole catalog",
    "parallelism": "Allowed tensor/pipeline-parallel sizes and a cap on the GPUs in all",
    "parallelism.tp": "Allowed tensor-parallel sizes (default 1, 2, 4, 8)",
    "parallelism.pp": "Allowed pipeline-parallel sizes (default 1, 2, 4)",
    "parallelism.max_gpus": "At most this many GPUs in the whole deployment",
    "parallelism.max_nodes": "At most this many nodes in the whole deployment; a node holds gpus_per_node GPUs of one type "
    "(catalog); replicas no wider than a node share nodes, wider ones take whole nodes each",
    "framework": "Serving engine: an id (vllm, fastgen, trtllm, sglang), a list of ids, or any",
    "precision": "Allowed weight precisions; the solver picks among them (default [fp16])",
    "kv_dtype": "KV-cache precision (default: 16-bit)",
    "slo": "Service-level objectives every plan must meet (all optional)",
    "slo.ttft_ms": "Time to first token of the batch at most this many milliseconds",
    "slo.tpot_ms": "Mean time per output token (after the first) at most this many milliseconds",
    "slo.batch_latency_s": "Time until every request of a replica's batch is done, at most this many seconds",
    "slo.min_output_throughput_tok_s": "Whole-deployment output tokens per second, at least this many",
    "objective": "Lexicographic objective: the first term decides, later terms break ties "
    "(throughput, latency, ttft, tpot, cost, usd_per_million_output_tokens)",
    "top": "How many distinct plans (deployment shapes) to return",
    "time_limit_s": "Wall-clock limit of the search in seconds (default 5); when it hits, the plans found so far "
    "are returned with status feasible and the optimality gap",
    "heterogeneous": "Allow plans that mix GPU types: one group of replicas per type, traffic split by throughput",
}

_DEF_FOR = {"workload": "Workload", "budget": "Budget", "parallelism": "Parallelism", "slo": "Slo", "gpus": "GpuAllowance"}


def json_schema(catalog: Catalog | None = None) -> dict[str, Any]:
    """The JSON Schema of constraints files, with titles and help text for editors."""
    schema = PlanRequest.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "guideopt constraints file"
    schema["description"] = (
        "What `guideopt solve FILE` plans for (YAML, JSON or TOML with this structure): the model, the workload, "
        "a budget, and optional GPU inventory, parallelism, engines, precisions, SLOs and a lexicographic objective."
    )
    props = schema.get("properties", {})
    defs = schema.get("$defs", {})
    for key, text in _DESCRIPTIONS.items():
        top, _, sub = key.partition(".")
        if not sub:
            if top in props:
                props[top]["description"] = text
        elif _DEF_FOR.get(top) in defs:
            sub_props = defs[_DEF_FOR[top]].get("properties", {})
            if sub in sub_props:
                sub_props[sub]["description"] = text
    for def_name, text in (
        ("Workload", "The static batch to plan for"),
        ("Budget", "Spending ceiling"),
        ("GpuAllowance", "How many GPUs of one type can be had, and at what price"),
        ("Parallelism", "Allowed parallel layouts"),
        ("Slo", "Service-level objectives"),
    ):
        if def_name in defs:
            defs[def_name].setdefault("description", text)
    if "ObjectiveTerm" in defs:
        defs["ObjectiveTerm"]["description"] = (
            "throughput: maximise output tok/s; latency: minimise batch latency; ttft, tpot: minimise them; cost: minimise $/h; "
            "usd_per_million_output_tokens: minimise $/h per million output tokens an hour"
        )
    cat = catalog
    if cat is None:
        try:
            cat = load_catalog()
        except CatalogError:
            cat = None
    if cat is not None and "gpus" in props:
        props["gpus"]["propertyNames"] = {"enum": sorted(cat.gpus)}
        props["model"]["examples"] = sorted(cat.models)[:5]
    props.get("framework", {})["examples"] = ["vllm", ["vllm", "sglang"], "any"]
    props.get("objective", {})["examples"] = [[t.value for t in (ObjectiveTerm.THROUGHPUT, ObjectiveTerm.COST)]]
    return schema
