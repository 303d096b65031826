"""``predict --csv --intervals``: each metric's interval after the contract's columns, equal to
the single-row prediction's ``metrics_low`` / ``metrics_high``."""

from __future__ import annotations

import csv
import io

from click.testing import CliRunner
from test_predict_csv import HEADER, METRICS, VARIED_ROWS, as_dicts, csv_bytes

from guideopt import api
from guideopt.cli import main
from guideopt.errors import GuideoptError
from guideopt.model.plan import METRIC_KEYS


def _streamed(data: bytes, catalog) -> tuple[list[str], list[dict[str, str]]]:
    out = io.StringIO()
    api.predict_csv_stream(io.BytesIO(data), out, catalog, intervals=True)
    reader = csv.DictReader(io.StringIO(out.getvalue()))
    return list(reader.fieldnames or []), list(reader)


def test_interval_columns_follow_the_contract_columns(catalog):
    fields, _ = _streamed(csv_bytes(VARIED_ROWS[:2]), catalog)
    assert fields == HEADER + METRICS + ["error"] + list(api.PREDICT_CSV_INTERVAL_KEYS)


def test_csv_intervals_equal_single_row_intervals(catalog):
    _, rows = _streamed(csv_bytes(VARIED_ROWS), catalog)
    checked = 0
    for given, row in zip(as_dicts(VARIED_ROWS), rows):
        try:
            pred = api.predict(api._row_request(given), catalog)
        except GuideoptError:
            assert row["error"] and all(row[k] == "" for k in api.PREDICT_CSV_INTERVAL_KEYS)
            continue
        low, high, mid = pred.metrics_low.model_dump(), pred.metrics_high.model_dump(), pred.metrics.model_dump()
        for m in METRIC_KEYS:
            if not row[m]:  # TPOT of a one-token output: no value, no interval
                continue
            assert row[f"{m}_low"] == f"{low[m]:.6g}" and row[f"{m}_high"] == f"{high[m]:.6g}", m
            assert low[m] <= high[m] and mid[m] >= 0  # a biased regime may not contain the point
            checked += 1
    assert checked > 50


def test_cli_intervals_flag_needs_csv(tmp_path):
    path = tmp_path / "rows.csv"
    path.write_bytes(csv_bytes(VARIED_ROWS[:1]))
    ok = CliRunner().invoke(main, ["predict", "--csv", str(path), "--intervals"])
    assert ok.exit_code == 0 and "ttft_ms_low" in ok.output.splitlines()[0]
    plain = CliRunner().invoke(main, ["predict", "--csv", str(path)])
    assert "ttft_ms_low" not in plain.output
    bad = CliRunner().invoke(main, ["predict", "--model", "x", "--gpu", "l4", "--input-len", "5", "--output-len", "5", "--intervals"])
    assert bad.exit_code == 2 and "--intervals goes with --csv" in bad.output
