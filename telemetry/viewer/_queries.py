"""Queries the viewer needs that :mod:`telemetry.query` does not offer (yet).

:class:`ErrorFeed` reads error *occurrences*, one per (fingerprint, trace): in
the order they were first seen (``shockproof-traces tail``), and as histograms
of many error groups at once (the errors page's sparklines: one statement
instead of one :meth:`~telemetry.query.Query.group_trend` per group). It reads
the store read-only, like :class:`~telemetry.query.Query`, and a store that
does not exist yet reads as empty.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from telemetry._store_schema import SCHEMA_VERSION, connect_readonly
from telemetry.query import Trend

_COLUMNS: Final = """e.fingerprint, e.trace_id, e.first_ns, e.last_ns, e.count, e.injected,
    coalesce(e.route, (SELECT t.route FROM traces t WHERE t.trace_id = e.trace_id)),
    g.kind, g.error_type, g.message"""


@dataclass(frozen=True, slots=True)
class Occurrence:
    """An error group's occurrences within one trace (request)."""

    fingerprint: str
    trace_id: str
    first_ns: int
    last_ns: int
    count: int
    injected: int
    route: str | None
    kind: str | None
    error_type: str | None
    message: str | None


class ErrorFeed:
    """Error occurrences of the store at ``path``, by when they were first seen."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._conn: sqlite3.Connection | None = None
        self._lock = threading.Lock()

    def since(self, since_ns: int, limit: int = 500) -> tuple[Occurrence, ...]:
        """Occurrences first seen at or after ``since_ns``, oldest first."""
        return self._rows(f"SELECT {_COLUMNS} FROM error_traces e JOIN error_groups g "
                          "ON g.fingerprint = e.fingerprint WHERE e.first_ns >= ? "
                          "ORDER BY e.first_ns, e.trace_id LIMIT ?", (since_ns, max(0, limit)))

    def latest(self, count: int) -> tuple[Occurrence, ...]:
        """The ``count`` most recent occurrences, oldest first."""
        rows = self._rows(f"SELECT {_COLUMNS} FROM error_traces e JOIN error_groups g "
                          "ON g.fingerprint = e.fingerprint "
                          "ORDER BY e.first_ns DESC, e.trace_id DESC LIMIT ?", (max(0, count),))
        return tuple(reversed(rows))

    def trends(self, fingerprints: Sequence[str], buckets: int, since_ns: int,
               until_ns: int, route: str | None = None) -> dict[str, Trend]:
        """Occurrences per bucket of ``[since_ns, until_ns)`` for each fingerprint, like
        :meth:`telemetry.query.Query.group_trend`, in one statement; with ``route``, only
        that route's occurrences (as the errors page's route filter counts them)."""
        if buckets < 1:
            raise ValueError("buckets must be at least 1")
        width = max(1, -(-(until_ns - since_ns) // buckets))
        counts = {fp: [0] * buckets for fp in fingerprints}
        injected = {fp: [0] * buckets for fp in fingerprints}
        if fingerprints:
            marks = ",".join("?" * len(fingerprints))
            on_route = "" if route is None else " AND route = ?"
            with self._lock:
                conn = self._connection()
                rows = [] if conn is None else conn.execute(
                    f"""SELECT fingerprint, (first_ns - ?) / ?, sum(count), sum(injected)
                    FROM error_traces WHERE fingerprint IN ({marks}) AND first_ns >= ?
                    AND first_ns < ?{on_route} GROUP BY 1, 2""",
                    (since_ns, width, *fingerprints, since_ns, until_ns,
                     *(() if route is None else (route,)))).fetchall()
            for fp, bucket, n, inj in rows:
                if 0 <= bucket < buckets:
                    counts[fp][bucket], injected[fp][bucket] = int(n), int(inj)
        return {fp: Trend(fp, since_ns, until_ns, width, tuple(counts[fp]), tuple(injected[fp]))
                for fp in fingerprints}

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def __enter__(self) -> ErrorFeed:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _rows(self, sql: str, params: tuple[Any, ...]) -> tuple[Occurrence, ...]:
        with self._lock:
            conn = self._connection()
            if conn is None:
                return ()
            return tuple(Occurrence(*row) for row in conn.execute(sql, params).fetchall())

    def _connection(self) -> sqlite3.Connection | None:
        if self._conn is None and self.path.exists():
            conn = connect_readonly(self.path)
            if int(conn.execute("PRAGMA user_version").fetchone()[0]) < SCHEMA_VERSION:
                conn.close()
                return None
            self._conn = conn
        return self._conn
