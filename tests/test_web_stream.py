"""Request streams through the web page's JSON API: catalog, plan, constraints download, errors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("fastapi", reason="the web extra (fastapi) is not installed")
try:
    from fastapi.testclient import TestClient
except (ImportError, RuntimeError) as exc:  # starlette's TestClient needs httpx2 (or, before 1.x, httpx)
    pytest.skip(f"FastAPI's TestClient cannot load: {exc}", allow_module_level=True)

from click.testing import CliRunner

from guideopt.catalog import length_mix_ids, load_length_mix
from guideopt.cli import main
from guideopt.io.constraints_file import load_request
from guideopt.web.app import create_app

# A small stream (two GPU types, two plans) so that the simulator's verification stays quick.
STREAM_REQUEST: dict[str, Any] = {
    "model": "meta-llama/Llama-3.1-8B",
    "workload": {"rate_rps": 5, "lengths": "sharegpt"},
    "budget": {"usd_per_hour": 20},
    "gpus": {"l4": {}, "l40s": {}},
    "slo": {"ttft_ms": 800, "tpot_ms": 60, "percentile": 90},
    "top": 2,
    "time_limit_s": 60,  # well past the ~3 s it needs: the plans must not depend on the machine's load
}
STREAM_PLAN_ARGS = [
    "plan", "--model", "meta-llama/Llama-3.1-8B", "--rate", "5", "--lengths", "sharegpt", "--budget", "20",
    "--gpu", "l4", "--gpu", "l40s", "--ttft-ms", "800", "--tpot-ms", "60", "--percentile", "90", "--top", "2", "--time-limit-s", "60", "--json",
]  # fmt: skip


@pytest.fixture(scope="module")
def client() -> TestClient:
    return TestClient(create_app())


@pytest.fixture(scope="module")
def cli_plan() -> dict[str, Any]:
    result = CliRunner().invoke(main, STREAM_PLAN_ARGS)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def _plans(result: dict[str, Any]) -> list[dict[str, Any]]:
    return result["plans"]


def test_catalog_lists_the_length_mixes(client: TestClient) -> None:
    mixes = client.get("/api/catalog").json()["length_mixes"]
    assert [m["id"] for m in mixes] == length_mix_ids() and "sharegpt" in length_mix_ids()
    assert all(m["name"] == load_length_mix(m["id"]).name for m in mixes)


def test_page_has_the_stream_controls(client: TestClient) -> None:
    page = client.get("/").text
    for element_id in ("workload-kind", "rate", "concurrency", "lengths", "percentile", "stream", "disaggregation"):
        assert f'id="{element_id}"' in page
    assert client.get("/static/stream.js").status_code == 200


def test_stream_plan_matches_the_cli(client: TestClient, cli_plan: dict[str, Any]) -> None:
    body = client.post("/api/plan", json=STREAM_REQUEST).json()
    assert body["status"] in ("optimal", "feasible") and body["plans"] and body["verification_rounds"] >= 1
    assert _plans(body) == _plans(cli_plan)
    for plan in body["plans"]:
        assert plan["stream"]["rate_rps"] == 5 and plan["stream"]["percentile"] == 90
        for group in plan["groups"]:
            assert set(group["stream"]["analytic"]["ttft_ms"]) >= {"p50", "p90", "p99"}
            assert set(group["stream"]["simulated"]["tpot_ms"]) >= {"p50", "p90", "p99"}


def test_stream_constraints_download_solves_to_the_same_plans(client: TestClient, tmp_path: Path, cli_plan: dict[str, Any]) -> None:
    resp = client.post("/api/constraints", json=STREAM_REQUEST)
    assert resp.status_code == 200
    path = tmp_path / "guideopt-constraints.yaml"
    path.write_text(resp.text)
    request = load_request(path)
    assert request.workload.rate_rps == 5 and request.workload.length_spec.mix == "sharegpt"
    assert request.slo.percentile == 90
    solved = CliRunner().invoke(main, ["solve", str(path), "--json"])
    assert solved.exit_code == 0, solved.output
    assert _plans(json.loads(solved.stdout)) == _plans(cli_plan)


@pytest.mark.parametrize(
    ("workload", "slo", "field", "words"),
    [
        ({"rate_rps": -1, "lengths": "sharegpt"}, {}, "workload.rate_rps", "> 0"),
        ({"rate_rps": 5, "concurrency": 8, "lengths": "sharegpt"}, {}, "workload", "not both"),
        ({"rate_rps": 5, "lengths": "sharegtp"}, {}, "workload.lengths", "sharegpt"),
        ({"rate_rps": 5, "lengths": "sharegpt"}, {"ttft_ms": 800, "percentile": 150}, "slo.percentile", "< 100"),
    ],
)
def test_bad_stream_input_is_422_naming_the_field(client: TestClient, workload: dict, slo: dict, field: str, words: str) -> None:
    request = {**STREAM_REQUEST, "workload": workload, "slo": slo or STREAM_REQUEST["slo"]}
    resp = client.post("/api/plan", json=request)
    assert resp.status_code == 422, resp.text
    body = resp.json()
    assert body["field"] == field and words in body["message"], body


def test_disaggregated_plan_through_the_api_matches_the_cli(client: TestClient) -> None:
    request = {
        **STREAM_REQUEST,
        "framework": "vllm-0.33",
        "disaggregation": "only",
        "top": 1,
        "workload": {"rate_rps": 5, "input_len": 3000, "output_len": 200},
    }
    body = client.post("/api/plan", json=request).json()
    args = ["plan", "--model", "meta-llama/Llama-3.1-8B", "--rate", "5", "--input-len", "3000", "--output-len", "200", "--budget", "20"]
    args += ["--gpu", "l4", "--gpu", "l40s", "--ttft-ms", "800", "--tpot-ms", "60", "--percentile", "90", "--top", "1"]
    args += ["--time-limit-s", "60", "--framework", "vllm-0.33", "--disaggregated", "only", "--json"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert _plans(body) == _plans(json.loads(result.stdout))
    plan = body["plans"][0]
    assert [g["role"] for g in plan["groups"]] == ["prefill", "decode"] and plan["kv_transfer"]["bytes_per_request"] > 0
