"""Testing helpers (public API): capture spans and logs in memory.

::

    with telemetry.testing.capture() as cap:
        checkout()
    span = cap.span("payments.charge")
    assert span.attributes["shockproof.kind"] == "network"
    assert cap.log("shockproof.retry_scheduled")["shockproof.attempt"] == 1

When telemetry is not configured, :func:`capture` configures it for the block
(no store, log lines kept in :attr:`Capture.output`, ``settings`` passed on) and
resets it afterwards; when it is, the capture listens alongside the real sinks.
What is captured went through the same redaction as everything else.
"""

from __future__ import annotations

import io
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from . import _config
from . import _semconv as sc
from ._records import LogRecord
from ._tracing import SafeSpanExporter

__all__ = ["Capture", "capture"]


class Capture:
    """Spans and log lines recorded during a :func:`capture` block."""

    def __init__(self, exporter: InMemorySpanExporter, stream: io.StringIO | None) -> None:
        self._exporter = exporter
        self._stream = stream
        self._lock = threading.Lock()
        #: Log event dicts (redacted, before rendering), in order.
        self.logs: list[dict[str, Any]] = []
        #: The same lines as the store receives them.
        self.records: list[LogRecord] = []

    @property
    def spans(self) -> list[ReadableSpan]:
        """Finished spans (redacted), in the order they ended."""
        return list(self._exporter.get_finished_spans())

    @property
    def output(self) -> str:
        """The rendered log lines, when the capture configured telemetry itself ("" otherwise)."""
        return self._stream.getvalue() if self._stream is not None else ""

    def spans_named(self, name: str) -> list[ReadableSpan]:
        return [s for s in self.spans if s.name == name]

    def span(self, name: str) -> ReadableSpan:
        """The last finished span called ``name``; AssertionError if there is none."""
        found = self.spans_named(name)
        if not found:
            raise AssertionError(f"no span named {name!r}; spans: {[s.name for s in self.spans]}")
        return found[-1]

    def events(self, name: str) -> list[Event]:
        """Every span event called ``name``, across spans, in span order."""
        return [e for s in self.spans for e in s.events if e.name == name]

    def logs_named(self, event: str) -> list[dict[str, Any]]:
        return [line for line in self.logs if line.get(sc.LOG_EVENT) == event]

    def log(self, event: str) -> dict[str, Any]:
        """The last log line whose event is ``event``; AssertionError if there is none."""
        found = self.logs_named(event)
        if not found:
            raise AssertionError(f"no log {event!r}; logs: {[line.get(sc.LOG_EVENT) for line in self.logs]}")
        return found[-1]

    def clear(self) -> None:
        self._exporter.clear()
        with self._lock:
            self.logs.clear()
            self.records.clear()

    def _add_log(self, event_dict: dict[str, Any], record: LogRecord) -> None:
        with self._lock:
            self.logs.append(event_dict)
            self.records.append(record)


@contextmanager
def capture(**settings: Any) -> Iterator[Capture]:
    """Capture spans and logs for the block (configuring telemetry for it when needed)."""
    own = not _config.is_configured()
    stream: io.StringIO | None = None
    if own:
        stream = io.StringIO()
        _config.configure(**{"service_name": "test", "store": False, "log_stream": stream, **settings})
    elif settings:
        warnings.warn("telemetry is already configured; capture(**settings) ignored them",
                      _config.TelemetryWarning, stacklevel=3)
    rt = _config.runtime
    if rt is None:  # pragma: no cover - configure() either starts or raises
        raise RuntimeError("telemetry is not configured")
    exporter = InMemorySpanExporter()
    sink = SimpleSpanProcessor(SafeSpanExporter(exporter, rt.redactor, "capture"))
    cap = Capture(exporter, stream)
    rt.deferred.drain()
    rt.deferred.immediate += 1  # while captured, requests are completed as they finish
    rt.tracing.fanout.add(sink)
    rt.logs.add_capture(cap._add_log)
    try:
        yield cap
    finally:
        rt.deferred.immediate -= 1
        rt.tracing.fanout.remove(sink)
        rt.logs.remove_capture(cap._add_log)
        if own:
            _config.reset()
