"""The boundary between OpenTelemetry's SDK spans and the trace store's records.

Two ways in. :class:`StoreSink` is how ``telemetry.configure()`` feeds its store:
a span processor that hands each finished span straight to the store's bounded
queue (no batch span processor, no thread of its own), where the store's writer
redacts and converts it, in its batch, with :func:`span_row`. :class:`StoreSpanExporter`
is a plain ``SpanExporter`` for those who run their own OpenTelemetry pipeline.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any, Final

from opentelemetry import context as otel_context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.trace import SpanKind, StatusCode

from . import _semconv as sc
from ._lite import LiteSpan
from ._records import SpanEventRecord, SpanRecord
from ._redact import Redactor
from ._store import TraceStore
from ._store_rows import SpanRow

_log = logging.getLogger("telemetry")

_KINDS: Final = {kind: kind.name.lower() for kind in SpanKind}
_STATUSES: Final = {code: code.name.lower() for code in StatusCode}
UNKNOWN_SERVICE: Final = "unknown_service"


def span_to_record(span: ReadableSpan) -> SpanRecord:
    """A finished SDK span as a :class:`SpanRecord` (ids as lowercase hex)."""
    return SpanRecord(*span_row(span))


def span_row(span: ReadableSpan, redactor: Redactor | None = None) -> SpanRow:
    """A finished span as a :class:`SpanRow` (a :class:`SpanRecord`'s fields), its name, status
    message, attributes and events redacted first when ``redactor`` is given."""
    attrs: Mapping[str, Any] | None
    if isinstance(span, LiteSpan):  # the package's own: its fields read directly
        context, parent, name, attrs = span._context, span._parent, span._name, span._attributes
        kind, status, events = span._kind, span._status, span._events
        start, end, resource = span._start_time, span._end_time, span._tracer.resource
    else:
        context, parent, name, attrs = span.context, span.parent, span.name, span.attributes
        kind, status, events = span.kind, span.status, span.events
        start, end, resource = span.start_time, span.end_time, span.resource
    if context is None:
        raise ValueError("span without a context")
    start = start or 0
    message = status.description or ""
    if redactor is not None:
        name = redactor.text(name)
        message = redactor.text(message) if message else message
        plain = redactor.attributes(attrs)
        records = tuple(SpanEventRecord(redactor.text(e.name), e.timestamp,
                                        redactor.attributes(e.attributes))
                        for e in events) if events else ()
    else:
        plain = _plain(attrs)
        records = tuple(SpanEventRecord(e.name, e.timestamp, _plain(e.attributes))
                        for e in events) if events else ()
    return SpanRow(f"{context.trace_id:032x}", f"{context.span_id:016x}",
                   f"{parent.span_id:016x}" if parent is not None else None, name,
                   _KINDS.get(kind, "internal"), start, end or start,
                   _STATUSES.get(status.status_code, "unset"), message, plain, records,
                   _service(resource))


_last_service: tuple[Resource | None, str] = (None, UNKNOWN_SERVICE)


def _service(resource: Resource) -> str:
    """The resource's ``service.name`` (remembered for the last resource: spans share one)."""
    global _last_service
    seen, name = _last_service
    if resource is not seen:
        name = str(resource.attributes.get(sc.SERVICE_NAME) or UNKNOWN_SERVICE)
        _last_service = (resource, name)
    return name


def _plain(attributes: Mapping[str, Any] | None) -> dict[str, Any]:
    return dict(attributes) if attributes else {}


class StoreSink(SpanProcessor):
    """Hands finished spans to a :class:`TraceStore`, redacted and converted on its writer."""

    def __init__(self, store: TraceStore, redactor: Redactor) -> None:
        self.store = store
        self.redactor = redactor

    def _convert(self, span: ReadableSpan) -> SpanRow:
        return span_row(span, self.redactor)

    def on_start(self, span: Any, parent_context: otel_context.Context | None = None) -> None:
        return None

    def on_end(self, span: ReadableSpan) -> None:
        context = span.context
        if context is not None and context.trace_flags.sampled:
            self.store.add_finished((span,), self._convert)

    def shutdown(self) -> None:
        self.force_flush(5_000)

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        try:
            return self.store.flush(timeout_millis / 1000)
        except Exception:
            return False


class StoreSpanExporter(SpanExporter):
    """Exports finished spans into a :class:`TraceStore`; never raises.

    The store is the caller's: :meth:`shutdown` flushes it but does not close it.
    """

    def __init__(self, store: TraceStore) -> None:
        self.store = store
        self.failed = 0

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        records: list[SpanRow] = []
        for span in spans:
            try:
                records.append(span_row(span))
            except Exception:
                self.failed += 1
                _log.debug("telemetry: a span could not be converted for the store", exc_info=True)
        self.store.add_spans(records)  # type: ignore[arg-type]
        return SpanExportResult.SUCCESS if len(records) == len(spans) else SpanExportResult.FAILURE

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        try:
            return self.store.flush(timeout_millis / 1000)
        except Exception:
            return False

    def shutdown(self) -> None:
        self.force_flush(5_000)
