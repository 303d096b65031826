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
from guideopt.model.disagg_request import AGGREGATED_ONLY, DISAGG_FIELDS, DisaggPredictRequest
from guideopt.model.plan import METRIC_KEYS
from guideopt.model.predict_request import PredictRequest
from guideopt.model.request import PlanRequest
from guideopt.model.validation import check_context, validated

if TYPE_CHECKING:
    from guideopt.analyses.predict import Prediction
    from guideopt.analyses.simulate import Simulation
    from guideopt.catalog import Catalog
    from guideopt.model.plan import PlanResult
    from guideopt.model.workload import SimulateRequest

PREDICT_CSV_INPUTS = ("model", "gpu", "num_gpus", "tp", "pp", "framework", "dtype", "batch", "input_len", "output_len")
PREDICT_CSV_OPTIONAL = ("kv_dtype", "concurrency", "attention_dp", "moe_tp", "moe_ep")
# A disaggregated deployment's columns (``model/disagg_request.py``): with any of them a row is one.
PREDICT_CSV_DISAGG = (*DISAGG_FIELDS, "rate_rps")
PREDICT_CSV_METRICS = (*METRIC_KEYS, "mem_per_gpu_gb")


def plan(request: PlanRequest | Mapping[str, Any], catalog: Catalog | None = None) -> PlanResult:
    """Best deployments for a request; raises NoFeasiblePlanError with an explanation."""
    from guideopt.analyses.intervals import with_plan_intervals
    from guideopt.analyses.predict import is_moe
    from guideopt.catalog import load_catalog
    from guideopt.solver.plan import solve_request

    req = validated(PlanRequest, request)
    cat = catalog or load_catalog()
    wl = req.workload
    if wl.input_len is not None and wl.output_len is not None:  # a stream's length mix is checked by the stream planner
        check_context(req.model, cat.model(req.model).max_position_embeddings, wl.input_len, wl.output_len, "workload.input_len")
    result = solve_request(req, cat)
    # Robust plans already report the pessimistic end of each interval as their metrics; the
    # intervals are static-batch errors, so a stream plan (percentiles) gets none.
    return result if req.robust or wl.is_stream else with_plan_intervals(result, cat, is_moe(cat, req.model))


def predict(request: PredictRequest | Mapping[str, Any], catalog: Catalog | None = None) -> Prediction:
    from guideopt.analyses.predict import predict_one

    return predict_one(validated(PredictRequest, request), catalog)  # checks the context too (check_request)


def simulate(request: SimulateRequest | Mapping[str, Any], catalog: Catalog | None = None) -> Simulation:
    """One configuration against a request stream, simulated step by step (``guideopt simulate``).
    A ``protocol`` key runs the stream under that benchmark protocol (``guideopt catalog
    protocols``): its arrivals, client start, length sampling, warm-up and request count; a
    dataset protocol's length mix stands in for absent ``workload.lengths``."""
    from guideopt.analyses.simulate import run_simulation

    return run_simulation(request, catalog=catalog)


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


_ROW_KEYS = frozenset(PREDICT_CSV_INPUTS + PREDICT_CSV_OPTIONAL + PREDICT_CSV_DISAGG + ("split",))


def _row_request(row: Mapping[str, str | None]) -> dict[str, Any]:
    """The request a CSV row describes (empty cells leave the defaults; other columns are ignored)."""
    return {key: text for key, value in row.items() if key in _ROW_KEYS and value and (text := value.strip())}


def _request_or_error(data: dict[str, Any] | GuideoptError) -> PredictRequest | DisaggPredictRequest | GuideoptError:
    if isinstance(data, GuideoptError):
        return data
    try:
        if any(key in data for key in PREDICT_CSV_DISAGG):
            return _disagg_request(data)
        return validated(PredictRequest, data)
    except GuideoptError as exc:
        return exc


def _disagg_request(data: dict[str, Any]) -> DisaggPredictRequest:
    """A disaggregated row: its per-role columns replace the aggregated layout and batch."""
    for key in AGGREGATED_ONLY:
        if key in data and not (key == "pp" and data[key] == "1"):
            raise InvalidRequestError(
                f"a disaggregated row gives its layout per role (prefill_tp, decode_tp, ...) and its load as concurrency or rate_rps (leave {key} empty)",
                field=key,
            )
    return validated(DisaggPredictRequest, {k: v for k, v in data.items() if k not in AGGREGATED_ONLY})


_OUTPUT_KEYS = (*PREDICT_CSV_METRICS, "error")
# With ``intervals``: the low and high end of each metric's prediction interval, after ``error``.
PREDICT_CSV_INTERVAL_KEYS = tuple(f"{m}_{end}" for m in METRIC_KEYS for end in ("low", "high"))


def _output_cells(outcome: Any) -> list[str]:
    """The metric cells and the error cell of one row's outcome, in ``_OUTPUT_KEYS`` order."""
    if isinstance(outcome, GuideoptError):
        return [""] * len(PREDICT_CSV_METRICS) + [str(outcome)]
    return [_metric_cell(key, outcome[key]) for key in PREDICT_CSV_METRICS[:-1]] + [f"{outcome['mem_per_gpu_gb']:.4g}", ""]


def _metric_cell(key: str, value: float | None) -> str:
    """A metric's CSV cell; TPOT is empty when undefined (one output token: the cost model gives 0, JSON null)."""
    if value is None or (key == "tpot_ms" and value == 0):
        return ""
    return f"{value:.6g}"


def _predict_requests(data: Sequence[dict[str, Any] | GuideoptError], cat: Catalog, intervals: bool = False) -> list[list[str]]:
    """Output cells per row, one vectorised call per group (``analyses.predict_batch``)."""
    from guideopt.analyses.predict_batch import predict_many

    reqs = [_request_or_error(d) for d in data]
    outcomes = predict_many(reqs, cat)
    cells = [_output_cells(outcome) for outcome in outcomes]
    if not intervals:
        return cells
    from guideopt.analyses.predict import metric_intervals, per_replica_clients

    for req, outcome, row in zip(reqs, outcomes, cells):
        if isinstance(req, (GuideoptError, DisaggPredictRequest)) or isinstance(
            outcome, GuideoptError
        ):  # no interval fitted for disaggregated rows
            row.extend([""] * len(PREDICT_CSV_INTERVAL_KEYS))
            continue
        low, high = metric_intervals(req, {m: outcome[m] for m in METRIC_KEYS}, per_replica_clients(req), cat)
        row.extend(_metric_cell(m, end[m]) for m in METRIC_KEYS for end in (low, high))
    return cells


def _predict_chunk(rows: Sequence[Mapping[str, Any]], cat: Catalog) -> list[dict[str, Any]]:
    cells = _predict_requests([_row_request(row) for row in rows], cat)
    return [{**row, **dict(zip(_OUTPUT_KEYS, out))} for row, out in zip(rows, cells)]


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


def predict_csv_stream(
    lines: Iterable[bytes], out: TextIO, catalog: Catalog | None = None, source: str = "csv", intervals: bool = False
) -> CsvReport:
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
        keys = _OUTPUT_KEYS + (PREDICT_CSV_INTERVAL_KEYS if intervals else ())
        columns = fields + [c for c in keys if c not in fields]
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(columns)
        layout = _RowLayout(fields, columns, keys)
        for chunk in _chunks(_numbered(reader)):
            data = [layout.request(cells, line) for cells, line in chunk]
            results = _predict_requests(data, cat, intervals)
            writer.writerows([layout.output(cells, result) for (cells, _), result in zip(chunk, results)])
            _note_bad(report, [r[: len(_OUTPUT_KEYS)] for r in results], [line for _, line in chunk])
    except csv.Error as exc:
        raise InvalidRequestError(f"{source}:{reader.line_num}: not valid CSV ({exc})") from None
    return report


def _numbered(reader: Any) -> Iterator[tuple[list[str], int]]:
    """(cells, line number) of each row; a blank line is skipped (as csv.DictReader does)."""
    for cells in reader:
        if cells:
            yield cells, reader.line_num


class _RowLayout:
    """Where a CSV's request columns are read and its output cells written."""

    def __init__(self, fields: list[str], columns: list[str], keys: Sequence[str] = _OUTPUT_KEYS) -> None:
        self.width = len(fields)
        self.inputs = [(name, i) for i, name in enumerate(fields) if name in _ROW_KEYS]
        self.outputs = [columns.index(key) for key in keys]
        self.extra = len(columns) - len(fields)

    def request(self, cells: list[str], line: int) -> dict[str, Any] | GuideoptError:
        """The request a row describes (as ``_row_request`` reads a dict), or why it has none."""
        if len(cells) > self.width:
            return InvalidRequestError(
                f"line {line}: {len(cells)} cells but the header has {self.width} columns (quote a cell that holds a comma)"
            )
        n = len(cells)
        return {name: text for name, i in self.inputs if i < n and (text := cells[i].strip())}

    def output(self, cells: list[str], result: list[str]) -> list[str]:
        """The input cells (padded, surplus dropped) with the outcome's cells in their columns."""
        row = cells[: self.width] + [""] * (self.width - min(len(cells), self.width) + self.extra)
        for position, value in zip(self.outputs, result):
            row[position] = value
        return row


def _note_bad(report: CsvReport, results: list[list[str]], numbers: list[int]) -> None:
    report.rows += len(results)
    for result, number in zip(results, numbers):
        if result[-1]:
            report.bad_rows += 1
            if len(report.first_bad) < PREDICT_CSV_REPORTED_BAD_ROWS:
                report.first_bad.append((number, result[-1]))


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
