"""``GET /api/docs``: the API's endpoints on one plain HTML page, built from the OpenAPI
document the server also serves at ``/api/openapi.json``.

FastAPI's own docs page loads Swagger UI's script and styles from a CDN, so it is blank on
a machine without internet access; this page needs nothing beyond the server itself.
"""

from __future__ import annotations

from html import escape
from typing import Any

OPENAPI_URL = "/api/openapi.json"
STYLE = "body{font-family:sans-serif;max-width:60em;margin:2em auto;padding:0 1em}td{padding:.4em .8em;vertical-align:top}"


def _rows(openapi: dict[str, Any]) -> list[str]:
    rows = []
    for path, operations in openapi.get("paths", {}).items():
        for method, op in operations.items():
            text = op.get("description") or op.get("summary") or ""
            rows.append(f"<tr><td><code>{escape(method.upper())} {escape(path)}</code></td><td>{escape(text)}</td></tr>")
    return rows


def docs_html(openapi: dict[str, Any]) -> str:
    """The page: title, how bodies and errors look, one row per endpoint, a link to the JSON."""
    info = openapi.get("info", {})
    title = escape(f"{info.get('title', 'guideopt')} {info.get('version', '')}".strip())
    return "\n".join(
        [
            '<!doctype html><html lang="en"><head><meta charset="utf-8">',
            f"<title>{title} API</title><style>{STYLE}</style></head><body>",
            f"<h1>{title} API</h1><p>{escape(info.get('description', ''))}</p>",
            "<p>Request bodies are JSON with the structure of a constraints file (<code>guideopt schema</code>); "
            'a bad request is 422 <code>{"field": ..., "message": ...}</code>. '
            f'The OpenAPI description: <a href="{OPENAPI_URL}">{OPENAPI_URL}</a>.</p>',
            "<table><tr><th>endpoint</th><th>what it returns</th></tr>",
            *_rows(openapi),
            "</table></body></html>",
        ]
    )
