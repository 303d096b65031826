"""ASGI middleware of the web app: bodies over the size limit are refused before they are
read, and an unexpected exception becomes a generic 500 whose traceback goes to the log only."""

from __future__ import annotations

import logging
from typing import Any

from guideopt.model.limits import MAX_WEB_BODY_BYTES

log = logging.getLogger("guideopt.web")

INTERNAL_ERROR = "internal error: the planner failed unexpectedly (the server log has the details)"


class CatchAll:
    """ASGI middleware: an unexpected exception becomes a generic 500, its traceback goes to the log."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope.get("headers") or []).get(b"content-length", b"0")
        if not length.isdigit() or int(length) > MAX_WEB_BODY_BYTES:
            from fastapi.responses import JSONResponse

            too_big = f"the body is over {MAX_WEB_BODY_BYTES // 1024} KiB (a request is a few KB: the structure of a constraints file)"
            await JSONResponse({"field": "request", "message": too_big}, status_code=422)(scope, receive, send)
            return
        started = False

        async def _send(message: dict[str, Any]) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, _send)
        except Exception:
            log.exception("unexpected error on %s %s", scope.get("method"), scope.get("path"))
            if not started:
                from fastapi.responses import JSONResponse

                await JSONResponse({"message": INTERNAL_ERROR}, status_code=500)(scope, receive, send)
