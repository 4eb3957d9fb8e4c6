"""The store's path: spans straight to its queue, redacted and converted there; rows in chunks."""

from __future__ import annotations

import io
import sqlite3
from pathlib import Path

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind, Status, StatusCode

import telemetry
from telemetry import _semconv as sc
from telemetry._exporter import span_row
from telemetry._records import LogRecord, SpanRecord
from telemetry._redact import Redactor
from telemetry._store import TraceStore
from telemetry._store_rows import build_rows, write_rows
from telemetry._store_schema import connect, prepare
from telemetry.query import Query

EMAIL = "someone.private@example.org"


def test_spans_reach_the_store_redacted(tmp_path: Path) -> None:
    """Name, attributes, events and status message are redacted before they are written."""
    path = tmp_path / "t.db"
    telemetry.configure(store=path, log_stream=io.StringIO())
    with telemetry.get_tracer().start_as_current_span(
            f"lookup {EMAIL}", attributes={"password": "hunter2", "note": f"for {EMAIL}"}) as span:
        span.add_event("found", {"who": EMAIL})
        span.set_status(Status(StatusCode.ERROR, f"no {EMAIL}"))
    assert telemetry.flush(10.0)
    with Query(path) as query:
        detail = query.trace(f"{span.get_span_context().trace_id:032x}")
    assert detail is not None
    (stored,) = detail.spans
    assert stored.name == "lookup [REDACTED]"
    assert stored.attributes == {"password": "[REDACTED]", "note": "for [REDACTED]"}
    assert stored.events[0].attributes == {"who": "[REDACTED]"}
    assert stored.status_message == "no [REDACTED]"


def test_a_span_that_cannot_be_converted_is_dropped_and_counted(tmp_path: Path) -> None:
    """One bad span costs itself: the others of its batch are written."""
    telemetry.configure(store=False, log_stream=io.StringIO())
    rt = telemetry._config.runtime
    assert rt is not None
    good = rt.tracing.lite.start("fine")
    good.end()
    with TraceStore(tmp_path / "t.db") as store:
        store.add_finished([good, object(), good], span_row)
        assert store.flush()
        assert store.dropped == 1
        with Query(store.path) as query:
            assert len(query.trace(f"{good.get_span_context().trace_id:032x}").spans) == 2  # type: ignore[union-attr]


def test_our_spans_convert_as_any_readable_span_does() -> None:
    """The direct read of the package's own spans gives what the ReadableSpan API gives."""
    telemetry.configure(store=False, log_stream=io.StringIO())
    rt = telemetry._config.runtime
    assert rt is not None
    span = rt.tracing.lite.start("GET /x", kind=SpanKind.SERVER,
                                 attributes={sc.HTTP_ROUTE: "/x", "token": "abc123456789"})
    span.add_event("retry", {sc.ATTEMPT: 1})
    span.set_status(Status(StatusCode.ERROR, "boom"))
    span.end()
    assert isinstance(span, ReadableSpan)
    copy = ReadableSpan(name=span.name, context=span.context, parent=span.parent,
                        resource=span.resource, attributes=span.attributes, events=span.events,
                        kind=span.kind, status=span.status, start_time=span.start_time,
                        end_time=span.end_time)
    redactor = Redactor()
    assert span_row(span, redactor) == span_row(copy, redactor)
    assert span_row(span) == span_row(copy)


def test_rows_beyond_sqlites_parameter_limit_are_written_in_chunks(tmp_path: Path) -> None:
    """A batch whose rows need more parameters than SQLite allows in one statement is split."""
    conn = connect(tmp_path / "t.db", 5.0)
    prepare(conn)
    conn.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, 40)  # three span rows (11 values each)
    spans = [SpanRecord(f"{n:032x}", f"{n:016x}", None, "op", "internal", n, n + 1, "unset", "",
                        {"n": n}, (), "svc") for n in range(1, 11)]
    logs = [LogRecord(n, "info", "e", "app", f"{n:032x}", None, {}) for n in range(1, 8)]
    write_rows(conn, build_rows(spans, logs), {})
    assert conn.execute("SELECT count(*), sum(json_extract(attributes, '$.n')) FROM spans").fetchone() == (
        10, 55)
    assert conn.execute("SELECT count(*) FROM traces").fetchone() == (10,)
    assert conn.execute("SELECT count(*) FROM logs").fetchone() == (7,)
    conn.close()
