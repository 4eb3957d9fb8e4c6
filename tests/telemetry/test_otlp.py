"""OTLP/HTTP out: spans and logs reach a real loopback receiver that decodes the protobuf."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import KeyValue

import telemetry
from resilience import Retry, guard
from resilience.testing import waits_off
from telemetry import _semconv as sc
from telemetry.flask import Telemetry

from .conftest import Recorder

EMAIL = "otlp.user@example.com"


def make_app() -> Flask:
    app = Flask("otlp_app")
    Telemetry(app)

    @app.get("/users/<name>")
    def user(name: str) -> dict[str, int]:
        calls = iter([ConnectionError("reset"), None])

        def fetch() -> int:
            if (exc := next(calls)) is not None:
                raise exc
            return 1

        return {"n": guard("profile.fetch", retry=Retry(attempts=2))(fetch)()}

    return app


@pytest.fixture(autouse=True)
def _no_waits() -> Iterator[None]:
    with waits_off():
        yield


def attrs(items: Any) -> dict[str, Any]:
    """Protobuf KeyValues as a plain dict."""
    out: dict[str, Any] = {}
    for kv in items:
        assert isinstance(kv, KeyValue)
        value = kv.value
        out[kv.key] = getattr(value, value.WhichOneof("value"))
    return out


def received_spans(recorder: Recorder) -> dict[str, Any]:
    """Every span the receiver decoded, by name."""
    spans = {}
    for body in recorder.wait_for("/v1/traces"):
        request = ExportTraceServiceRequest.FromString(body)
        for rs in request.resource_spans:
            for ss in rs.scope_spans:
                for span in ss.spans:
                    spans[span.name] = (attrs(rs.resource.attributes), span)
    return spans


def test_spans_arrive_decoded_with_names_attributes_and_parents(recorder: Recorder) -> None:
    """The request span and the retried call's span arrive, linked, with their attributes."""
    telemetry.configure(service_name="otlp-svc", store=False, log_stream=io.StringIO(),
                        otlp_endpoint=recorder.url)
    assert make_app().test_client().get("/users/bob").status_code == 200
    assert telemetry.flush(10.0)
    spans = received_spans(recorder)
    resource, request = spans["GET /users/<name>"]
    _, call = spans["profile.fetch"]
    assert resource[sc.SERVICE_NAME] == "otlp-svc"
    assert attrs(request.attributes)[sc.HTTP_ROUTE] == "/users/<name>"
    assert attrs(call.attributes)[sc.SITE] == "profile.fetch"
    assert call.parent_span_id == request.span_id
    assert call.trace_id == request.trace_id
    assert [e.name for e in call.events] == [sc.EVENT_ATTEMPT_FAILED, sc.EVENT_RETRY]
    assert attrs(call.events[1].attributes)[sc.ATTEMPT] == 1


def test_logs_arrive_linked_to_their_trace(recorder: Recorder) -> None:
    """Log records go over OTLP too, carrying the trace and span ids."""
    telemetry.configure(store=False, log_stream=io.StringIO(), otlp_endpoint=recorder.url)
    response = make_app().test_client().get("/users/bob")
    assert telemetry.flush(10.0)
    records = [r for body in recorder.wait_for("/v1/logs")
               for rl in ExportLogsServiceRequest.FromString(body).resource_logs
               for sl in rl.scope_logs for r in sl.log_records]
    request_line = next(r for r in records if r.body.string_value == sc.LOG_REQUEST)
    assert request_line.trace_id.hex() == response.headers[sc.TRACE_ID_HEADER]
    assert request_line.severity_text == "INFO"
    assert attrs(request_line.attributes)[sc.HTTP_RESPONSE_STATUS_CODE] == 200


def test_spans_are_redacted_before_they_leave(recorder: Recorder) -> None:
    """Secrets in what the request put on its span never reach the collector."""
    telemetry.configure(store=False, log_stream=io.StringIO(), otlp_endpoint=recorder.url)
    make_app().test_client().get(f"/users/{EMAIL}")
    assert telemetry.flush(10.0)
    recorder.wait_for("/v1/traces")
    assert all(EMAIL.encode() not in r.body for r in recorder.requests)


def test_signal_path_in_the_endpoint_is_accepted(recorder: Recorder) -> None:
    """An endpoint given with /v1/traces still sends traces to /v1/traces (and logs to /v1/logs)."""
    telemetry.configure(store=False, log_stream=io.StringIO(), otlp_endpoint=f"{recorder.url}/v1/traces")
    make_app().test_client().get("/users/a")
    assert telemetry.flush(10.0)
    paths = {r.path for r in recorder.requests}
    assert paths == {"/v1/traces", "/v1/logs"}


def test_unreachable_collector_costs_telemetry_not_requests(
        closed_port: int, caplog: pytest.LogCaptureFixture) -> None:
    """Collector down: requests succeed, spans and logs are counted as dropped, one warning each."""
    caplog.set_level(logging.WARNING)
    telemetry.configure(store=False, log_stream=io.StringIO(), otlp_timeout=0.5,
                        otlp_endpoint=f"http://127.0.0.1:{closed_port}")
    client = make_app().test_client()
    for _ in range(3):
        assert client.get("/users/bob").status_code == 200
        telemetry.flush(5.0)
    lost = telemetry.dropped()
    assert lost["otlp"] == 6
    assert lost["otlp_logs"] >= 3
    ours = [r for r in caplog.records if r.name == "telemetry"]
    assert sorted(r.getMessage().split(" item")[0] for r in ours) == [
        "telemetry dropped 2 otlp", "telemetry dropped 2 otlp_logs"]
    assert [r for r in caplog.records if r.name.startswith("opentelemetry.exporter")] == []
