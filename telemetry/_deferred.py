"""What a finished request leaves to do, done in batches: its log line, its counts, its span's export.

A request that did not fail has nothing left to decide once its response is
out: its log line, its metric counts and its span's hand-over to the exporters
can happen a little later, together with those of other requests. Done in
batches they cost a fraction of what they cost one request at a time (the same
code run back to back stays in the CPU's caches; many lines make one ``write``
and one ``flush``), and the request does not wait for them.

:class:`Deferred` keeps the finished requests (anything with a ``complete()``)
and completes them, in the order they finished:

* when :data:`BATCH` are waiting (on the thread of the request that made it
  :data:`BATCH`);
* before any other log line is written, so that lines keep their order;
* before metrics are read (``metrics_snapshot()``, exporters' collections);
* at ``telemetry.flush()``, ``reset()`` and exit;
* at the latest :data:`INTERVAL` seconds after the first of them finished (a
  flusher thread, started on first use);
* at once while ``telemetry.testing.capture()`` listens (:attr:`Deferred.immediate`).

The cost of the trade: a request's log line may reach the stream, and its span
the exporters, up to :data:`INTERVAL` late, and a process killed outright
(``SIGKILL``, ``os._exit``) loses those of its last interval (as the trace store
loses its last batch). Failed requests are never deferred: they are recorded,
logged and sent to Sentry before the request ends.
"""

from __future__ import annotations

import os
import threading
import weakref
from collections import deque
from collections.abc import Callable
from typing import Final, Protocol

from ._metrics import drops

#: Finished requests completed together once this many wait.
BATCH: Final = 64
#: Longest time (seconds) a finished request waits to be completed.
INTERVAL: Final = 0.05


class Completion(Protocol):
    """A finished request's remaining work.

    Its class may also offer ``complete_many(items)`` (a staticmethod or classmethod):
    then a run of consecutive items of that class is completed in one call, which
    counts its own failures (what one item costs, one item at a time, is mostly the
    calls around it).
    """

    def complete(self) -> None: ...


class Deferred:
    """Finished requests waiting to be completed, in batches, in order; never raises."""

    def __init__(self, *, batch: int = BATCH, interval: float = INTERVAL,
                 after: Callable[[], object] = lambda: None) -> None:
        self.batch = batch
        self.interval = interval
        #: Called after each batch (writes the batch's log lines out).
        self.after = after
        #: While above zero every request is completed as it finishes (``testing.capture()``).
        self.immediate = 0
        self._start()
        _LIVE.add(self)

    def _start(self) -> None:
        self._pending: deque[Completion] = deque()  # appended and popped without a lock
        self._lock = threading.Lock()            # guards starting the flusher
        self._draining = threading.RLock()       # one batch at a time, in order
        self._waiting = threading.Event()        # set when a request enters an empty queue
        self._closed = threading.Event()
        self._thread: threading.Thread | None = None

    def add(self, item: Completion) -> None:
        """``item`` finished: complete it with its batch (now, if it fills one)."""
        pending = self._pending
        pending.append(item)
        if len(pending) >= self.batch or self.immediate:
            self.drain()
        elif not self._waiting.is_set():
            self._wake()

    def drain(self) -> None:
        """Complete every waiting request now, in order; never raises."""
        pending = self._pending
        if not pending:
            return
        with self._draining:
            self._waiting.clear()  # what arrives from now on wakes the flusher again
            batch: list[Completion] = []
            for _ in range(len(pending)):  # what is there now: others' later requests are theirs
                try:
                    batch.append(pending.popleft())
                except IndexError:  # another thread took the last one
                    break
            _complete(batch)
            try:
                self.after()
            except Exception as exc:
                drops.report("requests", 0, exc)

    def close(self, timeout: float = 1.0) -> None:
        """Complete what waits and stop the flusher thread."""
        self._closed.set()
        self._waiting.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
        self.drain()
        _LIVE.discard(self)

    # -- the flusher thread ----------------------------------------------------------------

    def _wake(self) -> None:
        """Make sure the flusher completes this request within the interval."""
        thread = self._thread
        if thread is None or not thread.is_alive():
            with self._lock:
                if self._closed.is_set() or (self._thread is not None and self._thread.is_alive()):
                    return
                self._thread = threading.Thread(target=self._run, daemon=True,
                                                name="telemetry-deferred")
                self._thread.start()
        self._waiting.set()

    def _run(self) -> None:
        while not self._closed.is_set():
            self._waiting.wait()
            if self._closed.wait(self.interval):
                return
            self.drain()


def _complete(batch: list[Completion]) -> None:
    """Each item completed, in order; runs of one class with ``complete_many`` in one call."""
    start, size = 0, len(batch)
    while start < size:
        kind = type(batch[start])
        end = start + 1
        while end < size and type(batch[end]) is kind:
            end += 1
        many: Callable[[list[Completion]], object] | None = getattr(kind, "complete_many", None)
        if many is not None:
            try:
                many(batch[start:end])
            except Exception as exc:
                drops.report("requests", end - start, exc)
        else:
            for item in batch[start:end]:
                try:
                    item.complete()
                except Exception as exc:
                    drops.report("requests", 1, exc)
        start = end


_LIVE: weakref.WeakSet[Deferred] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    """A child starts with fresh locks and no flusher; the parent's waiting requests are the
    parent's to complete."""
    for deferred in list(_LIVE):
        deferred._start()


os.register_at_fork(after_in_child=_after_fork_in_child)
