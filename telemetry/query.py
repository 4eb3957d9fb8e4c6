"""Read the trace store: error groups, traces, one trace, circuits, injected faults.

The trace viewer, the ``shockproof-traces`` CLI and tests read the store
through :class:`Query`, over read-only connections (``file:...?mode=ro``), so
reading never blocks the writers. Every method returns frozen dataclasses. A
store file that does not exist yet, or whose schema nobody has created yet,
reads as empty. Time filters are ``[since_ns, until_ns)`` in nanoseconds since
the epoch; lists are newest first unless said otherwise.

**Impact.** Error groups are ranked by::

    impact = traces * (1 + log2(count)) * 0.5 ** (age_s / IMPACT_HALF_LIFE_S)

where ``traces`` is the number of distinct traces (requests) the error
appeared in, ``count`` its occurrences, and ``age_s`` the seconds from its last
occurrence to the end of the window (``until_ns``, or now). Affected requests
weigh most; a flood of occurrences inside a few requests counts, but
logarithmically; an error that stopped happening halves its weight every
``IMPACT_HALF_LIFE_S`` (six hours). Injected and real occurrences weigh alike:
each group reports the split.

Within a window, an error group's figures cover the (fingerprint, trace) pairs
whose first occurrence falls in the window. ``users`` counts the distinct
pseudonymous user ids (``enduser.pseudo.id`` of the request span) of those
traces; it is computed for the groups returned only, in one statement.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from ._records import AttrValue, LogRecord, SpanEventRecord, SpanRecord
from ._store_schema import KIND_BITS, SCHEMA_VERSION, SLOW_MS, StoreVersionError, connect_readonly

__all__ = [
    "IMPACT_HALF_LIFE_S",
    "KINDS",
    "CircuitEvent",
    "CircuitStatus",
    "ErrorGroup",
    "InjectedFault",
    "LogRecord",
    "Query",
    "SpanEventRecord",
    "SpanRecord",
    "StoreStats",
    "StoreVersionError",
    "TraceDetail",
    "TraceSummary",
    "Trend",
    "impact",
]

IMPACT_HALF_LIFE_S: Final = 6 * 3600.0
#: The error kinds a trace or error group may be filtered by.
KINDS: Final = tuple(KIND_BITS)
_STATUSES: Final = ("error", "ok")
_COUNTED: Final = ("spans", "span_events", "traces", "logs", "circuit_events", "faults")
_NS: Final = 1_000_000_000


def impact(count: int, traces: int, last_seen_ns: int, now_ns: int) -> float:
    """The ranking score of an error group (see the module docstring)."""
    if count <= 0 or traces <= 0:
        return 0.0
    age_s = max(0, now_ns - last_seen_ns) / _NS
    return float(traces * (1 + math.log2(count)) * 0.5 ** (age_s / IMPACT_HALF_LIFE_S))


@dataclass(frozen=True, slots=True)
class ErrorGroup:
    """Errors sharing a fingerprint, with their figures (over a window when one was given)."""

    fingerprint: str
    kind: str | None
    error_type: str | None
    message: str | None
    route: str | None
    first_seen_ns: int
    last_seen_ns: int
    count: int
    trace_count: int
    injected_count: int
    sample_trace_id: str
    impact: float
    #: Distinct pseudonymous users among the group's traces (0 when no user was known).
    users: int = 0

    @property
    def real_count(self) -> int:
        """Occurrences that were not injected on purpose."""
        return self.count - self.injected_count


@dataclass(frozen=True, slots=True)
class Trend:
    """Occurrences of one error group per time bucket, oldest bucket first (for a sparkline)."""

    fingerprint: str
    since_ns: int
    until_ns: int
    bucket_ns: int
    counts: tuple[int, ...]
    injected: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class TraceSummary:
    """One trace at a glance. ``status`` is ``"error"`` when any span's status is error;
    ``kinds`` lists every error kind seen in it, even ones a retry recovered from."""

    trace_id: str
    root_name: str
    service_name: str
    route: str | None
    method: str | None
    status_code: int | None
    start_ns: int
    duration_ns: int
    status: str
    error_kind: str | None
    kinds: tuple[str, ...]
    has_fault: bool
    span_count: int
    error_count: int

    @property
    def duration_ms(self) -> float:
        return self.duration_ns / 1e6


@dataclass(frozen=True, slots=True)
class TraceDetail:
    """One trace: its summary, its spans (by start time, with events) and its logs (by time)."""

    trace_id: str
    summary: TraceSummary | None
    spans: tuple[SpanRecord, ...]
    logs: tuple[LogRecord, ...]


@dataclass(frozen=True, slots=True)
class CircuitEvent:
    """A circuit breaker's state change."""

    circuit: str
    old_state: str | None
    new_state: str
    failure_rate: float | None
    time_ns: int
    trace_id: str | None
    span_id: str | None


@dataclass(frozen=True, slots=True)
class CircuitStatus:
    """A circuit's latest recorded state, since when, and how many changes are stored."""

    circuit: str
    state: str
    since_ns: int
    failure_rate: float | None
    changes: int


@dataclass(frozen=True, slots=True)
class InjectedFault:
    """A fault injected on purpose, where and by which rule."""

    time_ns: int
    trace_id: str | None
    span_id: str | None
    site: str | None
    fault_kind: str | None
    rule_id: str | None
    seed: str | None
    ordinal: int | None
    error_type: str | None
    message: str | None
    attributes: dict[str, Any]


@dataclass(frozen=True, slots=True)
class StoreStats:
    """Rows per table, the file's size, records writers dropped, and when the oldest and
    newest stored traces started."""

    path: str
    size_bytes: int
    spans: int
    span_events: int
    traces: int
    logs: int
    error_groups: int
    circuit_events: int
    faults: int
    dropped: int
    write_errors: int
    oldest_ns: int | None
    newest_ns: int | None


_GROUP_COLS: Final = ("fingerprint, kind, error_type, message, "
                      "coalesce(route, (SELECT route FROM traces t WHERE t.trace_id = sample_trace_id))")
_TRACE_COLS: Final = ("trace_id, root_name, service_name, route, method, status_code, start_ns, "
                      "duration_ns, status, error_kind, kinds, has_fault, span_count, error_count")
_SPAN_COLS: Final = ("id, trace_id, span_id, parent_span_id, name, kind, start_ns, end_ns, status, "
                     "status_message, attributes, service_name")
_LOG_COLS: Final = "time_ns, level, event, logger, trace_id, span_id, attributes"
_CIRCUIT_COLS: Final = "circuit, old_state, new_state, failure_rate, time_ns, trace_id, span_id"
_FAULT_COLS: Final = ("time_ns, trace_id, span_id, site, fault_kind, rule_id, seed, ordinal, "
                      "error_type, message, attributes")


class Query:
    """Read-only access to the trace store at ``path``; safe to share between threads.

    ``now`` gives the current time in nanoseconds (for impact and default windows).
    """

    def __init__(self, path: str | os.PathLike[str], *,
                 now: Callable[[], int] = time.time_ns) -> None:
        self.path = Path(path)
        self._now = now
        self._lock = threading.Lock()
        self._idle: list[sqlite3.Connection] = []
        self._closed = False

    def close(self) -> None:
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()

    def __enter__(self) -> Query:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- error groups ---------------------------------------------------------------------

    def error_groups(self, kind: str | None = None, route: str | None = None,
                     since_ns: int | None = None, until_ns: int | None = None,
                     limit: int = 50) -> tuple[ErrorGroup, ...]:
        """Error groups ranked by impact, highest first (filters by kind, route, window)."""
        _check_kind(kind)
        ref = until_ns if until_ns is not None else self._now()
        if route is None and since_ns is None and until_ns is None:
            where, params = ("WHERE kind = ?", [kind]) if kind is not None else ("", [])
            rows = self._fetch(f"""SELECT {_GROUP_COLS}, first_seen_ns, last_seen_ns, count,
                trace_count, injected_count, sample_trace_id FROM error_groups {where}""", params)
            groups = [_group(r, ref) for r in rows]
        else:
            groups = self._windowed_groups(kind, route, since_ns, until_ns, ref)
        groups.sort(key=lambda g: (g.impact, g.last_seen_ns), reverse=True)
        top = groups[: max(0, limit)]
        if route is not None or since_ns is not None or until_ns is not None:
            top = [self._with_sample(g, route, since_ns, until_ns) for g in top]
        return tuple(self._with_users(top, route, since_ns, until_ns))

    def error_group(self, fingerprint: str, since_ns: int | None = None,
                    until_ns: int | None = None) -> ErrorGroup | None:
        """One error group by fingerprint (over a window when given), or None."""
        ref = until_ns if until_ns is not None else self._now()
        if since_ns is None and until_ns is None:
            rows = self._fetch(f"""SELECT {_GROUP_COLS}, first_seen_ns, last_seen_ns, count,
                trace_count, injected_count, sample_trace_id FROM error_groups
                WHERE fingerprint = ?""", [fingerprint])
            found = [_group(rows[0], ref)] if rows else []
        else:
            found = [self._with_sample(g, None, since_ns, until_ns) for g in
                     self._windowed_groups(None, None, since_ns, until_ns, ref, fingerprint)]
        return self._with_users(found, None, since_ns, until_ns)[0] if found else None

    def group_trend(self, fingerprint: str, buckets: int = 24, since_ns: int | None = None,
                    until_ns: int | None = None) -> Trend:
        """Occurrences per bucket over ``[since_ns, until_ns)``: by default the last 24 hours."""
        if buckets < 1:
            raise ValueError("buckets must be at least 1")
        until = until_ns if until_ns is not None else self._now()
        since = since_ns if since_ns is not None else until - 24 * 3600 * _NS
        width = max(1, -(-(until - since) // buckets))
        counts, injected = [0] * buckets, [0] * buckets
        for bucket, n, inj in self._fetch(
                """SELECT (first_ns - ?) / ?, sum(count), sum(injected) FROM error_traces
                WHERE fingerprint = ? AND first_ns >= ? AND first_ns < ? GROUP BY 1""",
                [since, width, fingerprint, since, until]):
            if 0 <= bucket < buckets:
                counts[bucket], injected[bucket] = int(n), int(inj)
        return Trend(fingerprint, since, until, width, tuple(counts), tuple(injected))

    def _windowed_groups(self, kind: str | None, route: str | None, since_ns: int | None,
                         until_ns: int | None, ref: int,
                         fingerprint: str | None = None) -> list[ErrorGroup]:
        terms, params = _window("e.first_ns", since_ns, until_ns)
        for column, value in (("e.route", route), ("e.fingerprint", fingerprint)):
            if value is not None:
                terms.append(f"{column} = ?")
                params.append(value)
        outer: list[Any] = []
        if kind is not None:
            outer.append(kind)
        rows = self._fetch(f"""SELECT {_GROUP_COLS}, a.first, a.last, a.n, a.traces, a.injected,
            sample_trace_id FROM (SELECT e.fingerprint AS fp, min(e.first_ns) AS first,
                max(e.last_ns) AS last, sum(e.count) AS n, count(*) AS traces,
                sum(e.injected) AS injected FROM error_traces e {_where(terms)}
                GROUP BY e.fingerprint) AS a
            JOIN error_groups g ON g.fingerprint = a.fp
            {"WHERE g.kind = ?" if kind is not None else ""}""", params + outer)
        groups = [_group(r, ref) for r in rows]
        if route is not None:
            groups = [_replace_route(g, route) for g in groups]
        return groups

    def _with_users(self, groups: list[ErrorGroup], route: str | None, since_ns: int | None,
                    until_ns: int | None) -> list[ErrorGroup]:
        """The groups with ``users``: distinct user ids of their traces in the window (and route)."""
        if not groups:
            return groups
        terms, params = _window("e.first_ns", since_ns, until_ns)
        terms.insert(0, f"e.fingerprint IN ({','.join('?' * len(groups))})")
        params[:0] = [g.fingerprint for g in groups]
        if route is not None:
            terms.append("e.route = ?")
            params.append(route)
        terms.append("e.user_id IS NOT NULL")
        users = dict(self._fetch(f"""SELECT e.fingerprint, count(DISTINCT e.user_id)
            FROM error_traces e {_where(terms)} GROUP BY e.fingerprint""", params))
        return [dataclasses.replace(g, users=int(users[g.fingerprint])) if users.get(g.fingerprint)
                else g for g in groups]

    def _with_sample(self, group: ErrorGroup, route: str | None, since_ns: int | None,
                     until_ns: int | None) -> ErrorGroup:
        """The group with its latest sample trace from inside the window (and route)."""
        terms, params = _window("first_ns", since_ns, until_ns)
        terms.insert(0, "fingerprint = ?")
        params.insert(0, group.fingerprint)
        if route is not None:
            terms.append("route = ?")
            params.append(route)
        rows = self._fetch(f"SELECT trace_id FROM error_traces {_where(terms)} "
                           "ORDER BY first_ns DESC LIMIT 1", params)
        if not rows or rows[0][0] == group.sample_trace_id:
            return group
        return dataclasses.replace(group, sample_trace_id=rows[0][0])

    # -- traces ---------------------------------------------------------------------------

    def traces(self, kind: str | None = None, status: str | None = None,
               route: str | None = None, min_duration_ms: float | None = None,
               since_ns: int | None = None, until_ns: int | None = None,
               has_fault: bool | None = None, trace_id_prefix: str | None = None,
               limit: int = 50, offset: int = 0) -> tuple[TraceSummary, ...]:
        """Trace summaries, newest first, filtered; ``limit``/``offset`` paginate."""
        _check_kind(kind)
        if status is not None and status not in _STATUSES:
            raise ValueError(f"status must be one of {_STATUSES}, not {status!r}")
        terms, params = _window("start_ns", since_ns, until_ns)
        if kind is not None:
            terms.append(f"kinds & {KIND_BITS[kind]}")   # literal: matches the partial index
        for column, value in (("status", status), ("route", route)):
            if value is not None:
                terms.append(f"{column} = ?")
                params.append(value)
        if min_duration_ms is not None:
            terms.append("duration_ns >= ?")
            params.append(int(min_duration_ms * 1e6))
            # A literal bound matching a partial index of slow traces, when one applies.
            terms += [f"duration_ns >= {ms * 1_000_000}" for ms in SLOW_MS if ms <= min_duration_ms][-1:]
        if has_fault is not None:
            terms.append("has_fault" if has_fault else "NOT has_fault")
        if trace_id_prefix:
            low = trace_id_prefix.strip().lower()
            terms.append("trace_id >= ? AND trace_id < ?")
            params += [low, low + "\uffff"]
        rows = self._fetch(f"SELECT {_TRACE_COLS} FROM traces {_where(terms)} "
                           "ORDER BY start_ns DESC LIMIT ? OFFSET ?",
                           [*params, max(0, limit), max(0, offset)])
        return tuple(_summary(r) for r in rows)

    def trace(self, trace_id: str) -> TraceDetail | None:
        """One trace with its spans (and their events) and logs, or None if nothing is stored."""
        trace_id = trace_id.strip().lower()
        with self._snapshot() as conn:
            if conn is None:
                return None
            head = conn.execute(f"SELECT {_TRACE_COLS}, span_refs FROM traces WHERE trace_id = ?",
                                (trace_id,)).fetchone()
            refs = f"[{head[-1]}]" if head is not None else "[]"
            span_rows = conn.execute(f"SELECT {_SPAN_COLS} FROM spans WHERE id IN "
                                     "(SELECT value FROM json_each(?)) ORDER BY start_ns, id",
                                     (refs,)).fetchall()
            events = conn.execute("SELECT span_ref, name, time_ns, attributes FROM span_events "
                                  "WHERE span_ref IN (SELECT value FROM json_each(?)) "
                                  "ORDER BY span_ref, seq", (refs,)).fetchall()
            logs = conn.execute(f"SELECT {_LOG_COLS} FROM logs WHERE trace_id = ? "
                                "ORDER BY time_ns, id", (trace_id,)).fetchall()
        if head is None and not span_rows and not logs:
            return None
        spans = _spans(span_rows, events)
        return TraceDetail(trace_id, _summary(head[:-1]) if head else None, spans,
                           tuple(_log(r) for r in logs))

    def routes(self) -> tuple[str, ...]:
        """Every route seen on a trace, sorted (for filter menus)."""
        return tuple(r[0] for r in self._fetch(
            "SELECT DISTINCT route FROM traces WHERE route IS NOT NULL ORDER BY route", []))

    # -- circuits and faults --------------------------------------------------------------

    def circuit_history(self, name: str | None = None, since_ns: int | None = None,
                        limit: int = 500) -> tuple[CircuitEvent, ...]:
        """The latest ``limit`` state changes (of one circuit, or all), oldest first."""
        terms, params = _window("time_ns", since_ns, None)
        if name is not None:
            terms.append("circuit = ?")
            params.append(name)
        rows = self._fetch(f"SELECT {_CIRCUIT_COLS} FROM circuit_events {_where(terms)} "
                           "ORDER BY time_ns DESC, id DESC LIMIT ?", [*params, max(0, limit)])
        return tuple(CircuitEvent(*r) for r in reversed(rows))

    def circuits(self) -> tuple[CircuitStatus, ...]:
        """Each circuit's latest recorded state, by name."""
        rows = self._fetch("""SELECT c.circuit, c.new_state, c.time_ns, c.failure_rate, n.changes
            FROM (SELECT circuit, count(*) AS changes, max(time_ns) AS latest
                  FROM circuit_events GROUP BY circuit) AS n
            JOIN circuit_events c ON c.id = (SELECT id FROM circuit_events
                WHERE circuit = n.circuit AND time_ns = n.latest ORDER BY id DESC LIMIT 1)
            ORDER BY c.circuit""", [])
        return tuple(CircuitStatus(*r) for r in rows)

    def injected_faults(self, since_ns: int | None = None, limit: int = 500,
                        site: str | None = None, rule_id: str | None = None,
                        ) -> tuple[InjectedFault, ...]:
        """Injected faults, newest first (optionally of one site or rule)."""
        terms, params = _window("time_ns", since_ns, None)
        for column, value in (("site", site), ("rule_id", rule_id)):
            if value is not None:
                terms.append(f"{column} = ?")
                params.append(value)
        rows = self._fetch(f"SELECT {_FAULT_COLS} FROM faults {_where(terms)} "
                           "ORDER BY time_ns DESC, id DESC LIMIT ?", [*params, max(0, limit)])
        return tuple(_fault(r) for r in rows)

    # -- the store itself -----------------------------------------------------------------

    def stats(self) -> StoreStats:
        """Rows per table, size, dropped records and the time range covered."""
        with self._snapshot() as conn:
            if conn is None:
                return StoreStats(str(self.path), 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, None, None)
            saved = dict(conn.execute("SELECT name, value FROM store_counters").fetchall())
            # Big tables' row counts are kept by the writers; small ones are counted.
            n = {t: int(saved.get(f"rows.{t}", 0)) for t in _COUNTED}
            n["error_groups"] = int(conn.execute("SELECT count(*) FROM error_groups").fetchone()[0])
            # Two statements: SQLite answers a lone min() or max() from the index, not both.
            oldest = conn.execute("SELECT min(start_ns) FROM traces").fetchone()[0]
            newest = conn.execute("SELECT max(start_ns) FROM traces").fetchone()[0]
            pages = int(conn.execute("PRAGMA page_count").fetchone()[0])
            size = int(conn.execute("PRAGMA page_size").fetchone()[0])
        return StoreStats(
            path=str(self.path), size_bytes=pages * size, spans=n["spans"],
            span_events=n["span_events"], traces=n["traces"], logs=n["logs"],
            error_groups=n["error_groups"], circuit_events=n["circuit_events"], faults=n["faults"],
            dropped=int(saved.get("dropped", 0)), write_errors=int(saved.get("write_errors", 0)),
            oldest_ns=oldest, newest_ns=newest)

    # -- connections ----------------------------------------------------------------------

    @contextlib.contextmanager
    def _connection(self) -> Iterator[sqlite3.Connection | None]:
        """A pooled read-only connection, or None while there is no store to read."""
        with self._lock:
            if self._closed:
                raise ValueError("this Query is closed")
            conn = self._idle.pop() if self._idle else None
        if conn is None:
            conn = self._open()
            if conn is None:
                yield None
                return
        try:
            yield conn
        finally:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            with self._lock:
                keep = not self._closed
                if keep:
                    self._idle.append(conn)
            if not keep:
                conn.close()

    def _open(self) -> sqlite3.Connection | None:
        if not self.path.exists():
            return None
        conn = connect_readonly(self.path)
        if int(conn.execute("PRAGMA user_version").fetchone()[0]) < SCHEMA_VERSION:
            conn.close()
            return None
        return conn

    @contextlib.contextmanager
    def _snapshot(self) -> Iterator[sqlite3.Connection | None]:
        """A connection inside one read transaction: several statements see the same data."""
        with self._connection() as conn:
            if conn is not None:
                conn.execute("BEGIN")
            yield conn

    def _fetch(self, sql: str, params: Sequence[Any]) -> list[Any]:
        with self._connection() as conn:
            return [] if conn is None else conn.execute(sql, params).fetchall()


# -- rows to objects ------------------------------------------------------------------------


def _check_kind(kind: str | None) -> None:
    if kind is not None and kind not in KIND_BITS:
        raise ValueError(f"kind must be one of {KINDS}, not {kind!r}")


def _window(column: str, since_ns: int | None, until_ns: int | None) -> tuple[list[str], list[Any]]:
    terms: list[str] = []
    params: list[Any] = []
    if since_ns is not None:
        terms.append(f"{column} >= ?")
        params.append(since_ns)
    if until_ns is not None:
        terms.append(f"{column} < ?")
        params.append(until_ns)
    return terms, params


def _where(terms: Sequence[str]) -> str:
    return f"WHERE {' AND '.join(terms)}" if terms else ""


def _group(row: Sequence[Any], ref: int) -> ErrorGroup:
    fingerprint, kind, error_type, message, route, first, last, count, traces, injected, sample = row
    return ErrorGroup(fingerprint, kind, error_type, message, route, int(first), int(last),
                      int(count), int(traces), int(injected), sample,
                      impact(int(count), int(traces), int(last), ref))


def _replace_route(group: ErrorGroup, route: str) -> ErrorGroup:
    return group if group.route == route else dataclasses.replace(group, route=route)


def _summary(row: Sequence[Any]) -> TraceSummary:
    (trace_id, root, service, route, method, code, start, duration, status, error_kind, kinds,
     fault, spans, errors) = row
    names = tuple(k for k, bit in KIND_BITS.items() if kinds & bit)
    return TraceSummary(trace_id, root, service, route, method, code, start, duration, status,
                        error_kind, names, bool(fault), spans, errors)


def _attribute_maps(texts: list[str]) -> list[dict[str, AttrValue]]:
    """Many JSON objects decoded in one go (one parse is far cheaper than thousands);
    arrays come back as tuples, as OpenTelemetry attribute values are."""
    maps: list[dict[str, Any]] = json.loads(f"[{','.join(texts)}]")
    for loaded in maps:
        for key, value in loaded.items():
            if isinstance(value, list):
                loaded[key] = tuple(value)
    return maps


def _spans(span_rows: list[Any], event_rows: list[Any]) -> tuple[SpanRecord, ...]:
    """Spans with their events, from the rows of one trace."""
    maps = _attribute_maps([r[10] for r in span_rows] + [e[3] for e in event_rows])
    grouped: dict[int, list[SpanEventRecord]] = {}
    for (ref, name, time_ns, _), attrs in zip(event_rows, maps[len(span_rows):], strict=True):
        grouped.setdefault(ref, []).append(SpanEventRecord(name, time_ns, attrs))
    return tuple(
        SpanRecord(trace_id, span_id, parent, name, kind, start, end, status, message, attrs,
                   tuple(grouped.get(ref, ())), service)
        for (ref, trace_id, span_id, parent, name, kind, start, end, status, message, _, service),
        attrs in zip(span_rows, maps, strict=False))


def _fault(row: Sequence[Any]) -> InjectedFault:
    time_ns, trace_id, span_id, site, kind, rule_id, seed, ordinal, error_type, message, attrs = row
    return InjectedFault(time_ns, trace_id, span_id, site, kind, rule_id, seed, ordinal,
                         error_type, message, json.loads(attrs))


def _log(row: Sequence[Any]) -> LogRecord:
    time_ns, level, event, logger, trace_id, span_id, attrs = row
    return LogRecord(time_ns, level, event, logger, trace_id, span_id, json.loads(attrs))
