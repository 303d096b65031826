"""Issue 25 item 3: a calibration overlay with an implausible engine efficiency or a
misspelt engine key is refused in one line naming the key, not applied or ignored."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from guideopt.cli import main

PREDICT = [
    "predict",
    "--model",
    "meta-llama/Llama-3.1-8B",
    "--gpu",
    "h100-sxm",
    "--batch",
    "8",
    "--input-len",
    "512",
    "--output-len",
    "128",
]
TERMS = "decode_step_overhead_ms: 1\n    prefill_step_overhead_ms: 1\n"


@pytest.mark.parametrize(
    ("body", "words"),
    [
        (f"frameworks:\n  vlm:\n    {TERMS}    kernel_efficiency: 0.5\n", "frameworks.vlm: not an engine"),
        (f"frameworks:\n  vllm@intel:\n    {TERMS}    kernel_efficiency: 0.5\n", "frameworks.vllm@intel: not an engine"),
        (f"frameworks:\n  vllm:\n    {TERMS}    kernel_efficiency: 1e-300\n", "frameworks.vllm.kernel_efficiency"),
        (f"frameworks:\n  vllm:\n    {TERMS}    kernel_efficiency: 0.9\n    compute_efficiency: 0.001\n", "compute_efficiency"),
    ],
)
def test_a_bad_overlay_is_one_line_exit_1(tmp_path: Path, body: str, words: str) -> None:
    f = tmp_path / "overlay.yaml"
    f.write_text(body)
    res = CliRunner().invoke(main, [*PREDICT, "--calibration", str(f)])
    assert res.exit_code == 1, res.output
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and words in lines[0] and lines[0].startswith("error: --calibration:"), res.stderr


def test_a_good_overlay_for_an_engine_and_a_vendor_applies(tmp_path: Path) -> None:
    f = tmp_path / "overlay.yaml"
    f.write_text(f"frameworks:\n  vllm:\n    {TERMS}    kernel_efficiency: 0.5\n  vllm@amd:\n    {TERMS}    kernel_efficiency: 0.5\n")
    slow = CliRunner().invoke(main, [*PREDICT, "--calibration", str(f), "--json"])
    plain = CliRunner().invoke(main, [*PREDICT, "--json"])
    assert slow.exit_code == 0 and plain.exit_code == 0, slow.output
    assert '"tpot_ms"' in slow.stdout and slow.stdout != plain.stdout
