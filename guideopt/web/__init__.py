"""The planner's web page (``guideopt serve``): a FastAPI app over ``guideopt.api``.

``create_app()`` builds it; the page itself is plain HTML + vanilla JS under ``static/``.
Needs the ``web`` extra (fastapi, uvicorn); the rest of guideopt never imports this package.
"""

from __future__ import annotations

__all__ = ["create_app"]


def create_app(*args, **kwargs):
    from guideopt.web.app import create_app as _create_app

    return _create_app(*args, **kwargs)
