"""Scenario files for ``guideopt sweep``: a YAML/JSON/TOML grid or a CSV, read into planning requests.

A **grid file** is a constraints file (the keys every scenario shares) with a ``grid``
section: each grid key is a request key path (``budget.usd_per_hour``, ``workload.rate_rps``,
``gpus``, ``model``) or a short name (``budget``, ``rate_rps``, ``input_len``...), with a list
of values; the scenarios are every combination, in the order written (the last key varies
fastest). A **CSV file** has one scenario per row, the same keys as columns. Either may
name ``prices``: a price source as ``plan --prices`` takes it (``spot``, ``nebius:spot``, a
file), or ``catalog`` for the catalog's own prices.

A scenario is identified by a stable hash of its request (``Scenario.id``), so a rerun
can skip the scenarios already done. Keys are checked here, before anything runs: an
unknown key is one ``FILE:LINE: key: unknown key (did you mean ...)`` line. Values are
checked per scenario when it is planned (a bad value gives that scenario an ``invalid``
row, not a failed sweep). This module is library code: it never imports click.
"""

from __future__ import annotations

import csv
import hashlib
import io
import itertools
import json
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from guideopt.io.constraints_parse import BOOLEAN_KEYS, PARSERS, ConstraintsFileError, Locator, booleans_as_text
from guideopt.model.limits import MAX_CONSTRAINTS_FILE_BYTES
from guideopt.model.request import PlanRequest
from guideopt.model.validation import close_match, model_at

# Scenarios in one sweep: a 7B offline plan takes ~10 ms, a stream plan ~2 s, so 100,000
# scenarios are hours of work at most; a grid of ten ten-value lists (10^10) is a typo.
MAX_SWEEP_SCENARIOS = 100_000
# Bytes in one scenario CSV: 100,000 rows of a few hundred bytes each.
MAX_SCENARIO_CSV_BYTES = 64 * 1024**2
GRID_FORMATS = {".yaml": "yaml", ".yml": "yaml", ".json": "json", ".toml": "toml"}
CSV_SUFFIX = ".csv"
HASH_VERSION = "guideopt-sweep-v1"  # part of every scenario id: change it when the id's meaning changes
HASH_HEX_DIGITS = 16

# Short names for the keys a sweep varies most (grid keys and CSV columns), and the keys of
# a sweep that are not request keys.
ALIASES: dict[str, str] = {
    "input_len": "workload.input_len",
    "output_len": "workload.output_len",
    "batch": "workload.batch",
    "rate_rps": "workload.rate_rps",
    "concurrency": "workload.concurrency",
    "lengths": "workload.lengths",
    "burstiness": "workload.burstiness",
    "budget": "budget.usd_per_hour",
    "ttft_ms": "slo.ttft_ms",
    "tpot_ms": "slo.tpot_ms",
    "max_gpus": "parallelism.max_gpus",
    "tp": "parallelism.tp",
    "pp": "parallelism.pp",
}
PRICES_KEY = "prices"
CATALOG_PRICES = "catalog"  # a `prices` value meaning: the catalog's own prices
GRID_KEY = "grid"


@dataclass(frozen=True)
class Scenario:
    """One planning request of a sweep: its place (from 1), id, labels (column -> text) and request."""

    index: int
    id: str
    labels: dict[str, str]
    request: dict[str, Any]


@dataclass
class ScenarioSet:
    """A sweep's scenarios in order; ``columns`` are its label columns, ``paths`` the key path of each."""

    source: str
    columns: list[str]
    paths: dict[str, tuple[str, ...]]
    scenarios: list[Scenario] = field(default_factory=list)

    def column_for(self, *paths: tuple[str, ...]) -> str | None:
        """The first label column that sets one of ``paths`` (in the order given)."""
        for wanted in paths:
            for column in self.columns:
                if self.paths[column] == wanted:
                    return column
        return None


def load_scenarios(path: str | Path) -> ScenarioSet:
    """Read a grid file or a scenario CSV (by its suffix); key errors raise ConstraintsFileError."""
    p = Path(path)
    suffix = p.suffix.lower()
    if suffix != CSV_SUFFIX and suffix not in GRID_FORMATS:
        raise ConstraintsFileError(str(p), 0, "", f"unknown file type {p.suffix or '(none)'!r} (name it .yaml, .json, .toml or .csv)")
    limit = MAX_SCENARIO_CSV_BYTES if suffix == CSV_SUFFIX else MAX_CONSTRAINTS_FILE_BYTES
    text = _read_text(p, limit)
    return _csv_scenarios(text, str(p)) if suffix == CSV_SUFFIX else _grid_scenarios(text, str(p), GRID_FORMATS[suffix])


def _read_text(p: Path, limit: int) -> str:
    try:
        if p.stat().st_size > limit:
            raise ConstraintsFileError(str(p), 0, "", f"the file is over {limit // 1024:,} KiB (split the sweep into several files)")
        return p.read_bytes().decode("utf-8-sig")
    except FileNotFoundError:
        raise ConstraintsFileError(str(p), 0, "", "no such file (check the path)") from None
    except OSError as exc:
        raise ConstraintsFileError(str(p), 0, "", f"cannot read the file ({exc.strerror or exc})") from None
    except UnicodeDecodeError as exc:
        raise ConstraintsFileError(str(p), 0, "", f"not UTF-8 text ({exc.reason}; save the file as UTF-8)") from None


# ---------------------------------------------------------------------- key checks


def key_path(written: str) -> tuple[str, ...]:
    """The request key path a grid key or CSV column names (``budget`` -> budget.usd_per_hour)."""
    return tuple(ALIASES.get(written, written).split("."))


def key_problem(path: Sequence[str]) -> str | None:
    """Why ``path`` is not a request key; None when it is (or lies below a free-form mapping,
    such as ``gpus.l4``, whose keys are checked when each scenario is planned)."""
    if path[0] == PRICES_KEY:
        return None if len(path) == 1 else "prices takes a price source (a set, SET:TIER or a file), not keys"
    parent = model_at(PlanRequest, tuple(path[:-1])) if len(path) > 1 else PlanRequest
    if parent is None or path[-1] in parent.model_fields:
        return None
    options = list(parent.model_fields)
    if len(path) == 1:
        options += [PRICES_KEY, *ALIASES]
    guess = close_match(str(path[-1]), options)
    if guess:
        shown = ".".join([*path[:-1], guess])
        return f"unknown key (did you mean {shown!r}?)"
    return f"unknown key (allowed here: {', '.join(options)})"


def _nested_keys(value: Any, path: tuple[str, ...], at: tuple[Any, ...]) -> Iterator[tuple[tuple[str, ...], tuple[Any, ...]]]:
    """(request key path, file key path) of every mapping key inside ``value``."""
    if isinstance(value, Mapping):
        for key, inner in value.items():
            yield path + (str(key),), at + (key,)
            yield from _nested_keys(inner, path + (str(key),), at + (key,))


def _check_nested(value: Any, path: tuple[str, ...], at: tuple[Any, ...], source: str, locator: Locator, shown: str) -> None:
    for inner_path, inner_at in _nested_keys(value, path, at):
        problem = key_problem(inner_path)
        if problem:
            written = ".".join([shown, *(str(k) for k in inner_at[len(at) :])])
            raise ConstraintsFileError(source, locator.line(inner_at), written, problem)


# ---------------------------------------------------------------------- grids


def _grid_scenarios(text: str, source: str, fmt: str) -> ScenarioSet:
    data, locator = PARSERS[fmt](text, source)
    if not isinstance(data, dict):
        raise ConstraintsFileError(source, 1, "", "expected a mapping of request keys with a grid: section (see examples/sweeps/)")
    grid = data.get(GRID_KEY)
    if not isinstance(grid, dict) or not grid:
        line = locator.line((GRID_KEY,)) if GRID_KEY in data else 1
        raise ConstraintsFileError(source, line, GRID_KEY, "missing or empty (give a list per swept key, e.g. grid: {budget: [5, 10]})")
    base = {k: v for k, v in data.items() if k != GRID_KEY}
    for key, value in base.items():
        problem = key_problem((str(key),))
        if problem:
            raise ConstraintsFileError(source, locator.line((key,)), str(key), problem)
        _check_nested(value, (str(key),), (key,), source, locator, str(key))
    columns, lists = _grid_lists(grid, source, locator)
    total = math.prod(len(v) for v in lists)
    if total > MAX_SWEEP_SCENARIOS:
        counts = " x ".join(str(len(v)) for v in lists)
        raise ConstraintsFileError(
            source,
            locator.line((GRID_KEY,)),
            GRID_KEY,
            f"{counts} = {total:,} scenarios, more than {MAX_SWEEP_SCENARIOS:,} (sweep fewer values)",
        )
    out = ScenarioSet(source, columns, {c: key_path(c) for c in columns})
    for index, values in enumerate(itertools.product(*lists), start=1):
        out.scenarios.append(_scenario(index, base, dict(zip(columns, values))))
    _check_required(out, source, locator)
    return out


def _grid_lists(grid: dict[Any, Any], source: str, locator: Locator) -> tuple[list[str], list[list[Any]]]:
    columns: list[str] = []
    lists: list[list[Any]] = []
    seen: dict[tuple[str, ...], str] = {}
    for key, values in grid.items():
        written = str(key)
        path = key_path(written)
        at = (GRID_KEY, key)
        problem = key_problem(path)
        if problem:
            raise ConstraintsFileError(source, locator.line(at), f"{GRID_KEY}.{written}", problem)
        if path in seen:
            raise ConstraintsFileError(source, locator.line(at), f"{GRID_KEY}.{written}", f"names the same key as {seen[path]} (keep one)")
        seen[path] = written
        values = values if isinstance(values, list) else [values]
        if not values:
            raise ConstraintsFileError(source, locator.line(at), f"{GRID_KEY}.{written}", "an empty list (give at least one value)")
        for i, value in enumerate(values):
            _check_nested(value, path, (*at, i), source, locator, f"{GRID_KEY}.{written}[{i}]")
        columns.append(written)
        lists.append(values)
    return columns, lists


def _check_required(scenarios: ScenarioSet, source: str, locator: Locator) -> None:
    """A key no scenario has (model, budget, lengths) is the file's error, not each scenario's."""
    if not scenarios.scenarios:
        return
    first = dict(scenarios.scenarios[0].request)
    first.pop(PRICES_KEY, None)
    try:
        PlanRequest.model_validate(first)
    except ValidationError as exc:  # only the missing keys matter here: other values are each scenario's
        missing = [".".join(str(p) for p in e["loc"]) for e in exc.errors() if e.get("type") == "missing"]
        if missing:
            raise ConstraintsFileError(
                source, 1, missing[0], "missing (give it at the top of the file for every scenario, or as a grid key)"
            ) from None


# ---------------------------------------------------------------------- CSV


def _csv_scenarios(text: str, source: str) -> ScenarioSet:
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = [h.strip() for h in next(reader, [])]
        if not any(header):
            raise ConstraintsFileError(
                source, 1, "", "no header row (the first line names the keys, e.g. model,budget,input_len,output_len)"
            )
        _check_header(header, source)
        out = ScenarioSet(source, header, {c: key_path(c) for c in header})
        for cells in reader:
            if not any(c.strip() for c in cells):
                continue
            if len(out.scenarios) >= MAX_SWEEP_SCENARIOS:
                raise ConstraintsFileError(source, reader.line_num, "", f"more than {MAX_SWEEP_SCENARIOS:,} scenarios (split the file)")
            if len(cells) > len(header):
                raise ConstraintsFileError(
                    source, reader.line_num, "", f"{len(cells)} cells but the header has {len(header)} (quote a cell that holds a comma)"
                )
            values = {c: _cell(cell.strip(), key_path(c)) for c, cell in zip(header, cells) if cell.strip()}
            out.scenarios.append(_scenario(len(out.scenarios) + 1, {}, values))
    except csv.Error as exc:
        raise ConstraintsFileError(source, reader.line_num, "", f"not valid CSV ({exc})") from None
    return out


def _check_header(header: list[str], source: str) -> None:
    seen: dict[tuple[str, ...], str] = {}
    for name in header:
        if not name:
            raise ConstraintsFileError(source, 1, "", "a column has no name (name every column, or remove the empty one)")
        path = key_path(name)
        problem = key_problem(path)
        if problem:
            raise ConstraintsFileError(source, 1, f"column {name!r}", problem)
        if path in seen:
            raise ConstraintsFileError(source, 1, f"column {name!r}", f"names the same key as column {seen[path]!r} (keep one)")
        seen[path] = name
    needs = (("model",), ("budget", "usd_per_hour"), ("workload", "input_len"), ("workload", "output_len"))
    covered = [p for p in needs if any(p[: len(g)] == g for g in seen)]  # a `workload` column covers its keys
    has_lengths = any(("workload", "lengths")[: len(g)] == g for g in seen)
    missing = [p for p in needs if p not in covered and not (has_lengths and p[0] == "workload")]
    if missing:
        raise ConstraintsFileError(
            source, 1, "", f"no column for {'.'.join(missing[0])} (every scenario needs model, budget, input_len and output_len)"
        )


def _cell(text: str, path: tuple[str, ...]) -> Any:
    """A CSV cell's value: a number, true/false for the boolean keys, a [list] or {mapping}
    written in YAML flow style, GPU ids joined by '+' for ``gpus``; otherwise the text."""
    if path in BOOLEAN_KEYS and text.lower() in ("true", "false"):
        return text.lower() == "true"
    if path == ("gpus",) and text[:1] not in "[{":
        return [g for g in text.replace(";", "+").replace(" ", "+").split("+") if g]
    if text[:1] in "[{":
        import yaml

        try:
            return yaml.safe_load(text)
        except yaml.YAMLError:
            return text
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            continue
    return text


# ---------------------------------------------------------------------- scenarios


def _scenario(index: int, base: Mapping[str, Any], values: Mapping[str, Any]) -> Scenario:
    request: dict[str, Any] = json.loads(json.dumps(base))  # a deep copy of plain data
    for written, value in values.items():
        _set(request, key_path(written), value)
    gpus = request.get("gpus")
    if isinstance(gpus, str):
        gpus = [gpus]
    if isinstance(gpus, list) and all(isinstance(g, str) for g in gpus):
        request["gpus"] = {g: {} for g in gpus}
    if request.get(PRICES_KEY) in (None, "", CATALOG_PRICES):
        request.pop(PRICES_KEY, None)
    request = booleans_as_text(request, ())
    return Scenario(index, scenario_id(request), {c: label(v) for c, v in values.items()}, request)


def _set(request: dict[str, Any], path: Sequence[str], value: Any) -> None:
    node = request
    for key in path[:-1]:
        if not isinstance(node.get(key), dict):
            node[key] = {}
        node = node[key]
    node[path[-1]] = json.loads(json.dumps(value)) if isinstance(value, (dict, list)) else value


def scenario_id(request: Mapping[str, Any]) -> str:
    """A stable hash of a request: the same request gives the same id in any process, on any
    machine (canonical JSON, keys sorted, whole floats written as integers)."""
    text = json.dumps(_canonical(request), sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(f"{HASH_VERSION}\n{text}".encode()).hexdigest()[:HASH_HEX_DIGITS]


def _canonical(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _canonical(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_canonical(v) for v in value]
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def label(value: Any) -> str:
    """A scenario value as text for its column: numbers as written, lists joined by '+'."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "+".join(label(v) for v in value)
    if isinstance(value, Mapping):
        return json.dumps(value, sort_keys=True, separators=(",", ":"))
    return str(value)
