"""Issue 25 item 12: /api/docs loaded Swagger UI from a CDN and was blank offline; it is now
a plain page served by the app itself, listing every endpoint and linking the OpenAPI JSON."""

from __future__ import annotations

import re

import pytest

pytest.importorskip("fastapi", reason="the web extra (fastapi) is not installed")
try:
    from fastapi.testclient import TestClient
except (ImportError, RuntimeError) as exc:  # starlette's TestClient needs httpx
    pytest.skip(f"FastAPI's TestClient cannot load: {exc}", allow_module_level=True)

from guideopt.web.app import create_app


def test_api_docs_need_nothing_from_outside_the_server() -> None:
    client = TestClient(create_app())
    page = client.get("/api/docs")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert not re.search(r"(src|href)=\"(https?:)?//", page.text)  # no script, style or link off the server
    openapi = client.get("/api/openapi.json").json()
    for path, operations in openapi["paths"].items():
        for method in operations:
            assert f"{method.upper()} {path}" in page.text
    assert 'href="/api/openapi.json"' in page.text
