"""Issue 14's reproducers for the web server, outputs and tables (items 7 web part, 13, 14, 17, 18)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import LLAMA2_7B, LLAMA2_70B, REPO_ROOT

from guideopt.cli import main
from guideopt.errors import InvalidRequestError
from guideopt.io.render import gib, plan_text, table
from guideopt.model.limits import MAX_WEB_BODY_BYTES
from guideopt.web import worker

fastapi = pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

from guideopt.web.app import create_app  # noqa: E402

REQUEST = {"model": LLAMA2_7B, "workload": {"input_len": 512, "output_len": 128}, "budget": {"usd_per_hour": 9}, "gpus": {"l4": {}}}
PLAN = ["plan", "--model", LLAMA2_7B, "--budget", "12", "--input-len", "512", "--output-len", "256", "--gpu", "l4"]


@pytest.fixture(scope="module")
def client() -> TestClient:
    return TestClient(create_app(), raise_server_exceptions=False)


def run(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


# ---------------------------------------------------------------- 7. stoppable web requests


def _sleep(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


def _refuse(message: str) -> None:
    raise InvalidRequestError(message, field="workload.batch")


async def _gone_after(seconds: float, start: float) -> bool:
    return time.perf_counter() - start > seconds


def test_7_a_request_stops_when_its_client_leaves() -> None:
    start = time.perf_counter()
    with pytest.raises(worker.ClientGone):
        asyncio.run(worker.run_stoppable(_sleep, (60,), lambda: _gone_after(0.3, start)))
    assert time.perf_counter() - start < 3  # the 60 s job was killed, not waited for


def test_7_a_request_stops_at_its_time_limit() -> None:
    start = time.perf_counter()
    with pytest.raises(worker.WorkerTimeout):
        asyncio.run(worker.run_stoppable(_sleep, (60,), lambda: _gone_after(99, start), timeout_s=0.3))
    assert time.perf_counter() - start < 3


def test_7_results_and_expected_errors_come_back() -> None:
    never = time.perf_counter()
    assert asyncio.run(worker.run_stoppable(_sleep, (0.01,), lambda: _gone_after(99, never))) == 0.01
    with pytest.raises(InvalidRequestError) as info:
        asyncio.run(worker.run_stoppable(_refuse, ("too big",), lambda: _gone_after(99, never), expected=(InvalidRequestError,)))
    assert info.value.field == "workload.batch" and str(info.value) == "workload.batch: too big"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


SLOW_SERVER = """
import sys, time
import guideopt.web.app as app
app.solve = lambda request: time.sleep(600)
from guideopt.cli import main
main(["serve", "--port", sys.argv[1]])
"""


@pytest.mark.slow
def test_7_sigterm_does_not_wait_for_a_running_request(tmp_path: Path) -> None:
    port = _free_port()
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    server = subprocess.Popen([sys.executable, "-c", SLOW_SERVER, str(port)], env=env, stderr=subprocess.PIPE, text=True)
    try:
        for _ in range(100):  # wait for the port
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.1)
        body = json.dumps(REQUEST).encode()
        request = f"POST /api/plan HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        conn = socket.create_connection(("127.0.0.1", port))
        conn.sendall(request.encode() + body)
        time.sleep(0.5)
        start = time.perf_counter()
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=20)
        assert time.perf_counter() - start < 10  # the 600 s request did not hold the server
        conn.close()
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()


# ---------------------------------------------------------------- 13. status codes of the API


@pytest.mark.parametrize(
    "body,field",
    [
        (json.dumps({**REQUEST, "workload": {"input_len": 10**400, "output_len": 1}}), "workload.input_len"),
        ('{"model": ', "request"),
        ("[" * 100_000 + "]" * 100_000, "request"),
        (json.dumps({**REQUEST, "budget": {"usd_per_hour": 1}}).replace("1}", "1e400}"), "budget.usd_per_hour"),
        (json.dumps({**REQUEST, "workload": {"input_len": 10_000, "output_len": 1}}), "workload.input_len"),
    ],
)
def test_13_malformed_bodies_are_422_field_message(client: TestClient, body: str, field: str) -> None:
    resp = client.post("/api/plan", content=body, headers={"content-type": "application/json"})
    assert resp.status_code == 422, resp.text
    assert set(resp.json()) == {"field", "message"} and resp.json()["field"] == field


def test_13_an_oversized_body_is_refused_before_it_is_read(client: TestClient) -> None:
    resp = client.post("/api/plan", content=b" " * (MAX_WEB_BODY_BYTES + 1), headers={"content-type": "application/json"})
    assert resp.status_code == 422 and "KiB" in resp.json()["message"]


def test_13_other_http_errors_have_a_message(client: TestClient) -> None:
    resp = client.get("/api/plan")
    assert resp.status_code == 405 and set(resp.json()) == {"message"}


def test_13_model_caveats_reach_the_json(client: TestClient) -> None:
    body = {**REQUEST, "model": "Qwen/Qwen3.5-35B-A3B", "gpus": {"h100-sxm": {}}, "budget": {"usd_per_hour": 40}}
    resp = client.post("/api/plan", json=body)
    assert resp.status_code == 200 and "multi-token-prediction" in resp.json()["warnings"][0]


# ---------------------------------------------------------------- 14. serve on a busy port


def test_14_a_busy_port_is_one_line_exit_1() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = run("serve", "--port", str(port))
    assert result.exit_code == 1
    assert result.stderr.strip().splitlines() == [
        f"error: --port: {port} is already in use on 127.0.0.1 (choose another --port, or stop the other server)"
    ]


# ---------------------------------------------------------------- 17. outputs


def test_17_emit_replaces_an_earlier_plans_scripts(tmp_path: Path) -> None:
    out = tmp_path / "deploy"
    assert run(*PLAN, "--emit", str(out)).exit_code == 0
    first = {p.name for p in out.glob("launch-*.sh")}
    assert first and all("l4" in name for name in first)
    assert run(*PLAN[:-1], "a10g", "--emit", str(out)).exit_code == 0
    second = {p.name for p in out.glob("launch-*.sh")}
    assert second and all("a10g" in name for name in second)  # no l4 script left behind


def test_17_plot_and_emit_create_no_tree_of_folders(tmp_path: Path) -> None:
    missing = tmp_path / "no" / "such"
    result = run(*PLAN, "--plot", str(missing / "x.png"))
    assert result.exit_code == 1 and "does not exist" in result.stderr and not (tmp_path / "no").exists()
    result = run(*PLAN, "--emit", str(missing / "deploy"))
    assert result.exit_code == 1 and not (tmp_path / "no").exists()


def test_17_json_and_metrics_details() -> None:
    infeasible = run("plan", "--model", LLAMA2_70B, "--budget", "1", "--input-len", "512", "--output-len", "256", "--json")
    assert infeasible.exit_code == 3 and json.loads(infeasible.stdout)["solve_time_s"] > 0
    one = run("predict", "--model", LLAMA2_7B, "--gpu", "h100-sxm", "--input-len", "512", "--output-len", "1", "--json")
    assert json.loads(one.stdout)["metrics"]["tpot_ms"] is None
    both = run(
        "predict", "--model", LLAMA2_7B, "--gpu", "h100-sxm", "--input-len", "64", "--output-len", "8", "--batch", "2", "--concurrency", "4"
    )
    assert both.exit_code == 1 and "--concurrency: give a batch or a concurrency, not both" in both.stderr


def test_17_no_progress_labels_when_stderr_is_not_a_terminal() -> None:
    result = run("capacity", "--model", LLAMA2_7B, "--gpu", "h100-sxm", "--input-len", "64:4096:x1.5", "--output-len", "16,64")
    assert result.exit_code == 0 and result.stderr == ""


# ---------------------------------------------------------------- 18. tables


def test_18_tables_fit_the_width_and_use_gib() -> None:
    from guideopt import api

    result = api.plan({**REQUEST, "gpus": {"h100-sxm": {}}, "budget": {"usd_per_hour": 20}})
    text = plan_text(result)
    assert "GiB/gpu" in text and " 80.0" in text  # an H100 shows its 80 (GiB), as `catalog gpus` does
    rows = [["rank", "gpu"], [1, "h100-sxm"]]
    narrow = table([f"a-long-header-{i}" for i in range(5)], [[1, 2, 3, 4, 5]], width=40)  # folded, nothing left out
    assert all(len(line) <= 40 for line in narrow.splitlines()) and all(f"a-long-header-{i}" in narrow for i in range(5))
    assert table(["x", "y"], rows).splitlines()[1].startswith("-")
    assert gib(80 * 2**30 / 1e9) == pytest.approx(80)


def test_18_catalog_and_plan_agree_on_memory() -> None:
    listing = run("catalog", "gpus").stdout
    assert "memory_gib" in listing and "price_grade" in listing
    assert textwrap.dedent(listing).count("\n") >= 25
