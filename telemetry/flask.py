"""Flask integration: a span per request, one log line per request, errors with kind and fingerprint.

Two lines wire telemetry and resilience's problem+json errors into any Flask app::

    app = Flask(__name__)
    Shockproof(app)            # telemetry.configure() if not done yet, then both extensions

or, separately, ``Telemetry(app)`` (this module) and ``resilience.flask.Resilience(app)``.

Per request:

* a SERVER span named ``"<METHOD> <route template>"``, child of the caller's W3C
  ``traceparent`` when one came in, with ``http.request.method``, ``http.route``,
  ``url.path``, ``url.scheme``, ``server.*``, ``user_agent.original`` and
  ``http.response.status_code`` (no query string, no headers, no body, no client
  address: they are where secrets and personal data live);
* the response header ``X-Trace-Id``; ``flask.g.shockproof_trace_id`` is set at the
  start of the request (the contract with ``resilience.flask``, which puts it in
  every problem body);
* one log line (``event="request"``) with method, route, path, status and duration,
  plus kind, fingerprint and error id when the request failed;
* errors: ``resilience.flask`` leaves ``flask.g.shockproof_error = (exception,
  error_id)``; an exception nobody handled is taken from ``teardown_request``. The
  span gets ``error.type``, kind and fingerprint (and ERROR status for 5xx), the
  exception is recorded once (span event or log, per ``exceptions_as``), and 5xx
  errors go to Sentry when configured;
* metrics: ``http.server.request.duration`` by method, route and status, errors by
  kind and route.

Nothing here raises into a request: a telemetry failure costs the request's
telemetry, counted in ``telemetry.dropped()``.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Iterable
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from flask import Flask, Request, Response, g, request
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode
from werkzeug.exceptions import HTTPException

from . import _config
from . import _semconv as sc
from ._logs import Logger
from ._metrics import current_route, drops
from ._propagation import extract_context
from ._tracing import record_error

__all__ = ["EXTENSION_KEY", "Shockproof", "Telemetry"]

EXTENSION_KEY = "shockproof.telemetry"
_ROOT = otel_context.Context()  # no traceparent came in: the request starts a trace


@dataclass(slots=True)
class _Request:
    span: Span
    otel_token: object
    route_token: Any
    started: float
    method: str
    route: str | None
    path: str
    trace_id: str
    span_id: str
    status: int | None = None
    error: tuple[BaseException, str | None] | None = None
    state_token: Any = None


#: The request being served (a contextvar: Flask runs a request's hooks in one context).
_current: ContextVar[_Request | None] = ContextVar("shockproof_flask_request", default=None)


class Telemetry:
    """Flask extension: request spans, request log lines, error recording, ``X-Trace-Id``."""

    def __init__(self, app: Flask | None = None, *, log_requests: bool = True,
                 excluded_paths: Iterable[str] = (), duration_histogram: bool = False) -> None:
        self.log_requests = log_requests
        self.excluded_paths = frozenset(excluded_paths)
        self.duration_histogram = duration_histogram
        self._log = Logger("telemetry.flask")
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask) -> None:
        """Install the request hooks on ``app`` (the span starts before any other before_request)."""
        app.extensions[EXTENSION_KEY] = self
        app.before_request_funcs.setdefault(None, []).insert(0, self._before)
        app.after_request(self._after)
        app.teardown_request(self._teardown)

    # -- hooks -----------------------------------------------------------------------------

    def _before(self) -> None:
        rt = _config.runtime
        if rt is None:
            return
        try:
            req = request._get_current_object()  # type: ignore[attr-defined]
            if req.path in self.excluded_paths:
                return
            state = self._start(rt, req)
            state.state_token = _current.set(state)
            g.shockproof_trace_id = state.trace_id
        except Exception as exc:
            drops.report("requests", 1, exc)

    def _start(self, rt: _config.Runtime, req: Request) -> _Request:
        environ = req.environ
        parent = _parent(environ) if "HTTP_TRACEPARENT" in environ else _ROOT
        rule = req.url_rule
        route = rule.rule if rule is not None else None
        method, path = req.method, req.path
        attrs: dict[str, Any] = {sc.HTTP_REQUEST_METHOD: method, sc.URL_PATH: path,
                                 sc.URL_SCHEME: environ.get("wsgi.url_scheme", "http")}
        if route is not None:
            attrs[sc.HTTP_ROUTE] = route
        span = rt.tracing.lite.start(f"{method} {route}" if route else method, parent=parent,
                                     kind=SpanKind.SERVER, attributes=attrs)
        ctx = span.get_span_context()
        otel_token = otel_context.attach(trace.set_span_in_context(span))
        return _Request(span, otel_token, current_route.set(route), time.perf_counter(), method,
                        route, path, f"{ctx.trace_id:032x}", f"{ctx.span_id:016x}")

    def _after(self, response: Response) -> Response:
        state = _current.get()
        if state is None:
            return response
        try:
            response.headers[sc.TRACE_ID_HEADER] = state.trace_id
            state.status = response.status_code
            error = g.get("shockproof_error")
            if error is not None:
                state.error = error
        except Exception as exc:
            drops.report("requests", 1, exc)
        return response

    def _teardown(self, exc: BaseException | None) -> None:
        state = _current.get()
        if state is None:
            return
        try:
            if state.error is None and exc is not None:
                state.error = (exc, None)
            self._finish(state)
        except Exception as err:
            drops.report("requests", 1, err)
        finally:
            _release(state)

    # -- the end of a request ----------------------------------------------------------------

    def _finish(self, state: _Request) -> None:
        rt = _config.runtime
        span = state.span
        status = state.status if state.status is not None else (500 if state.error else 200)
        seconds = time.perf_counter() - state.started
        span.set_attribute(sc.HTTP_RESPONSE_STATUS_CODE, status)
        route = state.route or ""
        fields: dict[str, Any] = {
            sc.HTTP_REQUEST_METHOD: state.method, sc.HTTP_ROUTE: route, sc.URL_PATH: state.path,
            sc.HTTP_RESPONSE_STATUS_CODE: status, sc.DURATION_MS: round(seconds * 1000, 3),
            sc.LOG_TRACE_ID: state.trace_id, sc.LOG_SPAN_ID: state.span_id}
        if state.error is not None and rt is not None:
            self._error(rt, span, state.error, status, fields)
        elif status >= 500:
            span.set_status(Status(StatusCode.ERROR))
        if self.log_requests:
            level = "error" if status >= 500 else "warning" if status >= 400 else "info"
            getattr(self._log, level)(sc.LOG_REQUEST, **fields)
        if rt is not None:
            rt.metrics.requests.record(state.method, route, status, seconds)
            if self.duration_histogram:
                rt.metrics.http_duration.record(seconds, {
                    sc.HTTP_REQUEST_METHOD: state.method, sc.HTTP_ROUTE: route,
                    sc.HTTP_RESPONSE_STATUS_CODE: status})
        span.end()

    def _error(self, rt: _config.Runtime, span: Span, error: tuple[BaseException, str | None],
               status: int, fields: dict[str, Any]) -> None:
        exc, error_id = error
        if error_id is not None:
            span.set_attribute(sc.ERROR_ID, error_id)
            fields[sc.ERROR_ID] = error_id
        server_error = status >= 500
        if isinstance(exc, HTTPException) and not server_error:
            return  # 404, 405...: the client's mistake, not a runtime error
        fields.update(record_error(span, exc, exceptions_as=rt.config.exceptions_as,
                                   status=server_error, exception_event=server_error))
        rt.metrics.error(fields[sc.KIND])
        if server_error and rt.config.exceptions_as == "logs":
            fields["exc_info"] = exc
        if server_error and rt.sentry is not None:
            rt.sentry.capture(exc, error_id=error_id)


def _parent(environ: dict[str, Any]) -> otel_context.Context:
    carrier = {sc.TRACEPARENT_HEADER: str(environ["HTTP_TRACEPARENT"])}
    if state := environ.get("HTTP_TRACESTATE"):
        carrier["tracestate"] = str(state)
    return extract_context(carrier) or _ROOT


def _release(state: _Request) -> None:
    for var, token in ((_current, state.state_token), (current_route, state.route_token)):
        try:
            var.reset(token)
        except (ValueError, RuntimeError):  # another context (should not happen): leave it
            pass
    otel_context.detach(state.otel_token)  # type: ignore[arg-type]


class Shockproof:
    """One extension for both halves: ``telemetry.flask`` and ``resilience.flask``.

    ``settings`` go to ``telemetry.configure()`` when telemetry is not configured yet
    (the service name defaults to the app's name); otherwise they are ignored, with a
    :class:`~telemetry.TelemetryWarning`.
    """

    def __init__(self, app: Flask | None = None, **settings: Any) -> None:
        self.settings = settings
        self.telemetry = Telemetry()
        self.resilience: Any = None
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask) -> None:
        if not _config.is_configured():
            _config.configure(**{"service_name": app.name, **self.settings})
        elif self.settings:
            warnings.warn("telemetry is already configured; Shockproof(**settings) ignored them",
                          _config.TelemetryWarning, stacklevel=2)
        from resilience.flask import Resilience

        self.resilience = Resilience()
        self.resilience.init_app(app)
        self.telemetry.init_app(app)
