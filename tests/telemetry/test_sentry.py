"""Sentry through the SDK's real HTTP transport, against a loopback server recording envelopes."""

from __future__ import annotations

import io
import json
import threading
from typing import Any

import pydantic
import pytest
import sentry_sdk
from flask import Flask

import telemetry
from resilience.flask import Resilience
from telemetry import _semconv as sc
from telemetry import fingerprint
from telemetry.flask import Telemetry

from .conftest import Recorder, sentry_events

EMAIL = "alice.sentry@example.com"
TOKEN = "tok_5ca1ab1e5ca1ab1e"


def dsn(port: int) -> str:
    return f"http://publickey@127.0.0.1:{port}/1"


def make_app() -> Flask:
    app = Flask("sentry_app")
    Resilience(app)
    Telemetry(app)

    @app.get("/boom")
    def boom() -> str:
        raise ZeroDivisionError(f"failed for {EMAIL} with token={TOKEN}")

    @app.get("/bad")
    def bad() -> str:
        raise ValueError("client sent nonsense")

    return app


@pytest.fixture
def sentry(recorder: Recorder) -> Recorder:
    """Telemetry configured with a DSN pointing at the recorder."""
    telemetry.configure(store=False, log_stream=io.StringIO(), sentry_dsn=dsn(recorder.port))
    return recorder


def one_event(recorder: Recorder) -> dict[str, Any]:
    telemetry.flush(10.0)
    recorder.wait_for("/envelope/")
    (event,) = sentry_events(recorder)
    return event


def test_server_errors_arrive_with_kind_fingerprint_and_trace(sentry: Recorder) -> None:
    """A 500 reaches Sentry tagged with our kind and fingerprint, grouped by it, linked to the trace."""
    with telemetry.testing.capture() as cap:
        response = make_app().test_client().get("/boom")
    event = one_event(sentry)
    span = cap.span("GET /boom")
    assert event["tags"][sc.KIND] == "logic"
    assert event["tags"][sc.FINGERPRINT] == span.attributes[sc.FINGERPRINT]
    assert event["fingerprint"] == [span.attributes[sc.FINGERPRINT]]
    assert event["tags"][sc.ERROR_ID] == response.get_json()["error_id"]
    assert event["contexts"]["trace"]["trace_id"] == response.headers[sc.TRACE_ID_HEADER]
    assert event["exception"]["values"][-1]["type"] == "ZeroDivisionError"


def test_events_are_scrubbed_by_the_same_redaction(sentry: Recorder) -> None:
    """E-mails and tokens in the exception message never leave; no locals, no source, no request."""
    make_app().test_client().get("/boom", headers={"Authorization": f"Bearer {TOKEN}",
                                                   "Cookie": f"session={TOKEN}"})
    telemetry.flush(10.0)
    sentry.wait_for("/envelope/")
    raw = b"".join(sentry.bodies("/envelope/")).decode()
    assert EMAIL not in raw
    assert TOKEN not in raw
    event = sentry_events(sentry)[0]
    frames = event["exception"]["values"][-1]["stacktrace"]["frames"]
    assert all("vars" not in f and "context_line" not in f for f in frames)
    assert "request" not in event


def test_client_errors_are_not_sent(sentry: Recorder) -> None:
    """Only server errors (5xx) become Sentry events."""
    app = make_app()

    @app.post("/signup")
    def signup() -> str:
        raise telemetry_validation_error()

    assert app.test_client().post("/signup").status_code == 422
    telemetry.flush(10.0)
    assert sentry_events(sentry) == []


def telemetry_validation_error() -> Exception:
    class Model(pydantic.BaseModel):
        age: int

    try:
        Model.model_validate({"age": "SECRET-INPUT-71"})
    except pydantic.ValidationError as exc:
        return exc
    raise AssertionError("validated")


def test_validation_input_never_reaches_sentry(sentry: Recorder) -> None:
    """A reported validation error keeps its field names, never the rejected input."""
    telemetry.record_exception(telemetry_validation_error())
    event = one_event(sentry)
    assert "SECRET-INPUT-71" not in json.dumps(event)
    assert event["tags"][sc.KIND] == "validation"


def test_events_captured_elsewhere_get_our_tags_and_scrubbing(sentry: Recorder) -> None:
    """sentry_sdk.capture_exception() from application code goes through the same before_send."""
    try:
        raise ConnectionError(f"upstream refused {EMAIL}")
    except ConnectionError as exc:
        with telemetry.get_tracer().start_as_current_span("job") as span:
            sentry_sdk.capture_exception(exc)
        expected = fingerprint(exc)
    event = one_event(sentry)
    assert (event["tags"][sc.KIND], event["tags"][sc.FINGERPRINT]) == ("network", expected)
    assert event["contexts"]["trace"]["trace_id"] == f"{span.get_span_context().trace_id:032x}"
    assert EMAIL not in json.dumps(event)


def test_record_exception_reports_to_sentry(sentry: Recorder) -> None:
    """telemetry.record_exception() sends the error with its error id."""
    telemetry.record_exception(KeyError("k"), error_id="err-42")
    assert one_event(sentry)["tags"][sc.ERROR_ID] == "err-42"


def test_privacy_settings_are_explicit(sentry: Recorder) -> None:
    """No user data, no locals, no source, no bodies, no sessions; only two integrations."""
    options = sentry_sdk.get_client().options
    collected = options["data_collection"]
    assert collected["user_info"] is False
    assert collected["stack_frame_variables"] is False
    assert collected["frame_context_lines"] == 0
    assert collected["http_bodies"] == []
    assert collected["cookies"]["mode"] == collected["url_query_params"]["mode"] == "off"
    assert collected["http_headers"]["request"]["mode"] == "off"
    assert options["include_local_variables"] is False
    assert options["include_source_context"] is False
    assert options["max_request_body_size"] == "never"
    assert options["default_integrations"] is False
    assert options["auto_enabling_integrations"] is False
    assert options["auto_session_tracking"] is False
    assert options["traces_sample_rate"] is None
    assert set(sentry_sdk.get_client().integrations) == {"dedupe", "atexit"}


def test_reset_disconnects_sentry(sentry: Recorder) -> None:
    """After reset(), the SDK no longer records."""
    telemetry.reset()
    assert not sentry_sdk.get_client().is_active()


def test_unreachable_sentry_neither_slows_nor_breaks_requests(closed_port: int) -> None:
    """With Sentry's host down, the request returns before any send is tried, on another thread."""
    telemetry.configure(store=False, log_stream=io.StringIO(), sentry_dsn=dsn(closed_port))
    transport = sentry_sdk.get_client().transport
    assert transport is not None
    original = transport._send_envelope  # type: ignore[attr-defined]
    returned = threading.Event()
    order: list[str] = []

    def spy(envelope: Any) -> None:
        returned.wait(10)  # a synchronous transport would hold the request here
        order.append(threading.current_thread().name)
        original(envelope)

    transport._send_envelope = spy  # type: ignore[attr-defined]
    response = make_app().test_client().get("/boom")
    order.append("request returned")
    returned.set()
    assert response.status_code == 500
    telemetry.flush(5.0)
    assert order == ["request returned", "sentry-sdk.BackgroundWorker"]
