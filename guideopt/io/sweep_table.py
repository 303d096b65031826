"""A sweep's output file (CSV or Parquet, by its suffix) and the journal that makes it resumable.

While a sweep runs, each finished scenario's rows are appended to a journal beside the
output (``results.csv.partial.jsonl``), flushed at once, so that a sweep that is stopped
keeps what it did. At the end the output is written whole (to a temporary file, then
renamed), sorted by scenario, and the journal is removed. A rerun reads both to know
which scenarios are done. Parquet needs pyarrow (``pip install 'guideopt[parquet]'``).
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from guideopt.errors import InvalidRequestError
from guideopt.io.sweep_rows import RESULT_TYPES, Rows

OUT_SUFFIXES = (".csv", ".parquet")
JOURNAL_SUFFIX = ".partial.jsonl"
ID_COLUMN = "scenario_id"
INDEX_COLUMN = "scenario"
PARQUET_INSTALL = "pip install 'guideopt[parquet]'"


def check_out_path(path: str | os.PathLike[str]) -> Path:
    """The output path, checked before any work: a known suffix, an existing folder, and
    pyarrow importable for Parquet."""
    p = Path(path)
    if p.suffix.lower() not in OUT_SUFFIXES:
        raise InvalidRequestError(f"unknown file type {p.suffix or '(none)'!r} for {p} (name it .csv or .parquet)", field="out")
    if not p.parent.is_dir():
        raise InvalidRequestError(f"the folder {p.parent} does not exist (create it first)", field="out")
    if p.is_dir():
        raise InvalidRequestError(f"{p} is a folder (name a file)", field="out")
    if _is_parquet(p):
        _pyarrow()
    return p


def _is_parquet(p: Path) -> bool:
    return p.suffix.lower() == ".parquet"


def _pyarrow() -> Any:
    try:
        import pyarrow as pa
        import pyarrow.parquet  # the submodule the writer and reader use
    except ImportError:
        raise InvalidRequestError(f"writing Parquet needs pyarrow ({PARQUET_INSTALL}), or name the file .csv", field="out") from None
    return pa


def journal_path(out: Path) -> Path:
    return out.with_name(out.name + JOURNAL_SUFFIX)


# ---------------------------------------------------------------------- reading


def read_rows(out: Path) -> Rows:
    """The rows an earlier run wrote to ``out`` (none if it does not exist)."""
    if not out.exists():
        return []
    try:
        rows = _read_parquet(out) if _is_parquet(out) else _read_csv(out)
    except (OSError, ValueError, csv.Error) as exc:
        raise InvalidRequestError(f"cannot read {out} to resume ({exc}); name a new file, or remove it", field="out") from None
    if rows and ID_COLUMN not in rows[0]:
        raise InvalidRequestError(f"{out} exists and is not a sweep's output (no {ID_COLUMN} column); name a new file", field="out")
    return rows


def _read_csv(out: Path) -> Rows:
    with out.open(newline="", encoding="utf-8") as f:
        return [dict(row) for row in csv.DictReader(f)]


def _read_parquet(out: Path) -> Rows:
    pa = _pyarrow()
    try:
        table = pa.parquet.read_table(out)
    except pa.ArrowException as exc:
        raise ValueError(str(exc)) from None
    rows: Rows = table.to_pylist()
    return rows


def read_journal(out: Path) -> dict[str, Rows]:
    """Rows per scenario id from a journal an interrupted run left (a torn last line is skipped)."""
    path = journal_path(out)
    if not path.exists():
        return {}
    done: dict[str, Rows] = {}
    with path.open(encoding="utf-8") as f:
        for line in f:
            try:
                entry = json.loads(line)
                done[str(entry["id"])] = list(entry["rows"])
            except (ValueError, KeyError, TypeError):
                continue
    return done


# ---------------------------------------------------------------------- writing


class Journal:
    """Appends each finished scenario's rows to the journal, one flushed JSON line each."""

    def __init__(self, out: Path) -> None:
        self.path = journal_path(out)
        self._file: Any = None  # opened at the first result: a sweep that fails to start leaves none

    def add(self, scenario_id: str, rows: Rows) -> None:
        if self._file is None:
            self._file = self.path.open("a", encoding="utf-8")
        self._file.write(json.dumps({"id": scenario_id, "rows": rows}, separators=(",", ":")) + "\n")
        self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def remove(self) -> None:
        self.close()
        self.path.unlink(missing_ok=True)


def write_rows(out: Path, columns: Sequence[str], rows: Iterable[Mapping[str, Any]]) -> None:
    """Write the whole output: to a temporary file beside it, then renamed over it."""
    tmp = out.with_name(f".{out.name}.tmp")
    try:
        if _is_parquet(out):
            _write_parquet(tmp, columns, rows)
        else:
            _write_csv(tmp, columns, rows)
        os.replace(tmp, out)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise InvalidRequestError(f"cannot write {out} ({exc.strerror or exc}); the journal keeps the results", field="out") from None


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _write_csv(path: Path, columns: Sequence[str], rows: Iterable[Mapping[str, Any]]) -> None:
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(columns)
        writer.writerows([_text(row.get(c)) for c in columns] for row in rows)


def _write_parquet(path: Path, columns: Sequence[str], rows: Iterable[Mapping[str, Any]]) -> None:
    pa = _pyarrow()
    rows = list(rows)
    types = {"int64": pa.int64(), "float64": pa.float64(), "bool": pa.bool_(), "string": pa.string()}
    kinds = {INDEX_COLUMN: "int64", **RESULT_TYPES}
    schema = pa.schema([(c, types[kinds.get(c, "string")]) for c in columns])
    data = {c: [_typed(row.get(c), kinds.get(c, "string")) for row in rows] for c in columns}
    table = pa.Table.from_pydict(data, schema=schema)
    pa.parquet.write_table(table, path)


def _typed(value: Any, kind: str) -> Any:
    """A value of the column's type (rows read back from an earlier CSV-era value may be text)."""
    if value is None or (value == "" and kind != "string"):
        return None
    if kind == "int64":
        return int(value)
    if kind == "float64":
        return float(value)
    if kind == "bool":
        return value if isinstance(value, bool) else str(value).lower() == "true"
    return _text(value)
