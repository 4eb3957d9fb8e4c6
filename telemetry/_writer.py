"""The log writer: lines out to the stream, in order, never raising.

Lines from the structlog chain (:meth:`SafeWriter.msg`) are written and flushed
at once, after the lines of the requests that finished before them (``before``
completes those). The request lines of ``telemetry.flask`` come in batches (see
:mod:`telemetry._deferred`): :meth:`SafeWriter.batched` keeps each, and
:meth:`SafeWriter.flush` writes them in one ``write`` and one ``flush`` (a flush
per line is a system call per request, as much as the rest of the line costs).
A chain line writes any waiting ones first, so the stream keeps the order in
which lines were made. A stream that raises costs the lines, counted under
``log_output`` in ``telemetry.dropped()``; the caller never sees it.
"""

from __future__ import annotations

import os
import threading
import weakref
from collections.abc import Callable
from typing import IO

from ._metrics import drops


class SafeWriter:
    """structlog's final logger (one line per call), and the request lines' batch writer."""

    def __init__(self, stream: IO[str]) -> None:
        self.stream = stream
        #: Called before a chain line is written (completes the requests that finished before it).
        self.before: Callable[[], object] | None = None
        self._pending: list[str] = []
        self._lock = threading.Lock()
        _LIVE.add(self)

    def msg(self, message: str) -> None:
        """Write one line now (after any waiting request lines) and flush."""
        try:
            if self.before is not None:
                self.before()
            with self._lock:
                if self._pending:
                    self._write_pending()
                self.stream.write(message + "\n")
                self.stream.flush()
        except Exception as exc:
            drops.report("log_output", 1, exc)

    debug = info = warning = warn = error = critical = exception = fatal = log = msg

    def batched(self, line: str) -> None:
        """Keep one request line (its newline included) for the next :meth:`flush`."""
        with self._lock:
            self._pending.append(line)

    def batched_many(self, lines: list[str]) -> None:
        """Keep a batch's request lines (each with its newline) for the next :meth:`flush`."""
        if lines:
            with self._lock:
                self._pending.extend(lines)

    def flush(self) -> None:
        """Write the waiting lines (one write) and flush the stream; never raises."""
        if not self._pending:
            return
        try:
            with self._lock:
                self._write_pending()
        except Exception as exc:
            drops.report("log_output", 0, exc)

    def _write_pending(self) -> None:
        """Under the lock: the waiting lines in one write, then a flush; a failure costs them."""
        lines, self._pending = self._pending, []
        if not lines:
            return
        try:
            self.stream.write("".join(lines))
            self.stream.flush()
        except Exception as exc:
            drops.report("log_output", len(lines), exc)


_LIVE: weakref.WeakSet[SafeWriter] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    """A child gets a fresh lock (another thread may have held the parent's at the fork)."""
    for writer in list(_LIVE):
        writer._lock = threading.Lock()


os.register_at_fork(after_in_child=_after_fork_in_child)
