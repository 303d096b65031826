"""Rows of the measured-data CSV (``shared/data/measured/*.csv``): ``Measurement`` and its loader."""

from __future__ import annotations

import csv
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from guideopt.errors import InvalidRequestError
from guideopt.model.validation import check_csv_header

CSV_COLUMNS = (
    "source",
    "source_locator",
    "framework",
    "framework_version",
    "gpu",
    "num_gpus",
    "tp",
    "pp",
    "model",
    "dtype",
    "quant",
    "batch_or_concurrency",
    "input_len",
    "output_len",
    "metric",
    "value",
    "unit",
    "notes",
)
_NUMERIC_COLUMNS = ("num_gpus", "tp", "pp", "batch_or_concurrency", "input_len", "output_len")


@dataclass(frozen=True)
class Measurement:
    """One row of the measured-data CSV; empty numeric cells are ``None``."""

    line: int  # line number in the file (the header is line 1)
    source: str
    source_locator: str
    framework: str
    framework_version: str
    gpu: str
    num_gpus: float | None
    tp: float | None
    pp: float | None
    model: str
    dtype: str
    quant: str
    batch_or_concurrency: float | None
    input_len: float | None
    output_len: float | None
    metric: str
    value: float
    unit: str
    notes: str


def _number(text: str, column: str, line: int) -> float | None:
    text = (text or "").strip()
    if not text:
        return None
    try:
        return float(text)
    except ValueError:
        raise InvalidRequestError(f"line {line}: {column}: {text!r} is not a number") from None


def _measurement(raw: Mapping[str, str], line: int) -> Measurement:
    text = {c: (raw.get(c) or "").strip() for c in CSV_COLUMNS}
    numbers = {c: _number(text[c], c, line) for c in _NUMERIC_COLUMNS}
    value = _number(text["value"], "value", line)
    if value is None:
        raise InvalidRequestError(f"line {line}: value: empty (every row carries one measured number)")
    rest = {c: text[c] for c in CSV_COLUMNS if c not in _NUMERIC_COLUMNS and c != "value"}
    return Measurement(line=line, value=value, **numbers, **rest)  # type: ignore[arg-type]  # columns typed by name


def load_measurements(path: str | Path) -> list[Measurement]:
    """Read the measured-data CSV (columns ``CSV_COLUMNS``, header row required)."""
    out: list[Measurement] = []
    try:  # utf-8-sig: Excel's "CSV UTF-8" starts with a byte-order mark
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            check_csv_header(reader.fieldnames or [], CSV_COLUMNS, str(path))
            end_of_previous = reader.line_num
            for raw in reader:
                out.append(_measurement(raw, end_of_previous + 1))  # quoted fields may span lines
                end_of_previous = reader.line_num
    except UnicodeDecodeError:
        raise InvalidRequestError(f"{path}: the file is not UTF-8 text (save it as CSV UTF-8)") from None
    except csv.Error as exc:
        raise InvalidRequestError(f"{path}: not a readable CSV ({exc})") from None
    return out
