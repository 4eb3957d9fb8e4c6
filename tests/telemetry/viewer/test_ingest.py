"""OTLP/HTTP ingest at /v1/traces and /v1/logs: protobuf and JSON in, records in the store."""

from __future__ import annotations

import gzip
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, ArrayValue, KeyValue
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord, ResourceLogs, ScopeLogs
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span, Status

from telemetry.query import Query
from telemetry.viewer import create_app

from .conftest import Served, close
from .scenario import Scenario

TRACE = bytes(range(1, 17))
SPAN = bytes(range(1, 9))
CHILD = bytes(range(11, 19))
NOW = time.time_ns()
PROTOBUF = "application/x-protobuf"


def kv(key: str, value: Any) -> KeyValue:
    if isinstance(value, bool):
        return KeyValue(key=key, value=AnyValue(bool_value=value))
    if isinstance(value, int):
        return KeyValue(key=key, value=AnyValue(int_value=value))
    if isinstance(value, float):
        return KeyValue(key=key, value=AnyValue(double_value=value))
    if isinstance(value, list):
        return KeyValue(key=key, value=AnyValue(array_value=ArrayValue(
            values=[AnyValue(string_value=v) for v in value])))
    return KeyValue(key=key, value=AnyValue(string_value=value))


def trace_request(**attrs: Any) -> ExportTraceServiceRequest:
    """A request of two spans: a failed server span and its child with a retry event."""
    root = Span(trace_id=TRACE, span_id=SPAN, name="GET /orders", kind=Span.SPAN_KIND_SERVER,
                start_time_unix_nano=NOW, end_time_unix_nano=NOW + 5_000_000,
                attributes=[kv("http.route", "/orders"), kv("http.response.status_code", 503),
                            *(kv(k, v) for k, v in attrs.items())],
                status=Status(code=Status.STATUS_CODE_ERROR, message="upstream down"))
    child = Span(trace_id=TRACE, span_id=CHILD, parent_span_id=SPAN, name="orders.fetch",
                 kind=Span.SPAN_KIND_CLIENT, start_time_unix_nano=NOW + 1_000_000,
                 end_time_unix_nano=NOW + 4_000_000,
                 attributes=[kv("shockproof.kind", "network"), kv("shockproof.fingerprint", "f00d"),
                             kv("error.type", "ConnectionError"), kv("retry.ok", True),
                             kv("ratio", 0.5), kv("tags", ["a", "b"])],
                 events=[Span.Event(time_unix_nano=NOW + 2_000_000, name="shockproof.retry_scheduled",
                                    attributes=[kv("shockproof.attempt", 1),
                                                kv("shockproof.retry.wait_s", 0.1)])])
    return ExportTraceServiceRequest(resource_spans=[ResourceSpans(
        resource=Resource(attributes=[kv("service.name", "orders-go")]),
        scope_spans=[ScopeSpans(spans=[root, child])])])


def log_request(**attrs: Any) -> ExportLogsServiceRequest:
    record = LogRecord(time_unix_nano=NOW + 3_000_000, severity_number=17,
                       body=AnyValue(string_value="order lookup failed"), trace_id=TRACE,
                       span_id=CHILD, attributes=[kv("order.id", 42), *(kv(k, v) for k, v in attrs.items())])
    return ExportLogsServiceRequest(resource_logs=[ResourceLogs(
        resource=Resource(attributes=[kv("service.name", "orders-go")]),
        scope_logs=[ScopeLogs(log_records=[record])])])


def stored(app: Flask, trace_id: str = TRACE.hex()) -> Any:
    state = app.extensions["shockproof.viewer"]
    return state.query.trace(trace_id)


def post(client: FlaskClient, path: str, body: bytes | str, content_type: str,
         **headers: str) -> Any:
    return client.post(path, data=body, content_type=content_type, headers=headers)


@pytest.fixture
def client(empty_app: Flask) -> FlaskClient:
    return empty_app.test_client()


# -- protobuf -----------------------------------------------------------------------------------


def test_protobuf_spans_are_stored(empty_app: Flask, client: FlaskClient) -> None:
    """Spans sent as protobuf are in the store with ids, kinds, status, attributes and events."""
    response = post(client, "/v1/traces", trace_request().SerializeToString(), PROTOBUF)
    assert response.status_code == 200
    assert response.mimetype == PROTOBUF
    ExportTraceServiceResponse().ParseFromString(response.data)
    detail = stored(empty_app)
    root, child = detail.spans
    assert (root.span_id, root.kind, root.status, root.status_message) == (
        SPAN.hex(), "server", "error", "upstream down")
    assert (child.parent_span_id, child.kind, child.service_name) == (SPAN.hex(), "client", "orders-go")
    assert dict(child.attributes) == {"shockproof.kind": "network", "shockproof.fingerprint": "f00d",
                                      "error.type": "ConnectionError", "retry.ok": True,
                                      "ratio": 0.5, "tags": ("a", "b")}
    assert [e.name for e in child.events] == ["shockproof.retry_scheduled"]
    assert detail.summary.route == "/orders"


def test_protobuf_logs_are_stored_linked_to_their_trace(empty_app: Flask,
                                                        client: FlaskClient) -> None:
    """A log record keeps its trace and span ids; the severity number gives its level."""
    assert post(client, "/v1/logs", log_request().SerializeToString(), PROTOBUF).status_code == 200
    (log,) = stored(empty_app).logs
    assert (log.level, log.event, log.trace_id, log.span_id) == (
        "error", "order lookup failed", TRACE.hex(), CHILD.hex())
    assert log.attributes["order.id"] == 42


def test_ingested_errors_appear_on_the_errors_page(client: FlaskClient) -> None:
    """A span carrying a kind and fingerprint becomes an error group the viewer lists."""
    post(client, "/v1/traces", trace_request().SerializeToString(), PROTOBUF)
    html = client.get("/?kind=network").get_data(as_text=True)
    assert "ConnectionError" in html
    assert f"/traces/{TRACE.hex()}" in html


def test_ingested_data_is_redacted_before_it_is_stored(empty_app: Flask,
                                                       client: FlaskClient) -> None:
    """Secrets in span attributes and log fields never reach the store."""
    post(client, "/v1/traces", trace_request(**{"user.email": "ada@example.com",
                                               "db.password": "hunter2",
                                               "note": "sent Bearer abcdefghijklmnop"})
         .SerializeToString(), PROTOBUF)
    post(client, "/v1/logs", log_request(session_token="tok-123456789", contact="ada@example.com")
         .SerializeToString(), PROTOBUF)
    detail = stored(empty_app)
    text = json.dumps([dict(s.attributes) for s in detail.spans] + [dict(detail.logs[0].attributes)])
    for secret in ("ada@example.com", "hunter2", "abcdefghijklmnop", "tok-123456789"):
        assert secret not in text
    assert "[REDACTED]" in text


# -- JSON ------------------------------------------------------------------------------------


def json_trace() -> dict[str, Any]:
    """The OTLP/JSON mapping: hex ids, camelCase, 64-bit integers as strings, enums as numbers."""
    return {"resourceSpans": [{
        "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "js-shop"}}]},
        "scopeSpans": [{"scope": {"name": "shop"}, "spans": [{
            "traceId": TRACE.hex(), "spanId": SPAN.hex(), "name": "POST /cart", "kind": 2,
            "startTimeUnixNano": str(NOW), "endTimeUnixNano": str(NOW + 2_000_000),
            "attributes": [{"key": "http.route", "value": {"stringValue": "/cart"}},
                           {"key": "http.response.status_code", "value": {"intValue": "500"}}],
            "events": [{"timeUnixNano": str(NOW + 1000), "name": "exception", "attributes": [
                {"key": "exception.type", "value": {"stringValue": "TypeError"}}]}],
            "status": {"code": 2, "message": "boom"}}]}]}]}


def test_json_spans_are_stored(empty_app: Flask, client: FlaskClient) -> None:
    """OTLP/JSON spans are stored like protobuf ones."""
    response = post(client, "/v1/traces", json.dumps(json_trace()), "application/json")
    assert response.status_code == 200
    assert response.get_json() == {}
    (span,) = stored(empty_app).spans
    assert (span.name, span.kind, span.status, span.service_name) == ("POST /cart", "server",
                                                                      "error", "js-shop")
    assert span.attributes["http.response.status_code"] == 500
    assert [e.name for e in span.events] == ["exception"]


def test_json_logs_are_stored(empty_app: Flask, client: FlaskClient) -> None:
    """OTLP/JSON log records, with a structured body, are stored."""
    body = {"resourceLogs": [{"scopeLogs": [{"scope": {"name": "shop.cart"}, "logRecords": [{
        "timeUnixNano": str(NOW), "severityText": "WARN", "traceId": TRACE.hex(),
        "spanId": SPAN.hex(),
        "body": {"kvlistValue": {"values": [{"key": "event", "value": {"stringValue": "cart full"}},
                                            {"key": "items", "value": {"intValue": "12"}}]}}}]}]}]}
    assert post(client, "/v1/logs", json.dumps(body), "application/json").status_code == 200
    (log,) = stored(empty_app).logs
    assert (log.level, log.event, log.logger, log.attributes["items"]) == ("warn", "cart full",
                                                                           "shop.cart", 12)


def test_gzip_bodies_are_accepted(empty_app: Flask, client: FlaskClient) -> None:
    """Content-Encoding: gzip, as exporters send with compression on."""
    body = gzip.compress(trace_request().SerializeToString())
    response = post(client, "/v1/traces", body, PROTOBUF, **{"Content-Encoding": "gzip"})
    assert response.status_code == 200
    assert len(stored(empty_app).spans) == 2


def test_exported_trace_ingests_back_unchanged(app: Flask, scenario: Scenario,
                                               tmp_path: Path) -> None:
    """The viewer's OTLP JSON export, posted to another viewer, gives back the same spans."""
    trace_id = scenario.traces["network"]
    exported = app.test_client().get(f"/traces/{trace_id}/otlp.json").data
    other = create_app(tmp_path / "copy.db")
    try:
        response = post(other.test_client(), "/v1/traces", exported, "application/json")
        assert response.status_code == 200
        original, copy = stored(app, trace_id), stored(other, trace_id)
        assert copy.spans == original.spans
    finally:
        close(other)


def test_exported_log_lines_ingest_back(app: Flask, scenario: Scenario, tmp_path: Path) -> None:
    """The log lines' OTLP JSON export, posted to another viewer's /v1/logs, gives them back."""
    trace_id = scenario.traces["network"]
    exported = app.test_client().get(f"/traces/{trace_id}/otlp-logs.json").data
    other = create_app(tmp_path / "copy.db")
    try:
        assert post(other.test_client(), "/v1/logs", exported, "application/json").status_code == 200
        original, copy = stored(app, trace_id).logs, stored(other, trace_id).logs
        assert [(log.event, log.level, log.span_id) for log in copy] == [
            (log.event, log.level, log.span_id) for log in original]
        assert copy[0].attributes["note"] == original[0].attributes["note"]
    finally:
        close(other)


# -- refusals --------------------------------------------------------------------------------------


@pytest.mark.parametrize(("body", "content_type"), [
    (b"\xff\xff\xff\xff not protobuf", PROTOBUF),
    (b"{not json", "application/json"),
    (b"[1, 2, 3]", "application/json"),
    (json.dumps({"resourceSpans": "nope"}).encode(), "application/json"),
    (json.dumps({"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": "abcd", "spanId": SPAN.hex()}]}]}]}).encode(),
     "application/json"),
    (json.dumps({"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": "zz" * 16, "spanId": SPAN.hex()}]}]}]}).encode(),
     "application/json"),
    (ExportTraceServiceRequest(resource_spans=[ResourceSpans(scope_spans=[ScopeSpans(
        spans=[Span(span_id=SPAN, name="no trace id")])])]).SerializeToString(), PROTOBUF),
    (ExportTraceServiceRequest(resource_spans=[ResourceSpans(scope_spans=[ScopeSpans(
        spans=[Span(trace_id=TRACE, span_id=b"\x01\x02", name="short id")])])]).SerializeToString(),
     PROTOBUF),
    (b"[" * 100_000 + b"]" * 100_000, "application/json"),
])
def test_malformed_payloads_are_400_problems(client: FlaskClient, body: bytes,
                                             content_type: str) -> None:
    """Anything that cannot be decoded is a 400 problem+json, never a 500."""
    response = post(client, "/v1/traces", body, content_type)
    assert response.status_code == 400
    assert response.mimetype == "application/problem+json"
    assert response.get_json()["status"] == 400


def test_bad_gzip_is_a_400(client: FlaskClient) -> None:
    """A body that says gzip but is not."""
    response = post(client, "/v1/traces", b"plain", PROTOBUF, **{"Content-Encoding": "gzip"})
    assert response.status_code == 400


def test_unknown_content_type_is_415(client: FlaskClient) -> None:
    """Only protobuf and JSON are accepted."""
    response = post(client, "/v1/logs", b"hello", "text/plain")
    assert response.status_code == 415
    assert response.mimetype == "application/problem+json"


def test_oversized_body_is_413(tmp_path: Path) -> None:
    """A body over the limit is refused before it is decoded."""
    app = create_app(tmp_path / "t.db", max_body_bytes=1000)
    try:
        response = post(app.test_client(), "/v1/traces", b"\x00" * 5000, PROTOBUF)
        assert response.status_code == 413
        assert response.mimetype == "application/problem+json"
    finally:
        close(app)


def test_gzip_bomb_is_413(tmp_path: Path) -> None:
    """A small gzip body that inflates past the limit is refused too."""
    app = create_app(tmp_path / "t.db", max_body_bytes=10_000)
    try:
        bomb = gzip.compress(b"\x00" * 1_000_000)
        assert len(bomb) < 10_000
        response = post(app.test_client(), "/v1/traces", bomb, PROTOBUF,
                        **{"Content-Encoding": "gzip"})
        assert response.status_code == 413
    finally:
        close(app)


def test_get_on_ingest_is_405(client: FlaskClient) -> None:
    """Ingest is POST only."""
    assert client.get("/v1/traces").status_code == 405


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=st.binary(max_size=300), as_json=st.booleans(), signal=st.sampled_from(["traces", "logs"]))
def test_arbitrary_bodies_never_cause_a_server_error(client: FlaskClient, body: bytes, as_json: bool,
                                                     signal: str) -> None:
    """Random bytes are either a valid (empty-ish) request or a 400: never a 500."""
    response = post(client, f"/v1/{signal}", body, "application/json" if as_json else PROTOBUF)
    assert response.status_code in (200, 400)


# -- a real OpenTelemetry exporter ----------------------------------------------------------------


@pytest.fixture
def provider(served: Served) -> Iterator[Any]:
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource as SdkResource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor

    tracer_provider = TracerProvider(resource=SdkResource.create({"service.name": "sdk-client"}))
    tracer_provider.add_span_processor(SimpleSpanProcessor(
        OTLPSpanExporter(endpoint=f"{served.url}/v1/traces", timeout=5)))
    yield tracer_provider
    tracer_provider.shutdown()


def test_the_opentelemetry_sdk_exporter_can_send_to_the_viewer(provider: Any, served: Served,
                                                               empty_app: Flask) -> None:
    """The stock OTLP/HTTP span exporter, pointed at the viewer, lands spans in its store."""
    tracer = provider.get_tracer("test")
    with tracer.start_as_current_span("checkout") as span:
        span.set_attribute("cart.items", 3)
        trace_id = f"{span.get_span_context().trace_id:032x}"
    detail = stored(empty_app, trace_id)
    assert detail is not None
    assert [(s.name, s.service_name) for s in detail.spans] == [("checkout", "sdk-client")]


def test_empty_requests_store_nothing(empty_app: Flask, client: FlaskClient) -> None:
    """An empty export is a 200 and leaves the store untouched."""
    assert post(client, "/v1/traces", b"", PROTOBUF).status_code == 200
    with Query(empty_app.extensions["shockproof.viewer"].store_path) as q:
        assert q.stats().spans == 0
