"""The library API (what the CLI and notebooks call). Never imports the CLI.

The cost model (numpy) and the solver (OR-Tools, which loads pandas) are imported inside
the functions that use them, and the catalog's schemas on first use, so that a command
which needs none of them (``--help``) starts without them.
"""

from __future__ import annotations

import codecs
import csv
import io
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TextIO

from guideopt.errors import GuideoptError, InvalidRequestError
from guideopt.model.request import PlanRequest, PredictRequest
from guideopt.model.validation import validated

if TYPE_CHECKING:
    from guideopt.analyses.predict import Prediction
    from guideopt.catalog import Catalog
    from guideopt.model.plan import PlanResult

PREDICT_CSV_INPUTS = ("model", "gpu", "num_gpus", "tp", "pp", "framework", "dtype", "batch", "input_len", "output_len")
PREDICT_CSV_OPTIONAL = ("kv_dtype", "concurrency")
PREDICT_CSV_METRICS = (
    "ttft_ms",
    "tpot_ms",
    "batch_latency_s",
    "decode_throughput_tok_s",
    "output_throughput_tok_s",
    "total_throughput_tok_s",
    "prefill_throughput_tok_s",
    "mem_per_gpu_gb",
)


def plan(request: PlanRequest | Mapping[str, Any], catalog: Catalog | None = None) -> PlanResult:
    """Best deployments for a request; raises NoFeasiblePlanError with an explanation."""
    from guideopt.solver.plan import solve_request

    return solve_request(validated(PlanRequest, request), catalog)


def predict(request: PredictRequest | Mapping[str, Any], catalog: Catalog | None = None) -> Prediction:
    from guideopt.analyses.predict import predict_one

    return predict_one(validated(PredictRequest, request), catalog)


# Rows read, predicted and written at a time by ``predict --csv``: the first chunk is small
# so that the first rows appear within a fraction of a second; the next ones are large
# enough that each group's vectorised call amortises its fixed cost (the closed-loop fixed
# point costs ~80 forward passes per call whatever the rows), and memory stays bounded (a
# few tens of MB) whatever the file's length.
PREDICT_CSV_FIRST_CHUNK_ROWS = 1024
PREDICT_CSV_CHUNK_ROWS = 16384
# Bad rows ``predict_csv_stream`` reports by line (the rest are counted).
PREDICT_CSV_REPORTED_BAD_ROWS = 5
PREDICT_CSV_DEFAULTED = ("num_gpus", "tp", "pp", "framework", "dtype")  # columns that may be absent


@dataclass
class CsvReport:
    """What ``predict_csv_stream`` saw: rows out, and the first bad rows as (line, error)."""

    source: str
    rows: int = 0
    bad_rows: int = 0
    first_bad: list[tuple[int, str]] = field(default_factory=list)


_ROW_KEYS = frozenset(PREDICT_CSV_INPUTS + PREDICT_CSV_OPTIONAL + ("split",))


def _row_request(row: Mapping[str, str | None]) -> dict[str, Any]:
    """The request a CSV row describes (empty cells leave the defaults; other columns are ignored)."""
    return {key: text for key, value in row.items() if key in _ROW_KEYS and value and (text := value.strip())}


def _request_or_error(row: Mapping[str, str | None], problem: str | None) -> PredictRequest | GuideoptError:
    if problem:
        return InvalidRequestError(problem)
    try:
        return validated(PredictRequest, _row_request(row))
    except GuideoptError as exc:
        return exc


def _result_row(row: Mapping[str, Any], outcome: Any) -> dict[str, Any]:
    result: dict[str, Any] = dict(row)
    if isinstance(outcome, GuideoptError):
        result.update(dict.fromkeys(PREDICT_CSV_METRICS, ""), error=str(outcome))
        return result
    for key in PREDICT_CSV_METRICS[:-1]:
        result[key] = f"{outcome[key]:.6g}"
    result["mem_per_gpu_gb"] = f"{outcome['mem_per_gpu_gb']:.4g}"
    result["error"] = ""
    return result


def _predict_chunk(rows: Sequence[Mapping[str, Any]], cat: Catalog, problems: list[str | None] | None = None) -> list[dict[str, Any]]:
    """Predict a chunk of rows, one vectorised call per group (``analyses.predict_batch``)."""
    from guideopt.analyses.predict_batch import predict_many

    requests = [_request_or_error(row, problems[i] if problems else None) for i, row in enumerate(rows)]
    return [_result_row(row, outcome) for row, outcome in zip(rows, predict_many(requests, cat))]


def _chunks(items: Iterable[Any]) -> Iterator[list[Any]]:
    """Consecutive lists of ``items``: a small first chunk, then large ones."""
    size = PREDICT_CSV_FIRST_CHUNK_ROWS
    chunk: list[Any] = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk, size = [], PREDICT_CSV_CHUNK_ROWS
    if chunk:
        yield chunk


def iter_predict_rows(rows: Iterable[Mapping[str, Any]], catalog: Catalog | None = None) -> Iterator[dict[str, Any]]:
    """Predict every row, yielding results in order as each chunk is done."""
    from guideopt.catalog import load_catalog

    cat = catalog or load_catalog()
    for chunk in _chunks(rows):
        yield from _predict_chunk(chunk, cat)


def predict_rows(rows: Iterable[Mapping[str, Any]], catalog: Catalog | None = None) -> list[dict[str, Any]]:
    """Predict every row; a row that cannot be predicted keeps its place with an error."""
    return list(iter_predict_rows(rows, catalog))


def _physical_lines(lines: Iterable[bytes]) -> Iterator[bytes]:
    """Lines ending in \n, \r\n or a lone \r (old Mac files), endings kept for the csv module."""
    for chunk in lines:
        yield from chunk.splitlines(keepends=True)


def _decoded(lines: Iterable[bytes], source: str) -> Iterator[str]:
    """UTF-8 lines (a leading byte-order mark, as Excel's "CSV UTF-8" writes, is dropped)."""
    for number, raw in enumerate(_physical_lines(lines), start=1):
        if number == 1 and raw.startswith(codecs.BOM_UTF8):
            raw = raw[len(codecs.BOM_UTF8) :]
        try:
            yield raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InvalidRequestError(
                f"{source}:{number}: not UTF-8 text (byte 0x{raw[exc.start]:02x} at position {exc.start + 1} of the line); "
                "save the file as UTF-8 (in Excel: CSV UTF-8)"
            ) from None


def _header(reader: Any, source: str) -> list[str]:
    fields = list(next(reader, None) or [])
    repeated = sorted({name for name in fields if fields.count(name) > 1})
    if repeated:
        raise InvalidRequestError(f"{source}:1: column {repeated[0]!r} appears more than once in the header (keep one)")
    missing = [c for c in PREDICT_CSV_INPUTS if c not in fields and c not in PREDICT_CSV_DEFAULTED]
    if missing:
        raise InvalidRequestError(f"{source}: missing column(s) {', '.join(missing)} (header needs {', '.join(PREDICT_CSV_INPUTS)})")
    return fields


def _cells_problem(cells: list[str], fields: list[str], line: int) -> str | None:
    if len(cells) > len(fields):
        return f"line {line}: {len(cells)} cells but the header has {len(fields)} columns (quote a cell that holds a comma)"
    return None


def predict_csv_stream(lines: Iterable[bytes], out: TextIO, catalog: Catalog | None = None, source: str = "csv") -> CsvReport:
    """Predict a CSV given as byte lines, writing the contract's CSV to ``out`` chunk by chunk.

    File-level problems (not UTF-8, no header, a missing or repeated column, malformed
    CSV) raise InvalidRequestError naming ``source`` and the line; a row that cannot be
    predicted keeps its place with the reason in its ``error`` cell.
    """
    from guideopt.catalog import load_catalog

    cat = catalog or load_catalog()
    reader = csv.reader(_decoded(lines, source))
    report = CsvReport(source)
    try:
        fields = _header(reader, source)
        columns = fields + [c for c in PREDICT_CSV_METRICS + ("error",) if c not in fields]
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(columns)
        for rows, problems, numbers in _chunked_rows(reader, fields):
            results = _predict_chunk(rows, cat, problems)
            writer.writerows([[r.get(c, "") for c in columns] for r in results])
            _note_bad(report, results, numbers)
    except csv.Error as exc:
        raise InvalidRequestError(f"{source}:{reader.line_num}: not valid CSV ({exc})") from None
    return report


def _chunked_rows(reader: Any, fields: list[str]) -> Iterator[tuple[list[dict[str, str]], list[str | None], list[int]]]:
    """Chunks of (rows as dicts, a structural problem per row or None, line numbers)."""

    def numbered() -> Iterator[tuple[list[str], int]]:
        for cells in reader:
            if cells:  # a blank line is skipped (as csv.DictReader does)
                yield cells, reader.line_num

    for chunk in _chunks(numbered()):
        rows = [dict(zip(fields, cells)) for cells, _ in chunk]
        problems = [_cells_problem(cells, fields, line) for cells, line in chunk]
        yield rows, problems, [line for _, line in chunk]


def _note_bad(report: CsvReport, results: list[dict[str, Any]], numbers: list[int]) -> None:
    report.rows += len(results)
    for result, number in zip(results, numbers):
        if result["error"]:
            report.bad_rows += 1
            if len(report.first_bad) < PREDICT_CSV_REPORTED_BAD_ROWS:
                report.first_bad.append((number, result["error"]))


def predict_csv_text(text: str, catalog: Catalog | None = None) -> str:
    """``predict --csv`` on a string: the output CSV as a string."""
    out = io.StringIO()
    predict_csv_stream(io.BytesIO(text.encode("utf-8")), out, catalog)
    return out.getvalue()


def capacity(request: Mapping[str, Any] | Any, catalog: Catalog | None = None) -> Any:
    """Memory capacity, batch/length adjustment and sizing for a load (``guideopt capacity``)."""
    from guideopt.analyses.capacity import CapacityRequest
    from guideopt.analyses.capacity import capacity as run_capacity

    return run_capacity(validated(CapacityRequest, request), catalog)
