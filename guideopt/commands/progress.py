"""Progress of long commands, on stderr only (a ``--json`` answer on stdout stays clean).

Nothing is shown for a short run. On a terminal a live line appears once the work has run
``PROGRESS_AFTER_S`` and is erased when it ends; elsewhere (a log file, a pipe) a plain line
is written every ``PROGRESS_LINE_EVERY_S`` of a run that long. A background thread draws, so
the work only stores its count (``progress(done)``) and work without a count (a plan's
search) still shows that it is running.
"""

from __future__ import annotations

import sys
import threading
import time
from types import TracebackType
from typing import TextIO

PROGRESS_AFTER_S = 2.0  # a terminal shows progress once a run is this long (shorter ones end before it would be read)
PROGRESS_LINE_EVERY_S = 30.0  # a log gets one line per this much of a run (and none for a shorter run)
DRAW_EVERY_S = 0.25  # how often the terminal line is redrawn


class Progress:
    """``with Progress("simulate", total=2000, unit="requests") as progress: work(progress)``."""

    def __init__(self, what: str, total: int | None = None, unit: str = "", stream: TextIO | None = None) -> None:
        self.what, self.total, self.unit = what, total, unit
        self.done = 0
        self.stream = stream or sys.stderr
        self.terminal = self.stream.isatty()
        self.start = time.perf_counter()
        self.drawn = 0  # characters of the terminal line now shown
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="progress", daemon=True)

    def __call__(self, done: int) -> None:
        self.done = done

    def __enter__(self) -> Progress:
        self.start = time.perf_counter()
        self.thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop.set()
        self.thread.join()
        if self.drawn:
            self._write("\r" + " " * self.drawn + "\r")

    def line(self) -> str:
        elapsed = f"{time.perf_counter() - self.start:.0f} s"
        if self.total is None:
            return f"{self.what}: running, {elapsed}"
        share = f" ({self.done / self.total:.0%})" if self.total else ""
        return f"{self.what}: {self.done:,} of {self.total:,} {self.unit}{share}, {elapsed}".replace("  ", " ")

    def _run(self) -> None:
        first = PROGRESS_AFTER_S if self.terminal else PROGRESS_LINE_EVERY_S
        if self.stop.wait(first):
            return
        while True:
            if self.terminal:
                text = self.line()
                self._write("\r" + text.ljust(self.drawn))
                self.drawn = max(self.drawn, len(text))
            else:
                self._write(self.line() + "\n")
            if self.stop.wait(DRAW_EVERY_S if self.terminal else PROGRESS_LINE_EVERY_S):
                return

    def _write(self, text: str) -> None:
        try:
            self.stream.write(text)
            self.stream.flush()
        except (OSError, ValueError):  # a closed or broken stderr: progress is not worth failing for
            self.stop.set()
