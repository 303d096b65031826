"""The one input-validation layer: every entry point's verdict and message on a bad value.

CLI flags, constraints files, ``predict --csv`` rows and the web API all validate through
the pydantic models of ``guideopt.model`` and word a bad value here, so the same value
gets the same verdict and the same message everywhere. Only the *name* of the field
differs, as its user wrote it: a flag (``--budget``), a file key path with its line
(``FILE:6: budget.usd_per_hour``) or a JSON field (``budget.usd_per_hour``).
The limits themselves are in :mod:`guideopt.model.limits`.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any, get_args, get_origin

from pydantic import BaseModel, ValidationError

from guideopt.errors import InvalidRequestError
from guideopt.model.keypath import KeyPath, Segment, parse_path, render_path


class WrittenBool(str):
    """A boolean written where the schema wants a number or text (shown as written)."""

    def __repr__(self) -> str:
        return str(self)


def booleans_as_text(value: Any, path: KeyPath = (), keep: Sequence[KeyPath] = ()) -> Any:
    """Parsed YAML/JSON with its booleans as :class:`WrittenBool` text except at the ``keep``
    paths (the schema's true/false keys): pydantic would read ``true`` as 1, so a file's
    ``input_len: true`` or a price of ``true`` becomes an error, as on every surface."""
    if isinstance(value, bool):
        return value if path in keep else WrittenBool("true" if value else "false")
    if isinstance(value, dict):
        return {k: booleans_as_text(v, path + (str(k),), keep) for k, v in value.items()}
    if isinstance(value, list):
        return [booleans_as_text(v, path + (i,), keep) for i, v in enumerate(value)]
    return value


# What a missing required key of a PlanRequest could look like (format-neutral).
REQUEST_EXAMPLES: dict[str, str] = {
    "model": "model: meta-llama/Llama-3.1-8B",
    "workload": "workload: {input_len: 1024, output_len: 256}",
    "workload.input_len": "input_len: 1024",
    "workload.output_len": "output_len: 256",
    "budget": "budget: {usd_per_hour: 20}",
    "budget.usd_per_hour": "usd_per_hour: 20",
}

_UNION_HINTS = {
    "gpus": ("a GPU count or a mapping", "a count such as 4, or a mapping such as {max: 8, usd_per_hour: 0.70}"),
    "framework": ("a framework id or a list of ids", "an id such as vllm, a list such as [vllm, sglang], or any"),
    "slo": ("a finite number of ms or a mapping per percentile", "a number such as 800, or a mapping such as {p90: 800}"),
}
_PRICE = ("a price or a mapping", "a price per GPU-hour such as 2.5, or a mapping such as {usd_per_hour: 2.5}")
_PRICE_HINTS = {"gpus": _PRICE, "tiers": _PRICE}  # a --prices file: {GPU id: price}
_BOUND_OPS = {
    "greater_than": (">", "gt"),
    "greater_than_equal": (">=", "ge"),
    "less_than": ("<", "lt"),
    "less_than_equal": ("<=", "le"),
}


# ---------------------------------------------------------------------- wording


def show(value: Any) -> str:
    """A value as the user wrote it, for a message."""
    if value is None:
        return "an empty value"
    if isinstance(value, WrittenBool):
        return str(value)
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 10**15:
        return f"a {len(str(abs(value)))}-digit number"
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return repr(value)
    if isinstance(value, str) and len(value) > 60:
        return repr(value[:57] + "...")
    return repr(value) if isinstance(value, (str, int, float)) else f"{value} ({type(value).__name__})"


def close_match(word: str, options: Sequence[str]) -> str | None:
    """The option a misspelt word most likely means (case-insensitive as a fallback)."""
    hits = difflib.get_close_matches(word, list(options), n=1, cutoff=0.6)
    if not hits:
        folded = {o.lower(): o for o in options}
        if word.lower() in folded:
            return folded[word.lower()]
    return hits[0] if hits else None


def _submodel(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in get_args(annotation):
        found = _submodel(arg)
        if found is not None:
            return found
    return None


def model_at(root: type[BaseModel], path: Sequence[Segment]) -> type[BaseModel] | None:
    """The pydantic model that holds the keys at ``path`` (None: not a fixed set of keys)."""
    model: type[BaseModel] | None = root
    i = 0
    while i < len(path):
        if model is None:
            return None
        info = model.model_fields.get(str(path[i]))
        if info is None:
            return None
        annotation = info.annotation
        if get_origin(annotation) is dict or any(get_origin(a) is dict for a in get_args(annotation)):
            i += 1  # gpus: {id: count | GpuAllowance}; skip the id
            if i >= len(path):
                return None
        model = _submodel(annotation)
        i += 1
    return model


def _describe_field(root: type[BaseModel], path: Sequence[Segment]) -> str:
    parent = model_at(root, path[:-1]) if path else None
    if parent is not None and path and isinstance(path[-1], str):
        info = parent.model_fields.get(path[-1])
        if info is not None and info.description:
            return info.description
    return ""


def _unknown_key(root: type[BaseModel], path: KeyPath) -> str:
    parent = model_at(root, path[:-1])
    allowed = list(parent.model_fields) if parent is not None else []
    guess = close_match(str(path[-1]), allowed)
    if guess:
        return f"unknown key (did you mean {guess!r}?)"
    if allowed:
        return f"unknown key (allowed here: {', '.join(allowed)})"
    return "unknown key (remove it)"


def union_message(path: KeyPath, value: Any, root: type[BaseModel] | None = None) -> str:
    hints = _PRICE_HINTS if root is not None and root.__name__ == "PriceSet" else _UNION_HINTS
    kinds, example = hints.get(str(path[0]) if path else "", ("another kind of value", "a value `guideopt schema` allows"))
    return f"expected {kinds}, got {show(value)} (write {example})"


def _bound_message(kind: str, got: Any, ctx: Mapping[str, Any]) -> str:
    op, key = _BOUND_OPS[kind]
    bound = ctx.get(key)
    if isinstance(bound, float) and bound.is_integer() and abs(bound) < 1e15:
        bound = int(bound)
    bound_s = f"{bound:,g}" if isinstance(bound, float) else f"{bound:,}" if isinstance(bound, int) else str(bound)
    fix = {">": f"a number above {bound_s}", ">=": f"{bound_s} or more", "<": f"a number below {bound_s}", "<=": f"at most {bound_s}"}[op]
    if bound_s == "0" and op == ">":
        fix = "a positive number"
    return f"must be {op} {bound_s}, got {show(got)} (give {fix})"


def problem_message(root: type[BaseModel], err: Mapping[str, Any], path: KeyPath) -> str:
    """What is wrong with one value and what would be right (the field is named by the caller)."""
    kind = err["type"]
    got = err.get("input")
    ctx = err.get("ctx") or {}
    what = _describe_field(root, path)
    if kind == "extra_forbidden":
        return _unknown_key(root, path)
    if kind == "missing":
        example = REQUEST_EXAMPLES.get(render_path(path)) if root.__name__ == "PlanRequest" else None
        return f"required key is missing (add {path[-1] if path else 'it'}{' — ' + what if what else ''}{'; e.g. ' + example if example else ''})"
    if kind in ("int_parsing", "int_type", "int_from_float", "int_parsing_size"):
        return f"expected a whole number, got {show(got)} (write it without quotes or decimals, e.g. 4)"
    if kind in ("float_parsing", "float_type"):
        return f"expected a number, got {show(got)} (write it without quotes, e.g. 12.5)"
    if kind == "finite_number" or (isinstance(got, float) and not math.isfinite(got)):
        return f"must be a finite number, got {show(got)} (give a number such as 20)"
    if kind in ("string_type", "string_too_short"):
        return f"expected a non-empty string, got {show(got)} (write text{' — ' + what if what else ''})"
    if kind in ("bool_parsing", "bool_type"):
        return f"expected true or false, got {show(got)} (write true or false)"
    if kind in ("list_type", "too_short", "too_long"):
        if kind == "too_long":
            return f"too many items (give at most {ctx.get('max_length')})"
        shown = "an empty list" if kind == "too_short" else show(got)
        example = {"objective": "[throughput, cost]", "precision": "[fp16, bf16]"}.get(str(path[-1]) if path else "", "[1, 2, 4]")
        return f"expected a non-empty list, got {shown} (e.g. {example})"
    if kind in ("model_type", "dict_type", "model_attributes_type"):
        model = model_at(root, path)
        keys = ", ".join(model.model_fields) if model is not None else "GPU ids"
        return f"expected a mapping, got {show(got)} (give keys: {keys})"
    if kind == "enum":
        options = [o.strip(" '") for o in re.split(r",| or ", str(ctx.get("expected", ""))) if o.strip(" '")]
        guess = close_match(str(got), options) if isinstance(got, str) else None
        hint = f"did you mean {guess!r}? " if guess else ""
        noun = "an objective term" if path and path[0] == "objective" else "a precision"
        return f"{show(got)} is not {noun} ({hint}one of {', '.join(options)})"
    if kind in _BOUND_OPS:
        return _bound_message(kind, got, ctx)
    if kind == "invalid_key":
        return f"keys must be text, got {show(got)} (quote the key)"
    if kind == "value_error":
        msg = str(err.get("msg", "")).removeprefix("Value error, ")
        msg = re.sub(r"^[\w.\-\[\]]+: ", "", msg)
        if "(" in msg:  # the check already says what would be right
            return msg
        fix = {"objective": "list each term once", "tp": "use sizes >= 1", "pp": "use sizes >= 1"}.get(
            str(path[-1]) if path else "", "fix the value"
        )
        if msg.startswith("count must be"):
            fix = "give 0 or more GPUs"
        return f"{msg} ({fix})"
    where = "`guideopt schema`" if root.__name__ == "PlanRequest" else "the command's --help"
    return f"{err.get('msg', 'invalid value')} (see {where})"


# ---------------------------------------------------------------------- locating pydantic errors


def _is_tag(seg: Any) -> bool:
    """A pydantic union/validator tag in an error location, not a key of the input."""
    return isinstance(seg, str) and (seg in ("int", "str", "float", "bool") or "[" in seg or seg[:1].isupper())


def _real_path(loc: Sequence[Any], data: Any) -> tuple[KeyPath, str | None, KeyPath, Any]:
    """Drop union tags from a pydantic location: (key path, first union tag, the union's path, its value)."""
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
            path.append(seg if isinstance(seg, int) else str(seg))
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


def schema_problems(exc: ValidationError, data: Any, root: type[BaseModel]) -> list[tuple[KeyPath, str]]:
    """Every bad value of a validation error as (key path, problem), in the input's order."""
    located = []
    for err in exc.errors():
        loc = err["loc"]
        if err["type"] == "value_error" and not loc:
            # a model-level check naming its own key path ("gpus.h100: count must be ...")
            m = re.match(r"(?:Value error, )?([\w.\-\[\]]+): ", str(err.get("msg", "")))
            loc = parse_path(m.group(1)) if m else ()
        located.append((err, *_real_path(loc, data)))
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
            path, message = union_path, union_message(union_path, union_value, root)
        else:
            message = problem_message(root, dict(err), path)
        if path not in seen:
            seen.add(path)
            out.append((path, message))
    return out


# ---------------------------------------------------------------------- entry points


def display_name(path: str | KeyPath, names: Mapping[str, str] | None) -> str:
    """The field as its user wrote it: ``names`` maps key paths (no list indices) to flags or columns."""
    keys = parse_path(path) if isinstance(path, str) else tuple(path)
    plain = [k for k in keys if isinstance(k, str)]
    if names:
        for end in range(len(plain), 0, -1):
            hit = names.get(".".join(plain[:end]))
            if hit:
                return hit
    return render_path(keys) or "request"


def validated(model: type[BaseModel], data: Mapping[str, Any] | BaseModel, names: Mapping[str, str] | None = None) -> Any:
    """Validate input into a request model; the first bad value becomes an InvalidRequestError
    naming the field (through ``names`` when given: flags for the CLI, columns for a CSV)."""
    if isinstance(data, model):
        return data
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raw = dict(data) if isinstance(data, Mapping) else data
        problems = schema_problems(exc, raw, model) or [((), str(exc.errors()[0].get("msg", "not valid")))]
        path, message = problems[0]
        raise InvalidRequestError(message, field=display_name(path, names)) from None


def check_context(model_id: str, context_tokens: int, input_len: int, output_len: int, field: str) -> None:
    """A request longer than the model's context is refused (engines refuse it too)."""
    total = input_len + output_len
    if total <= context_tokens:
        return
    room = context_tokens - output_len
    fix = f"use at most {room:,} input tokens with {output_len:,} output tokens" if room > 0 else "shorten the output"
    raise InvalidRequestError(
        f"input + output = {total:,} tokens exceeds {model_id}'s context of {context_tokens:,} ({fix}, or a longer-context model)",
        field=field,
    )


def check_csv_header(fields: Sequence[str], required: Sequence[str], where: str) -> None:
    """A CSV header names each column once and has the required ones (a column given twice
    would silently overwrite the other; a BOM must have been decoded away, as utf-8-sig does)."""
    seen: set[str] = set()
    for name in fields:
        if name in seen:
            raise InvalidRequestError(f"column {name!r} is given twice (keep one)", field=where)
        seen.add(name)
    missing = [c for c in required if c not in seen]
    if missing:
        raise InvalidRequestError(f"missing column(s) {', '.join(missing)} (the header needs {', '.join(required)})", field=where)
