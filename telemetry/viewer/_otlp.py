"""OTLP in and out: export requests (protobuf or JSON) to store records, and records to OTLP JSON.

This is the one module that touches ``opentelemetry.proto`` and protobuf. Both
wire formats decode into the protobuf classes first (JSON through protobuf's
JSON parser, after the OTLP/JSON mapping's hex trace and span ids are turned
into the base64 that protobuf's mapping expects), so both are validated alike;
then one converter makes :class:`SpanRecord` and :class:`LogRecord` objects,
redacted through a :class:`~telemetry.Redactor` on the way in. Anything that
cannot be decoded raises :class:`OtlpError` (the HTTP layer answers 400).
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final

from google.protobuf import json_format  # type: ignore[import-untyped]
from google.protobuf.message import DecodeError  # type: ignore[import-untyped]
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from telemetry import _semconv as sc
from telemetry._records import AttrValue, LogRecord, SpanEventRecord, SpanRecord
from telemetry._redact import Redactor
from telemetry.query import TraceDetail

UNKNOWN_SERVICE: Final = "unknown_service"
_SPAN_KINDS: Final = {0: "internal", 1: "internal", 2: "server", 3: "client", 4: "producer",
                      5: "consumer"}
_KIND_NUMBERS: Final = {"internal": 1, "server": 2, "client": 3, "producer": 4, "consumer": 5}
_STATUSES: Final = {0: "unset", 1: "ok", 2: "error"}
_STATUS_NUMBERS: Final = {"unset": 0, "ok": 1, "error": 2}
#: Severity number ranges (OTLP logs data model) -> level names as structlog writes them.
_SEVERITIES: Final = ((21, "critical"), (17, "error"), (13, "warning"), (9, "info"), (5, "debug"),
                      (1, "trace"))
_LEVEL_NUMBERS: Final = {"trace": 1, "debug": 5, "info": 9, "warning": 13, "warn": 13, "error": 17,
                         "critical": 21, "fatal": 21}
_ID_FIELDS: Final = {"traceId": 16, "spanId": 8, "parentSpanId": 8, "trace_id": 16, "span_id": 8,
                     "parent_span_id": 8}
_MAX_DEPTH: Final = 32
SIGNALS: Final = ("traces", "logs")


class OtlpError(ValueError):
    """An export request that cannot be decoded or holds invalid data."""


# -- decoding -----------------------------------------------------------------------------------


def decode(signal: str, body: bytes, *, json_body: bool) -> Any:
    """The ``ExportTraceServiceRequest`` or ``ExportLogsServiceRequest`` in ``body``."""
    message = ExportTraceServiceRequest() if signal == "traces" else ExportLogsServiceRequest()
    if not json_body:
        try:
            message.ParseFromString(body)
        except (DecodeError, ValueError, RecursionError) as exc:
            raise OtlpError(f"not a valid OTLP protobuf export request: {exc}") from None
        return message
    try:
        document = json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise OtlpError(f"not valid JSON: {exc}") from None
    if not isinstance(document, dict):
        raise OtlpError("the JSON body must be an object (an OTLP export request)")
    try:
        json_format.ParseDict(_ids_to_base64(document, 0), message, ignore_unknown_fields=True)
    except OtlpError:
        raise
    except (json_format.ParseError, ValueError, TypeError, RecursionError) as exc:
        raise OtlpError(f"not a valid OTLP/JSON export request: {exc}") from None
    return message


def _ids_to_base64(node: Any, depth: int) -> Any:
    """OTLP/JSON writes trace and span ids in hex; protobuf's JSON mapping wants base64."""
    if depth > _MAX_DEPTH:
        raise OtlpError("the JSON body is nested too deeply")
    if isinstance(node, list):
        return [_ids_to_base64(v, depth + 1) for v in node]
    if not isinstance(node, dict):
        return node
    out = {}
    for key, value in node.items():
        if key in _ID_FIELDS and isinstance(value, str):
            out[key] = _hex_to_base64(key, value, _ID_FIELDS[key])
        else:
            out[key] = _ids_to_base64(value, depth + 1)
    return out


def _hex_to_base64(key: str, value: str, size: int) -> str:
    if value == "":
        return ""
    try:
        raw = bytes.fromhex(value)
    except ValueError:
        raise OtlpError(f"{key} must be {size * 2} hex digits, not {value[:40]!r}") from None
    if len(raw) != size:
        raise OtlpError(f"{key} must be {size * 2} hex digits, not {len(value)}")
    return base64.b64encode(raw).decode("ascii")


def response(signal: str, *, json_body: bool) -> tuple[bytes, str]:
    """An empty (fully successful) export response in the request's format."""
    if json_body:
        return b"{}", "application/json"
    message = ExportTraceServiceResponse() if signal == "traces" else ExportLogsServiceResponse()
    return message.SerializeToString(), "application/x-protobuf"


def spans_of(request: Any, redactor: Redactor) -> list[SpanRecord]:
    """The spans of an ``ExportTraceServiceRequest``, redacted."""
    records = []
    for resource_spans in request.resource_spans:
        service = redactor.text(_service(resource_spans.resource.attributes))
        for scope_spans in resource_spans.scope_spans:
            records += [_span(s, service, redactor) for s in scope_spans.spans]
    return records


def logs_of(request: Any, redactor: Redactor, now_ns: int) -> list[LogRecord]:
    """The log records of an ``ExportLogsServiceRequest``, redacted."""
    records = []
    for resource_logs in request.resource_logs:
        service = _service(resource_logs.resource.attributes)
        for scope_logs in resource_logs.scope_logs:
            logger = scope_logs.scope.name or service
            records += [_log(r, logger, service, redactor, now_ns) for r in scope_logs.log_records]
    return records


def _service(attributes: Iterable[Any]) -> str:
    for kv in attributes:
        if kv.key == sc.SERVICE_NAME and kv.value.WhichOneof("value") == "string_value":
            return str(kv.value.string_value) or UNKNOWN_SERVICE
    return UNKNOWN_SERVICE


def _span(span: Any, service: str, redactor: Redactor) -> SpanRecord:
    trace_id = _id(span.trace_id, 16, "trace_id", required=True)
    span_id = _id(span.span_id, 8, "span_id", required=True)
    assert trace_id is not None
    assert span_id is not None
    start = int(span.start_time_unix_nano)
    end = max(start, int(span.end_time_unix_nano))
    events = tuple(SpanEventRecord(redactor.text(e.name), int(e.time_unix_nano) or start,
                                   redactor.attributes(attributes(e.attributes)))
                   for e in span.events)
    return SpanRecord(
        trace_id=trace_id, span_id=span_id,
        parent_span_id=_id(span.parent_span_id, 8, "parent_span_id", required=False),
        name=redactor.text(span.name) or "(unnamed)", kind=_SPAN_KINDS.get(span.kind, "internal"),
        start_ns=start, end_ns=end, status=_STATUSES.get(span.status.code, "unset"),
        status_message=redactor.text(span.status.message),
        attributes=redactor.attributes(attributes(span.attributes)), events=events,
        service_name=service)


def _log(record: Any, logger: str, service: str, redactor: Redactor, now_ns: int) -> LogRecord:
    fields: dict[str, Any] = {kv.key: _any(kv.value, nested=True, depth=0)
                              for kv in record.attributes}
    body = _any(record.body, nested=True, depth=0) if record.HasField("body") else None
    if isinstance(body, dict):
        event = str(body.pop("event", "") or "log")
        fields = {**body, **fields}
    else:
        event = "" if body is None else str(body)
    fields.setdefault(sc.SERVICE_NAME, service)
    level = str(record.severity_text).lower() or _level(int(record.severity_number))
    return LogRecord(
        time_ns=int(record.time_unix_nano) or int(record.observed_time_unix_nano) or now_ns,
        level=level, event=redactor.text(event), logger=redactor.text(logger),
        trace_id=_id(record.trace_id, 16, "trace_id", required=False),
        span_id=_id(record.span_id, 8, "span_id", required=False),
        attributes=redactor.mapping(fields))


def _level(number: int) -> str:
    for low, name in _SEVERITIES:
        if number >= low:
            return name
    return "info"


def _id(raw: bytes, size: int, name: str, *, required: bool) -> str | None:
    if not raw or raw == bytes(size):
        if required:
            raise OtlpError(f"a span without a {name}")
        return None
    if len(raw) != size:
        raise OtlpError(f"{name} must be {size} bytes, not {len(raw)}")
    return raw.hex()


def attributes(kvs: Iterable[Any]) -> dict[str, AttrValue]:
    """OTLP key-values as attributes (nested values become JSON text)."""
    out: dict[str, AttrValue] = {}
    for kv in kvs:
        value = _any(kv.value, nested=False, depth=0)
        if value is not None:
            out[str(kv.key)] = value
    return out


def _any(value: Any, *, nested: bool, depth: int) -> Any:
    """An ``AnyValue`` as Python: scalars as they are; arrays as tuples of one scalar type (or
    JSON text when mixed); key-value lists as JSON text, or dicts when ``nested``."""
    which = value.WhichOneof("value")
    if which is None:
        return None
    if which in ("string_value", "bool_value", "int_value", "double_value"):
        return getattr(value, which)
    if which == "bytes_value":
        return binascii.hexlify(value.bytes_value).decode("ascii")
    if depth >= _MAX_DEPTH:
        raise OtlpError("an attribute value is nested too deeply")
    if which == "array_value":
        items = [_any(v, nested=nested, depth=depth + 1) for v in value.array_value.values]
        if nested or _homogeneous(items):
            return list(items) if nested else tuple(items)
        return json.dumps(items, default=str)
    mapping = {kv.key: _any(kv.value, nested=True, depth=depth + 1)
               for kv in value.kvlist_value.values}
    return mapping if nested else json.dumps(mapping, default=str)


def _homogeneous(items: Sequence[Any]) -> bool:
    kinds = {type(v) for v in items}
    return len(kinds) <= 1 and kinds <= {str, bool, int, float}


# -- exporting ------------------------------------------------------------------------------------


def export_spans(detail: TraceDetail) -> dict[str, Any]:
    """A trace's spans as an OTLP/JSON ``ExportTraceServiceRequest`` (one resource per service)."""
    by_service: dict[str, list[dict[str, Any]]] = {}
    for span in detail.spans:
        by_service.setdefault(span.service_name, []).append(_span_json(span))
    return {"resourceSpans": [
        {"resource": {"attributes": [_kv(sc.SERVICE_NAME, service)]},
         "scopeSpans": [{"scope": {"name": "shockproof"}, "spans": spans}]}
        for service, spans in by_service.items()]}


def export_logs(detail: TraceDetail) -> dict[str, Any]:
    """A trace's log lines as an OTLP/JSON ``ExportLogsServiceRequest`` (one scope per logger)."""
    by_logger: dict[str, list[dict[str, Any]]] = {}
    for log in detail.logs:
        by_logger.setdefault(log.logger, []).append(_log_json(log))
    return {"resourceLogs": [{"resource": {"attributes": []}, "scopeLogs": [
        {"scope": {"name": logger}, "logRecords": records}
        for logger, records in by_logger.items()]}]} if by_logger else {"resourceLogs": []}


def _span_json(span: SpanRecord) -> dict[str, Any]:
    out: dict[str, Any] = {"traceId": span.trace_id, "spanId": span.span_id}
    if span.parent_span_id:
        out["parentSpanId"] = span.parent_span_id
    out |= {
        "name": span.name, "kind": _KIND_NUMBERS.get(span.kind, 1),
        "startTimeUnixNano": str(span.start_ns), "endTimeUnixNano": str(span.end_ns),
        "attributes": _kvs(span.attributes),
        "events": [{"timeUnixNano": str(e.time_ns), "name": e.name, "attributes": _kvs(e.attributes)}
                   for e in span.events],
        "status": {"code": _STATUS_NUMBERS.get(span.status, 0), "message": span.status_message},
    }
    return out


def _log_json(log: LogRecord) -> dict[str, Any]:
    out: dict[str, Any] = {
        "timeUnixNano": str(log.time_ns), "severityText": log.level,
        "severityNumber": _LEVEL_NUMBERS.get(log.level.lower(), 0),
        "body": {"stringValue": log.event}, "attributes": _kvs(log.attributes)}
    if log.trace_id:
        out["traceId"] = log.trace_id
    if log.span_id:
        out["spanId"] = log.span_id
    return out


def _kvs(attrs: Mapping[str, Any]) -> list[dict[str, Any]]:
    return [_kv(k, v) for k, v in attrs.items()]


def _kv(key: str, value: Any) -> dict[str, Any]:
    return {"key": key, "value": _value_json(value, 0)}


def _value_json(value: Any, depth: int) -> dict[str, Any]:
    if isinstance(value, bool):
        return {"boolValue": value}
    if isinstance(value, int):
        return {"intValue": str(value)}
    if isinstance(value, float):
        return {"doubleValue": value}
    if isinstance(value, list | tuple) and depth < _MAX_DEPTH:
        return {"arrayValue": {"values": [_value_json(v, depth + 1) for v in value]}}
    if isinstance(value, Mapping) and depth < _MAX_DEPTH:
        return {"kvlistValue": {"values": [{"key": str(k), "value": _value_json(v, depth + 1)}
                                           for k, v in value.items()]}}
    return {"stringValue": value if isinstance(value, str) else str(value)}
