"""``guideopt serve``: the planner's web page and JSON API (``guideopt.web``) under uvicorn.

The web stack
(fastapi, uvicorn) is imported only when the command runs, so the rest of the CLI works
without it; a missing package is one line on stderr, exit 1.
"""

from __future__ import annotations

import errno
import importlib.util
import socket

import click

from guideopt.commands.common import calibration_option, catalog_with, handle_errors
from guideopt.errors import GuideoptError
from guideopt.model.limits import WEB_SHUTDOWN_GRACE_S

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
@calibration_option
@handle_errors
def serve(host: str, port: int, calibration_file: str | None) -> None:
    """Serve the planning web page and its JSON API (/api/plan, /api/catalog, ...).

    Example: guideopt serve --port 8000   (then open http://127.0.0.1:8000/)
    """
    missing = [m for m in ("fastapi", "uvicorn") if importlib.util.find_spec(m) is None]
    if missing:
        raise GuideoptError(f"serve: {' and '.join(missing)} not installed (pip install 'guideopt[web]')")
    import uvicorn

    from guideopt.web.app import SHIPPED_CALIBRATION, create_app

    catalog = catalog_with(calibration_file)  # a bad overlay is one line here, before the server starts
    label = SHIPPED_CALIBRATION if calibration_file is None else f"overlay {calibration_file} over the shipped calibration"
    _check_port(host, port)
    click.echo(f"guideopt: serving on http://{host}:{port}/ (Ctrl-C to stop)", err=True)
    try:
        # On SIGTERM/Ctrl-C, running requests get WEB_SHUTDOWN_GRACE_S; then they are
        # cancelled, which stops their planning processes (guideopt.web.worker).
        uvicorn.run(create_app(catalog, label), host=host, port=port, log_level="info", timeout_graceful_shutdown=int(WEB_SHUTDOWN_GRACE_S))
    except SystemExit as exc:  # uvicorn exits 3 when it cannot start: that is not "no feasible plan"
        if exc.code not in (0, None):
            raise GuideoptError(
                f"--port: the server could not start on {host}:{port} (see the log line above; choose another --port)"
            ) from None


def _check_port(host: str, port: int) -> None:
    """A busy port or an address that is not this machine's is one line naming the flag."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise GuideoptError(f"--host: {host!r} is not an address of this machine ({exc}; e.g. 127.0.0.1 or 0.0.0.0)") from None
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise GuideoptError(
                    f"--port: {port} is already in use on {host} (choose another --port, or stop the other server)"
                ) from None
            raise GuideoptError(f"--host: cannot listen on {host}:{port} ({exc.strerror or exc}; e.g. --host 127.0.0.1)") from None
