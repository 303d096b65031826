"""Run one web request's planning in a child process that can be stopped.

A CP-SAT solve in a thread cannot be interrupted, so a client that leaves (or a server
told to stop) would keep a core busy until the solve ends. Here each plan, launch or
Pareto request runs in its own child process; the server polls, and kills the child as
soon as the client disconnects, the request passes ``WEB_REQUEST_TIMEOUT_S``, or the
server shuts down (the awaiting task is cancelled). Results and expected errors come
back through a pipe as plain tuples; an unexpected error comes back as its traceback
text, which goes to the server's log only.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import time
import traceback
from collections.abc import Awaitable, Callable
from multiprocessing.connection import Connection
from typing import Any

from guideopt.model.limits import WEB_REQUEST_TIMEOUT_S

log = logging.getLogger("guideopt.web")

# How often the server checks on a running child (the cancellation latency).
POLL_INTERVAL_S = 0.05
# Seconds a killed child has to go before the server stops waiting for it.
KILL_WAIT_S = 2.0


class WorkerError(Exception):
    """The child failed unexpectedly (its traceback is logged, never sent to the client)."""


class WorkerTimeout(Exception):
    """The request ran past WEB_REQUEST_TIMEOUT_S and was stopped."""


class ClientGone(Exception):
    """The client disconnected; the work was stopped."""


def _context() -> Any:
    methods = multiprocessing.get_all_start_methods()
    return multiprocessing.get_context("fork" if "fork" in methods else "spawn")


def _child(conn: Connection, func: Callable[..., Any], args: tuple[Any, ...], expected: tuple[type[Exception], ...]) -> None:
    try:
        conn.send(("ok", func(*args)))
    except expected as exc:
        conn.send(("expected", type(exc).__name__, exc.args, dict(vars(exc))))
    except BaseException:
        conn.send(("error", traceback.format_exc()))
    finally:
        conn.close()


async def run_stoppable(
    func: Callable[..., Any],
    args: tuple[Any, ...],
    is_disconnected: Callable[[], Awaitable[bool]],
    expected: tuple[type[Exception], ...] = (),
    timeout_s: float = WEB_REQUEST_TIMEOUT_S,
) -> Any:
    """``func(*args)`` in a child process, stopped when the client leaves or time runs out.

    An exception of an ``expected`` type is raised again here (same type, same
    attributes); any other becomes WorkerError with the child's traceback logged.
    """
    reader, writer = _context().Pipe(duplex=False)
    proc = _context().Process(target=_child, args=(writer, func, args, expected), daemon=True)
    proc.start()
    writer.close()
    deadline = time.monotonic() + timeout_s
    try:
        while not reader.poll():
            if not proc.is_alive() and not reader.poll():
                raise WorkerError(f"the planning process ended without an answer (exit code {proc.exitcode})")
            if await is_disconnected():
                raise ClientGone()
            if time.monotonic() > deadline:
                raise WorkerTimeout(f"the request ran past {timeout_s:g} s and was stopped")
            await asyncio.sleep(POLL_INTERVAL_S)
        message = reader.recv()
    except EOFError:
        raise WorkerError("the planning process ended without an answer") from None
    finally:
        reader.close()
        if proc.is_alive():
            proc.kill()
        proc.join(KILL_WAIT_S)
    return _unpack(message, expected)


def _unpack(message: tuple[Any, ...], expected: tuple[type[Exception], ...]) -> Any:
    kind = message[0]
    if kind == "ok":
        return message[1]
    if kind == "expected":
        _, name, args, attrs = message
        cls = next(c for c in expected if c.__name__ == name)
        exc = cls.__new__(cls)
        exc.args = args
        exc.__dict__.update(attrs)
        raise exc
    log.error("unexpected error in a planning process:\n%s", message[1])
    raise WorkerError("the planning process failed")
