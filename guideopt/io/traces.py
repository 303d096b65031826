"""Read request traces: CSV or JSONL with ``input_len,output_len`` and optional ``arrival_s``.

Every problem is a one-line error naming the file, the line and the column, and the fix.
A trace longer than ``MAX_TRACE_REQUESTS`` is refused: the simulator's cost grows with the
number of requests, and this many take a few seconds (see benchmarks/bench_simulate.py).
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from guideopt.errors import InvalidRequestError
from guideopt.model.limits import MAX_SIMULATED_REQUESTS

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


def read_trace(path: str | Path, *, max_context: int | None = None, max_requests: int = MAX_TRACE_REQUESTS) -> Trace:
    p = Path(path)
    if not p.is_file():
        raise InvalidRequestError(f"lengths: file {p} does not exist (give a CSV or JSONL trace, or a mix name)")
    try:
        text = p.read_text(encoding="utf-8-sig")  # a spreadsheet's byte-order mark is not part of the header
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidRequestError(f"lengths: cannot read {p} ({exc})") from None
    rows = _jsonl_rows(p, text) if p.suffix.lower() in (".jsonl", ".ndjson") else _csv_rows(p, text)
    if not rows:
        raise InvalidRequestError(f"lengths: {p} has no requests (add rows with input_len,output_len)")
    if len(rows) > max_requests:
        raise InvalidRequestError(
            f"lengths: {p} has {len(rows)} requests, over the simulation limit of {max_requests} (use a sample of the trace)"
        )
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


Row = tuple[int, int, "float | None", int]


def _csv_rows(p: Path, text: str) -> list[Row]:
    lines = text.splitlines()
    if not any(line.strip() for line in lines):
        raise InvalidRequestError(f"lengths: {p} is empty (add a header input_len,output_len and one row per request)")
    reader = csv.DictReader(lines)
    header = [h.strip() for h in (reader.fieldnames or [])]
    missing = [c for c in REQUIRED_COLUMNS if c not in header]
    if missing:
        raise InvalidRequestError(f"{p}:1: missing column {missing[0]} (the header needs input_len,output_len[,arrival_s])")
    rows: list[Row] = []
    try:
        for line_no, raw in enumerate(reader, start=2):
            if None in raw:  # DictReader puts the values beyond the header under None
                raise InvalidRequestError(f"{p}:{line_no}: more values than the header's {len(header)} columns (one value per column)")
            rec = {(k or "").strip(): (v or "").strip() for k, v in raw.items()}
            if not any(rec.values()):
                continue
            rows.append(_row(p, line_no, rec))
    except csv.Error as exc:  # e.g. a field over the csv module's 128 KiB limit: no token count is that long
        raise InvalidRequestError(f"{p}:{reader.line_num}: not a trace row ({exc})") from None
    return rows


def _jsonl_rows(p: Path, text: str) -> list[Row]:
    rows: list[Row] = []
    for line_no, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InvalidRequestError(f"{p}:{line_no}: not valid JSON ({exc.msg}); write one object per line") from None
        if not isinstance(rec, dict):
            raise InvalidRequestError(f'{p}:{line_no}: expected an object like {{"input_len": 512, "output_len": 128}}')
        rows.append(_row(p, line_no, rec))
    return rows


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
        if not np.isfinite(t) or t < 0:
            raise InvalidRequestError(f"{p}:{line_no}: {ARRIVAL_COLUMN}: {arrival!r} must be a finite time >= 0 in seconds")
    return values[0], values[1], t, line_no


def _positive_int(p: Path, line_no: int, col: str, value: object) -> int:
    if isinstance(value, bool):  # JSON true is not 1 token
        raise InvalidRequestError(f"{p}:{line_no}: {col}: {str(value).lower()} is not a number (give a positive whole number of tokens)")
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise InvalidRequestError(f"{p}:{line_no}: {col}: {value!r} is not a number (give a positive whole number of tokens)") from None
    if not np.isfinite(number) or number < 1 or number != int(number):
        raise InvalidRequestError(f"{p}:{line_no}: {col}: {value!r} must be a whole number >= 1")
    return int(number)


def trace_length_buckets(path: str | Path) -> dict[str, list[dict[str, int]]]:
    """A trace's lengths as weighted ``buckets`` (one per distinct pair, weight = its count).

    The planner prices a stream from a length table, so a trace named by ``--lengths`` or by
    ``workload.lengths`` in a constraints file is read here into the same ``Lengths`` form.
    """
    trace = read_trace(path)
    pairs, counts = np.unique(np.stack([trace.input_len, trace.output_len], axis=1), axis=0, return_counts=True)
    return {"buckets": [{"input_len": int(i), "output_len": int(o), "weight": int(c)} for (i, o), c in zip(pairs, counts)]}
