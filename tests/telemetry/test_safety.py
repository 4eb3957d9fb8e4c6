"""Telemetry never raises into the app and never blocks it: failures cost telemetry, counted."""

from __future__ import annotations

import io
import logging
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

import telemetry
from resilience import Retry, guard
from resilience.testing import waits_off
from telemetry import _store
from telemetry._metrics import DropCounter
from telemetry.flask import Telemetry


class RaisingExporter(SpanExporter):
    """An exporter that raises on every export."""

    def __init__(self) -> None:
        self.calls = 0

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.calls += 1
        raise ConnectionError("collector exploded")


class FailingExporter(SpanExporter):
    """An exporter that reports failure without raising."""

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return SpanExportResult.FAILURE


class BlockedExporter(SpanExporter):
    """An exporter stuck until released (a collector that hangs)."""

    def __init__(self) -> None:
        self.release = threading.Event()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.release.wait(10)
        return SpanExportResult.SUCCESS


def app() -> Flask:
    """A Flask app whose one route makes a guarded call that fails once."""
    flask_app = Flask("safety")
    Telemetry(flask_app)

    @flask_app.get("/work")
    def work() -> dict[str, int]:
        calls = iter([ConnectionError("blip"), None])

        def fetch() -> int:
            if (exc := next(calls)) is not None:
                raise exc
            return 1

        return {"n": guard("safety.fetch", retry=Retry(attempts=2))(fetch)()}

    return flask_app


@pytest.fixture(autouse=True)
def _no_waits() -> Iterator[None]:
    with waits_off():
        yield


def warnings_from_telemetry(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "telemetry" and r.levelno == logging.WARNING]


def test_a_raising_exporter_costs_spans_not_requests(caplog: pytest.LogCaptureFixture) -> None:
    """Every export raises: requests still succeed, spans are counted as dropped, one warning."""
    caplog.set_level(logging.WARNING, logger="telemetry")
    exporter = RaisingExporter()
    telemetry.configure(store=False, log_stream=io.StringIO(), span_exporters=[exporter])
    client = app().test_client()
    for _ in range(3):
        assert client.get("/work").get_json() == {"n": 1}
        telemetry.flush(5.0)
    assert exporter.calls == 3
    assert telemetry.dropped()["RaisingExporter"] == 6  # request span + call span, three times
    assert len(warnings_from_telemetry(caplog)) == 1


def test_an_exporter_reporting_failure_is_counted() -> None:
    """A FAILURE result counts the batch as dropped."""
    telemetry.configure(store=False, log_stream=io.StringIO(), span_exporters=[FailingExporter()])
    assert app().test_client().get("/work").status_code == 200
    telemetry.flush(5.0)
    assert telemetry.dropped()["FailingExporter"] == 2


def test_a_hung_exporter_does_not_block_requests_and_overflow_is_counted() -> None:
    """A collector that hangs fills the queue: requests go on, overflowing spans are counted."""
    exporter = BlockedExporter()
    telemetry.configure(store=False, log_stream=io.StringIO())
    rt = telemetry._config.runtime
    assert rt is not None
    sink = BatchSpanProcessor(exporter, max_queue_size=4, max_export_batch_size=2)
    rt.tracing.fanout.add(sink)
    client = app().test_client()
    try:
        for _ in range(20):
            assert client.get("/work").status_code == 200
        assert telemetry.dropped()["spans_queue_full"] >= 20
    finally:
        exporter.release.set()


class FullDisk(sqlite3.Connection):
    """A connection whose inserts fail as SQLite reports ENOSPC ('database or disk is full')."""

    def execute(self, sql: str, *args: Any) -> sqlite3.Cursor:  # type: ignore[override]
        self._check(sql)
        return super().execute(sql, *args)

    def executemany(self, sql: str, *args: Any) -> sqlite3.Cursor:  # type: ignore[override]
        self._check(sql)
        return super().executemany(sql, *args)

    def _check(self, sql: str) -> None:
        if sql.lstrip().upper().startswith("INSERT"):
            raise sqlite3.OperationalError("database or disk is full")


def test_a_full_store_disk_costs_records_not_requests(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """With the store's disk full, requests succeed and the lost records are counted."""
    caplog.set_level(logging.WARNING, logger="telemetry")

    def open_full(path: Path, busy_timeout: float) -> sqlite3.Connection:
        return sqlite3.connect(path, timeout=busy_timeout, isolation_level=None,
                               check_same_thread=False, factory=FullDisk)

    monkeypatch.setattr(_store, "_open_connection", open_full)
    telemetry.configure(store=tmp_path / "full.db", log_stream=io.StringIO())
    client = app().test_client()
    for _ in range(3):
        assert client.get("/work").status_code == 200
    telemetry.flush(10.0)
    assert telemetry.dropped()["store"] >= 3
    assert len([r for r in warnings_from_telemetry(caplog) if "full" in r.getMessage()]) == 1


def test_a_locked_store_costs_records_not_requests(tmp_path: Path) -> None:
    """Another process holding the database lock: requests succeed, records are dropped, counted."""
    path = tmp_path / "locked.db"
    store = telemetry.TraceStore(path, busy_timeout=0.05)
    telemetry.configure(store=store, log_stream=io.StringIO())
    blocker = sqlite3.connect(path, isolation_level=None)
    blocker.execute("BEGIN EXCLUSIVE")
    try:
        assert app().test_client().get("/work").status_code == 200
        telemetry.flush(10.0)
        assert telemetry.dropped()["store"] >= 1
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
        telemetry.reset()
        store.close()


def test_an_unusable_store_path_runs_without_a_store(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A store that cannot be opened is reported once; the application starts and serves."""
    caplog.set_level(logging.WARNING, logger="telemetry")
    (tmp_path / "file").write_text("not a directory")
    telemetry.configure(store=tmp_path / "file" / "t.db", log_stream=io.StringIO())
    assert app().test_client().get("/work").status_code == 200
    assert any("cannot be opened" in r.getMessage() for r in warnings_from_telemetry(caplog))


def test_an_exporter_raising_at_shutdown_does_not_break_reset() -> None:
    """reset() completes when an exporter's shutdown raises."""
    class BadShutdown(FailingExporter):
        def shutdown(self) -> None:
            raise RuntimeError("shutdown exploded")

    telemetry.configure(store=False, log_stream=io.StringIO(), span_exporters=[BadShutdown()])
    telemetry.reset()
    assert not telemetry.is_configured()


def test_one_warning_per_source_per_interval() -> None:
    """Many losses log one warning per source; another after the interval passes."""
    now = [0.0]
    counter = DropCounter(clock=lambda: now[0])
    logger = logging.getLogger("telemetry")
    seen: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = seen.append  # type: ignore[method-assign]
    logger.addHandler(handler)
    try:
        for _ in range(100):
            counter.report("otlp", 2)
        counter.report("store", 1)
        now[0] = 61.0
        counter.report("otlp", 1)
    finally:
        logger.removeHandler(handler)
    assert [r.getMessage().split(" item")[0] for r in seen] == [
        "telemetry dropped 2 otlp", "telemetry dropped 1 store", "telemetry dropped 1 otlp"]
    assert counter.counts() == {"otlp": 201, "store": 1}


def test_dropped_telemetry_is_a_metric() -> None:
    """Losses are exported as the shockproof.telemetry.dropped counter, by source."""
    telemetry.configure(store=False, log_stream=io.StringIO(), span_exporters=[FailingExporter()])
    app().test_client().get("/work")
    telemetry.flush(5.0)
    points = telemetry.metrics_snapshot()["shockproof.telemetry.dropped"]
    assert {p["attributes"]["shockproof.telemetry.source"]: p["value"] for p in points} == {
        "FailingExporter": 2}
