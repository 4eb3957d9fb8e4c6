"""telemetry.flask: a span and a log line per request, errors with kind and fingerprint, X-Trace-Id."""

from __future__ import annotations

import io
from collections.abc import Iterator

import httpx
import pydantic
import pytest
from flask import Flask, g
from opentelemetry.trace import SpanKind, StatusCode

import telemetry
import telemetry.testing
from resilience import Retry, guard
from resilience.flask import Resilience, validate_body
from resilience.testing import waits_off
from telemetry import _semconv as sc
from telemetry._metrics import total
from telemetry.flask import Shockproof, Telemetry

from .conftest import Recorder

REMOTE_TRACE = "0af7651916cd43dd8448eb211c80319c"
REMOTE_SPAN = "b7ad6b7169203331"


class Signup(pydantic.BaseModel):
    email: str
    age: int


def make_app(*, problems: bool = True, **options: object) -> Flask:
    """A small app: a normal route, a logic error, validation, a guarded upstream call."""
    app = Flask("shop")

    @app.get("/items/<int:item_id>")
    def item(item_id: int) -> dict[str, object]:
        return {"id": item_id, "trace": g.shockproof_trace_id}

    @app.get("/boom")
    def boom() -> str:
        return str(1 / 0)

    @app.post("/signup")
    @validate_body(Signup)
    def signup(body: Signup) -> tuple[dict[str, bool], int]:
        return {"ok": True}, 201

    @app.get("/upstream")
    def upstream() -> dict[str, int]:
        calls = iter([ConnectionError("reset"), None])

        def fetch() -> int:
            if (exc := next(calls)) is not None:
                raise exc
            return 7

        return {"n": guard("upstream.fetch", retry=Retry(attempts=2))(fetch)()}

    @app.get("/outgoing")
    def outgoing() -> dict[str, str]:
        return dict(telemetry.inject_headers())

    @app.get("/healthz")
    def healthz() -> str:
        return "ok"

    if problems:
        Resilience(app)
    Telemetry(app, **options)  # type: ignore[arg-type]
    return app


@pytest.fixture(autouse=True)
def _no_waits() -> Iterator[None]:
    with waits_off():
        yield


def test_each_request_gets_a_server_span(cap: telemetry.testing.Capture) -> None:
    """One SERVER span per request, named by route template, with the http.* attributes."""
    assert make_app().test_client().get("/items/3").status_code == 200
    span = cap.span("GET /items/<int:item_id>")
    assert span.kind is SpanKind.SERVER
    attrs = span.attributes
    assert (attrs[sc.HTTP_REQUEST_METHOD], attrs[sc.HTTP_ROUTE], attrs[sc.URL_PATH],
            attrs[sc.HTTP_RESPONSE_STATUS_CODE], attrs[sc.URL_SCHEME]) == (
        "GET", "/items/<int:item_id>", "/items/3", 200, "http")
    assert span.status.status_code is StatusCode.UNSET


def test_response_carries_the_trace_id(cap: telemetry.testing.Capture) -> None:
    """X-Trace-Id is the request span's trace id, also exposed as g.shockproof_trace_id."""
    response = make_app().test_client().get("/items/1")
    span = cap.span("GET /items/<int:item_id>")
    assert span.context is not None
    expected = f"{span.context.trace_id:032x}"
    assert response.headers[sc.TRACE_ID_HEADER] == expected == response.get_json()["trace"]


def test_incoming_traceparent_makes_the_request_a_child(cap: telemetry.testing.Capture) -> None:
    """W3C traceparent in: the request span joins the caller's trace."""
    headers = {"traceparent": f"00-{REMOTE_TRACE}-{REMOTE_SPAN}-01"}
    response = make_app().test_client().get("/items/1", headers=headers)
    span = cap.span("GET /items/<int:item_id>")
    assert response.headers[sc.TRACE_ID_HEADER] == REMOTE_TRACE
    assert span.parent is not None
    assert f"{span.parent.span_id:016x}" == REMOTE_SPAN


def test_outgoing_headers_continue_the_request_trace(cap: telemetry.testing.Capture) -> None:
    """inject_headers() inside a request carries the request's trace id out."""
    response = make_app().test_client().get("/outgoing")
    assert response.get_json()["traceparent"].split("-")[1] == response.headers[sc.TRACE_ID_HEADER]


def test_one_log_line_per_request(cap: telemetry.testing.Capture) -> None:
    """Each request logs one line with method, route, path, status and duration."""
    client = make_app().test_client()
    client.get("/items/1")
    client.get("/items/2")
    lines = cap.logs_named(sc.LOG_REQUEST)
    assert [line[sc.URL_PATH] for line in lines] == ["/items/1", "/items/2"]
    assert (lines[0][sc.HTTP_ROUTE], lines[0][sc.HTTP_RESPONSE_STATUS_CODE], lines[0]["level"]) == (
        "/items/<int:item_id>", 200, "info")
    assert lines[0][sc.DURATION_MS] >= 0
    assert lines[0]["trace_id"] == cap.spans[0].context.trace_id.to_bytes(16).hex()


def test_logic_error_is_recorded_with_kind_fingerprint_and_error_id(cap: telemetry.testing.Capture) -> None:
    """resilience.flask's problem response and telemetry agree on the error id and trace id."""
    response = make_app().test_client().get("/boom")
    problem = response.get_json()
    span = cap.span("GET /boom")
    assert response.status_code == 500
    assert span.status.status_code is StatusCode.ERROR
    assert (span.attributes[sc.KIND], span.attributes[sc.ERROR_TYPE]) == ("logic", "ZeroDivisionError")
    assert span.attributes[sc.ERROR_ID] == problem["error_id"]
    assert problem["trace_id"] == response.headers[sc.TRACE_ID_HEADER]
    assert [e.name for e in span.events] == [sc.EXCEPTION_EVENT]
    line = cap.log(sc.LOG_REQUEST)
    assert (line["level"], line[sc.KIND], line[sc.ERROR_ID], line[sc.FINGERPRINT]) == (
        "error", "logic", problem["error_id"], span.attributes[sc.FINGERPRINT])


def test_validation_error_is_recorded_but_not_a_server_error(cap: telemetry.testing.Capture) -> None:
    """A 422 names kind validation; the span is not ERROR and carries no exception event."""
    response = make_app().test_client().post("/signup", json={"email": "x@example.com", "age": "old"})
    span = cap.span("POST /signup")
    assert response.status_code == 422
    assert span.attributes[sc.KIND] == "validation"
    assert span.status.status_code is StatusCode.UNSET
    assert span.events == ()
    assert cap.log(sc.LOG_REQUEST)["level"] == "warning"


def test_unhandled_exception_without_resilience_is_recorded(cap: telemetry.testing.Capture) -> None:
    """Without resilience.flask, Flask's own 500 still gets kind and fingerprint on the span."""
    response = make_app(problems=False).test_client().get("/boom")
    span = cap.span("GET /boom")
    assert response.status_code == 500
    assert span.attributes[sc.KIND] == "logic"
    assert span.status.status_code is StatusCode.ERROR
    assert span.attributes[sc.HTTP_RESPONSE_STATUS_CODE] == 500


def test_not_found_is_not_an_error(cap: telemetry.testing.Capture) -> None:
    """A 404 is the client's mistake: no kind, no error count."""
    assert make_app().test_client().get("/nope").status_code == 404
    span = cap.span("GET")
    assert sc.KIND not in span.attributes
    assert span.attributes[sc.HTTP_RESPONSE_STATUS_CODE] == 404
    assert total(telemetry.metrics_snapshot(), sc.METRIC_ERRORS) == 0


def test_guarded_calls_nest_under_the_request(cap: telemetry.testing.Capture) -> None:
    """A call retried during a request has its span inside the request's trace."""
    response = make_app().test_client().get("/upstream")
    assert response.get_json() == {"n": 7}
    request, call = cap.span("GET /upstream"), cap.span("upstream.fetch")
    assert call.parent is not None
    assert request.context is not None
    assert call.parent.span_id == request.context.span_id


def test_request_metrics_by_route_and_errors_by_kind(cap: telemetry.testing.Capture) -> None:
    """Requests and their time are counted per route and status; errors per kind and route."""
    client = make_app().test_client()
    client.get("/items/1")
    client.get("/items/2")
    client.get("/boom")
    snapshot = telemetry.metrics_snapshot()
    ok = {sc.HTTP_ROUTE: "/items/<int:item_id>", sc.HTTP_RESPONSE_STATUS_CODE: 200}
    assert total(snapshot, sc.METRIC_HTTP_REQUESTS, ok) == 2
    assert total(snapshot, sc.METRIC_HTTP_TIME, ok) > 0
    assert total(snapshot, sc.METRIC_ERRORS, {sc.KIND: "logic", sc.HTTP_ROUTE: "/boom"}) == 1
    assert sc.METRIC_HTTP_DURATION not in snapshot


def test_duration_histogram_is_opt_in(cap: telemetry.testing.Capture) -> None:
    """duration_histogram=True also records OpenTelemetry's http.server.request.duration."""
    make_app(duration_histogram=True).test_client().get("/items/1")
    assert total(telemetry.metrics_snapshot(), sc.METRIC_HTTP_DURATION,
                 {sc.HTTP_ROUTE: "/items/<int:item_id>"}) == 1


def test_exceptions_as_logs_puts_the_stack_in_the_request_line() -> None:
    """exceptions_as='logs': the 500's log line carries the exception, the span no event."""
    with telemetry.testing.capture(exceptions_as="logs") as cap:
        make_app().test_client().get("/boom")
    assert cap.span("GET /boom").events == ()
    assert "ZeroDivisionError" in cap.log(sc.LOG_REQUEST)[sc.EXCEPTION_STACKTRACE]


def test_unsampled_requests_record_nothing_but_keep_their_trace_id() -> None:
    """With sample_ratio=0 no span is exported; the trace id still goes back to the client."""
    with telemetry.testing.capture(sample_ratio=0.0) as cap:
        response = make_app().test_client().get("/items/1")
    assert cap.spans == []
    assert len(response.headers[sc.TRACE_ID_HEADER]) == 32


def test_before_configure_the_app_works_untraced() -> None:
    """Without telemetry configured, requests work and carry no trace header."""
    response = make_app().test_client().get("/healthz")
    assert response.status_code == 200
    assert sc.TRACE_ID_HEADER not in response.headers


def test_excluded_paths_are_not_traced(cap: telemetry.testing.Capture) -> None:
    """Paths listed in excluded_paths (health checks) make no span and no log line."""
    make_app(excluded_paths=["/healthz"]).test_client().get("/healthz")
    assert cap.spans == []
    assert cap.logs_named(sc.LOG_REQUEST) == []


def test_request_log_line_can_be_turned_off(cap: telemetry.testing.Capture) -> None:
    """log_requests=False keeps the span, drops the line."""
    make_app(log_requests=False).test_client().get("/items/1")
    assert cap.spans
    assert cap.logs_named(sc.LOG_REQUEST) == []


def test_telemetry_failure_does_not_fail_the_request(
        cap: telemetry.testing.Capture, monkeypatch: pytest.MonkeyPatch) -> None:
    """If starting the span raises, the request is served anyway and the loss is counted."""
    rt = telemetry._config.runtime
    assert rt is not None

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("tracer bug")

    monkeypatch.setattr(rt.tracing.lite, "context_for", broken)  # what the request span starts with
    assert make_app().test_client().get("/healthz").status_code == 200
    assert telemetry.dropped()["requests"] == 1


def test_shockproof_wires_both_extensions(monkeypatch: pytest.MonkeyPatch) -> None:
    """Shockproof(app) configures telemetry if needed and installs both halves."""
    for var in ("SHOCKPROOF_SENTRY_DSN", "OTEL_EXPORTER_OTLP_ENDPOINT"):
        monkeypatch.delenv(var, raising=False)
    app = Flask("two_lines")

    @app.get("/boom")
    def boom() -> str:
        return str(1 / 0)

    Shockproof(app, store=False, log_stream=io.StringIO())
    response = app.test_client().get("/boom")
    assert telemetry.get_config() is not None
    assert telemetry.get_config().service_name == "two_lines"
    assert response.mimetype == "application/problem+json"
    assert response.get_json()["trace_id"] == response.headers[sc.TRACE_ID_HEADER]


def test_shockproof_warns_when_settings_come_too_late(cap: telemetry.testing.Capture) -> None:
    """With telemetry already configured, Shockproof(**settings) warns and ignores them."""
    with pytest.warns(telemetry.TelemetryWarning, match="ignored"):
        Shockproof(Flask("late"), service_name="other")


def test_requests_session_propagates_the_trace(cap: telemetry.testing.Capture, recorder: Recorder) -> None:
    """A session from requests_session() sends traceparent on every request."""
    session = telemetry.requests_session()
    with telemetry.get_tracer().start_as_current_span("client") as span:
        session.post(f"{recorder.url}/echo", data=b"x", timeout=5)
    sent = recorder.requests[0].headers["traceparent"]
    assert sent.split("-")[1] == f"{span.get_span_context().trace_id:032x}"


def test_httpx_hooks_propagate_the_trace(cap: telemetry.testing.Capture, recorder: Recorder) -> None:
    """httpx_event_hooks() adds traceparent to httpx requests."""
    with telemetry.get_tracer().start_as_current_span("client") as span, \
            httpx.Client(event_hooks=telemetry.httpx_event_hooks()) as client:
        client.post(f"{recorder.url}/echo", content=b"x")
    sent = recorder.requests[0].headers["traceparent"]
    assert sent.split("-")[1] == f"{span.get_span_context().trace_id:032x}"
