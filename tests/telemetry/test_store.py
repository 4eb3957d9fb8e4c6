"""The trace store: what a batch writes, failures that cost records (never the caller), pruning."""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import SpanKind, Status, StatusCode

from telemetry import _semconv as sc
from telemetry import _store
from telemetry._exporter import StoreSpanExporter, span_to_record
from telemetry._records import LogRecord, SpanEventRecord, SpanRecord
from telemetry._store import TraceStore
from telemetry._store_schema import SCHEMA_VERSION, StoreVersionError, used_bytes
from telemetry.query import Query

NOW = time.time_ns()
MS = 1_000_000
DAY = 86_400 * 10**9


def tid(n: int) -> str:
    return f"{n:032x}"


def sid(n: int) -> str:
    return f"{n:016x}"


def make_span(trace: int, span: int, *, parent: int | None = None, name: str = "op",
              kind: str = "internal", start: int = NOW, duration: int = MS,
              status: str = "unset", attrs: Mapping[str, Any] | None = None,
              events: tuple[SpanEventRecord, ...] = ()) -> SpanRecord:
    return SpanRecord(tid(trace), sid(span), sid(parent) if parent is not None else None, name,
                      kind, start, start + duration, status, "", dict(attrs or {}), events, "svc")


def failure(fingerprint: str, *, kind: str = "network", injected: bool | None = None,
            name: str = sc.EVENT_ATTEMPT_FAILED, time_ns: int = NOW,
            message: str = "refused") -> SpanEventRecord:
    attrs: dict[str, Any] = {sc.FINGERPRINT: fingerprint, sc.KIND: kind,
                             sc.EXCEPTION_TYPE: "ConnectionError", sc.EXCEPTION_MESSAGE: message}
    if injected is not None:
        attrs[sc.FAULT_INJECTED] = injected
    return SpanEventRecord(name, time_ns, attrs)


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "telemetry.db"


@pytest.fixture
def store(path: Path) -> Iterator[TraceStore]:
    with TraceStore(path) as s:
        yield s


@pytest.fixture
def query(path: Path) -> Iterator[Query]:
    with Query(path) as q:
        yield q


def rows(path: Path, sql: str, *params: object) -> list[Any]:
    conn = sqlite3.connect(path)
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


def write(store: TraceStore, spans: list[SpanRecord], logs: list[LogRecord] | None = None) -> None:
    store.add_spans(spans)
    store.add_logs(logs or [])
    assert store.flush()


# -- round trips ------------------------------------------------------------------------------


def test_spans_events_and_logs_round_trip(store: TraceStore, query: Query) -> None:
    """What is written reads back equal: spans with their events, and the trace's logs."""
    event = SpanEventRecord(sc.EVENT_RETRY, NOW + 5, {sc.ATTEMPT: 1, sc.WAIT_S: 0.25,
                                                      "tags": ("a", "b")})
    root = make_span(1, 1, name="GET /x", kind="server", attrs={sc.HTTP_ROUTE: "/x"})
    child = make_span(1, 2, parent=1, start=NOW + 1, events=(event,))
    log = LogRecord(NOW + 7, "info", "hello", "app", tid(1), sid(2), {"n": 1, "ok": True})
    write(store, [child, root], [log])
    detail = query.trace(tid(1))
    assert detail is not None
    assert detail.spans == (root, child)
    assert detail.logs == (log,)


def test_writes_happen_off_the_callers_thread_in_batches(path: Path) -> None:
    """add_spans only queues; the writer's transactions hold batch_size spans each."""
    with TraceStore(path, batch_size=4) as store:
        store.add_spans([make_span(n, n) for n in range(1, 11)])
        assert store.flush()
    assert rows(path, "SELECT count(*) FROM spans") == [(10,)]
    assert rows(path, "SELECT value FROM store_counters WHERE name = 'rows.spans'") == [(10,)]


def test_close_writes_what_is_queued_and_later_records_are_dropped(path: Path) -> None:
    """close() drains the queue; records added after close are counted as dropped."""
    store = TraceStore(path, flush_interval=60)
    store.add_spans([make_span(1, 1)])
    store.close()
    store.add_spans([make_span(2, 2)])
    assert rows(path, "SELECT trace_id FROM spans") == [(tid(1),)]
    assert store.dropped == 1


def test_a_full_queue_drops_and_counts_the_overflow(path: Path) -> None:
    """Beyond queue_size waiting records, add_spans drops (and counts) instead of blocking."""
    with TraceStore(path, queue_size=3, batch_size=100, flush_interval=60) as store:
        store.add_spans([make_span(n, n) for n in range(1, 6)])
        assert store.dropped == 2
        assert store.flush()
    assert rows(path, "SELECT count(*) FROM spans") == [(3,)]


# -- trace summaries ----------------------------------------------------------------------------


def test_trace_summary_is_maintained_across_batches(store: TraceStore, query: Query) -> None:
    """Children first, root later: the summary takes the root's name, route and status code."""
    write(store, [make_span(1, 2, parent=1, start=NOW + 2 * MS, status="error",
                            attrs={sc.KIND: "io"})])
    write(store, [make_span(1, 1, name="POST /save", kind="server", start=NOW, duration=10 * MS,
                            attrs={sc.HTTP_ROUTE: "/save", sc.HTTP_REQUEST_METHOD: "POST",
                                   sc.HTTP_RESPONSE_STATUS_CODE: 507})])
    (summary,) = query.traces()
    assert (summary.root_name, summary.route, summary.method, summary.status_code) == (
        "POST /save", "/save", "POST", 507)
    assert (summary.start_ns, summary.duration_ns) == (NOW, 10 * MS)
    assert (summary.span_count, summary.error_count, summary.status) == (2, 1, "error")
    assert (summary.kinds, summary.error_kind) == (("io",), "io")


def test_a_server_span_with_a_remote_parent_is_the_root(store: TraceStore, query: Query) -> None:
    """A server span whose parent is elsewhere names the trace when no parentless span exists."""
    write(store, [make_span(1, 3, parent=2, start=NOW + 1, name="inner"),
                  make_span(1, 2, parent=99, kind="server", name="GET /remote",
                            attrs={sc.HTTP_ROUTE: "/remote"})])
    (summary,) = query.traces()
    assert (summary.root_name, summary.route) == ("GET /remote", "/remote")


def test_kinds_include_errors_a_retry_recovered_from(store: TraceStore, query: Query) -> None:
    """A failed attempt's kind marks the trace even when the span ends fine."""
    write(store, [make_span(1, 1, events=(failure("fp", kind="network"),))])
    (summary,) = query.traces()
    assert (summary.kinds, summary.status) == (("network",), "ok")


# -- error groups --------------------------------------------------------------------------------


def test_error_groups_are_upserted_with_counts_and_first_and_last_seen(store: TraceStore,
                                                                       query: Query) -> None:
    """Each occurrence counts; first/last seen span all batches; the split injected/real holds."""
    write(store, [make_span(1, 1, events=(failure("fp", time_ns=NOW + 10, injected=True),
                                          failure("fp", time_ns=NOW + 20)))])
    write(store, [make_span(2, 2, events=(failure("fp", time_ns=NOW + 5, message="later"),))])
    group = query.error_group("fp")
    assert group is not None
    assert (group.count, group.injected_count, group.real_count, group.trace_count) == (3, 1, 2, 2)
    assert (group.first_seen_ns, group.last_seen_ns) == (NOW + 5, NOW + 20)
    assert (group.kind, group.error_type, group.message) == ("network", "ConnectionError", "refused")
    assert group.sample_trace_id == tid(1)


def test_a_span_and_its_exception_event_count_once(store: TraceStore, query: Query) -> None:
    """The span's fingerprint and its exception event describe one occurrence, not two."""
    exception = failure("fp", name=sc.EXCEPTION_EVENT)
    write(store, [make_span(1, 1, status="error", attrs={sc.FINGERPRINT: "fp", sc.KIND: "logic"},
                            events=(exception,))])
    group = query.error_group("fp")
    assert group is not None
    assert group.count == 1


def test_failed_attempts_fold_the_spans_own_fingerprint(store: TraceStore, query: Query) -> None:
    """Two failed attempts on a span that ends with the same error are two occurrences."""
    events = (failure("fp"), failure("fp"), failure("fp", name=sc.EXCEPTION_EVENT))
    write(store, [make_span(1, 1, status="error", attrs={sc.FINGERPRINT: "fp"}, events=events)])
    group = query.error_group("fp")
    assert group is not None
    assert group.count == 2


def test_an_injected_span_marks_its_occurrences_injected(store: TraceStore, query: Query) -> None:
    """Without a flag on the event, the span's shockproof.fault.injected decides."""
    write(store, [make_span(1, 1, attrs={sc.FAULT_INJECTED: True, sc.FINGERPRINT: "fp"})])
    group = query.error_group("fp")
    assert group is not None
    assert (group.count, group.injected_count) == (1, 1)


def test_an_error_group_learns_its_route_from_a_root_written_later(store: TraceStore,
                                                                    query: Query) -> None:
    """The route of the request is found even when the root span arrives after the error."""
    write(store, [make_span(1, 2, parent=1, events=(failure("fp"),))])
    write(store, [make_span(1, 1, kind="server", attrs={sc.HTTP_ROUTE: "/catalog"})])
    (group,) = query.error_groups(route="/catalog")
    assert (group.fingerprint, group.route) == ("fp", "/catalog")


# -- circuits and faults ------------------------------------------------------------------------


def test_circuit_events_are_recorded(store: TraceStore, query: Query) -> None:
    """A circuit state change event becomes a row with name, states, failure rate and trace."""
    event = SpanEventRecord(sc.EVENT_CIRCUIT, NOW + 3, {
        sc.CIRCUIT_NAME: "catalog", sc.CIRCUIT_OLD_STATE: "closed", sc.CIRCUIT_STATE: "open",
        sc.CIRCUIT_FAILURE_RATE: 0.75})
    write(store, [make_span(1, 1, events=(event,))])
    (change,) = query.circuit_history()
    assert (change.circuit, change.old_state, change.new_state, change.failure_rate) == (
        "catalog", "closed", "open", 0.75)
    assert (change.time_ns, change.trace_id, change.span_id) == (NOW + 3, tid(1), sid(1))


def test_fault_events_and_flagged_spans_are_recorded_as_faults(store: TraceStore,
                                                                query: Query) -> None:
    """A fault event is one fault; a flagged span without one is one too; the trace has_fault."""
    event = SpanEventRecord(sc.EVENT_FAULT, NOW + 1, {
        sc.FAULT_SITE: "storage.write", sc.FAULT_KIND: "io", sc.FAULT_RULE_ID: "r1",
        sc.FAULT_SEED: 42, sc.FAULT_ORDINAL: 3, sc.EXCEPTION_TYPE: "OSError"})
    write(store, [make_span(1, 1, attrs={sc.FAULT_INJECTED: True}, events=(event,)),
                  make_span(2, 2, start=NOW + 2, attrs={sc.FAULT_INJECTED: True,
                                                        sc.SITE: "catalog.fetch"})])
    later, first = query.injected_faults()
    assert (first.site, first.fault_kind, first.rule_id, first.seed, first.ordinal) == (
        "storage.write", "io", "r1", "42", 3)
    assert (first.error_type, first.trace_id) == ("OSError", tid(1))
    assert (later.site, later.trace_id) == ("catalog.fetch", tid(2))
    assert [t.has_fault for t in query.traces()] == [True, True]


# -- failures cost records, never the caller ------------------------------------------------------


class FullDisk(sqlite3.Connection):
    """A connection whose inserts fail as on a full disk while ``full`` is set."""

    full = False

    def execute(self, sql: str, *args: Any) -> sqlite3.Cursor:
        self._check(sql)
        return super().execute(sql, *args)

    def executemany(self, sql: str, *args: Any) -> sqlite3.Cursor:
        self._check(sql)
        return super().executemany(sql, *args)

    def _check(self, sql: str) -> None:
        if FullDisk.full and sql.lstrip().upper().startswith("INSERT"):
            raise sqlite3.OperationalError("database or disk is full")


@pytest.fixture
def full_disk(monkeypatch: pytest.MonkeyPatch) -> Iterator[type[FullDisk]]:
    def open_connection(path: Path, busy_timeout: float) -> sqlite3.Connection:
        return sqlite3.connect(path, timeout=busy_timeout, isolation_level=None,
                               check_same_thread=False, factory=FullDisk)

    monkeypatch.setattr(_store, "_open_connection", open_connection)
    yield FullDisk
    FullDisk.full = False


def telemetry_warnings(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "telemetry" and r.levelno == logging.WARNING]


def test_a_full_disk_drops_batches_counts_them_and_warns_once(
        path: Path, full_disk: type[FullDisk], caplog: pytest.LogCaptureFixture) -> None:
    """Writes failing with 'disk full' drop their records, counted, with one warning, no raise."""
    caplog.set_level(logging.WARNING, logger="telemetry")
    with TraceStore(path) as store:
        full_disk.full = True
        write(store, [make_span(1, 1), make_span(2, 2)])
        write(store, [make_span(3, 3)], [LogRecord(NOW, "info", "x", "app", None, None, {})])
        assert (store.dropped, store.write_errors) == (4, 2)
        assert len(telemetry_warnings(caplog)) == 1
        full_disk.full = False
        write(store, [make_span(4, 4)])
    assert rows(path, "SELECT trace_id FROM spans") == [(tid(4),)]


def test_drops_are_saved_for_readers_once_writes_succeed_again(
        path: Path, full_disk: type[FullDisk], query: Query) -> None:
    """The store_counters table carries the writer's dropped count to Query.stats()."""
    with TraceStore(path) as store:
        full_disk.full = True
        write(store, [make_span(1, 1), make_span(2, 2)])
        full_disk.full = False
        write(store, [make_span(3, 3)])
    stats = query.stats()
    assert (stats.dropped, stats.write_errors, stats.spans) == (2, 1, 1)


def test_a_locked_database_drops_the_batch_without_raising(
        path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """While another connection holds an exclusive lock, writes give up after the busy timeout."""
    caplog.set_level(logging.WARNING, logger="telemetry")
    with TraceStore(path, busy_timeout=0.05) as store:
        blocker = sqlite3.connect(path, isolation_level=None)
        blocker.execute("BEGIN EXCLUSIVE")
        try:
            write(store, [make_span(1, 1)])
            assert (store.dropped, store.write_errors) == (1, 1)
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()
        write(store, [make_span(2, 2)])
    assert "locked" in telemetry_warnings(caplog)[0].getMessage()
    assert rows(path, "SELECT trace_id FROM spans") == [(tid(2),)]


def test_a_record_sqlite_cannot_hold_costs_only_itself(
        store: TraceStore, caplog: pytest.LogCaptureFixture) -> None:
    """A span with an out-of-range timestamp is dropped; the rest of its batch is written."""
    caplog.set_level(logging.WARNING, logger="telemetry")
    spans = [make_span(n, n) for n in range(1, 9)]
    spans[5] = make_span(6, 6, start=2**64)
    write(store, spans)
    assert (store.dropped, store.write_errors) == (1, 1)
    assert rows(store.path, "SELECT count(*) FROM spans") == [(7,)]
    assert len(telemetry_warnings(caplog)) == 1


def test_unserialisable_log_fields_are_stored_as_text(store: TraceStore, query: Query) -> None:
    """A log field JSON cannot hold is kept as its str(), not lost with the batch."""
    write(store, [], [LogRecord(NOW, "info", "x", "app", tid(1), None, {"obj": object})])
    detail = query.trace(tid(1))
    assert detail is not None
    assert detail.logs[0].attributes == {"obj": str(object)}


# -- schema ------------------------------------------------------------------------------------------


def test_the_schema_is_created_once_and_reopening_keeps_the_data(path: Path) -> None:
    """A second store on the same file finds the schema and data; the version is recorded."""
    with TraceStore(path) as first:
        write(first, [make_span(1, 1)])
    with TraceStore(path) as second:
        write(second, [make_span(2, 2)])
    assert rows(path, "PRAGMA user_version") == [(SCHEMA_VERSION,)]
    assert rows(path, "PRAGMA journal_mode") == [("wal",)]
    assert rows(path, "SELECT count(*) FROM spans") == [(2,)]


def test_a_newer_schema_version_is_refused(path: Path) -> None:
    """A file written by a newer schema raises StoreVersionError instead of being misread."""
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(StoreVersionError):
        TraceStore(path)


# -- pruning -------------------------------------------------------------------------------------------


def test_prune_deletes_whole_traces_older_than_max_age(path: Path, query: Query) -> None:
    """Expired traces go with their spans, events, logs, faults and error counts; fresh stay."""
    old = NOW - 8 * DAY
    with TraceStore(path, max_age_s=7 * 86400) as store:
        write(store, [make_span(1, 1, start=old, attrs={sc.FAULT_INJECTED: True},
                                events=(failure("fp", time_ns=old), failure("gone", time_ns=old))),
                      make_span(2, 2, events=(failure("fp"),))],
              [LogRecord(old, "info", "old", "app", tid(1), None, {}),
               LogRecord(NOW, "info", "new", "app", tid(2), None, {})])
        assert store.prune() == 2   # one span, one log
    assert [t.trace_id for t in query.traces()] == [tid(2)]
    assert [g.fingerprint for g in query.error_groups()] == ["fp"]
    group = query.error_group("fp")
    assert group is not None
    assert (group.count, group.trace_count, group.first_seen_ns) == (1, 1, NOW)
    stats = query.stats()
    assert (stats.spans, stats.span_events, stats.logs, stats.faults) == (1, 1, 1, 0)


def test_prune_deletes_oldest_traces_until_under_max_bytes(path: Path, query: Query) -> None:
    """Over max_bytes, the oldest traces go first until the pages in use fit again."""
    limit = 256 * 1024
    padding = {"pad": "x" * 400}
    with TraceStore(path, max_bytes=limit) as store:
        write(store, [make_span(n, n, start=NOW + n, attrs=padding) for n in range(1, 2001)])
        assert store.prune() > 0
    conn = sqlite3.connect(path)
    assert used_bytes(conn) <= limit
    conn.close()
    kept = [t.trace_id for t in query.traces(limit=5000)]
    assert 0 < len(kept) < 2000
    assert kept == [tid(n) for n in range(2000, 2000 - len(kept), -1)]
    assert path.stat().st_size <= limit   # free pages went back to the file system


def test_the_writer_prunes_when_the_store_outgrows_max_bytes(
        path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without anyone calling prune(), a flushed store is back within max_bytes."""
    monkeypatch.setattr(_store, "SIZE_CHECK_INTERVAL", 0.0)
    limit = 256 * 1024
    with TraceStore(path, max_bytes=limit) as store:
        write(store, [make_span(n, n, start=NOW + n, attrs={"pad": "x" * 400})
                      for n in range(1, 2001)])
        conn = sqlite3.connect(path)
        assert used_bytes(conn) <= limit
        conn.close()
    assert rows(path, "SELECT max(trace_id) FROM traces") == [(tid(2000),)]


def test_prune_leaves_a_store_within_bounds_alone(store: TraceStore) -> None:
    """Nothing is deleted while the store is young and small."""
    write(store, [make_span(1, 1)])
    assert store.prune() == 0


# -- the exporter -----------------------------------------------------------------------------------


def test_the_exporter_stores_real_sdk_spans(store: TraceStore, query: Query) -> None:
    """Spans from the OpenTelemetry SDK arrive as records: ids, kind, status, events, service."""
    provider = TracerProvider(resource=Resource.create({sc.SERVICE_NAME: "shop"}))
    provider.add_span_processor(SimpleSpanProcessor(StoreSpanExporter(store)))
    tracer = provider.get_tracer("test")
    with (tracer.start_as_current_span("GET /x", kind=SpanKind.SERVER,
                                       attributes={sc.HTTP_ROUTE: "/x"}) as root,
          tracer.start_as_current_span("fetch") as child):
        child.add_event(sc.EVENT_RETRY, {sc.ATTEMPT: 1})
        child.set_status(Status(StatusCode.ERROR, "boom"))
    provider.shutdown()
    assert store.flush()
    trace_id = f"{root.get_span_context().trace_id:032x}"
    detail = query.trace(trace_id)
    assert detail is not None
    top, inner = detail.spans
    assert (top.name, top.kind, top.parent_span_id, top.service_name) == (
        "GET /x", "server", None, "shop")
    assert top.attributes == {sc.HTTP_ROUTE: "/x"}
    assert (inner.parent_span_id, inner.status, inner.status_message) == (top.span_id, "error", "boom")
    assert [(e.name, e.attributes) for e in inner.events] == [(sc.EVENT_RETRY, {sc.ATTEMPT: 1})]
    assert inner.end_ns >= inner.start_ns > 0


def test_span_to_record_formats_ids_as_lowercase_hex() -> None:
    """Trace ids are 32 hex digits and span ids 16, zero-padded."""
    provider = TracerProvider()
    span = provider.get_tracer("test").start_span("x")
    span.end()
    record = span_to_record(span)  # type: ignore[arg-type]
    context = span.get_span_context()
    assert record.trace_id == f"{context.trace_id:032x}"
    assert record.span_id == f"{context.span_id:016x}"
    assert record.kind == "internal"
    assert record.status == "unset"
    assert record.service_name == provider.resource.attributes[sc.SERVICE_NAME]


def test_the_exporter_never_raises_and_reports_failure(store: TraceStore) -> None:
    """A span that cannot be converted fails the export; the others are still stored."""
    provider = TracerProvider()
    span = provider.get_tracer("test").start_span("fine")
    span.end()
    exporter = StoreSpanExporter(store)
    result = exporter.export([span, object()])  # type: ignore[list-item]
    assert result.name == "FAILURE"
    assert exporter.failed == 1
    assert store.flush()
    assert store.dropped == 0
