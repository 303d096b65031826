"""Read request traces: CSV or JSONL with ``input_len,output_len`` and optional ``arrival_s``.

Every problem is a one-line error naming the file, the line and the column, and the fix.
Bounds are checked before the work they guard: the file's size before it is opened
(``MAX_TRACE_FILE_BYTES``), each line's length as it is read (``MAX_TRACE_LINE_CHARS``), and
the rows as they are counted: reading stops at the first row past ``MAX_TRACE_REQUESTS``
(the simulator's cost grows with the number of requests; see benchmarks/bench_simulate.py).
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import numpy as np

from guideopt.costs.lengths import sample_lengths
from guideopt.errors import InvalidRequestError
from guideopt.model.limits import MAX_SIMULATED_REQUESTS, MAX_TRACE_FILE_BYTES, MAX_TRACE_LINE_CHARS
from guideopt.model.numbers import whole_number
from guideopt.model.unique_keys import DuplicateKeyError, loads_json

MAX_TRACE_REQUESTS = MAX_SIMULATED_REQUESTS
REQUIRED_COLUMNS = ("input_len", "output_len")
ARRIVAL_COLUMN = "arrival_s"


@dataclass(frozen=True)
class Trace:
    input_len: np.ndarray
    output_len: np.ndarray
    arrival_s: np.ndarray | None  # None: lengths only, arrivals come from a rate or concurrency

    def __len__(self) -> int:
        return int(self.input_len.size)


Row = tuple[int, int, "float | None", int]


class _Rows:
    """Rows as they are read, counted against the request limit."""

    def __init__(self, p: Path, max_requests: int) -> None:
        self.p, self.max_requests = p, max_requests
        self.rows: list[Row] = []

    def add(self, row: Row) -> None:
        if len(self.rows) >= self.max_requests:  # stop here: the rest of the file is never parsed
            raise InvalidRequestError(
                f"lengths: {self.p} has more than {self.max_requests} requests, the simulation limit (use a sample of at most {self.max_requests} rows)"
            )
        self.rows.append(row)


def read_trace(path: str | Path, *, max_context: int | None = None, max_requests: int = MAX_TRACE_REQUESTS) -> Trace:
    p = Path(path)
    if not p.is_file():
        raise InvalidRequestError(f"lengths: file {p} does not exist (give a CSV or JSONL trace, or a mix name)")
    rows = _Rows(p, max_requests)
    try:
        size = p.stat().st_size
        if size > MAX_TRACE_FILE_BYTES:
            raise InvalidRequestError(
                f"lengths: {p} is {size:,} bytes, over the {MAX_TRACE_FILE_BYTES:,}-byte limit for a trace (keep input_len,output_len[,arrival_s] and at most {max_requests} rows)"
            )
        with p.open(encoding="utf-8-sig", newline="") as f:  # utf-8-sig: a spreadsheet's byte-order mark is not part of the header
            parse = _jsonl_rows if p.suffix.lower() in (".jsonl", ".ndjson") else _csv_rows
            parse(p, _bounded_lines(p, f), rows)
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidRequestError(f"lengths: cannot read {p} ({exc})") from None
    return _trace(p, rows.rows, max_context)


def _trace(p: Path, rows: list[Row], max_context: int | None) -> Trace:
    if not rows:
        raise InvalidRequestError(f"lengths: {p} has no requests (add rows with input_len,output_len)")
    has_arrival = [r[2] is not None for r in rows]
    if any(has_arrival) and not all(has_arrival):
        line = rows[has_arrival.index(False)][3]
        raise InvalidRequestError(f"{p}:{line}: {ARRIVAL_COLUMN}: missing while other rows have it (give it on every row or none)")
    arr = np.array([[r[0], r[1]] for r in rows], dtype=float)
    if max_context is not None:
        total = arr.sum(axis=1)
        bad = int(np.argmax(total > max_context)) if (total > max_context).any() else -1
        if bad >= 0:
            raise InvalidRequestError(
                f"{p}:{rows[bad][3]}: input_len+output_len = {int(total[bad])} exceeds the model's context of {max_context} (drop or truncate the request)"
            )
    arrival = np.array([r[2] for r in rows], dtype=float) if all(has_arrival) else None
    return Trace(arr[:, 0], arr[:, 1], arrival)


def _bounded_lines(p: Path, f: TextIO) -> Iterator[str]:
    """The file's lines, each read at most ``MAX_TRACE_LINE_CHARS`` at a time (a line without
    an end is never held whole)."""
    for line_no, line in enumerate(iter(lambda: f.readline(MAX_TRACE_LINE_CHARS + 1), ""), start=1):
        if len(line) > MAX_TRACE_LINE_CHARS:
            raise InvalidRequestError(
                f"{p}:{line_no}: line over {MAX_TRACE_LINE_CHARS:,} characters (a trace row is input_len,output_len[,arrival_s])"
            )
        yield line


def _csv_rows(p: Path, lines: Iterable[str], rows: _Rows) -> None:
    reader = csv.reader(lines)
    try:
        header = next((h for h in reader if any(c.strip() for c in h)), None)
        if header is None:
            raise InvalidRequestError(f"lengths: {p} is empty (add a header input_len,output_len and one row per request)")
        names = [h.strip() for h in header]
        twice = next((n for i, n in enumerate(names) if n and n in names[:i]), None)
        if twice:  # DictReader-style last-wins would silently read one of them: refused, as predict --csv does
            raise InvalidRequestError(f"{p}:{reader.line_num}: column {twice!r} is given twice (keep one)")
        missing = [c for c in REQUIRED_COLUMNS if c not in names]
        if missing:
            raise InvalidRequestError(
                f"{p}:{reader.line_num}: missing column {missing[0]} (the header needs input_len,output_len[,arrival_s])"
            )
        cols = (
            names.index(REQUIRED_COLUMNS[0]),
            names.index(REQUIRED_COLUMNS[1]),
            names.index(ARRIVAL_COLUMN) if ARRIVAL_COLUMN in names else None,
        )
        for raw in reader:
            if len(raw) > len(names):
                raise InvalidRequestError(
                    f"{p}:{reader.line_num}: more values than the header's {len(names)} columns (one value per column)"
                )
            row = _plain_row(raw, cols, reader.line_num)
            if row is not None:
                rows.add(row)
                continue
            rec = dict(zip(names, (v.strip() for v in raw)))
            if any(rec.values()):
                rows.add(_row(p, reader.line_num, rec))
    except csv.Error as exc:  # e.g. a field over the csv module's 128 KiB limit: no token count is that long
        raise InvalidRequestError(f"{p}:{reader.line_num}: not a trace row ({exc})") from None


def _plain_row(raw: list[str], cols: tuple[int, int, int | None], line_no: int) -> Row | None:
    """A row of plain valid numbers, read directly (most rows of a real trace); None for any
    other row, which ``_row`` then reads with its one-line errors."""
    try:
        a, b = int(raw[cols[0]]), int(raw[cols[1]])
        t = float(raw[cols[2]]) if cols[2] is not None else None
    except (ValueError, IndexError):
        return None
    if a < 1 or b < 1 or (t is not None and not (math.isfinite(t) and t >= 0)):
        return None
    return a, b, t, line_no


def _jsonl_rows(p: Path, lines: Iterable[str], rows: _Rows) -> None:
    for line_no, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
            if isinstance(rec, dict) and line.count(":") != len(rec):  # maybe a key written twice: the exact check
                loads_json(line)
        except json.JSONDecodeError as exc:
            raise InvalidRequestError(f"{p}:{line_no}: not valid JSON ({exc.msg}); write one object per line") from None
        except DuplicateKeyError as exc:
            raise InvalidRequestError(f"{p}:{line_no}: {exc}") from None
        if not isinstance(rec, dict):
            raise InvalidRequestError(f'{p}:{line_no}: expected an object like {{"input_len": 512, "output_len": 128}}')
        rows.add(_row(p, line_no, rec))


def _row(p: Path, line_no: int, rec: dict) -> Row:
    values = []
    for col in REQUIRED_COLUMNS:
        value = rec.get(col)
        if value in (None, ""):
            raise InvalidRequestError(f"{p}:{line_no}: {col}: missing (give a positive whole number of tokens)")
        values.append(_positive_int(p, line_no, col, value))
    arrival = rec.get(ARRIVAL_COLUMN)
    t: float | None = None
    if arrival not in (None, ""):
        try:
            t = float(arrival)
        except (TypeError, ValueError):
            raise InvalidRequestError(f"{p}:{line_no}: {ARRIVAL_COLUMN}: {arrival!r} is not a number of seconds") from None
        if not math.isfinite(t) or t < 0:
            raise InvalidRequestError(f"{p}:{line_no}: {ARRIVAL_COLUMN}: {arrival!r} must be a finite time >= 0 in seconds")
    return values[0], values[1], t, line_no


def _positive_int(p: Path, line_no: int, col: str, value: object) -> int:
    if isinstance(value, bool):  # JSON true is not 1 token
        raise InvalidRequestError(f"{p}:{line_no}: {col}: {str(value).lower()} is not a number (give a positive whole number of tokens)")
    try:
        number = whole_number(value)  # the rule of flags and files: 512 and 512.0, not 5e2
    except ValueError:
        raise InvalidRequestError(
            f"{p}:{line_no}: {col}: {value!r} is not a whole number (give a positive whole number of tokens)"
        ) from None
    if number < 1:
        raise InvalidRequestError(f"{p}:{line_no}: {col}: {value!r} must be a whole number >= 1")
    return number


def trace_length_buckets(path: str | Path) -> dict[str, list[dict[str, int]]]:
    """A trace's lengths as weighted ``buckets`` (weight = a count of requests).

    The planner prices a stream from a length table, so a trace named by ``--lengths`` or by
    ``workload.lengths`` in a constraints file is read here into the same ``Lengths`` form:
    the table ``simulate`` prices the same trace with (``sample_lengths``: one bucket per
    distinct pair, condensed into at most ``MAX_LENGTH_BUCKETS`` quantile cells).
    """
    trace = read_trace(path)
    table = sample_lengths(trace.input_len, trace.output_len)
    counts = np.round(table.weight * len(trace)).astype(int)  # whole requests: weights are count / total
    return {
        "buckets": [
            {"input_len": int(i), "output_len": int(o), "weight": int(c)} for i, o, c in zip(table.input_len, table.output_len, counts)
        ]
    }
