"""Constraints files (``guideopt solve FILE``): YAML, JSON or TOML read into a :class:`PlanRequest`.

The file's structure *is* :class:`guideopt.model.request.PlanRequest` (the same model behind
the ``plan`` flags), so the three formats give the same request for the same structure.
Every user error becomes one :class:`ConstraintsFileError` (an ``InvalidRequestError``)
of the form ``FILE:LINE: key.path: what is wrong (what would be right)``:

* syntax errors carry the parser's line (``constraints_parse``), and so do the size
  limits: files over ``MAX_CONSTRAINTS_FILE_BYTES``, alias bombs, over-long lists;
* schema errors (unknown keys with a "did you mean", wrong types, out-of-range values,
  missing keys) carry the line of the offending key; their wording is the one every
  entry point shares (``guideopt.model.validation``);
* catalog checks (unknown model, GPU or framework ids) are reported the same way; the
  model id goes through the catalog's one resolver, as on the command line.

When several things are wrong, the one nearest the top of the file is reported.
This module is library code: it never imports click.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from guideopt.catalog import Catalog, load_catalog, load_length_mix
from guideopt.errors import CatalogError, InvalidRequestError
from guideopt.io.constraints_parse import PARSERS, ConstraintsFileError, Locator, booleans_as_text, non_finite, syntax_error
from guideopt.io.constraints_schema import json_schema
from guideopt.model.keypath import KeyPath, Segment, parse_path, render_path
from guideopt.model.limits import MAX_CONSTRAINTS_FILE_BYTES
from guideopt.model.request import PlanRequest
from guideopt.model.validation import WrittenBool, close_match, schema_problems, show
from guideopt.model.workload import Lengths

__all__ = ["FORMATS", "ConstraintsFileError", "LoadedFile", "json_schema", "load", "load_request", "loads", "parse_path", "render_path"]

FORMATS = {".yaml": "yaml", ".yml": "yaml", ".json": "json", ".toml": "toml"}
_TOO_BIG = f"the file is over {MAX_CONSTRAINTS_FILE_BYTES // 1024} KiB (a constraints file is a few KB; see examples/)"


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


# ---------------------------------------------------------------------- catalog checks


def _resolve_model(model: str, base: Path, catalog: Catalog) -> tuple[str | None, str | None]:
    """(model to plan with, problem): the catalog's one resolver, paths read from ``base``.

    A catalog id (or a variant of one) stays as written, so launch scripts serve the
    weights the user named; a config.json path becomes absolute.
    """
    try:
        resolved = catalog.resolve_model(model, base=base)
    except CatalogError as exc:
        return None, str(exc).removeprefix("model: ")
    return (resolved if resolved not in catalog.models else model), None


def _catalog_errors(data: dict[str, Any], base: Path, catalog: Catalog) -> tuple[list[tuple[KeyPath, str]], str | None]:
    errors: list[tuple[KeyPath, str]] = []
    resolved: str | None = None
    model = data.get("model")
    if isinstance(model, str) and model and not isinstance(model, WrittenBool):
        resolved, problem = _resolve_model(model, base, catalog)
        if problem:
            errors.append((("model",), problem))
    gpus = data.get("gpus")
    if isinstance(gpus, dict):
        if not gpus:
            errors.append((("gpus",), "no GPU type is allowed (name at least one id, e.g. l4: 8, or leave gpus out for the whole catalog)"))
        for gpu_id in gpus:
            if str(gpu_id) not in catalog.gpus:
                guess = close_match(str(gpu_id), list(catalog.gpus))
                hint = f"did you mean {guess!r}? " if guess else ""
                errors.append((("gpus", str(gpu_id)), f"unknown GPU id {str(gpu_id)!r} ({hint}see `guideopt catalog gpus`)"))
    framework = data.get("framework")
    known = list(catalog.frameworks)
    if isinstance(framework, str) and not isinstance(framework, WrittenBool):
        if framework != "any" and framework not in known:
            errors.append((("framework",), _unknown_framework(framework, known)))
    elif isinstance(framework, list):
        if not framework:
            errors.append((("framework",), f"no framework is allowed (list at least one of {', '.join(known)}, or write any)"))
        for i, fw in enumerate(framework):
            if fw == "any":
                errors.append((("framework", i), "any cannot be one item of a list (write framework: any on its own)"))
            elif isinstance(fw, str) and not isinstance(fw, WrittenBool) and fw not in known:
                errors.append((("framework", i), _unknown_framework(fw, known)))
    return errors, resolved


def _unknown_framework(fw: str, known: list[str]) -> str:
    guess = close_match(fw, known)
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
        with p.open("rb") as fh:
            raw = fh.read(MAX_CONSTRAINTS_FILE_BYTES + 1)
    except OSError as exc:
        raise ConstraintsFileError(name, 0, "", f"cannot read the file ({exc.strerror or exc})") from None
    if len(raw) > MAX_CONSTRAINTS_FILE_BYTES:
        raise ConstraintsFileError(name, 0, "", _TOO_BIG)
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise syntax_error(name, line, "the file is not UTF-8 text", "save it as UTF-8") from None
    return loads(text, fmt, name=name, base=p.parent, catalog=catalog)


def loads(text: str, fmt: str, name: str = "<constraints>", base: str | Path = ".", catalog: Catalog | None = None) -> LoadedFile:
    """Like :func:`load` for text already in memory (``fmt``: yaml, json or toml)."""
    if len(text) > MAX_CONSTRAINTS_FILE_BYTES:
        raise ConstraintsFileError(name, 0, "", _TOO_BIG)
    try:
        return _loads(text, fmt, name, Path(base), catalog)
    except RecursionError:
        raise syntax_error(name, 1, "the file nests too deeply or refers to itself", "a constraints file needs only a few levels") from None


def _loads(text: str, fmt: str, name: str, base: Path, catalog: Catalog | None) -> LoadedFile:
    if fmt not in PARSERS:
        raise ConstraintsFileError(name, 0, "", f"unknown format {fmt!r} (use yaml, json or toml)")
    empty = ConstraintsFileError(name, 1, "(top level)", "the file is empty (give at least model, workload and budget; see examples/)")
    if not text.strip():
        raise empty
    data, locator = PARSERS[fmt](text, name)
    if data is None or (isinstance(data, dict) and not data and fmt != "json"):
        raise empty
    if not isinstance(data, dict):
        raise ConstraintsFileError(
            name,
            locator.line(()),
            "(top level)",
            f"expected a mapping of keys, got {show(data)} (start with model:, workload: and budget:)",
        )
    bad = non_finite(data, ())
    if bad is not None:
        value = _value_at(data, bad)
        raise ConstraintsFileError(
            name, locator.line(bad), render_path(bad), f"must be a finite number, got {show(value)} (give a number such as 20)"
        )
    data = booleans_as_text(data, ())
    problems: list[tuple[KeyPath, str]] = []
    request: PlanRequest | None = None
    try:
        request = PlanRequest.model_validate(data)
    except ValidationError as exc:
        problems.extend(schema_problems(exc, data, PlanRequest))
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
    request = _read_lengths(request, data, name, base, locator)
    return LoadedFile(path=name, fmt=fmt, request=request, locator=locator)


def _read_lengths(request: PlanRequest, data: dict[str, Any], name: str, base: Path, locator: Locator) -> PlanRequest:
    """``workload.lengths`` checked where it is written: a mix id against the catalog's mixes,
    and a trace (relative to the file's folder) read into buckets by the ``--lengths`` reader."""
    spec = request.workload.length_spec
    if spec is None or (spec.file is None and spec.mix is None):
        return request
    written = _value_at(data, ("workload", "lengths"))
    field = "file" if spec.file is not None else "mix"
    key: KeyPath = ("workload", "lengths", field) if isinstance(written, dict) else ("workload", "lengths")
    try:
        if spec.mix is not None:
            load_length_mix(spec.mix)
            return request
        from guideopt.io.traces import trace_length_buckets  # numpy: only when a file names a trace (fast `schema`)

        trace = Path(str(spec.file)).expanduser()
        lengths = Lengths.model_validate(trace_length_buckets(trace if trace.is_absolute() else base / trace))
    except (InvalidRequestError, CatalogError) as exc:
        raise ConstraintsFileError(name, locator.line(key), render_path(key), str(exc).removeprefix("lengths: ")) from None
    workload = request.workload.model_copy(update={"lengths": lengths})
    return request.model_copy(update={"workload": workload})


def _value_at(data: Any, path: KeyPath) -> Any:
    for key in path:
        data = data[key]
    return data


def load_request(path: str | Path, catalog: Catalog | None = None) -> PlanRequest:
    """The PlanRequest of a constraints file (.yaml/.yml, .json or .toml)."""
    return load(path, catalog).request
