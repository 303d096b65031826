"""The web page plans with a user's calibration overlay (``guideopt serve --calibration FILE``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

pytest.importorskip("fastapi", reason="the web extra (fastapi) is not installed")
try:
    from fastapi.testclient import TestClient
except (ImportError, RuntimeError) as exc:
    pytest.skip(f"FastAPI's TestClient cannot load: {exc}", allow_module_level=True)

from click.testing import CliRunner
from conftest import LLAMA2_7B

from guideopt import api
from guideopt.calibration.overlay import with_overlay
from guideopt.cli import main
from guideopt.web.app import SHIPPED_CALIBRATION, create_app

REQUEST: dict[str, Any] = {
    "model": LLAMA2_7B,
    "workload": {"input_len": 512, "output_len": 256},
    "budget": {"usd_per_hour": 12},
    "gpus": {"h100-sxm": 8},
    "framework": "vllm",
}


def _slow_vllm_overlay(catalog, tmp_path: Path) -> Path:
    """An overlay that makes vLLM's kernels three times slower than shipped."""
    fw = catalog.calibration.frameworks["vllm"].model_copy(update={"kernel_efficiency": 0.3, "fitted_from": "test"})
    path = tmp_path / "overlay.yaml"
    path.write_text(yaml.safe_dump({"version": "overlay", "generated_by": "test", "frameworks": {"vllm": fw.model_dump()}}))
    return path


def test_page_plans_with_the_overlay_and_names_it(catalog, tmp_path):
    path = _slow_vllm_overlay(catalog, tmp_path)
    cat = with_overlay(catalog, path)
    client = TestClient(create_app(cat, f"overlay {path}"))
    assert client.get("/api/catalog").json()["calibration"] == f"overlay {path}"
    web = client.post("/api/plan", json=REQUEST).json()
    expected = api.plan(REQUEST, cat).model_dump()
    shipped = api.plan(REQUEST, catalog).model_dump()
    tpot = [p["metrics"]["tpot_ms"] for p in web["plans"]]
    assert tpot == pytest.approx([p["metrics"]["tpot_ms"] for p in expected["plans"]])
    assert tpot[0] > shipped["plans"][0]["metrics"]["tpot_ms"]  # the overlay, not the shipped fit
    assert TestClient(create_app()).get("/api/catalog").json()["calibration"] == SHIPPED_CALIBRATION


def test_serve_refuses_a_bad_overlay_before_starting(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("frameworks: [not, a, mapping]\n")
    out = CliRunner().invoke(main, ["serve", "--calibration", str(path), "--port", "0"])
    assert out.exit_code == 1 and out.output.count("\n") == 1 and "--calibration" in out.output
