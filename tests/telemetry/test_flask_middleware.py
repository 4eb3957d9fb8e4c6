"""telemetry.flask's request path: the WSGI middleware, the direct request line, the deferred rest."""

from __future__ import annotations

import gc
import io
import json
import weakref
from pathlib import Path
from typing import Any

import pytest
import structlog
from flask import Flask, Response, g, request
from opentelemetry import trace

import telemetry
import telemetry.testing
from telemetry import _semconv as sc
from telemetry._metrics import total
from telemetry.flask import Telemetry
from telemetry.query import Query

from .conftest import json_lines

EMAIL = "someone.private@example.org"


def make_app(**options: Any) -> Flask:
    """A small app with telemetry only (no resilience.flask)."""
    app = Flask("mw")

    @app.get("/items/<int:item_id>")
    def item(item_id: int) -> dict[str, object]:
        return {"id": item_id, "trace": g.shockproof_trace_id}

    @app.get("/own-header")
    def own_header() -> Response:
        return Response("x", headers={sc.TRACE_ID_HEADER: "not-ours"})

    @app.get("/boom")
    def boom() -> str:
        return str(1 / 0)

    @app.get("/tagged")
    def tagged() -> str:
        trace.get_current_span().set_attribute("app.tier", "gold")
        return "ok"

    Telemetry(app, **options)
    return app


@pytest.fixture
def stream() -> io.StringIO:
    """Telemetry configured (no store), JSON lines written here."""
    out = io.StringIO()
    telemetry.configure(store=False, log_stream=out)
    return out


def runtime() -> telemetry._config.Runtime:
    rt = telemetry._config.runtime
    assert rt is not None
    return rt


# -- the request line ----------------------------------------------------------------------------


def test_the_request_line_is_the_line_the_chain_would_write(stream: io.StringIO) -> None:
    """Built directly or through structlog's chain, a request line is the same bytes."""
    fields = ("info", "telemetry.flask", "GET", "/items/<int:item_id>", "/items/7", 200, 1.25,
              "0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331", 1_700_000_000_123_456_789)
    logs = runtime().logs
    logs.request_line(*fields)
    logs.emit("info", {sc.LOGGER_NAME: "telemetry.flask", sc.HTTP_REQUEST_METHOD: "GET",
                       sc.HTTP_ROUTE: "/items/<int:item_id>", sc.URL_PATH: "/items/7",
                       sc.HTTP_RESPONSE_STATUS_CODE: 200, sc.DURATION_MS: 1.25,
                       sc.LOG_TRACE_ID: fields[7], sc.LOG_SPAN_ID: fields[8],
                       sc.LOG_EVENT: sc.LOG_REQUEST, "_shockproof_time_ns": fields[9]})
    direct, chained = stream.getvalue().splitlines()
    assert direct == chained


def test_the_request_line_redacts_the_path(stream: io.StringIO) -> None:
    """A secret in the URL path is redacted in the line, as the chain would."""
    app = make_app()
    app.add_url_rule("/users/<email>", "user", lambda email: "ok")
    app.test_client().get(f"/users/{EMAIL}")
    telemetry.flush()
    (line,) = json_lines(stream)
    assert EMAIL not in stream.getvalue()
    assert line[sc.URL_PATH] == "/users/[REDACTED]"
    assert line[sc.HTTP_ROUTE] == "/users/<email>"


def test_values_bound_with_structlog_contextvars_are_on_the_request_line(stream: io.StringIO) -> None:
    """A request line carries what the application bound with structlog.contextvars."""
    structlog.contextvars.bind_contextvars(tenant="t-9")
    try:
        make_app().test_client().get("/items/1")
        telemetry.flush()
    finally:
        structlog.contextvars.clear_contextvars()
    assert json_lines(stream)[0]["tenant"] == "t-9"


def test_each_request_line_carries_its_own_bound_values(stream: io.StringIO) -> None:
    """Values a request binds with structlog.contextvars are on its own line, never another's
    (a line completed with a later request's batch would read that request's values)."""
    app = make_app()

    @app.before_request
    def bind() -> None:
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(rid=request.headers["X-Rid"])

    client = app.test_client()
    try:
        for rid in ("a", "b", "c"):
            client.get(f"/items/{ord(rid)}", headers={"X-Rid": rid})
        telemetry.flush()
    finally:
        structlog.contextvars.clear_contextvars()
    assert [(line[sc.URL_PATH], line["rid"]) for line in json_lines(stream)] == [
        ("/items/97", "a"), ("/items/98", "b"), ("/items/99", "c")]


def test_console_format_request_lines_come_through_the_chain() -> None:
    """With log_format='console' the request line is the console renderer's."""
    out = io.StringIO()
    telemetry.configure(store=False, log_stream=out, log_format="console")
    make_app().test_client().get("/items/1")
    telemetry.flush()
    text = out.getvalue()
    assert "request" in text
    assert not text.lstrip().startswith("{")


def test_request_lines_wait_for_their_batch_and_keep_their_order(stream: io.StringIO) -> None:
    """Request lines are written with their batch; a later line of the chain comes after them."""
    client = make_app().test_client()
    client.get("/items/1")
    client.get("/items/2")
    telemetry.get_logger("app").info("after")
    events = [(line["event"], line.get(sc.URL_PATH)) for line in json_lines(stream)]
    assert events == [("request", "/items/1"), ("request", "/items/2"), ("after", None)]


def test_the_request_line_has_the_time_the_request_ended(stream: io.StringIO) -> None:
    """A line written with its batch is stamped with its request's end, not the write."""
    client = make_app().test_client()
    client.get("/items/1")
    telemetry.get_logger("app").info("after")
    request_line, after = json_lines(stream)
    assert request_line["timestamp"] <= after["timestamp"]


def test_flush_writes_the_waiting_request_lines(stream: io.StringIO) -> None:
    """telemetry.flush() completes the requests still waiting for their batch."""
    make_app().test_client().get("/items/3")
    assert telemetry.flush()
    assert [line[sc.URL_PATH] for line in json_lines(stream)] == ["/items/3"]


def test_metrics_read_count_the_requests_still_waiting(stream: io.StringIO) -> None:
    """metrics_snapshot() sees every finished request, batched or not."""
    client = make_app().test_client()
    for n in range(3):
        client.get(f"/items/{n}")
    assert total(telemetry.metrics_snapshot(), sc.METRIC_HTTP_REQUESTS,
                 {sc.HTTP_ROUTE: "/items/<int:item_id>"}) == 3


# -- the span and the contract with resilience.flask ---------------------------------------------


def test_attributes_the_app_sets_on_the_request_span_are_kept(cap: telemetry.testing.Capture) -> None:
    """The request span is current in the view; what the app sets on it stays, with http.*."""
    make_app().test_client().get("/tagged")
    span = cap.span("GET /tagged")
    assert span.attributes["app.tier"] == "gold"
    assert (span.attributes[sc.HTTP_ROUTE], span.attributes[sc.HTTP_RESPONSE_STATUS_CODE]) == (
        "/tagged", 200)


def test_g_has_the_trace_id_when_an_app_context_was_already_pushed(
        cap: telemetry.testing.Capture) -> None:
    """Flask reuses an app context pushed before the request: its g gets the trace id too."""
    app = make_app()
    with app.app_context():
        response = app.test_client().get("/items/5")
    assert response.get_json()["trace"] == response.headers[sc.TRACE_ID_HEADER]


def test_g_reads_the_trace_id_every_way_flask_offers(cap: telemetry.testing.Capture) -> None:
    """g.shockproof_trace_id, g.get() and ``in`` agree with the response header; outside a
    request there is none."""
    app = make_app()
    seen: dict[str, object] = {}

    @app.get("/ways")
    def ways() -> str:
        seen.update(attr=g.shockproof_trace_id, get=g.get("shockproof_trace_id"),
                    has="shockproof_trace_id" in g, other=g.get("nothing", "dflt"))
        return "ok"

    response = app.test_client().get("/ways")
    trace_id = response.headers[sc.TRACE_ID_HEADER]
    assert seen == {"attr": trace_id, "get": trace_id, "has": True, "other": "dflt"}
    with app.app_context():
        assert getattr(g, "shockproof_trace_id", None) is None
        assert "shockproof_trace_id" not in g


def test_an_app_context_older_than_the_extension_still_links_errors(
        cap: telemetry.testing.Capture) -> None:
    """A g made before Telemetry(app) (its class is not ours) still gets the trace id, and the
    error resilience.flask leaves on it reaches the request span."""
    from resilience.flask import Resilience

    app = Flask("older")

    @app.get("/fail")
    def fail() -> str:
        raise ConnectionError("upstream down")

    Resilience(app)
    with app.app_context():  # its g is Flask's own class
        Telemetry(app)
        response = app.test_client().get("/fail")
    body = response.get_json()
    assert body["trace_id"] == response.headers[sc.TRACE_ID_HEADER]
    span = cap.span("GET /fail")
    assert (span.attributes[sc.KIND], span.attributes[sc.ERROR_ID]) == ("network", body["error_id"])


def test_x_trace_id_replaces_one_the_app_set(cap: telemetry.testing.Capture) -> None:
    """The response carries one X-Trace-Id: the request span's."""
    response = make_app().test_client().get("/own-header")
    span = cap.span("GET /own-header")
    assert span.context is not None
    assert response.headers.getlist(sc.TRACE_ID_HEADER) == [f"{span.context.trace_id:032x}"]


def test_an_exception_escaping_the_app_is_recorded(cap: telemetry.testing.Capture) -> None:
    """With exceptions propagating (testing mode), the request span still records the error."""
    app = make_app()
    app.testing = True
    with pytest.raises(ZeroDivisionError):
        app.test_client().get("/boom")
    span = cap.span("GET /boom")
    assert (span.attributes[sc.KIND], span.attributes[sc.HTTP_RESPONSE_STATUS_CODE]) == ("logic", 500)
    assert cap.log(sc.LOG_REQUEST)[sc.FINGERPRINT] == span.attributes[sc.FINGERPRINT]


def test_a_finished_request_span_keeps_nothing_of_the_request(stream: io.StringIO) -> None:
    """Once completed, the span no longer holds the request object (nor its environ)."""
    refs: list[weakref.ref[Any]] = []
    app = make_app()

    @app.get("/ref")
    def ref() -> str:
        refs.append(weakref.ref(request._get_current_object()))  # type: ignore[attr-defined]
        return "ok"

    app.test_client().get("/ref")
    telemetry.flush()
    gc.collect()
    assert refs[0]() is None


def test_a_telemetry_failure_at_the_end_costs_the_telemetry_not_the_response(
        stream: io.StringIO, monkeypatch: pytest.MonkeyPatch) -> None:
    """If recording the finished request fails, the response is intact and the loss counted."""
    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("completion bug")

    monkeypatch.setattr(runtime().metrics.requests, "merge", broken)
    response = make_app().test_client().get("/items/4")
    telemetry.flush()
    assert response.get_json()["id"] == 4
    assert telemetry.dropped()["requests"] == 1


# -- with the store ------------------------------------------------------------------------------


def test_request_spans_and_lines_reach_the_store_redacted(tmp_path: Path) -> None:
    """The store gets the request span and its line, the path redacted in both."""
    path = tmp_path / "t.db"
    telemetry.configure(store=path, log_stream=io.StringIO())
    app = make_app()
    app.add_url_rule("/users/<email>", "user", lambda email: "ok")
    response = app.test_client().get(f"/users/{EMAIL}")
    assert telemetry.flush(10.0)
    with Query(path) as query:
        detail = query.trace(response.headers[sc.TRACE_ID_HEADER])
    assert detail is not None
    (span,) = detail.spans
    (line,) = detail.logs
    assert (span.name, span.attributes[sc.URL_PATH]) == ("GET /users/<email>", "/users/[REDACTED]")
    assert line.attributes == {sc.HTTP_REQUEST_METHOD: "GET", sc.HTTP_ROUTE: "/users/<email>",
                               sc.URL_PATH: "/users/[REDACTED]", sc.HTTP_RESPONSE_STATUS_CODE: 200,
                               sc.DURATION_MS: line.attributes[sc.DURATION_MS]}
    assert EMAIL.encode() not in b"".join(p.read_bytes() for p in tmp_path.iterdir())
    assert json.loads(json.dumps(line.attributes)) == line.attributes
