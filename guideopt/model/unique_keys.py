"""One rule for every structured input: a key written twice in one mapping is refused.

YAML and JSON parsers keep the last of two equal keys without a word, so a file that
says ``budget`` twice plans with whichever came last. Constraints files, ``--prices``
files, calibration overlays, JSONL traces and web API bodies all read through here and
refuse it with the same words (:data:`DUPLICATE_KEY`), naming the key path and its line.
(TOML parsers refuse a repeated key themselves.)
"""

from __future__ import annotations

import json
import re
from typing import Any

import yaml

from guideopt.model.keypath import KeyPath, render_path

DUPLICATE_KEY = "key given twice (keep one)"


class DuplicateKeyError(ValueError):
    """A key written twice in one mapping: its key path and the 1-based line of the repeat."""

    def __init__(self, path: KeyPath, line: int) -> None:
        super().__init__(f"{render_path(path)}: {DUPLICATE_KEY}")
        self.path, self.line = path, line

    def located(self, name: str) -> str:
        """``NAME:LINE: key.path: key given twice (keep one)``, as a constraints file says it."""
        return f"{name}:{self.line}: {self}"


# ---------------------------------------------------------------------- YAML


def yaml_duplicate(node: yaml.Node | None, path: KeyPath = (), visited: set[int] | None = None) -> tuple[int, KeyPath] | None:
    """The first key written twice in one mapping of a composed YAML document: (line, key path)."""
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
            hit = yaml_duplicate(value, path + (str(getattr(key, "value", "?")),), visited)
            if hit is not None:
                return hit
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            hit = yaml_duplicate(item, path + (i,), visited)
            if hit is not None:
                return hit
    return None


def loads_yaml(text: str) -> Any:
    """``yaml.safe_load`` that refuses a repeated key (:class:`DuplicateKeyError`); YAML
    errors propagate as ``yaml.YAMLError``."""
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        dup = yaml_duplicate(node)
        if dup is not None:
            raise DuplicateKeyError(dup[1], dup[0])
        return loader.construct_document(node) if node is not None else None
    finally:
        loader.dispose()


# ---------------------------------------------------------------------- JSON


class _Repeat(Exception):
    """Raised from inside ``json.loads`` at the first repeated key."""


def _refuse_repeats(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _Repeat
        out[key] = value
    return out


class _Marked(dict):
    """A JSON object that remembers the first key written twice in it."""

    repeated: str | None = None


def _mark_repeats(pairs: list[tuple[str, Any]]) -> _Marked:
    out = _Marked()
    for key, value in pairs:
        if key in out and out.repeated is None:
            out.repeated = key
        out.setdefault(key, value)
    return out


def _first_repeat(value: Any, path: KeyPath) -> KeyPath | None:
    """The first repeated key in document order (a parent's before its children's)."""
    if isinstance(value, _Marked) and value.repeated is not None:
        return path + (value.repeated,)
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for k, v in items:
        hit = _first_repeat(v, path + (k,))
        if hit is not None:
            return hit
    return None


def _json_line(text: str, path: KeyPath) -> int:
    """Best effort: the line of the second writing of the path's last key, searched after its parents."""
    pos = 0
    keys = [k for k in path if isinstance(k, str)]
    for depth, key in enumerate(keys):
        found = [m.start() for m in re.finditer(re.escape(json.dumps(key)) + r"\s*:", text[pos:])]
        want = 1 if depth == len(keys) - 1 else 0
        if len(found) <= want:
            break
        pos += found[want]
    return text.count("\n", 0, pos) + 1


def loads_json(text: str | bytes) -> Any:
    """``json.loads`` that refuses a repeated key (:class:`DuplicateKeyError`); syntax errors
    propagate as ``json.JSONDecodeError``."""
    try:
        return json.loads(text, object_pairs_hook=_refuse_repeats)
    except _Repeat:
        path = _first_repeat(json.loads(text, object_pairs_hook=_mark_repeats), ()) or ()
        raw = text.decode("utf-8", "replace") if isinstance(text, bytes) else text
        raise DuplicateKeyError(path, _json_line(raw, path)) from None
