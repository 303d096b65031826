"""Reading a constraints file's text: YAML, JSON or TOML parsed, with each key's line.

Every problem is a :class:`ConstraintsFileError` of the form
``FILE:LINE: key.path: what is wrong (what would be right)``. Hostile input is refused
before it can cost time or memory: files over ``MAX_CONSTRAINTS_FILE_BYTES``, YAML whose
aliases expand past ``MAX_YAML_NODES`` nodes, a mapping or list with more than
``MAX_COLLECTION_ITEMS`` items (limits in :mod:`guideopt.model.limits`).
This module is library code: it never imports click.
"""

from __future__ import annotations

import json
import math
import re
import sys
from collections.abc import Sequence
from typing import Any

import yaml

from guideopt.errors import InvalidRequestError
from guideopt.model.keypath import KeyPath, Segment, one_line, render_path
from guideopt.model.limits import MAX_COLLECTION_ITEMS, MAX_YAML_NODES
from guideopt.model.unique_keys import DUPLICATE_KEY, DuplicateKeyError, loads_json, yaml_duplicate
from guideopt.model.validation import booleans_as_text as written_booleans

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib


class ConstraintsFileError(InvalidRequestError):
    """A user error in a constraints file, located at ``path:line`` and a key path."""

    def __init__(self, path: str, line: int, key: str, problem: str) -> None:
        where = f"{path}:{line}" if line > 0 else path
        super().__init__(one_line(f"{where}: {key}: {problem}" if key else f"{where}: {problem}"))
        self.path, self.line, self.key, self.problem = path, line, key, problem


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


def syntax_error(path: str, line: int, problem: str, fix: str) -> ConstraintsFileError:
    return ConstraintsFileError(path, max(line, 1), "syntax error", f"{problem} ({fix})")


def _parse_yaml(text: str, name: str) -> tuple[Any, Locator]:
    fix = "check the YAML near this line: indentation, ':' after each key, closed brackets and quotes"
    node: yaml.Node | None = None
    try:
        loader = yaml.SafeLoader(text)
        try:
            node = loader.get_single_node()
            _check_yaml_size(node, name)  # before anything walks the alias-expanded tree
            data = loader.construct_document(node) if node is not None else None
        finally:
            loader.dispose()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = exc.problem or exc.context or "not valid YAML"
        raise syntax_error(name, mark.line + 1 if mark else 1, problem, fix) from None
    except yaml.reader.ReaderError as exc:
        line = text.count("\n", 0, max(exc.position, 0)) + 1
        raise syntax_error(
            name,
            line,
            f"unacceptable character #x{exc.character:04x}" if isinstance(exc.character, int) else "unacceptable character",
            "remove control characters; the file must be UTF-8 text",
        ) from None
    except yaml.YAMLError as exc:
        raise syntax_error(name, 1, str(exc).splitlines()[0], fix) from None
    except (ValueError, TypeError, OverflowError) as exc:  # e.g. an impossible date such as 2024-13-01
        line = node.start_mark.line + 1 if node is not None else 1
        raise syntax_error(name, line, f"a value cannot be read: {exc}", "quote values that are not meant as dates or numbers") from None
    dup = yaml_duplicate(node)
    if dup is not None:
        line, path = dup
        raise ConstraintsFileError(name, line, render_path(path), DUPLICATE_KEY)
    return data, _YamlLocator(node)


def _parse_json(text: str, name: str) -> tuple[Any, Locator]:
    locator = _TextLocator(text, "json")
    try:
        data = loads_json(text)
    except json.JSONDecodeError as exc:
        raise syntax_error(
            name, exc.lineno, exc.msg, "check the JSON near this line: quotes around keys, commas between items, no trailing comma"
        ) from None
    except DuplicateKeyError as exc:
        raise ConstraintsFileError(name, exc.line, render_path(exc.path), DUPLICATE_KEY) from None
    except RecursionError:
        raise syntax_error(name, 1, "nested too deeply", "a constraints file needs only a few levels") from None
    _check_data_size(data, (), name, locator)
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
        raise syntax_error(
            name, line, problem, "check the TOML near this line: key = value, [section] headers, quotes and brackets"
        ) from None
    locator = _TextLocator(text, "toml")
    _check_data_size(data, (), name, locator)
    return data, locator


PARSERS = {"yaml": _parse_yaml, "json": _parse_json, "toml": _parse_toml}


# ---------------------------------------------------------------------- size limits

_TOO_MANY = f"more than {MAX_COLLECTION_ITEMS:,} items (a constraints file needs a handful; remove the repeats)"


def _check_yaml_size(root: yaml.Node | None, name: str) -> None:
    """Refuse a YAML document whose aliases expand past MAX_YAML_NODES nodes (an alias bomb),
    or a mapping or list longer than MAX_COLLECTION_ITEMS, before it is constructed."""
    sizes: dict[int, int] = {}

    def expanded(node: yaml.Node, open_nodes: set[int]) -> int:
        key = id(node)
        if key in sizes:
            return sizes[key]
        if key in open_nodes:
            raise syntax_error(name, node.start_mark.line + 1, "an alias refers to itself", "remove the alias loop")
        children: list[yaml.Node] = []
        if isinstance(node, yaml.MappingNode):
            children = [n for pair in node.value for n in pair]
        elif isinstance(node, yaml.SequenceNode):
            children = list(node.value)
        if len(node.value) > MAX_COLLECTION_ITEMS and children:
            raise ConstraintsFileError(name, node.start_mark.line + 1, "", _TOO_MANY)
        open_nodes.add(key)
        total = 1
        for child in children:
            total += expanded(child, open_nodes)
            if total > MAX_YAML_NODES:
                raise syntax_error(
                    name,
                    node.start_mark.line + 1,
                    f"aliases expand this document past {MAX_YAML_NODES:,} values",
                    "write the values out instead of nesting aliases",
                )
        open_nodes.discard(key)
        sizes[key] = total
        return total

    if root is not None:
        expanded(root, set())


def _check_data_size(value: Any, path: KeyPath, name: str, locator: Locator) -> None:
    """JSON and TOML have no aliases: refuse only over-long mappings and lists."""
    if isinstance(value, (dict, list)):
        if len(value) > MAX_COLLECTION_ITEMS:
            raise ConstraintsFileError(name, locator.line(path), render_path(path) or "(top level)", _TOO_MANY)
        items = value.items() if isinstance(value, dict) else enumerate(value)
        for k, v in items:
            _check_data_size(v, path + ((str(k) if isinstance(value, dict) else k),), name, locator)


# ---------------------------------------------------------------------- values


BOOLEAN_KEYS: tuple[KeyPath, ...] = (("heterogeneous",), ("robust",))  # the request's true/false keys


def booleans_as_text(value: Any, path: KeyPath) -> Any:
    """Booleans become strings except where the schema wants one, so ``input_len: true`` is an error."""
    return written_booleans(value, path, BOOLEAN_KEYS)


def non_finite(value: Any, path: KeyPath) -> KeyPath | None:
    if isinstance(value, float) and not math.isfinite(value):
        return path
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for k, v in items:
        hit = non_finite(v, path + ((str(k) if isinstance(value, dict) else k),))
        if hit is not None:
            return hit
    return None
