"""The boundary between OpenTelemetry's SDK spans and the trace store's records."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any, Final

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.trace import SpanKind, StatusCode

from . import _semconv as sc
from ._records import SpanEventRecord, SpanRecord
from ._store import TraceStore

_log = logging.getLogger("telemetry")

_KINDS: Final = {kind: kind.name.lower() for kind in SpanKind}
_STATUSES: Final = {code: code.name.lower() for code in StatusCode}
UNKNOWN_SERVICE: Final = "unknown_service"


def span_to_record(span: ReadableSpan) -> SpanRecord:
    """A finished SDK span as a :class:`SpanRecord` (ids as lowercase hex)."""
    context = span.context
    if context is None:
        raise ValueError("span without a context")
    parent = span.parent
    start = span.start_time or 0
    status = span.status
    service = span.resource.attributes.get(sc.SERVICE_NAME) or UNKNOWN_SERVICE
    return SpanRecord(
        trace_id=f"{context.trace_id:032x}",
        span_id=f"{context.span_id:016x}",
        parent_span_id=f"{parent.span_id:016x}" if parent is not None else None,
        name=span.name,
        kind=_KINDS.get(span.kind, "internal"),
        start_ns=start,
        end_ns=span.end_time or start,
        status=_STATUSES.get(status.status_code, "unset"),
        status_message=status.description or "",
        attributes=_plain(span.attributes),
        events=tuple(SpanEventRecord(e.name, e.timestamp, _plain(e.attributes))
                     for e in span.events),
        service_name=str(service),
    )


def _plain(attributes: Mapping[str, Any] | None) -> dict[str, Any]:
    return dict(attributes) if attributes else {}


class StoreSpanExporter(SpanExporter):
    """Exports finished spans into a :class:`TraceStore`; never raises.

    The store is the caller's: :meth:`shutdown` flushes it but does not close it.
    """

    def __init__(self, store: TraceStore) -> None:
        self.store = store
        self.failed = 0

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        records: list[SpanRecord] = []
        for span in spans:
            try:
                records.append(span_to_record(span))
            except Exception:
                self.failed += 1
                _log.debug("telemetry: a span could not be converted for the store", exc_info=True)
        self.store.add_spans(records)
        return SpanExportResult.SUCCESS if len(records) == len(spans) else SpanExportResult.FAILURE

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        try:
            return self.store.flush(timeout_millis / 1000)
        except Exception:
            return False

    def shutdown(self) -> None:
        self.force_flush(5_000)
