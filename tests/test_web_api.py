"""The web page's JSON API (``guideopt.web``) through FastAPI's TestClient.

Skipped when the web extra (fastapi) or a TestClient transport (httpx2/httpx) is missing.
"""

from __future__ import annotations

import copy
import io
import json
import logging
import zipfile
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("fastapi", reason="the web extra (fastapi) is not installed")
try:
    from fastapi.testclient import TestClient
except (ImportError, RuntimeError) as exc:  # starlette's TestClient needs httpx2 (or, before 1.x, httpx)
    pytest.skip(f"FastAPI's TestClient cannot load: {exc}", allow_module_level=True)

from click.testing import CliRunner
from conftest import LLAMA2_7B, LLAMA2_70B, README_PLAN_ARGS

from guideopt import api
from guideopt.catalog import load_catalog
from guideopt.cli import main
from guideopt.io.constraints_file import load_request
from guideopt.model.request import PlanRequest
from guideopt.web.app import INTERNAL_ERROR, PRESETS, create_app, parse_request

README_REQUEST: dict[str, Any] = {
    "model": LLAMA2_7B,
    "workload": {"input_len": 512, "output_len": 256},
    "budget": {"usd_per_hour": 12},
}
INFEASIBLE_REQUEST: dict[str, Any] = {
    "model": LLAMA2_70B,
    "workload": {"input_len": 512, "output_len": 256},
    "budget": {"usd_per_hour": 1},
}


@pytest.fixture(scope="module")
def client() -> TestClient:
    return TestClient(create_app())


def _without_time(result: dict[str, Any]) -> dict[str, Any]:
    out = dict(result)
    out.pop("solve_time_s", None)
    return out


def _with(base: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    out = copy.deepcopy(base)
    *parents, last = path.split(".")
    node = out
    for key in parents:
        node = node.setdefault(key, {})
    node[last] = value
    return out


# ---------------------------------------------------------------------- catalog and page


def test_catalog_lists_the_bundled_ids(client: TestClient) -> None:
    resp = client.get("/api/catalog")
    assert resp.status_code == 200
    data = resp.json()
    cat = load_catalog()
    assert {m["id"] for m in data["models"]} == set(cat.models)
    assert {g["id"] for g in data["gpus"]} == set(cat.gpus)
    assert {f["id"] for f in data["frameworks"]} == set(cat.frameworks)
    gpu = next(g for g in data["gpus"] if g["id"] == "h100-sxm")
    assert gpu["usd_per_hour"] == cat.gpus["h100-sxm"].usd_per_hour and gpu["memory_gb"] > 80
    assert all(m["num_params"] > 0 for m in data["models"])
    assert data["precisions"] == ["fp16", "bf16", "fp8", "fp4", "int8", "int4"]
    assert data["objectives"]["throughput"] == ["throughput", "latency", "cost"]
    assert data["objectives"]["cost"] == ["cost", "throughput", "latency"]
    assert {p["id"] for p in data["presets"]} == {"chat", "chat-stream", "offline", "small-70b"}
    assert set(data["features"]) == {"launch", "pareto"}


@pytest.mark.parametrize("preset", PRESETS, ids=[p["id"] for p in PRESETS])
def test_presets_are_valid_requests(preset: dict[str, Any]) -> None:
    assert isinstance(parse_request(preset["request"]), PlanRequest)


def test_page_and_static_files_are_served(client: TestClient) -> None:
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    for element_id in ("model", "budget", "input-len", "output-len", "submit", "plans", "error-budget", "precision", "gpus"):
        assert f'id="{element_id}"' in page.text
    for name in ("app.js", "style.css"):
        assert client.get(f"/static/{name}").status_code == 200


# ---------------------------------------------------------------------- /api/plan


def test_plan_matches_the_library_and_the_cli(client: TestClient) -> None:
    resp = client.post("/api/plan", json=README_REQUEST)
    assert resp.status_code == 200
    body = resp.json()
    assert body["status"] in ("optimal", "feasible") and body["plans"]
    assert _without_time(body) == _without_time(api.plan(README_REQUEST).model_dump())
    cli = CliRunner().invoke(main, README_PLAN_ARGS + ["--json"])
    assert cli.exit_code == 0, cli.output
    assert _without_time(body) == _without_time(json.loads(cli.output))


@pytest.mark.parametrize(
    ("path", "value", "field", "words"),
    [
        ("budget.usd_per_hour", -5, "budget.usd_per_hour", "> 0"),
        ("workload.input_len", "abc", "workload.input_len", "whole number"),
        ("workload.output_len", 0, "workload.output_len", "> 0"),
        ("gpus", {"h100": {}}, "gpus.h100", "h100-sxm"),
        ("framework", ["vllm", "tensorrt"], "framework[1]", "unknown framework"),
        ("precision", [], "precision", "non-empty"),
        ("model", "meta-llama/Llama-2-7x-hf", "model", "did you mean"),
        ("model", "/etc/hostname", "model", "catalog id"),
        ("tpo", 3, "tpo", "unknown key"),
    ],
)
def test_bad_input_is_422_naming_the_field(client: TestClient, path: str, value: Any, field: str, words: str) -> None:
    resp = client.post("/api/plan", json=_with(README_REQUEST, path, value))
    assert resp.status_code == 422
    body = resp.json()
    assert set(body) == {"field", "message"}
    assert body["field"] == field
    assert words in body["message"]
    assert "Traceback" not in resp.text


def test_missing_field_and_non_json_bodies_are_422(client: TestClient) -> None:
    missing = copy.deepcopy(README_REQUEST)
    del missing["workload"]["input_len"]
    resp = client.post("/api/plan", json=missing)
    assert resp.status_code == 422 and resp.json()["field"] == "workload.input_len"
    for kwargs in ({"content": b"{not json", "headers": {"content-type": "application/json"}}, {"json": [1, 2]}, {}):
        resp = client.post("/api/plan", **kwargs)
        assert resp.status_code == 422, kwargs
        assert resp.json()["field"] == "request" and resp.json()["message"]


def test_infeasible_is_200_with_explanation_and_conflicts(client: TestClient) -> None:
    resp = client.post("/api/plan", json=INFEASIBLE_REQUEST)
    assert resp.status_code == 200
    body = resp.json()
    assert body["status"] == "infeasible"
    assert body["plans"] == []
    assert "budget" in body["explanation"]
    assert body["conflicts"] == ["budget.usd_per_hour"]
    assert body["objective"] == ["throughput", "latency", "cost"]
    cli = CliRunner().invoke(main, ["plan", "--model", LLAMA2_70B, "--budget", "1", "--input-len", "512", "--output-len", "256", "--json"])
    assert cli.exit_code == 3
    cli_json = json.loads(cli.stdout)
    assert _without_time(body) == _without_time(cli_json)


def test_unexpected_errors_are_a_generic_500(client: TestClient, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    def boom(*_: Any, **__: Any) -> None:
        raise RuntimeError("secret internal detail")

    monkeypatch.setattr(api, "plan", boom)
    with caplog.at_level(logging.ERROR, logger="guideopt.web"):
        resp = client.post("/api/plan", json=README_REQUEST)
    assert resp.status_code == 500
    assert resp.json() == {"message": INTERNAL_ERROR}
    assert "secret" not in resp.text and "Traceback" not in resp.text
    assert "secret internal detail" in caplog.text  # the traceback is in the server's log


# ---------------------------------------------------------------------- /api/constraints


@pytest.mark.parametrize("request_data", [README_REQUEST] + [p["request"] for p in PRESETS], ids=["readme"] + [p["id"] for p in PRESETS])
def test_constraints_download_reads_back_into_the_same_request(client: TestClient, tmp_path: Path, request_data: dict[str, Any]) -> None:
    resp = client.post("/api/constraints", json=request_data)
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("application/yaml")
    assert "attachment" in resp.headers["content-disposition"]
    path = tmp_path / "guideopt-constraints.yaml"
    path.write_bytes(resp.content)
    assert load_request(path) == PlanRequest.model_validate(request_data)


def test_constraints_of_a_bad_request_is_422(client: TestClient) -> None:
    resp = client.post("/api/constraints", json=_with(README_REQUEST, "budget.usd_per_hour", -1))
    assert resp.status_code == 422 and resp.json()["field"] == "budget.usd_per_hour"


# ---------------------------------------------------------------------- optional features


def test_launch_scripts_or_501(client: TestClient) -> None:
    features = client.get("/api/catalog").json()["features"]
    resp = client.post("/api/launch", json=README_REQUEST)
    if not features["launch"]:
        assert resp.status_code == 501 and "launch" in resp.json()["message"]
        return
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"] == "application/zip"
    assert "attachment" in resp.headers["content-disposition"]
    with zipfile.ZipFile(io.BytesIO(resp.content)) as archive:
        names = archive.namelist()
        scripts = [n for n in names if n.endswith(".sh")]
        assert "guideopt-launch/PLAN.md" in names
        groups = sum(len(p.groups) for p in api.plan(README_REQUEST).plans)
        assert len(scripts) == groups
        for name in scripts:
            assert archive.getinfo(name).external_attr >> 16 & 0o100, f"{name} is not executable"
            assert archive.read(name).startswith(b"#!/usr/bin/env bash")
        assert LLAMA2_7B in archive.read("guideopt-launch/PLAN.md").decode()


def test_launch_of_an_infeasible_request_is_422_or_501(client: TestClient) -> None:
    resp = client.post("/api/launch", json=INFEASIBLE_REQUEST)
    assert resp.status_code in (422, 501)
    if resp.status_code == 422:
        assert resp.json()["field"] == "budget.usd_per_hour"


def test_pareto_chart_or_501(client: TestClient) -> None:
    features = client.get("/api/catalog").json()["features"]
    resp = client.post("/api/pareto", json=README_REQUEST)
    if not features["pareto"] or resp.status_code == 501:
        assert resp.status_code == 501 and "Pareto" in resp.json()["message"]
        return
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"].startswith("image/svg+xml")
    assert b"<svg" in resp.content[:2000]


# ---------------------------------------------------------------------- guideopt serve


def test_serve_binds_localhost_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    uvicorn = pytest.importorskip("uvicorn")
    serve = main.commands["serve"]
    defaults = {p.name: p.default for p in serve.params}
    assert defaults["host"] == "127.0.0.1"
    assert defaults["port"] == 8000
    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: calls.append({"app": app, **kw}))
    result = CliRunner().invoke(main, ["serve"])
    assert result.exit_code == 0, result.output
    assert calls and calls[0]["host"] == "127.0.0.1" and calls[0]["port"] == 8000
    assert "Example:" in (serve.help or "")


def test_serve_without_the_web_extra_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    import guideopt.commands.serve as cli_serve

    real = cli_serve.importlib.util.find_spec
    monkeypatch.setattr(cli_serve.importlib.util, "find_spec", lambda name, *a: None if name == "uvicorn" else real(name, *a))
    result = CliRunner().invoke(main, ["serve"])
    assert result.exit_code == 1
    assert "uvicorn not installed" in result.stderr and "guideopt[web]" in result.stderr
    assert "Traceback" not in result.stderr
