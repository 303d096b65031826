"""Issue 25 item 5: the files a user names are measured before they are read. A calibration
overlay or a price file over its byte limit is one line naming the flag, whatever it holds
(a 200 MB overlay was parsed for 92 s)."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from guideopt.calibration import overlay
from guideopt.cli import main

MODEL = ["--model", "meta-llama/Llama-3.1-8B", "--input-len", "512", "--output-len", "128"]
PREDICT = ["predict", *MODEL, "--gpu", "h100-sxm", "--batch", "8"]


def test_an_overlay_over_the_byte_limit_is_refused_before_it_is_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "overlay.yaml"
    path.write_bytes(b"frameworks: {" + b"\xff" * 300)  # neither UTF-8 nor YAML: reading it would say so instead
    monkeypatch.setattr(overlay, "MAX_OVERLAY_FILE_BYTES", 256)
    res = CliRunner().invoke(main, [*PREDICT, "--calibration", str(path)])
    assert res.exit_code == 1
    limit = "over the 256-byte limit for an overlay (write the file with `guideopt calibrate`)"
    assert res.stderr.strip() == f"error: --calibration: {path} is 313 bytes, {limit}"


def test_a_price_file_over_the_byte_limit_is_refused_before_it_is_read(tmp_path: Path) -> None:
    path = tmp_path / "prices.yaml"
    path.write_bytes(b"h100-sxm: " + b"\xff" * (300 * 1024))
    res = CliRunner().invoke(main, ["plan", *MODEL, "--budget", "20", "--prices", str(path)])
    assert res.exit_code == 1
    assert res.stderr.count("\n") == 1 and "KiB (list GPU ids and prices only)" in res.stderr
