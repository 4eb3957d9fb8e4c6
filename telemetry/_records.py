"""What the trace store keeps: plain records, independent of OpenTelemetry's classes.

Spans reach the store from the OpenTelemetry SDK (through
:class:`~telemetry._exporter.StoreSpanExporter`), from OTLP/HTTP ingest in the
viewer, or straight from tests; logs from the structlog chain. All of them
become these frozen records first. Their data is already redacted: the store
writes what it is given.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeAlias

#: An attribute value as OpenTelemetry allows it: a scalar or a homogeneous sequence.
AttrValue: TypeAlias = (
    str | bool | int | float
    | Sequence[str] | Sequence[bool] | Sequence[int] | Sequence[float]
)


@dataclass(frozen=True, slots=True)
class SpanEventRecord:
    """A point in time inside a span: a retry, a circuit change, an exception..."""

    name: str
    time_ns: int
    attributes: Mapping[str, AttrValue]


@dataclass(frozen=True, slots=True)
class SpanRecord:
    """One finished span.

    ``trace_id`` is 32 lowercase hex digits and ``span_id`` 16; ``kind`` is
    OpenTelemetry's span kind in lower case (``"server"``, ``"client"``,
    ``"internal"``, ``"producer"``, ``"consumer"``) and ``status`` one of
    ``"unset"``, ``"ok"``, ``"error"``.
    """

    trace_id: str
    span_id: str
    parent_span_id: str | None
    name: str
    kind: str
    start_ns: int
    end_ns: int
    status: str
    status_message: str
    attributes: Mapping[str, AttrValue]
    events: tuple[SpanEventRecord, ...]
    service_name: str


@dataclass(frozen=True, slots=True)
class LogRecord:
    """One structured log line, linked to its trace when it was logged inside one.

    ``attributes`` holds the remaining log fields and must be JSON-serialisable
    (values that are not are stored as their ``str()``).
    """

    time_ns: int
    level: str
    event: str
    logger: str
    trace_id: str | None
    span_id: str | None
    attributes: Mapping[str, Any]
