"""End to end: the web page in headless Chromium (Playwright) against ``guideopt serve``'s app.

uvicorn serves ``guideopt.web`` on a free localhost port in a background thread; Playwright
drives Debian's Chromium (``/usr/bin/chromium``, or ``$GUIDEOPT_CHROMIUM``). Skipped, with
the reason, when Chromium, Playwright or the web extra is missing.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = os.environ.get("GUIDEOPT_CHROMIUM", "/usr/bin/chromium")
# As root on a machine without network: no sandbox, no background connections.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--headless",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]

pytest.importorskip("fastapi", reason="the web extra (fastapi) is not installed")
uvicorn = pytest.importorskip("uvicorn", reason="the web extra (uvicorn) is not installed")
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install playwright)")
if not (os.path.isfile(CHROMIUM) or shutil.which(CHROMIUM)):
    pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install -y chromium, or set GUIDEOPT_CHROMIUM)", allow_module_level=True)

from click.testing import CliRunner  # noqa: E402
from conftest import LLAMA2_7B, LLAMA2_70B, README_PLAN_ARGS  # noqa: E402

from guideopt import api  # noqa: E402
from guideopt.cli import main  # noqa: E402
from guideopt.io.constraints_file import load_request  # noqa: E402
from guideopt.web.app import PRESETS, create_app  # noqa: E402

TIMEOUT_MS = 20_000


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def base_url() -> Iterator[str]:
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            pytest.fail("uvicorn did not start")
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with sync_api.sync_playwright() as pw:
        try:
            b = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        except Exception as exc:  # e.g. a Chromium that cannot start here
            pytest.skip(f"Chromium at {CHROMIUM} does not start: {str(exc).splitlines()[0]}")
        yield b
        b.close()


@pytest.fixture()
def page(browser: Any, base_url: str) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    pg = context.new_page()
    pg.set_default_timeout(TIMEOUT_MS)
    errors: list[str] = []
    pg.on("pageerror", lambda exc: errors.append(str(exc)))
    pg.goto(base_url + "/")
    pg.wait_for_selector("body[data-ready=true]")
    yield pg
    context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


def _fill(pg: Any, model: str, budget: str, input_len: str, output_len: str) -> None:
    pg.select_option("#model", model)
    pg.fill("#budget", budget)
    pg.fill("#input-len", input_len)
    pg.fill("#output-len", output_len)


def _shown_plans(pg: Any) -> list[tuple[int, str, int, str]]:
    pg.wait_for_selector("#plans table tbody tr")
    rows = pg.eval_on_selector_all(
        "#plans table tbody tr",
        "rows => rows.map(r => [r.dataset.rank, r.querySelector('.gpu').textContent,"
        " r.querySelector('.gpus').textContent, r.querySelector('.usd').textContent])",
    )
    return [(int(rank), gpu, int(gpus), usd) for rank, gpu, gpus, usd in rows]


def _expected(plans: list[dict[str, Any]]) -> list[tuple[int, str, int, str]]:
    return [(p["rank"], g["gpu"], g["num_gpus"], f"{p['usd_per_hour']:.2f}") for p in plans for g in p["groups"]]


def test_form_shows_the_same_plans_as_the_cli(page: Any) -> None:
    _fill(page, LLAMA2_7B, "12", "512", "256")
    page.click("#submit")
    shown = _shown_plans(page)
    cli = CliRunner().invoke(main, README_PLAN_ARGS + ["--json"])
    assert cli.exit_code == 0, cli.output
    expected = _expected(json.loads(cli.output)["plans"])
    assert shown == expected and len(shown) >= 1
    # each latency and throughput cell shows the plan's prediction interval from the JSON
    first = json.loads(cli.output)["plans"][0]["groups"][0]
    tpot = page.eval_on_selector("#plans table tbody tr", "r => r.querySelector('.tpot').textContent")
    low, high = first["metrics_low"]["tpot_ms"], first["metrics_high"]["tpot_ms"]
    assert low < high and "[" in tpot and tpot.endswith("]")  # a biased regime need not contain the point
    shown_low, shown_high = (float(x.replace(",", "")) for x in tpot[tpot.index("[") + 1 : -1].split("–"))
    assert shown_low == pytest.approx(low, rel=0.01) and shown_high == pytest.approx(high, rel=0.01)
    # one memory bar per plan group, and the status line
    assert page.locator("#memory .mem-row").count() == len(expected)
    assert "optimal" in page.inner_text("#status") or "feasible" in page.inner_text("#status")
    assert page.inner_text("#error-budget") == ""
    assert page.inner_text("#calibration") == "shipped (catalogs/calibration.yaml)"  # no overlay given
    features = page.evaluate("state.features")
    if features.get("pareto"):  # the chart arrives after the table
        page.wait_for_function("(() => { const i = document.querySelector('#pareto img'); return i && i.naturalWidth > 0; })()")
    assert page.is_visible("#download-launch") == bool(features.get("launch"))


def test_constraints_download_reads_back(page: Any, tmp_path: Path) -> None:
    _fill(page, LLAMA2_7B, "12", "512", "256")
    page.fill("#ttft", "900")
    page.check("#dtype-bf16")
    with page.expect_download() as info:
        page.click("#download-constraints")
    download = info.value
    assert download.suggested_filename == "guideopt-constraints.yaml"
    path = tmp_path / download.suggested_filename
    download.save_as(path)
    request = load_request(path)
    assert request.model == LLAMA2_7B and request.budget.usd_per_hour == 12
    assert request.slo.ttft_ms == 900
    assert [d.value for d in request.precision] == ["fp16", "bf16"]


def test_bad_budget_shows_the_message_next_to_the_field(page: Any) -> None:
    _fill(page, LLAMA2_7B, "-5", "512", "256")
    page.click("#submit")
    page.wait_for_function("document.getElementById('error-budget').textContent.length > 0")
    message = page.inner_text("#error-budget")
    assert "> 0" in message and "Traceback" not in message
    assert page.get_attribute("#budget", "aria-invalid") == "true"
    assert page.locator("#plans table").count() == 0
    assert page.inner_text("#error") == ""


def test_infeasible_request_shows_the_explanation(page: Any) -> None:
    _fill(page, LLAMA2_70B, "1", "512", "256")
    page.click("#submit")
    page.wait_for_selector("#infeasible:not([hidden])")
    assert "budget" in page.inner_text("#explanation")
    assert "conflict" in page.inner_text("#error-budget")
    assert page.locator("#plans table").count() == 0


def test_preset_fills_the_form_and_plans_it(page: Any) -> None:
    preset = next(p for p in PRESETS if p["id"] == "chat")
    page.select_option("#preset", "chat")
    assert page.input_value("#model") == preset["request"]["model"]
    assert page.input_value("#ttft") == "600"
    page.click("#submit")
    shown = _shown_plans(page)
    assert shown == _expected(api.plan(preset["request"]).model_dump()["plans"])


def _fill_stream(pg: Any) -> None:
    """The request of tests/test_web_stream.py, typed into the form."""
    pg.select_option("#model", "meta-llama/Llama-3.1-8B")
    pg.fill("#budget", "20")
    pg.select_option("#workload-kind", "stream")
    pg.fill("#rate", "5")
    pg.select_option("#lengths", "sharegpt")
    pg.select_option("#gpus", ["l4", "l40s"])
    pg.fill("#ttft", "800")
    pg.fill("#tpot", "60")
    pg.select_option("#percentile", "90")
    pg.click("#expert summary")
    pg.fill("#top", "2")
    pg.fill("#time-limit", "60")


def test_stream_request_shows_the_cli_plans_and_percentiles(page: Any, tmp_path: Path) -> None:
    from test_web_stream import STREAM_PLAN_ARGS

    assert page.is_hidden("#stream-fields") and page.is_visible("#batch")
    _fill_stream(page)
    assert page.is_visible("#rate") and page.is_hidden("#batch") and page.is_hidden("#input-len")
    page.click("#submit")
    shown = _shown_plans(page)
    cli = CliRunner().invoke(main, STREAM_PLAN_ARGS)
    assert cli.exit_code == 0, cli.output
    plans = json.loads(cli.stdout)["plans"]
    assert shown == _expected(plans) and len(shown) >= 1
    rows = page.eval_on_selector_all(
        "#stream-table tbody tr", "rows => rows.map(r => [r.dataset.rank, r.querySelector('.ttft-p90').textContent])"
    )
    group = plans[0]["groups"][0]["stream"]
    p90 = [group["analytic"]["ttft_ms"]["p90"], group["simulated"]["ttft_ms"]["p90"]]
    assert len(rows) == len(shown) and rows[0][0] == "1"
    assert [float(x) for x in rows[0][1].split(" / ")] == pytest.approx(p90, rel=0.01)
    assert "Verification rounds" in page.inner_text("#stream-note")
    with page.expect_download() as info:
        page.click("#download-constraints")
    path = tmp_path / "guideopt-constraints.yaml"
    info.value.save_as(path)
    solved = CliRunner().invoke(main, ["solve", str(path), "--json"])
    assert solved.exit_code == 0, solved.output
    assert _expected(json.loads(solved.stdout)["plans"]) == shown


def test_stream_preset_fills_the_stream_fields(page: Any) -> None:
    preset = next(p for p in PRESETS if p["id"] == "chat-stream")["request"]
    page.select_option("#preset", "chat-stream")
    assert page.input_value("#workload-kind") == "stream" and page.is_visible("#rate")
    assert page.input_value("#rate") == str(preset["workload"]["rate_rps"])
    assert page.input_value("#lengths") == preset["workload"]["lengths"]
    assert page.input_value("#percentile") == str(preset["slo"]["percentile"])
    assert page.input_value("#objective") == "default"
    request = page.evaluate("formToRequest()")
    assert load_request_dict(request) == load_request_dict(preset)
    page.select_option("#preset", "chat")  # back to an offline preset: the stream fields hide
    assert page.input_value("#workload-kind") == "offline" and page.is_hidden("#stream-fields")


def load_request_dict(data: dict[str, Any]) -> dict[str, Any]:
    from guideopt.web.app import parse_request

    return parse_request(data).model_dump(mode="json")
