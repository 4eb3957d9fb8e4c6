"""Records to rows: what one batch writes, derived in Python, written in one transaction.

Besides the spans, events and logs themselves, a batch maintains:

* **trace summaries** — per trace: time span, span and error counts, which
  error kinds appeared (spans or events carrying ``shockproof.kind``), whether
  a fault was injected, and the root span's name, route, method and status.
  The root is the span without a parent; failing that a ``server`` span (its
  parent is remote); failing that the earliest span seen so far.
* **error occurrences** — a span or span event carrying ``shockproof.fingerprint``
  is an occurrence of that error group. Within one span, every non-``exception``
  event with the fingerprint counts once (each failed attempt of a retried call
  is an occurrence); when no such event carries it, the span itself (its
  attributes or its ``exception`` event) counts once. An occurrence is
  *injected* when ``shockproof.fault.injected`` is true on its event, or on its
  span when the event does not say.
* **circuit events** from span events named ``shockproof.circuit.state_changed``.
* **faults** from span events named ``shockproof.fault.injected``, and from
  spans flagged ``shockproof.fault.injected`` that carry no such event.

Each table's rows go in one statement (``INSERT ... VALUES (...), (...), ...``)
rather than ``executemany``: SQLite runs without the GIL, and a writer that gave
it back around every row would wait for it again after every row, up to a switch
interval (5 ms) each time while the application keeps a thread busy.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, NamedTuple, Protocol

from . import _semconv as sc
from ._records import LogRecord, SpanEventRecord
from ._store_schema import KIND_BITS

Row = tuple[Any, ...]


class SpanLike(Protocol):
    """What a batch reads of a span: a :class:`~telemetry.SpanRecord` or a :class:`SpanRow`."""

    @property
    def trace_id(self) -> str: ...
    @property
    def span_id(self) -> str: ...
    @property
    def parent_span_id(self) -> str | None: ...
    @property
    def name(self) -> str: ...
    @property
    def kind(self) -> str: ...
    @property
    def start_ns(self) -> int: ...
    @property
    def end_ns(self) -> int: ...
    @property
    def status(self) -> str: ...
    @property
    def status_message(self) -> str: ...
    @property
    def attributes(self) -> Mapping[str, Any]: ...
    @property
    def events(self) -> tuple[SpanEventRecord, ...]: ...
    @property
    def service_name(self) -> str: ...


class SpanRow(NamedTuple):
    """A :class:`~telemetry.SpanRecord`'s fields as a tuple: the store's own spans on their way
    to rows (a frozen dataclass costs several times as much to make)."""

    trace_id: str
    span_id: str
    parent_span_id: str | None
    name: str
    kind: str
    start_ns: int
    end_ns: int
    status: str
    status_message: str
    attributes: Mapping[str, Any]
    events: tuple[SpanEventRecord, ...]
    service_name: str


class JsonText(str):
    """Attributes already encoded as the store encodes them (:func:`to_json`), kept as they are."""

    __slots__ = ()


class LogRow(NamedTuple):
    """A :class:`~telemetry.LogRecord`'s fields as a tuple (for lines only the store receives);
    its attributes may come encoded already."""

    time_ns: int
    level: str
    event: str
    logger: str
    trace_id: str | None
    span_id: str | None
    attributes: Mapping[str, Any] | JsonText


def _json_encoder() -> Callable[[Any], str]:
    """Compact JSON (``str()`` for what JSON cannot hold): the C encoder made once, not per call
    as ``JSONEncoder.encode`` does."""
    make: Any = getattr(json.encoder, "c_make_encoder", None)
    if make is None:  # pragma: no cover - no C accelerator
        return json.JSONEncoder(ensure_ascii=False, check_circular=False, separators=(",", ":"),
                                default=str).encode
    encode: Callable[[Any, int], Iterable[str]] = make(
        None, str, json.encoder.encode_basestring, None, ":", ",", False, False, True)
    return lambda value: "".join(encode(value, 0))


_encode: Final = _json_encoder()


def to_json(attributes: Mapping[str, Any]) -> str:
    """Attributes as compact JSON; values JSON cannot hold are stored as ``str()``."""
    if not attributes:
        return "{}"
    return _encode(attributes if type(attributes) is dict else dict(attributes))


class _Trace:
    """One trace's summary as far as this batch knows it."""

    __slots__ = ("end", "error_kind", "errors", "fault", "indexes", "kinds", "method", "rank",
                 "root_name", "root_start", "route", "service", "spans", "start", "status_code", "user")

    def __init__(self, span: SpanLike, rank: int, index: int) -> None:
        """The summary of a trace first seen with ``span`` (its root so far)."""
        self.start, self.end = span.start_ns, span.end_ns
        self.spans, self.errors = 1, 1 if span.status == "error" else 0
        self.indexes: list[int] = [index]
        self.kinds = self.fault = 0
        self.error_kind: str | None = None
        self.user: str | None = None
        self._take_root(span, rank)

    def add(self, span: SpanLike, rank: int, index: int) -> None:
        self.start, self.end = min(self.start, span.start_ns), max(self.end, span.end_ns)
        self.spans += 1
        self.indexes.append(index)
        if span.status == "error":
            self.errors += 1
        if rank > self.rank or (rank == self.rank and span.start_ns < self.root_start):
            self._take_root(span, rank)

    def _take_root(self, span: SpanLike, rank: int) -> None:
        attrs = span.attributes
        self.rank, self.root_start, self.root_name = rank, span.start_ns, span.name
        self.service = span.service_name
        route, method = attrs.get(sc.HTTP_ROUTE), attrs.get(sc.HTTP_REQUEST_METHOD)
        self.route = route if route is None or type(route) is str else str(route)
        self.method = method if method is None or type(method) is str else str(method)
        self.status_code = _int64(attrs.get(sc.HTTP_RESPONSE_STATUS_CODE))
        kind = attrs.get(sc.KIND)
        if kind is not None:
            self.error_kind = str(kind)
        user = attrs.get(sc.USER_PSEUDO_ID)
        if user is not None:
            self.user = str(user)

    def saw_kind(self, kind: object) -> None:
        name = str(kind)
        self.kinds |= KIND_BITS.get(name, 0)
        if self.error_kind is None:
            self.error_kind = name

    def row(self, trace_id: str, base: int) -> Row:
        """The upsert's parameters; ``base`` is the row id of the batch's first span."""
        status = "error" if self.errors else "ok"
        indexes = self.indexes
        refs = str(base + indexes[0]) if len(indexes) == 1 else ",".join(
            [str(base + i) for i in indexes])
        return (trace_id, self.start, self.end, self.end - self.start, self.rank, self.root_name,
                self.service, self.route, self.method, self.status_code, status, self.error_kind,
                self.kinds, self.fault, self.spans, self.errors, refs, self.user)


@dataclass(slots=True)
class _Occurrence:
    """Error occurrences of one fingerprint in one trace, within this batch."""

    kind: str | None
    error_type: str | None
    message: str | None
    route: str | None
    first_ns: int
    last_ns: int
    count: int = 0
    injected: int = 0


@dataclass(slots=True)
class Rows:
    """Everything one batch inserts or upserts, as parameter tuples."""

    spans: list[Row] = field(default_factory=list)
    events: list[Row] = field(default_factory=list)   # (batch index of span, seq, ...)
    traces: dict[str, _Trace] = field(default_factory=dict)
    errors: dict[tuple[str, str], _Occurrence] = field(default_factory=dict)
    circuits: list[Row] = field(default_factory=list)
    faults: list[Row] = field(default_factory=list)
    logs: list[Row] = field(default_factory=list)

    def add_span(self, span: SpanLike) -> None:
        attrs = span.attributes
        index = len(self.spans)
        self.spans.append((span.trace_id, span.span_id, span.parent_span_id, span.name, span.kind,
                           span.start_ns, span.end_ns, span.status, span.status_message,
                           span.service_name, to_json(attrs)))
        rank = 2 if span.parent_span_id is None else 1 if span.kind == "server" else 0
        trace = self.traces.get(span.trace_id)
        if trace is None:
            trace = self.traces[span.trace_id] = _Trace(span, rank, index)
        else:
            trace.add(span, rank, index)
        kind = attrs.get(sc.KIND)
        if kind is not None:
            trace.saw_kind(kind)
        if span.events:
            self._add_events(span, index, trace)
        elif attrs.get(sc.FINGERPRINT) is not None or attrs.get(sc.FAULT_INJECTED) is True:
            self._span_level(span, trace, fault_events=0, counted=())

    def add_log(self, log: LogRecord | LogRow) -> None:
        attrs = log.attributes
        self.logs.append((log.time_ns, log.level, log.event, log.logger, log.trace_id,
                          log.span_id, attrs if isinstance(attrs, JsonText) else to_json(attrs)))

    def _add_events(self, span: SpanLike, index: int, trace: _Trace) -> None:
        fault_events = 0
        counted: set[str] = set()
        for seq, event in enumerate(span.events):
            attrs = event.attributes
            self.events.append((index, seq, event.name, event.time_ns, to_json(attrs)))
            kind = attrs.get(sc.KIND)
            if kind is not None:
                trace.saw_kind(kind)
            if attrs.get(sc.FAULT_INJECTED) is True:
                trace.fault = 1
            if event.name == sc.EVENT_CIRCUIT:
                self.circuits.append(_circuit_row(span, event))
            elif event.name == sc.EVENT_FAULT:
                fault_events += 1
                trace.fault = 1
                self.faults.append(_fault_row(span, attrs, event.time_ns))
            fingerprint = attrs.get(sc.FINGERPRINT)
            if fingerprint is not None and event.name != sc.EXCEPTION_EVENT:
                counted.add(str(fingerprint))
                self._occur(str(fingerprint), span, attrs, event.time_ns)
        self._span_level(span, trace, fault_events, counted)

    def _span_level(self, span: SpanLike, trace: _Trace, fault_events: int,
                    counted: set[str] | tuple[()]) -> None:
        """The span's own fault flag and fingerprints not already counted through events."""
        attrs = span.attributes
        if attrs.get(sc.FAULT_INJECTED) is True:
            trace.fault = 1
            if not fault_events:
                self.faults.append(_fault_row(span, attrs, span.start_ns))
        found: dict[str, Mapping[str, Any]] = {}
        for event in span.events:
            fingerprint = event.attributes.get(sc.FINGERPRINT)
            if event.name == sc.EXCEPTION_EVENT and fingerprint is not None:
                found.setdefault(str(fingerprint), event.attributes)
        own = attrs.get(sc.FINGERPRINT)
        if own is not None:
            found.setdefault(str(own), {})
        for fingerprint, event_attrs in found.items():
            if fingerprint not in counted:
                self._occur(fingerprint, span, event_attrs, span.end_ns)

    def _occur(self, fingerprint: str, span: SpanLike, attrs: Mapping[str, Any],
               time_ns: int) -> None:
        own = span.attributes
        same = own.get(sc.FINGERPRINT) is not None and str(own.get(sc.FINGERPRINT)) == fingerprint

        def pick(*keys: str) -> str | None:
            for source in (attrs, own) if same else (attrs,):
                for key in keys:
                    value = source.get(key)
                    if value is not None:
                        return str(value)
            return None

        injected = attrs.get(sc.FAULT_INJECTED, own.get(sc.FAULT_INJECTED)) is True
        key = (fingerprint, span.trace_id)
        occ = self.errors.get(key)
        if occ is None:
            occ = self.errors[key] = _Occurrence(
                pick(sc.KIND), pick(sc.EXCEPTION_TYPE, sc.ERROR_TYPE), pick(sc.EXCEPTION_MESSAGE),
                _str_or_none(own.get(sc.HTTP_ROUTE)), time_ns, time_ns)
        occ.first_ns, occ.last_ns = min(occ.first_ns, time_ns), max(occ.last_ns, time_ns)
        occ.count += 1
        occ.injected += injected

    # -- parameter lists ---------------------------------------------------------------

    def counts(self) -> dict[str, int]:
        """Rows this batch adds to the tables whose size ``store_counters`` keeps."""
        return {"spans": len(self.spans), "span_events": len(self.events), "logs": len(self.logs),
                "circuit_events": len(self.circuits), "faults": len(self.faults)}

    def trace_rows(self, base: int) -> list[Row]:
        return [t.row(trace_id, base) for trace_id, t in self.traces.items()]

    def route_fixes(self) -> list[Row]:
        """(route, trace_id) for traces whose route this batch learnt from a root span."""
        return [(t.route, trace_id) for trace_id, t in self.traces.items()
                if t.route is not None and t.rank >= 1]

    def group_rows(self) -> list[Row]:
        """One upsert per fingerprint: (fp, kind, type, message, first, last, count, injected, sample trace, route)."""
        groups: dict[str, list[Any]] = {}
        for (fingerprint, trace_id), occ in self.errors.items():
            g = groups.get(fingerprint)
            if g is None:
                groups[fingerprint] = [fingerprint, occ.kind, occ.error_type, occ.message,
                                       occ.first_ns, occ.last_ns, occ.count, occ.injected,
                                       trace_id, occ.route]
                continue
            g[4], g[6], g[7] = min(g[4], occ.first_ns), g[6] + occ.count, g[7] + occ.injected
            if occ.last_ns >= g[5]:
                g[5], g[8] = occ.last_ns, trace_id
                g[1], g[2], g[3] = g[1] or occ.kind, g[2] or occ.error_type, occ.message or g[3]
                g[9] = occ.route or g[9]
        return [tuple(g) for g in groups.values()]

    def user_fixes(self) -> list[Row]:
        """(user, trace_id) for traces whose pseudonymous user this batch learnt."""
        return [(t.user, trace_id) for trace_id, t in self.traces.items() if t.user is not None]

    def error_trace_rows(self) -> list[Row]:
        """(fp, trace, first, last, count, injected, route, trace, trace) per pair; the route
        may come from the trace, the user always does."""
        return [(fp, trace_id, o.first_ns, o.last_ns, o.count, o.injected, o.route, trace_id,
                 trace_id) for (fp, trace_id), o in self.errors.items()]


def build_rows(spans: Sequence[SpanLike], logs: Sequence[LogRecord | LogRow]) -> Rows:
    rows = Rows()
    for span in spans:
        rows.add_span(span)
    for log in logs:
        rows.add_log(log)
    return rows


def _str_or_none(value: object) -> str | None:
    return None if value is None else str(value)


def _int64(value: object) -> int | None:
    """An int SQLite can hold, or None (bools and out-of-range numbers are not)."""
    if type(value) is int or (isinstance(value, int) and not isinstance(value, bool)):
        return value if -(2**63) <= value < 2**63 else None
    return None


def _float_or_none(value: object) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return None


def _circuit_row(span: SpanLike, event: SpanEventRecord) -> Row:
    attrs = event.attributes
    name = attrs.get(sc.CIRCUIT_NAME, span.attributes.get(sc.CIRCUIT_NAME, ""))
    return (event.time_ns, str(name), _str_or_none(attrs.get(sc.CIRCUIT_OLD_STATE)),
            str(attrs.get(sc.CIRCUIT_STATE, "")), _float_or_none(attrs.get(sc.CIRCUIT_FAILURE_RATE)),
            span.trace_id, span.span_id)


def _fault_row(span: SpanLike, attrs: Mapping[str, Any], time_ns: int) -> Row:
    site = attrs.get(sc.FAULT_SITE, attrs.get(sc.SITE, span.attributes.get(sc.SITE)))
    ordinal = attrs.get(sc.FAULT_ORDINAL)
    return (time_ns, span.trace_id, span.span_id, _str_or_none(site),
            _str_or_none(attrs.get(sc.FAULT_KIND)), _str_or_none(attrs.get(sc.FAULT_RULE_ID)),
            _str_or_none(attrs.get(sc.FAULT_SEED)),
            _int64(ordinal),
            _str_or_none(attrs.get(sc.EXCEPTION_TYPE, attrs.get(sc.ERROR_TYPE))),
            _str_or_none(attrs.get(sc.EXCEPTION_MESSAGE)), to_json(attrs))


# -- SQL ---------------------------------------------------------------------------------

_INSERT_SPAN: Final = """INSERT INTO spans (trace_id, span_id, parent_span_id, name, kind,
    start_ns, end_ns, status, status_message, service_name, attributes)
    VALUES (?,?,?,?,?,?,?,?,?,?,?)"""
_INSERT_EVENT: Final = "INSERT INTO span_events VALUES (?,?,?,?,?)"
_UPSERT_TRACE: Final = """INSERT INTO traces (trace_id, start_ns, end_ns, duration_ns, root_rank,
    root_name, service_name, route, method, status_code, status, error_kind, kinds, has_fault,
    span_count, error_count, span_refs, user_id) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)
    ON CONFLICT (trace_id) DO UPDATE SET
    start_ns = min(start_ns, excluded.start_ns), end_ns = max(end_ns, excluded.end_ns),
    duration_ns = max(end_ns, excluded.end_ns) - min(start_ns, excluded.start_ns),
    root_rank = max(root_rank, excluded.root_rank),
    root_name = iif(excluded.root_rank > root_rank, excluded.root_name, root_name),
    service_name = iif(excluded.root_rank > root_rank, excluded.service_name, service_name),
    route = iif(excluded.root_rank > root_rank, coalesce(excluded.route, route), coalesce(route, excluded.route)),
    method = iif(excluded.root_rank > root_rank, coalesce(excluded.method, method), coalesce(method, excluded.method)),
    status_code = iif(excluded.root_rank > root_rank, coalesce(excluded.status_code, status_code),
                      coalesce(status_code, excluded.status_code)),
    error_kind = iif(excluded.root_rank > root_rank, coalesce(excluded.error_kind, error_kind),
                     coalesce(error_kind, excluded.error_kind)),
    status = iif(error_count + excluded.error_count > 0, 'error', 'ok'),
    kinds = kinds | excluded.kinds, has_fault = has_fault | excluded.has_fault,
    span_count = span_count + excluded.span_count, error_count = error_count + excluded.error_count,
    span_refs = span_refs || ',' || excluded.span_refs,
    user_id = coalesce(excluded.user_id, user_id)"""
_UPSERT_GROUP: Final = """INSERT INTO error_groups (fingerprint, kind, error_type, message,
    first_seen_ns, last_seen_ns, count, injected_count, sample_trace_id, route)
    VALUES (?,?,?,?,?,?,?,?,?,?)
    ON CONFLICT (fingerprint) DO UPDATE SET
    kind = coalesce(kind, excluded.kind), error_type = coalesce(error_type, excluded.error_type),
    message = iif(excluded.last_seen_ns >= last_seen_ns, coalesce(excluded.message, message), message),
    sample_trace_id = iif(excluded.last_seen_ns >= last_seen_ns, excluded.sample_trace_id, sample_trace_id),
    route = iif(excluded.last_seen_ns >= last_seen_ns, coalesce(excluded.route, route), route),
    first_seen_ns = min(first_seen_ns, excluded.first_seen_ns),
    last_seen_ns = max(last_seen_ns, excluded.last_seen_ns),
    count = count + excluded.count, injected_count = injected_count + excluded.injected_count"""
_UPSERT_ERROR_TRACE: Final = """INSERT INTO error_traces (fingerprint, trace_id, first_ns,
    last_ns, count, injected, route, user_id)
    VALUES (?,?,?,?,?,?, coalesce(?, (SELECT route FROM traces WHERE trace_id = ?)),
            (SELECT user_id FROM traces WHERE trace_id = ?))
    ON CONFLICT (fingerprint, trace_id) DO UPDATE SET
    first_ns = min(first_ns, excluded.first_ns), last_ns = max(last_ns, excluded.last_ns),
    count = count + excluded.count, injected = injected + excluded.injected,
    route = coalesce(route, excluded.route), user_id = coalesce(user_id, excluded.user_id)"""
_FIX_ROUTE: Final = "UPDATE error_traces SET route = ? WHERE trace_id = ? AND route IS NULL"
_FIX_USER: Final = "UPDATE error_traces SET user_id = ? WHERE trace_id = ? AND user_id IS NULL"
_INSERT_CIRCUIT: Final = """INSERT INTO circuit_events (time_ns, circuit, old_state, new_state,
    failure_rate, trace_id, span_id) VALUES (?,?,?,?,?,?,?)"""
_INSERT_FAULT: Final = """INSERT INTO faults (time_ns, trace_id, span_id, site, fault_kind, rule_id,
    seed, ordinal, error_type, message, attributes) VALUES (?,?,?,?,?,?,?,?,?,?,?)"""
_INSERT_LOG: Final = """INSERT INTO logs (time_ns, level, event, logger, trace_id, span_id,
    attributes) VALUES (?,?,?,?,?,?,?)"""
#: ``store_counters``: ``dropped`` and ``write_errors`` (writers' losses), and ``rows.<table>``
#: (row counts of the big tables, kept so that reading them never scans).
ADD_COUNTER: Final = """INSERT INTO store_counters VALUES (?, ?)
    ON CONFLICT (name) DO UPDATE SET value = value + excluded.value"""


class _Many:
    """An ``INSERT ... VALUES (?, ...) [ON CONFLICT ...]`` run for many rows as one statement
    (``VALUES (...), (...), ...``), in chunks within SQLite's limit on parameters.

    ``executemany`` gives the GIL back and waits for it again around every row; under a
    busy application thread each wait can last a switch interval (5 ms), so a writer
    inserting row by row falls behind. One statement per chunk waits once.
    """

    __slots__ = ("group", "head", "tail", "width")

    def __init__(self, sql: str) -> None:
        start = sql.index("VALUES (") + len("VALUES ")
        depth, end = 0, start
        while True:
            depth += {"(": 1, ")": -1}.get(sql[end], 0)
            end += 1
            if not depth:
                break
        self.head, self.group, self.tail = sql[:start], sql[start:end], sql[end:]
        self.width = self.group.count("?")

    def run(self, conn: sqlite3.Connection, rows: Sequence[Row]) -> None:
        per = max(1, conn.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER) // self.width)
        for first in range(0, len(rows), per):
            chunk = rows[first:first + per]
            conn.execute(f"{self.head}{','.join([self.group] * len(chunk))}{self.tail}",
                         [value for row in chunk for value in row])


_SPANS, _EVENTS, _TRACES = _Many(_INSERT_SPAN), _Many(_INSERT_EVENT), _Many(_UPSERT_TRACE)
_GROUPS, _ERROR_TRACES = _Many(_UPSERT_GROUP), _Many(_UPSERT_ERROR_TRACE)
_CIRCUITS, _FAULTS, _LOGS = _Many(_INSERT_CIRCUIT), _Many(_INSERT_FAULT), _Many(_INSERT_LOG)
_COUNTERS = _Many(ADD_COUNTER)
#: Traces of a batch that have error occurrences stored without a route (from earlier batches).
_ROUTELESS: Final = """SELECT DISTINCT trace_id FROM error_traces WHERE route IS NULL
    AND trace_id IN (SELECT value FROM json_each(?))"""
#: Traces of a batch that have error occurrences stored without a user (from earlier batches).
_USERLESS: Final = """SELECT DISTINCT trace_id FROM error_traces WHERE user_id IS NULL
    AND trace_id IN (SELECT value FROM json_each(?))"""


def write_rows(conn: sqlite3.Connection, rows: Rows, counters: Mapping[str, int]) -> None:
    """Write one batch in one ``BEGIN IMMEDIATE`` transaction (rolled back on any error)."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        _write(conn, rows, counters)
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


def _write(conn: sqlite3.Connection, rows: Rows, counters: Mapping[str, int]) -> None:
    new_traces = 0
    if rows.spans:
        # Within this write transaction new rows get max(id)+1, +2...: the events' span_ref.
        base = int(conn.execute("SELECT coalesce(max(id), 0) + 1 FROM spans").fetchone()[0])
        _SPANS.run(conn, rows.spans)
        if rows.events:
            _EVENTS.run(conn, [(base + e[0], *e[1:]) for e in rows.events])
        ids = json.dumps(list(rows.traces))
        known = conn.execute("SELECT count(*) FROM traces WHERE trace_id IN "
                             "(SELECT value FROM json_each(?))", (ids,)).fetchone()[0]
        new_traces = len(rows.traces) - int(known)
        _TRACES.run(conn, rows.trace_rows(base))
        if rows.errors:
            _GROUPS.run(conn, rows.group_rows())
            _ERROR_TRACES.run(conn, rows.error_trace_rows())
        if fixes := rows.route_fixes():
            routeless = {r[0] for r in conn.execute(_ROUTELESS, (ids,))}
            if fixes := [fix for fix in fixes if fix[1] in routeless]:
                conn.executemany(_FIX_ROUTE, fixes)
        if fixes := rows.user_fixes():
            userless = {r[0] for r in conn.execute(_USERLESS, (ids,))}
            if fixes := [fix for fix in fixes if fix[1] in userless]:
                conn.executemany(_FIX_USER, fixes)
    if rows.circuits:
        _CIRCUITS.run(conn, rows.circuits)
    if rows.faults:
        _FAULTS.run(conn, rows.faults)
    if rows.logs:
        _LOGS.run(conn, rows.logs)
    added = [(k, v) for k, v in counters.items() if v]
    added += [(f"rows.{k}", v) for k, v in rows.counts().items() if v]
    if rows.spans and new_traces:
        added.append(("rows.traces", new_traces))
    if added:
        _COUNTERS.run(conn, added)
