"""``guideopt serve``: the planner's web page and JSON API (``guideopt.web``) under uvicorn.

The web stack
(fastapi, uvicorn) is imported only when the command runs, so the rest of the CLI works
without it; a missing package is one line on stderr, exit 1.
"""

from __future__ import annotations

import importlib.util

import click

from guideopt.commands.common import handle_errors
from guideopt.errors import GuideoptError

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000


@click.command()
@click.option(
    "--host",
    default=DEFAULT_HOST,
    show_default=True,
    help="Address to bind. The default serves this machine only; 0.0.0.0 exposes the page to the network.",
)
@click.option("--port", type=click.IntRange(0, 65535), default=DEFAULT_PORT, show_default=True, help="TCP port.")
@handle_errors
def serve(host: str, port: int) -> None:
    """Serve the planning web page and its JSON API (/api/plan, /api/catalog, ...).

    Example: guideopt serve --port 8000   (then open http://127.0.0.1:8000/)
    """
    missing = [m for m in ("fastapi", "uvicorn") if importlib.util.find_spec(m) is None]
    if missing:
        raise GuideoptError(f"serve: {' and '.join(missing)} not installed (pip install 'guideopt[web]')")
    import uvicorn

    from guideopt.web.app import create_app

    click.echo(f"guideopt: serving on http://{host}:{port}/ (Ctrl-C to stop)", err=True)
    uvicorn.run(create_app(), host=host, port=port, log_level="info")
