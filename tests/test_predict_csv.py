"""``predict --csv`` at table speed: the vectorised batch path equals the single-row path,
streams its output, and reads real-world CSV files (BOM, non-UTF-8, repeated columns).
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from typing import Any

import pytest
from click.testing import CliRunner
from conftest import LLAMA2_7B, LLAMA2_70B, LLAMA3_8B, MIXTRAL_8X7B, QWEN2_7B
from hypothesis import given
from hypothesis import strategies as st

from guideopt import api
from guideopt.cli import main
from guideopt.errors import GuideoptError, InvalidRequestError

HEADER = [
    "model",
    "gpu",
    "num_gpus",
    "tp",
    "pp",
    "framework",
    "dtype",
    "batch",
    "input_len",
    "output_len",
    "kv_dtype",
    "concurrency",
    "split",
]
METRICS = list(api.PREDICT_CSV_METRICS)

# Rows chosen to reach every branch: static batches and closed-loop clients, waves (a
# batch larger than the KV cache), DP replicas, PP, every engine (a non-chunking one with
# and without a long enough split), AMD and NVIDIA GPUs, fp8 weights and KV, an MoE
# model, and each refusal (unknown ids, bad values, layouts, engines, memory).
VARIED_ROWS: list[list[str]] = [
    [LLAMA2_7B, "h100-sxm", "1", "1", "1", "vllm", "fp16", "8", "512", "128", "", "", ""],
    [LLAMA2_7B, "h100-sxm", "4", "2", "1", "vllm", "fp16", "3", "512", "128", "", "", ""],
    [LLAMA2_7B, "l4", "1", "1", "1", "vllm", "fp16", "4096", "2048", "512", "", "", ""],
    [LLAMA2_7B, "a100-sxm4-80gb", "4", "2", "2", "sglang", "bf16", "64", "1024", "256", "", "", ""],
    [LLAMA3_8B, "h100-sxm", "2", "2", "1", "trtllm", "fp8", "16", "1000", "64", "fp8", "", ""],
    [
        LLAMA3_8B,
        "h100-sxm",
        "1",
        "1",
        "1",
        "trtllm",
        "fp16",
        "16",
        "6000",
        "64",
        "",
        "",
        "4096",
    ],  # a prompt longer than the split (inside the 8,192 context)
    [LLAMA3_8B, "h100-sxm", "1", "1", "1", "trtllm", "fp16", "16", "1000", "64", "", "", "4096"],
    [QWEN2_7B, "mi300x", "8", "1", "1", "vllm", "fp16", "128", "256", "256", "", "", ""],
    [QWEN2_7B, "mi300x", "1", "1", "1", "fastgen", "bf16", "8", "256", "32", "", "", ""],
    [MIXTRAL_8X7B, "h200-sxm", "2", "2", "1", "vllm", "bf16", "32", "512", "128", "", "", ""],
    [MIXTRAL_8X7B, "h200-sxm", "4", "2", "1", "vllm", "bf16", "", "512", "128", "", "32", ""],
    [LLAMA2_7B, "a100-sxm4-80gb", "2", "1", "1", "vllm", "fp16", "", "512", "256", "", "48", "2048"],
    [LLAMA2_7B, "a100-sxm4-80gb", "1", "1", "1", "sglang", "fp16", "", "2048", "1", "", "8", ""],
    [LLAMA2_7B, "h100-sxm", "1", "1", "1", "vllm", "fp16", "1", "1", "1", "", "", ""],
    [LLAMA2_7B, "l4", "", "", "", "", "", "2", "256", "64", "", "", ""],
    [LLAMA2_70B, "l4", "1", "1", "1", "vllm", "fp16", "1", "512", "128", "", "", ""],
    [LLAMA2_70B, "l4", "1", "1", "1", "vllm", "fp16", "", "512", "128", "", "4", ""],
    [LLAMA2_7B, "no-such-gpu", "1", "1", "1", "vllm", "fp16", "8", "512", "128", "", "", ""],
    ["nobody/no-such-model", "l4", "1", "1", "1", "vllm", "fp16", "1", "512", "128", "", "", ""],
    [LLAMA2_7B, "l4", "1", "1", "1", "no-such-engine", "fp16", "1", "512", "128", "", "", ""],
    [LLAMA2_7B, "h100-sxm", "3", "3", "1", "vllm", "fp16", "1", "512", "128", "", "", ""],
    [LLAMA2_7B, "h100-sxm", "3", "2", "1", "vllm", "fp16", "1", "512", "128", "", "", ""],
    [LLAMA2_7B, "mi300x", "1", "1", "1", "trtllm", "fp16", "1", "512", "128", "", "", ""],
    [LLAMA2_7B, "h100-sxm", "2", "1", "2", "fastgen", "fp16", "1", "512", "128", "", "", ""],
    [LLAMA2_7B, "h100-sxm", "1", "1", "1", "fastgen", "fp8", "1", "512", "128", "", "", ""],
    [LLAMA2_7B, "h100-sxm", "64", "1", "64", "vllm", "fp16", "1", "512", "128", "", "", ""],
    [LLAMA2_7B, "h100-sxm", "1", "1", "1", "vllm", "fp16", "abc", "512", "128", "", "", ""],
    [LLAMA2_7B, "h100-sxm", "1", "1", "1", "vllm", "fp17", "1", "512", "128", "", "", ""],
    [LLAMA2_7B, "h100-sxm", "1", "1", "1", "vllm", "fp16", "1", "-5", "128", "", "", ""],
    [LLAMA2_7B, "h100-sxm", "1", "1", "1", "vllm", "fp16", "1", "512", "0", "", "", ""],
]


def single_row_reference(row: dict[str, str], catalog) -> dict[str, str]:
    """The single-row path (``api.predict``) formatted as the CSV's cells: today's output."""
    result = dict.fromkeys(METRICS, "")
    try:
        pred = api.predict(api._row_request(row), catalog)
    except GuideoptError as exc:
        return {**row, **result, "error": str(exc)}
    metrics = pred.metrics.model_dump()
    for key in METRICS[:-1]:
        result[key] = "" if metrics[key] is None else f"{metrics[key]:.6g}"  # tpot_ms: null with one output token
    result["mem_per_gpu_gb"] = f"{pred.memory.total_per_gpu_gb:.4g}"
    return {**row, **result, "error": ""}


def as_dicts(rows: list[list[str]]) -> list[dict[str, str]]:
    return [dict(zip(HEADER, r)) for r in rows]


def csv_bytes(rows: list[list[str]], header: list[str] = HEADER) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return out.getvalue().encode("utf-8")


def test_the_varied_rows_reach_every_outcome(catalog):
    """The fixture is not vacuous: it has predictions, memory refusals and bad values."""
    errors = [single_row_reference(r, catalog)["error"] for r in as_dicts(VARIED_ROWS)]
    assert sum(e == "" for e in errors) >= 12
    for word in ("does not fit", "unknown id", "tp:", "pp:", "dtype:", "framework:", "split:", "batch:", "input_len:", "output_len:"):
        assert any(word in e for e in errors), word


def test_batch_rows_equal_single_row_predictions(catalog):
    rows = as_dicts(VARIED_ROWS)
    assert api.predict_rows(rows, catalog) == [single_row_reference(r, catalog) for r in rows]


def test_batch_rows_equal_single_rows_in_any_order_and_mix(catalog):
    """A row's result does not depend on the rows grouped with it."""
    rows = as_dicts(VARIED_ROWS)
    shuffled = rows[::-1] + rows[::2]
    assert api.predict_rows(shuffled, catalog) == [single_row_reference(r, catalog) for r in shuffled]


ROW = st.fixed_dictionaries(
    {
        "model": st.sampled_from([LLAMA2_7B, LLAMA3_8B, MIXTRAL_8X7B, LLAMA2_70B]),
        "gpu": st.sampled_from(["h100-sxm", "l4", "mi300x", "a100-sxm4-40gb", "l40s"]),
        "tp": st.sampled_from(["1", "2", "4", "8", ""]),
        "pp": st.sampled_from(["1", "2", ""]),
        "framework": st.sampled_from(["vllm", "sglang", "trtllm", "fastgen"]),
        "dtype": st.sampled_from(["fp16", "bf16", "fp8", "int4"]),
        "kv_dtype": st.sampled_from(["", "", "fp8"]),
        "batch": st.integers(1, 2048).map(str),
        "input_len": st.integers(1, 16384).map(str),
        "output_len": st.integers(1, 2048).map(str),
        "concurrency": st.one_of(st.just(""), st.integers(1, 512).map(str)),
        "split": st.one_of(st.just(""), st.sampled_from(["512", "2048", "8192", "16384"])),
        "replicas": st.integers(1, 3),
    }
)


def streamed(data: bytes, catalog) -> list[dict[str, str]]:
    out = io.StringIO()
    api.predict_csv_stream(io.BytesIO(data), out, catalog)
    return list(csv.DictReader(io.StringIO(out.getvalue())))


def test_the_csv_stream_equals_single_row_predictions(catalog):
    assert streamed(csv_bytes(VARIED_ROWS), catalog) == [single_row_reference(r, catalog) for r in as_dicts(VARIED_ROWS)]


@given(st.lists(ROW, min_size=1, max_size=12))
def test_batch_equals_single_rows_on_random_rows(catalog, drawn):
    rows = []
    for d in drawn:
        row = {k: v for k, v in d.items() if k != "replicas"}
        tp, pp = int(row["tp"] or 1), int(row["pp"] or 1)
        row["num_gpus"] = str(tp * pp * d["replicas"]) if row["tp"] else ""
        rows.append(row)
    expected = [single_row_reference(r, catalog) for r in rows]
    assert api.predict_rows(rows, catalog) == expected
    assert streamed(csv_bytes([[r[c] for c in HEADER] for r in rows]), catalog) == expected


def test_csv_text_output_keeps_the_contract_shape(catalog):
    text = api.predict_csv_text(csv_bytes(VARIED_ROWS[:3]).decode(), catalog)
    reader = csv.DictReader(io.StringIO(text))
    assert reader.fieldnames == HEADER + METRICS + ["error"]
    assert [r["error"] for r in reader] == ["", "", ""]


class CountingLines:
    """Byte lines of a CSV, counting how many have been read."""

    def __init__(self, data: bytes) -> None:
        self.lines = data.splitlines(keepends=True)
        self.read = 0

    def __iter__(self) -> Iterator[bytes]:
        for line in self.lines:
            self.read += 1
            yield line


class FirstRowSpy(io.StringIO):
    """Records how many input lines had been read when the first data row was written."""

    def __init__(self, source: CountingLines) -> None:
        super().__init__()
        self.source = source
        self.read_at_first_row: int | None = None

    def write(self, s: str) -> int:
        n = super().write(s)
        if self.read_at_first_row is None and self.getvalue().count("\n") >= 2:
            self.read_at_first_row = self.source.read
        return n


def test_output_streams_before_the_input_is_read(catalog):
    rows = [VARIED_ROWS[0][:7] + [str(b), "512", "128", "", "", ""] for b in range(1, 6001)]
    source = CountingLines(csv_bytes(rows))
    spy = FirstRowSpy(source)
    report = api.predict_csv_stream(source, spy, catalog)
    assert report.rows == 6000 and report.bad_rows == 0
    assert spy.read_at_first_row is not None and spy.read_at_first_row <= api.PREDICT_CSV_FIRST_CHUNK_ROWS + 2
    assert spy.getvalue().count("\n") == 6001


def test_a_utf8_bom_is_accepted(catalog):
    data = b"\xef\xbb\xbf" + csv_bytes(VARIED_ROWS[:1])
    out = io.StringIO()
    api.predict_csv_stream(io.BytesIO(data), out, catalog)
    (row,) = list(csv.DictReader(io.StringIO(out.getvalue())))
    assert list(row)[0] == "model" and row["error"] == "" and float(row["ttft_ms"]) > 0


def test_non_utf8_bytes_name_the_file_and_line(catalog):
    data = csv_bytes(VARIED_ROWS[:2]).replace(b"h100-sxm", b"h100-sxm\xff", 1)
    with pytest.raises(InvalidRequestError, match=r"^configs\.csv:2: not UTF-8 text \(byte 0xff") as info:
        api.predict_csv_stream(io.BytesIO(data), io.StringIO(), catalog, source="configs.csv")
    assert "\n" not in str(info.value)


def test_a_repeated_column_is_an_error_naming_it(catalog):
    header = HEADER[:-1] + ["gpu"]
    with pytest.raises(InvalidRequestError, match=r"configs\.csv:1: column 'gpu' appears more than once"):
        api.predict_csv_stream(io.BytesIO(csv_bytes([], header)), io.StringIO(), catalog, source="configs.csv")


def test_a_row_with_too_many_cells_keeps_its_place_with_an_error(catalog):
    rows = [VARIED_ROWS[0], VARIED_ROWS[0] + ["surplus"], VARIED_ROWS[1]]
    out = io.StringIO()
    report = api.predict_csv_stream(io.BytesIO(csv_bytes(rows)), out, catalog)
    got = list(csv.DictReader(io.StringIO(out.getvalue())))
    assert [r["error"] == "" for r in got] == [True, False, True]
    assert got[1]["error"].startswith("line 3: 14 cells but the header has 13 columns")
    assert report.first_bad == [(3, got[1]["error"])]


def test_blank_lines_are_skipped_and_short_rows_padded(catalog):
    data = csv_bytes(VARIED_ROWS[:1]) + b"\n" + ",".join(VARIED_ROWS[0][:10]).encode() + b"\n"
    out = io.StringIO()
    api.predict_csv_stream(io.BytesIO(data), out, catalog)
    got = list(csv.DictReader(io.StringIO(out.getvalue())))
    assert len(got) == 2 and got[0]["ttft_ms"] == got[1]["ttft_ms"] and got[1]["kv_dtype"] == ""


def test_malformed_csv_is_one_line_naming_the_line(catalog):
    huge = "x" * (csv.field_size_limit() + 1)
    data = csv_bytes(VARIED_ROWS[:1]) + f"{LLAMA2_7B},{huge}\n".encode()
    with pytest.raises(InvalidRequestError, match=r"^c\.csv:3: not valid CSV \(field larger than field limit"):
        api.predict_csv_stream(io.BytesIO(data), io.StringIO(), catalog, source="c.csv")


# ---------------------------------------------------------------- the command


@pytest.fixture(scope="module")
def runner() -> CliRunner:
    return CliRunner()


def run(runner: CliRunner, args: list[str], **kw: Any):
    return runner.invoke(main, args, catch_exceptions=False, **kw)


def one_line_error(result, code: int) -> str:
    assert result.exit_code == code, (result.exit_code, result.output)
    assert "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_cli_non_utf8_file_is_exit_1_naming_file_and_line(runner, tmp_path):
    path = tmp_path / "latin1.csv"
    path.write_bytes(csv_bytes(VARIED_ROWS[:3]).replace(b"l4", "l4é".encode("latin-1")))
    line = one_line_error(run(runner, ["predict", "--csv", str(path)]), 1)
    assert line.startswith(f"error: {path}:4: not UTF-8 text") and "UTF-8" in line


def test_cli_bom_file_is_predicted(runner, tmp_path):
    path = tmp_path / "excel.csv"
    path.write_bytes(b"\xef\xbb\xbf" + csv_bytes(VARIED_ROWS[:2]))
    result = run(runner, ["predict", "--csv", str(path)])
    assert result.exit_code == 0
    got = list(csv.DictReader(io.StringIO(result.stdout)))
    assert [r["error"] for r in got] == ["", ""]


def test_cli_repeated_column_is_exit_1_naming_it(runner, tmp_path):
    path = tmp_path / "dup.csv"
    path.write_bytes(csv_bytes(VARIED_ROWS[:1], HEADER[:-1] + ["batch"]))
    assert "column 'batch' appears more than once" in one_line_error(run(runner, ["predict", "--csv", str(path)]), 1)


def test_cli_counts_bad_rows_in_one_stderr_line_naming_the_first(runner, tmp_path):
    path = tmp_path / "mixed.csv"
    path.write_bytes(csv_bytes(VARIED_ROWS))
    result = run(runner, ["predict", "--csv", str(path)])
    assert result.exit_code == 0
    got = list(csv.DictReader(io.StringIO(result.stdout)))
    bad = [(i + 2, r["error"]) for i, r in enumerate(got) if r["error"]]
    line, error = bad[0]
    assert result.stderr.splitlines() == [
        f"{path}: {len(bad)} of {len(got)} row(s) could not be predicted (see the error column); first, line {line}: {error}"
    ]


def test_cli_is_silent_on_stderr_when_every_row_is_predicted(runner, tmp_path):
    path = tmp_path / "good.csv"
    path.write_bytes(csv_bytes(VARIED_ROWS[:3]))
    result = run(runner, ["predict", "--csv", str(path)])
    assert result.exit_code == 0 and result.stderr == ""


def test_cli_stdin_with_bom(runner):
    result = run(runner, ["predict", "--csv", "-"], input=b"\xef\xbb\xbf" + csv_bytes(VARIED_ROWS[:1]))
    assert result.exit_code == 0
    (row,) = list(csv.DictReader(io.StringIO(result.stdout)))
    assert row["error"] == ""


def test_cli_single_predict_json_matches_the_csv_row(runner, catalog):
    """The CSV's numbers are the single ``predict --json`` numbers, rounded to 6 digits."""
    row = dict(zip(HEADER, VARIED_ROWS[1]))
    args = ["predict", "--model", row["model"], "--gpu", row["gpu"], "--num-gpus", row["num_gpus"], "--tp", row["tp"]]
    args += ["--batch", row["batch"], "--input-len", row["input_len"], "--output-len", row["output_len"], "--json"]
    single = json.loads(run(runner, args).stdout)
    (batch_row,) = api.predict_rows([row], catalog)
    for key in METRICS[:-1]:
        assert batch_row[key] == f"{single['metrics'][key]:.6g}"


@pytest.mark.parametrize("ending", [b"\r\n", b"\r"])
def test_windows_and_old_mac_line_endings_read_as_unix(catalog, ending):
    unix = csv_bytes(VARIED_ROWS[:4])
    expected, got = io.StringIO(), io.StringIO()
    api.predict_csv_stream(io.BytesIO(unix), expected, catalog)
    api.predict_csv_stream(io.BytesIO(unix.replace(b"\n", ending)), got, catalog)
    assert got.getvalue() == expected.getvalue()


def test_a_quoted_cell_may_span_lines(catalog):
    rows = [VARIED_ROWS[0] + ["a note\nover two lines"], VARIED_ROWS[1] + ["x"]]
    out = io.StringIO()
    api.predict_csv_stream(io.BytesIO(csv_bytes(rows, [*HEADER, "note"])), out, catalog)
    got = list(csv.DictReader(io.StringIO(out.getvalue())))
    assert [r["note"] for r in got] == ["a note\nover two lines", "x"] and [r["error"] for r in got] == ["", ""]


def test_a_reader_that_stops_early_gets_no_traceback(tmp_path):
    """``guideopt predict --csv big.csv | head``: the closed pipe ends the command quietly."""
    import subprocess
    import sys

    path = tmp_path / "big.csv"
    path.write_bytes(csv_bytes([VARIED_ROWS[0][:7] + [str(b), "512", "128", "", "", ""] for b in range(1, 20001)]))
    entry = "import sys; from guideopt.cli import main; sys.argv[0] = 'guideopt'; main()"
    proc = subprocess.Popen([sys.executable, "-c", entry, "predict", "--csv", str(path)], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stderr is not None
    assert proc.stdout.readline().startswith(b"model,")
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 0 and "Traceback" not in err and "Error" not in err
