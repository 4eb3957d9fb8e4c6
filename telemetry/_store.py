"""The embedded trace store: spans and logs written to SQLite off the request path.

:class:`TraceStore` accepts records into a bounded in-memory queue (``add_spans``
and ``add_logs`` never block on I/O and never raise) and one background thread
per store writes them in batches, each batch in one transaction, each table's
rows in one multi-row statement (see ``_store_rows``). ``add_finished`` queues
spans as the tracing pipeline hands them over: the writer converts (and redacts)
them in its batch, off the application's threads. A writer that falls more than
:data:`BEHIND_BATCHES` batches behind takes up to :data:`MAX_BATCHES_AT_ONCE` in
one transaction, so that it catches up. Several processes may write the same
file at once: each has its own connection, SQLite's WAL mode lets readers run
alongside, and writers take turns (``BEGIN IMMEDIATE`` with a busy timeout).

Telemetry must not hurt the application, so every failure costs records, not
requests: a full queue, a full disk, a locked database or any other write
error drops the batch, counts it (:attr:`TraceStore.dropped`,
:attr:`TraceStore.write_errors`, and the ``store_counters`` table for other
readers) and logs one warning per ``warn_interval`` on the stdlib logger
``"telemetry"``.

One more thread per store checkpoints the WAL (copies it into the database
file) a few times a second while writes happen, so that the writer does not
stall on a checkpoint's writes and fsync every few commits.

The store is bounded by age (``max_age_s``) and size (``max_bytes`` of pages in
use): :meth:`TraceStore.prune` deletes whole traces oldest first, with their
logs, circuit events and faults, down to 80 % of ``max_bytes``, and gives the
freed pages back to the file system. The writer runs it every
``prune_interval`` seconds, and sooner when a size check (every two seconds
while writing) finds the store too big. The WAL file comes on top of
``max_bytes`` (it stays under about 16 MiB).
"""

from __future__ import annotations

import atexit
import json
import logging
import math
import os
import secrets
import sqlite3
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Final

from ._records import LogRecord, SpanRecord
from ._store_rows import ADD_COUNTER, LogRow, SpanLike, build_rows, write_rows
from ._store_schema import connect, prepare, setting_or_create, used_bytes

_log = logging.getLogger("telemetry")

#: Traces deleted per pruning transaction: other writers get their turn in between.
PRUNE_CHUNK: Final = 2000
#: Pruning for size stops at this fraction of ``max_bytes``, so it does not run on every write.
PRUNE_TARGET: Final = 0.8
#: Seconds between the writer's checks of the size (cheap: three pragmas).
SIZE_CHECK_INTERVAL: Final = 2.0
#: A writer more than this many batches behind takes up to MAX_BATCHES_AT_ONCE in one transaction.
BEHIND_BATCHES: Final = 4
MAX_BATCHES_AT_ONCE: Final = 8
#: Seconds between WAL checkpoints while writes happen.
CHECKPOINT_INTERVAL: Final = 0.25

#: Turns a finished span (as the tracing pipeline hands it over) into a record, on the writer.
Convert = Callable[[Any], SpanLike]
_Batch = tuple[list[SpanLike], list[LogRecord | LogRow], list[tuple[Convert, Any]]]


def _open_connection(path: Path, busy_timeout: float) -> sqlite3.Connection:
    """The writer's connection (tests replace this to inject disk and lock failures)."""
    return connect(path, busy_timeout)


class _Warner:
    """At most one warning per ``interval`` seconds."""

    def __init__(self, interval: float) -> None:
        self._interval = interval
        self._next = -math.inf
        self._lock = threading.Lock()

    def warn(self, message: str, *args: object) -> None:
        now = time.monotonic()
        with self._lock:
            if now < self._next:
                return
            self._next = now + self._interval
        try:
            _log.warning(message, *args)
        except Exception:
            pass


class TraceStore:
    """A SQLite trace store at ``path``, written by a background thread.

    ``max_bytes`` and ``max_age_s`` bound what is kept; ``batch_size`` records
    make one transaction, written at the latest ``flush_interval`` seconds after
    they arrive; at most ``queue_size`` records wait in memory, more are dropped.
    """

    def __init__(self, path: str | os.PathLike[str], *, max_bytes: int = 256 * 2**20,
                 max_age_s: float = 7 * 86400, batch_size: int = 512, flush_interval: float = 0.5,
                 queue_size: int = 50_000, prune_interval: float = 60.0,
                 busy_timeout: float = 5.0, warn_interval: float = 60.0) -> None:
        if batch_size < 1 or queue_size < 1 or max_bytes < 1 or max_age_s <= 0:
            raise ValueError("batch_size, queue_size, max_bytes and max_age_s must be positive")
        self.path = Path(path)
        self.max_bytes, self.max_age_s = max_bytes, max_age_s
        self._batch_size, self._queue_size = batch_size, queue_size
        self._flush_interval, self._prune_interval = flush_interval, prune_interval
        self._busy_timeout = busy_timeout
        self._warn_interval = warn_interval
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._conn: sqlite3.Connection | None = self._connect()
        self._user_hash_key: str | None = None
        self._dropped = self._write_errors = 0
        self._unsaved = {"dropped": 0, "write_errors": 0}
        self._reset_queue()
        _LIVE.add(self)

    def _connect(self) -> sqlite3.Connection:
        conn = _open_connection(self.path, self._busy_timeout)
        try:
            prepare(conn)
        except BaseException:
            conn.close()
            raise
        return conn

    @property
    def user_hash_key(self) -> str:
        """The store's random HMAC key for pseudonymous user ids (see ``telemetry._pseudo``),
        the same for every process writing this file; created on first use.

        Read over a connection of its own (the writer thread owns ``_conn``); raises
        :class:`sqlite3.Error` when the file cannot give one.
        """
        if self._user_hash_key is None:
            conn = _open_connection(self.path, self._busy_timeout)
            try:
                self._user_hash_key = setting_or_create(conn, "user_hash_key",
                                                        secrets.token_hex(32))
            finally:
                conn.close()
        return self._user_hash_key

    def _reset_queue(self) -> None:
        self._warner = _Warner(self._warn_interval)
        lock = self._lock = threading.Lock()
        self._wake = threading.Condition(lock)      # the writer waits here
        self._done = threading.Condition(lock)      # flush() waits here
        # (True, span records) | (False, log records) | (convert, finished spans to convert)
        self._items: deque[tuple[bool | Convert, Sequence[Any]]] = deque()
        self._pending = self._accepted = self._processed = 0
        self._flush_wanted = self._closing = False
        self._next_prune = time.monotonic() + self._prune_interval
        self._next_size_check = 0.0
        self._written = threading.Event()           # the checkpointer waits here
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"telemetry-store:{self.path.name}",
                                        daemon=True)
        self._checkpointer = threading.Thread(target=self._checkpoint_loop, daemon=True,
                                              name=f"telemetry-checkpoint:{self.path.name}")
        self._thread.start()
        self._checkpointer.start()

    # -- the caller's side ----------------------------------------------------------------

    @property
    def dropped(self) -> int:
        """Records lost: queue full, store closed, or a failed write (disk full, locked...)."""
        return self._dropped

    @property
    def write_errors(self) -> int:
        """Batches whose write failed."""
        return self._write_errors

    def add_spans(self, spans: Sequence[SpanRecord]) -> None:
        """Queue finished spans for writing; never blocks on I/O, never raises."""
        self._enqueue(True, spans)

    def add_logs(self, logs: Sequence[LogRecord]) -> None:
        """Queue log records for writing; never blocks on I/O, never raises."""
        self._enqueue(False, logs)

    def add_log_rows(self, logs: Sequence[LogRow]) -> None:
        """:meth:`add_logs` for the package's own lighter records (same fields)."""
        self._enqueue(False, logs)

    def add_finished(self, spans: Sequence[Any], convert: Convert) -> None:
        """Queue finished spans as the tracing pipeline hands them over; ``convert`` makes each a
        record on the writer's thread, in its batch (a span it fails on is dropped, counted)."""
        self._enqueue(convert, spans)

    def _enqueue(self, kind: bool | Convert, records: Sequence[Any]) -> None:
        try:
            count = len(records)
            if not count:
                return
            with self._lock:
                pending = self._pending
                lost = count if self._closing else max(0, pending + count - self._queue_size)
                if lost < count:
                    self._items.append((kind, records if not lost else records[: count - lost]))
                    self._accepted += count - lost
                    self._pending = pending + count - lost
                    if pending < self._batch_size <= self._pending:  # a batch is ready
                        self._wake.notify()
                if lost:
                    self._count_drop(lost)
        except Exception:
            return
        if lost:
            self._warner.warn("telemetry store %s: queue full or store closed, %d record(s) "
                              "dropped (%d so far)", self.path, lost, self._dropped)

    def _count_drop(self, lost: int, *, error: bool = False) -> None:
        """Under the lock: count ``lost`` records (and a failed write when ``error``)."""
        self._dropped += lost
        self._unsaved["dropped"] += lost
        if error:
            self._write_errors += 1
            self._unsaved["write_errors"] += 1

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until every record queued so far is written (or dropped); False on timeout."""
        deadline = time.monotonic() + timeout
        with self._done:
            target = self._accepted
            if self._processed < target:
                self._flush_wanted = True
                self._wake.notify()
            while self._processed < target:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not self._thread.is_alive():
                    return False
                self._done.wait(remaining)
        return True

    def close(self, timeout: float = 5.0) -> None:
        """Write what is queued (waiting up to ``timeout`` s), stop the writer, close the file."""
        with self._wake:
            if self._closing:
                return
            self._closing = True
            self._wake.notify()
        self._thread.join(timeout)
        self._stopped.set()
        self._written.set()
        self._checkpointer.join(timeout)
        _LIVE.discard(self)
        if not self._thread.is_alive() and self._conn is not None:
            self._conn.close()
            self._conn = None

    def prune(self) -> int:
        """Delete expired traces, then oldest traces until under ``max_bytes``; records deleted."""
        try:
            conn = _open_connection(self.path, self._busy_timeout)
        except sqlite3.Error:
            return 0
        try:
            return self._prune_with(conn)
        finally:
            conn.close()

    def __enter__(self) -> TraceStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"TraceStore({str(self.path)!r}, dropped={self._dropped})"

    # -- the writer thread ----------------------------------------------------------------

    def _run(self) -> None:
        while (batch := self._next_batch()) is not None:
            spans, logs, raw = batch
            count = len(spans) + len(logs) + len(raw)
            if raw:
                spans += self._converted(raw)
            if spans or logs:
                self._write(spans, logs)
            try:
                self._maybe_prune()   # before flush() returns: a flushed store is within bounds
            except Exception:
                pass                  # _prune_with warns; the writer must live on regardless
            if count:
                with self._done:
                    self._processed += count
                    self._done.notify_all()

    def _converted(self, raw: list[tuple[Convert, Any]]) -> list[SpanLike]:
        """The finished spans as records; one that cannot be converted is dropped, counted."""
        out: list[SpanLike] = []
        failed = 0
        for convert, span in raw:
            try:
                out.append(convert(span))
            except Exception:
                failed += 1
        if failed:
            with self._wake:
                self._count_drop(failed)
            self._warner.warn("telemetry store %s: %d span(s) could not be stored (%d dropped so "
                              "far)", self.path, failed, self._dropped)
        return out

    def _maybe_prune(self) -> None:
        """Prune every ``prune_interval``; between times, check the size every few seconds."""
        now = time.monotonic()
        if now < self._next_prune and now < self._next_size_check:
            return
        by_time = now >= self._next_prune
        self._next_size_check = now + SIZE_CHECK_INTERVAL
        if by_time:     # moved on first, whatever happens next: _next_batch wakes up for it
            self._next_prune = now + self._prune_interval
        conn = self._conn
        if conn is None:
            return
        try:
            due = by_time or used_bytes(conn) > self.max_bytes
        except sqlite3.Error:
            return
        if due:
            self._next_prune = now + self._prune_interval
            self._prune_with(conn)

    def _next_batch(self) -> _Batch | None:
        """Wait for a full batch, a flush, the flush interval, or pruning time; None to stop."""
        with self._wake:
            deadline = time.monotonic() + self._flush_interval
            while self._pending < self._batch_size and not (
                    self._pending and (self._flush_wanted or self._closing)):
                if self._closing:
                    return None
                now = time.monotonic()
                wake_at = min(deadline if self._pending else math.inf, self._next_prune)
                if now >= wake_at:
                    break
                if not self._pending:
                    deadline = now + self._flush_interval
                self._wake.wait(min(wake_at - now, self._flush_interval))
            return self._take()

    def _take(self) -> _Batch:
        """Under the lock: up to ``batch_size`` records off the queue, or up to
        :data:`MAX_BATCHES_AT_ONCE` batches' worth when more than :data:`BEHIND_BATCHES` wait
        (a writer that fell behind catches up in fewer, larger transactions: it waits for
        the GIL once per statement)."""
        spans: list[SpanLike] = []
        logs: list[LogRecord | LogRow] = []
        raw: list[tuple[Convert, Any]] = []
        behind = self._pending > self._batch_size * BEHIND_BATCHES
        room = limit = self._batch_size * MAX_BATCHES_AT_ONCE if behind else self._batch_size
        while self._items and room:
            kind, records = self._items.popleft()
            if len(records) > room:
                self._items.appendleft((kind, records[room:]))
                records = records[:room]
            if kind is True:
                spans.extend(records)
            elif kind is False:
                logs.extend(records)
            else:
                raw.extend([(kind, span) for span in records])
            room -= len(records)
        self._pending -= limit - room
        if not self._pending:
            self._flush_wanted = False
        return spans, logs, raw

    def _write(self, spans: list[SpanLike], logs: list[LogRecord | LogRow]) -> None:
        try:
            if self._conn is None:
                self._conn = self._connect()
            self._write_or_split(self._conn, spans, logs)
        except Exception as exc:
            lost = len(spans) + len(logs)
            with self._wake:
                self._count_drop(lost, error=True)
            self._warner.warn("telemetry store %s: write failed (%s: %s), %d record(s) dropped "
                              "(%d so far)", self.path, type(exc).__name__, exc, lost,
                              self._dropped)

    def _write_or_split(self, conn: sqlite3.Connection, spans: list[SpanLike],
                        logs: list[LogRecord | LogRow]) -> None:
        """Write a batch; when a record's data is at fault (not the disk or a lock), write the
        halves separately so that only the bad record is dropped."""
        with self._wake:
            counters = dict(self._unsaved)
        try:
            write_rows(conn, build_rows(spans, logs), counters)
        except sqlite3.OperationalError:
            raise
        except Exception:
            if len(spans) + len(logs) <= 1:
                raise
            half_s, half_l = len(spans) // 2, len(logs) // 2
            for part_s, part_l in ((spans[:half_s], logs[:half_l]), (spans[half_s:], logs[half_l:])):
                self._write_part(conn, part_s, part_l)
            return
        self._written.set()
        with self._wake:
            for name, value in counters.items():
                self._unsaved[name] -= value

    def _write_part(self, conn: sqlite3.Connection, spans: list[SpanLike],
                    logs: list[LogRecord | LogRow]) -> None:
        if not spans and not logs:
            return
        try:
            self._write_or_split(conn, spans, logs)
        except sqlite3.OperationalError:
            raise
        except Exception as exc:
            with self._wake:
                self._count_drop(len(spans) + len(logs), error=True)
            self._warner.warn("telemetry store %s: a record could not be stored (%s: %s)",
                              self.path, type(exc).__name__, exc)

    def _checkpoint_loop(self) -> None:
        """Copy the WAL into the database on this thread, at most every CHECKPOINT_INTERVAL.

        A checkpoint's writes and fsync would otherwise stall the writer in every
        few commits; a PASSIVE checkpoint runs alongside writers and readers.
        """
        conn: sqlite3.Connection | None = None
        try:
            while True:
                self._written.wait()
                if self._stopped.wait(CHECKPOINT_INTERVAL):
                    return
                self._written.clear()
                try:
                    if conn is None:
                        conn = _open_connection(self.path, self._busy_timeout)
                    conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                except sqlite3.Error:
                    pass  # the writers' own autocheckpoint (WAL_LIMIT_PAGES) is the backstop
        finally:
            if conn is not None:
                conn.close()

    # -- pruning --------------------------------------------------------------------------

    def _prune_with(self, conn: sqlite3.Connection) -> int:
        try:
            deleted = _delete_before(conn, time.time_ns() - int(self.max_age_s * 1e9))
            for _ in range(16):
                used = used_bytes(conn)
                if used <= self.max_bytes:
                    break
                cutoff = _size_cutoff(conn, (used - PRUNE_TARGET * self.max_bytes) / used)
                removed = 0 if cutoff is None else _delete_before(conn, cutoff)
                if not removed:
                    break
                deleted += removed
            if deleted:
                _refresh_groups(conn)
                # execute() would run one step of this pragma, freeing one page;
                # executescript() runs it to the end (no transaction is open here).
                conn.executescript("PRAGMA incremental_vacuum;")
            return deleted
        except Exception as exc:
            try:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
            except sqlite3.Error:
                pass
            self._warner.warn("telemetry store %s: pruning failed (%s: %s)", self.path,
                              type(exc).__name__, exc)
            return 0


def _size_cutoff(conn: sqlite3.Connection, fraction: float) -> int | None:
    """A time before which about ``fraction`` of the traces (or, without traces, logs) started."""
    for table, column in (("traces", "start_ns"), ("logs", "time_ns")):
        total = int(conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0])
        if total:
            skip = min(total - 1, max(0, math.ceil(total * min(fraction, 1.0)) - 1))
            row = conn.execute(f"SELECT {column} FROM {table} ORDER BY {column} LIMIT 1 OFFSET ?",
                               (skip,)).fetchone()
            return int(row[0]) + 1
    return None


#: Row ids of the spans of the traces in a JSON array parameter.
_SPANS_OF: Final = ("SELECT s.value FROM traces t, json_each('[' || t.span_refs || ']') s "
                    "WHERE t.trace_id IN (SELECT value FROM json_each(?))")


def _delete_before(conn: sqlite3.Connection, cutoff: int) -> int:
    """Delete traces that started before ``cutoff`` (with spans, events, errors), then the
    logs, circuit events and faults before it; a transaction per chunk. Returns spans + logs."""
    deleted = 0
    while True:
        # The last, empty round's transaction also covers the deletes after the loop.
        conn.execute("BEGIN IMMEDIATE")
        ids = [r[0] for r in conn.execute(
            "SELECT trace_id FROM traces WHERE start_ns < ? ORDER BY start_ns LIMIT ?",
            (cutoff, PRUNE_CHUNK))]
        if not ids:
            break
        chosen = (json.dumps(ids),)
        events = conn.execute(f"DELETE FROM span_events WHERE span_ref IN ({_SPANS_OF})",
                              chosen).rowcount
        spans = conn.execute(f"DELETE FROM spans WHERE id IN ({_SPANS_OF})", chosen).rowcount
        conn.execute("DELETE FROM error_traces WHERE trace_id IN (SELECT value FROM json_each(?))",
                     chosen)
        traces = conn.execute("DELETE FROM traces WHERE trace_id IN "
                              "(SELECT value FROM json_each(?))", chosen).rowcount
        conn.executemany(ADD_COUNTER, [("rows.spans", -spans), ("rows.span_events", -events),
                                       ("rows.traces", -traces)])
        conn.execute("COMMIT")
        deleted += spans
    for table in ("logs", "circuit_events", "faults"):
        removed = conn.execute(f"DELETE FROM {table} WHERE time_ns < ?", (cutoff,)).rowcount
        conn.execute(ADD_COUNTER, (f"rows.{table}", -removed))
        deleted += removed if table == "logs" else 0
    conn.execute("COMMIT")
    return deleted


def _refresh_groups(conn: sqlite3.Connection) -> None:
    """Recompute error groups' aggregates from what is left after pruning."""
    conn.execute("BEGIN IMMEDIATE")
    conn.execute("DELETE FROM error_groups WHERE NOT EXISTS "
                 "(SELECT 1 FROM error_traces e WHERE e.fingerprint = error_groups.fingerprint)")
    conn.execute("""UPDATE error_groups SET (count, injected_count, trace_count, first_seen_ns) =
        (SELECT sum(count), sum(injected), count(*), min(first_ns) FROM error_traces e
         WHERE e.fingerprint = error_groups.fingerprint)""")
    conn.execute("COMMIT")


# -- process lifecycle -----------------------------------------------------------------------

_LIVE: weakref.WeakSet[TraceStore] = weakref.WeakSet()
#: Connections inherited across fork(): never used again, never closed (closing them in
#: the child could disturb the parent's locks).
_INHERITED: list[sqlite3.Connection] = []


def _after_fork_in_child() -> None:
    """The child starts its own writer (and connection, on first write) with empty counts."""
    for store in list(_LIVE):
        if store._conn is not None:
            _INHERITED.append(store._conn)
        store._conn = None
        store._dropped = store._write_errors = 0
        store._unsaved = {"dropped": 0, "write_errors": 0}
        store._reset_queue()


def _close_all() -> None:
    for store in list(_LIVE):
        store.close(timeout=2.0)


os.register_at_fork(after_in_child=_after_fork_in_child)
atexit.register(_close_all)
