"""Flask integration: a span per request, one log line per request, errors with kind and fingerprint.

Two lines wire telemetry and resilience's problem+json errors into any Flask app::

    app = Flask(__name__)
    Shockproof(app)            # telemetry.configure() if not done yet, then both extensions

or, separately, ``Telemetry(app)`` (this module) and ``resilience.flask.Resilience(app)``.

Per request:

* a SERVER span named ``"<METHOD> <route template>"``, child of the caller's W3C
  ``traceparent`` when one came in, with ``http.request.method``, ``http.route``,
  ``url.path``, ``url.scheme`` and ``http.response.status_code`` (no query string,
  no headers, no body, no client address: they are where secrets and personal
  data live);
* the response header ``X-Trace-Id``; ``flask.g.shockproof_trace_id`` is set at the
  start of the request (the contract with ``resilience.flask``, which puts it in
  every problem body);
* one log line (``event="request"``) with method, route, path, status and duration,
  plus kind, fingerprint and error id when the request failed;
* errors: ``resilience.flask`` leaves ``flask.g.shockproof_error = (exception,
  error_id)``; an exception nobody handled comes from Flask's
  ``got_request_exception`` signal (or escapes the app). The span gets
  ``error.type``, kind and fingerprint (and ERROR status for 5xx), the exception is
  recorded once (span event or log, per ``exceptions_as``), and 5xx errors go to
  Sentry when configured;
* metrics: requests and their time by method, route and status, errors by kind
  and route (``http.server.request.duration`` too with ``duration_histogram=True``);
* with ``user=`` (a callable of the request returning the app's user id or None),
  ``enduser.pseudo.id``: an HMAC-SHA256 of that id, 16 hex characters, never the id
  itself (see :mod:`telemetry._pseudo` for the key), so the viewer can count
  distinct users affected by an error.

How, cheaply: no per-request Flask hooks. A WSGI middleware around ``app.wsgi_app``
opens the span before Flask sees the request and does everything else when Flask
returns, in one place; its ``start_response`` adds ``X-Trace-Id``, notes the status
and the request object (Flask clears the environ's reference when it is done). The
app's ``g`` class is subclassed so that nothing is done per ``g``:
``g.shockproof_trace_id`` reads the trace id of the request being served, and
``g.shockproof_error = ...`` reaches its span as it is set. A request that failed is
recorded before the middleware returns; for one that did not, the rest (span
attributes and end, log line, counts) is completed with its batch
(:mod:`telemetry._deferred`, at the latest 50 ms later, in one call per batch), its
log line rendered directly (:meth:`telemetry._logs.Logs.request_line`: same fields,
same redaction, same JSON as the processor chain, which every other line still
takes). A request whose context holds values bound with ``structlog.contextvars``
is completed at once, so that its line carries its own values. See "Requests: what
each one pays for" in the package README.

Nothing here raises into a request: a telemetry failure costs the request's
telemetry, counted in ``telemetry.dropped()``.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Iterable
from typing import Any

from flask import Flask, got_request_exception
from flask.ctx import _AppCtxGlobals
from flask.globals import _cv_app
from opentelemetry.trace import Span, SpanContext, SpanKind, Status, StatusCode
from werkzeug.exceptions import HTTPException

from . import _config
from . import _semconv as sc
from ._lite import (
    MAX_ATTRIBUTES,
    SAMPLED,
    SPAN_KEY,
    LiteSpan,
    LiteTracer,
    attach,
    current_request,
    detach,
)
from ._logs import Logger, has_bound_context
from ._metrics import RequestStats, drops
from ._propagation import extract_context
from ._pseudo import hash_key, pseudo_id
from ._tracing import record_error

__all__ = ["EXTENSION_KEY", "Shockproof", "Telemetry"]

EXTENSION_KEY = "shockproof.telemetry"
_TRACE_ATTR, _ERROR_ATTR = "shockproof_trace_id", "shockproof_error"  # the contract with resilience.flask
_HEADER = sc.TRACE_ID_HEADER.lower()
_LOGGER = "telemetry.flask"
_SERVER = SpanKind.SERVER
StartResponse = Callable[..., Any]
UserOf = Callable[[Any], object]
WSGIApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


class _RequestSpan(LiteSpan):
    """A request's SERVER span, and what the middleware learns about the request meanwhile.

    One object for both, made in one ``__init__`` and finished in few steps: every
    allocation and call here is paid by every request. Its attributes are written at
    the end, when the route is known. The references to the request (environ, app)
    are dropped when the request is over, before the span waits for its batch, so that
    a span in a queue keeps nothing of the request alive.
    """

    # At the start: app, environ, method, owner, respond, started, token, trace_hex. When the
    # request is over (what completing it needs): code, end_ns, path, route, rt, scheme, seconds.
    __slots__ = ("app", "code", "end_ns", "environ", "http_status", "method", "owner", "path",
                 "request", "respond", "route", "rt", "scheme", "seconds", "started", "token",
                 "trace_hex")
    app: Flask | None
    code: int
    end_ns: int
    environ: dict[str, Any] | None
    method: str
    owner: Telemetry
    path: str
    respond: StartResponse
    route: str | None
    rt: _config.Runtime
    scheme: str
    seconds: float
    started: float
    token: object
    trace_hex: str
    http_status: int | None  # learnt in start_response
    request: Any  # the request object, noted while Flask still has it (it clears the environ's)
    #: Learnt during the request, rarely (class-level None until then).
    #: An exception nobody handled (Flask's signal, or one escaping the app).
    error: tuple[BaseException, str | None] | None = None
    #: ``resilience.flask``'s ``(exception, error_id)``, through ``g.shockproof_error``.
    reported: tuple[BaseException, str | None] | None = None
    #: The ``g`` of an application context pushed before the request (not one of ours).
    outer_g: Any = None

    def __init__(self, owner: Telemetry, tracer: LiteTracer, ctx: SpanContext,
                 parent: SpanContext | None, app: Flask, environ: dict[str, Any],
                 respond: StartResponse, method: str) -> None:
        # Not sampled: over from the start, records nothing.
        super().__init__(tracer, method, ctx, parent, _SERVER, time.time_ns(), None,
                         ctx.trace_flags is SAMPLED)
        self.http_status = self.request = None
        self.owner = owner
        self.app = app
        self.environ = environ
        self.respond = respond
        self.method = method
        self.trace_hex = ctx.trace_id.to_bytes(16, "big").hex()
        self.token = None
        self.started = time.perf_counter()

    def start_response(self, status: str, headers: list[tuple[str, str]],
                       exc_info: Any = None) -> Any:
        """The app's ``start_response``: notes the status and adds ``X-Trace-Id``."""
        try:
            self.http_status = int(status[:3])
            self.note_request()
            for name, _ in headers:
                if name.lower() == _HEADER:
                    headers = [h for h in headers if h[0].lower() != _HEADER]
                    break
            headers = [*headers, (sc.TRACE_ID_HEADER, self.trace_hex)]
        except Exception as exc:
            drops.report("requests", 0, exc)
        return self.respond(status, headers, exc_info)

    def note_request(self) -> None:
        """Remember the request object while Flask still has it (it clears the environ's
        reference at the end): when the response starts, or an error is noted."""
        if self.request is None and self.environ is not None:
            self.request = self.environ.get("werkzeug.request")

    def label(self, status: int, route: str | None, path: str, scheme: str) -> None:
        """The span's name and ``http.*``/``url.*`` attributes, once the request is done."""
        attrs = self._attributes
        if self._end_time is None and len(attrs) <= MAX_ATTRIBUTES - 5:
            attrs[sc.HTTP_REQUEST_METHOD] = self.method
            attrs[sc.URL_PATH] = path
            attrs[sc.URL_SCHEME] = scheme
            if route is not None:
                attrs[sc.HTTP_ROUTE] = route
                self._name = f"{self.method} {route}"
            attrs[sc.HTTP_RESPONSE_STATUS_CODE] = status
            return
        self.set_attributes({sc.HTTP_REQUEST_METHOD: self.method, sc.URL_PATH: path,
                             sc.URL_SCHEME: scheme})
        if route is not None:
            self.set_attribute(sc.HTTP_ROUTE, route)
            self.update_name(f"{self.method} {route}")
        self.set_attribute(sc.HTTP_RESPONSE_STATUS_CODE, status)

    def complete(self) -> None:
        """What is left once a request that did not fail is over (see ``_deferred``)."""
        _RequestSpan.complete_many([self])

    @staticmethod
    def complete_many(spans: list[_RequestSpan]) -> None:
        """For each request that did not fail, in order: the span's attributes and end, the log
        line, the counts (added up for the batch, then merged under one lock). The spans of a
        batch share their runtime (a batch is one runtime's ``deferred``)."""
        if not spans:
            return
        rt = spans[0].rt
        counts: dict[tuple[str, str, int], list[float]] = {}
        lines: list[str] = []
        for span in spans:
            try:
                owner, status, method = span.owner, span.code, span.method
                route, seconds = span.route, span.seconds
                span.label(status, route, span.path, span.scheme)
                route = route or ""
                if status < 400:
                    level = "info"
                elif status < 500:
                    level = "warning"
                else:
                    level = "error"
                    span.set_status(Status(StatusCode.ERROR))
                if owner.log_requests:
                    rt.logs.request_line(level, _LOGGER, method, route, span.path, status,
                                         int(seconds * 1_000_000 + 0.5) / 1000, span.trace_hex,
                                         span.get_span_context().span_id.to_bytes(8, "big").hex(),
                                         span.end_ns, lines)
                key = (method, route, status)
                entry = counts.get(key)
                if entry is None:
                    counts[key] = [1.0, seconds]
                else:
                    entry[0] += 1
                    entry[1] += seconds
                if owner.duration_histogram:
                    owner._histogram(rt, method, route, status, seconds)
                span.end(span.end_ns)
            except Exception as exc:
                drops.report("requests", 1, exc)
        _merge(rt.metrics.requests, counts)
        rt.logs.writer.batched_many(lines)

    def finish(self, rt: _config.Runtime | None,
               error: tuple[BaseException, str | None] | None) -> None:
        """Everything now, on the request's thread (a failed request, or one that cannot wait)."""
        if error is None and rt is not None:
            self.rt = rt
            _RequestSpan.complete_many([self])
            return
        self.label(self.code, self.route, self.path, self.scheme)
        if rt is not None and error is not None:
            self.owner._failed(rt, self, error, self.code, self.route or "", self.path,
                               self.seconds)
            self.owner._count(rt, self.method, self.route or "", self.code, self.seconds)
        self.end(self.end_ns)


class _Middleware:
    """Wraps ``app.wsgi_app``: the request's span, status, header, log line and metrics."""

    __slots__ = ("app", "globals_class", "inner", "telemetry")

    def __init__(self, telemetry: Telemetry, app: Flask, inner: WSGIApp) -> None:
        self.telemetry = telemetry
        self.app = app
        self.inner = inner
        self.globals_class = app.app_ctx_globals_class

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        rt = _config.runtime
        if rt is None:
            return self.inner(environ, start_response)
        span = self._open(rt, environ, start_response)
        if span is None:
            return self.inner(environ, start_response)
        try:
            return self.inner(environ, span.start_response)
        except BaseException as exc:  # it escapes the app (PROPAGATE_EXCEPTIONS, testing)
            if span.error is None:
                span.error = (exc, None)
            raise
        finally:
            self._close(span)

    def _open(self, rt: _config.Runtime, environ: dict[str, Any],
              start_response: StartResponse) -> _RequestSpan | None:
        """The request's span, current (with the request) until :meth:`_close`; None: no span."""
        try:
            owner, app = self.telemetry, self.app
            if owner.excluded_paths and _path(environ) in owner.excluded_paths:
                return None
            if app.app_ctx_globals_class is not self.globals_class:  # replaced since: ours again
                app.app_ctx_globals_class = self.globals_class = _globals_class(
                    app.app_ctx_globals_class)
            tracer = rt.tracing.lite
            remote = _remote_parent(environ) if "HTTP_TRACEPARENT" in environ else None
            ctx, parent = tracer.context_for(remote)
            span = _RequestSpan(owner, tracer, ctx, parent, app,
                                environ, start_response, environ.get("REQUEST_METHOD") or "GET")
            if _cv_app.get(None) is not None:  # a context pushed before: Flask will reuse it
                _outer(span, app)
            span.token = attach(span, span)
            return span  # the token last: nothing after it can fail and leave the span current
        except Exception as exc:
            drops.report("requests", 1, exc)
            return None

    def _close(self, span: _RequestSpan) -> None:
        """The request is over: what it was, and the rest now (failed) or with its batch."""
        try:
            seconds = time.perf_counter() - span.started
            rt = _config.runtime
            error = span.reported or span.error
            if error is None and span.outer_g is not None:
                error = span.outer_g.__dict__.get("shockproof_error")
            status = span.http_status
            if status is None:
                status = 500 if error else 200
            environ = span.environ or {}
            span.note_request()
            req = span.request
            if req is not None:
                rule = getattr(req, "url_rule", None)
                span.route = rule.rule if rule is not None else None
                span.path, span.scheme = req.path, req.scheme
            else:
                span.route, span.path = None, _path(environ)
                span.scheme = environ.get("wsgi.url_scheme", "http")
            owner = self.telemetry
            if owner.user is not None and rt is not None and req is not None:
                owner._identify(rt, span, req)
            span.code, span.seconds = status, seconds
            span.end_ns = (span._start_time or 0) + int(seconds * 1e9)
            span.app = span.environ = span.outer_g = span.request = None
            if error is None and rt is not None and not has_bound_context():
                span.rt = rt
                rt.deferred.add(span)  # the rest with its batch
            else:  # failed, or its line needs this request's structlog context: now
                span.finish(rt, error)
        except Exception as err:
            drops.report("requests", 1, err)
        finally:
            detach(span.token)


def _merge(stats: RequestStats, counts: dict[tuple[str, str, int], list[float]]) -> None:
    """A batch's request counts into the totals; a failure costs those counts (counted)."""
    try:
        stats.merge(counts)
    except Exception as exc:
        drops.report("requests", int(sum(entry[0] for entry in counts.values())), exc)


def _globals_class(base: type[_AppCtxGlobals]) -> type[_AppCtxGlobals]:
    """``base`` whose instances (each request's ``g``) speak for the request being served:
    ``g.shockproof_trace_id`` reads its trace id, and ``g.shockproof_error = ...`` (what
    ``resilience.flask`` leaves) reaches its span. Nothing is done per ``g`` made."""
    if getattr(base, "_shockproof_adopts", False):
        return base
    base_setattr = base.__setattr__

    class ShockproofGlobals(base):  # type: ignore[valid-type,misc]
        _shockproof_adopts = True

        @property
        def shockproof_trace_id(self) -> str:
            found = self.__dict__.get(_TRACE_ATTR)
            if found is not None:
                return str(found)
            span = current_request()
            if not isinstance(span, _RequestSpan):
                raise AttributeError(_TRACE_ATTR)
            return span.trace_hex

        @shockproof_trace_id.setter
        def shockproof_trace_id(self, value: str) -> None:
            self.__dict__[_TRACE_ATTR] = value

        def __setattr__(self, name: str, value: Any) -> None:
            if name == _ERROR_ATTR:
                span = current_request()
                if isinstance(span, _RequestSpan):
                    span.reported = value
                    span.note_request()
            base_setattr(self, name, value)

        def get(self, name: str, default: Any = None) -> Any:
            if name == _TRACE_ATTR:
                return getattr(self, name, default)
            return super().get(name, default)

        def __contains__(self, item: str) -> bool:
            if item == _TRACE_ATTR:
                return hasattr(self, item)
            return bool(super().__contains__(item))

    ShockproofGlobals.__name__ = ShockproofGlobals.__qualname__ = f"Shockproof{base.__name__}"
    return ShockproofGlobals


def _outer(span: _RequestSpan, app: Flask) -> None:
    """An application context of ``app`` was pushed before the request (Flask reuses it): if its
    ``g`` predates our class, it gets the trace id now and is read for errors at the end."""
    ctx = _cv_app.get(None)
    if ctx is None or ctx.app is not app or getattr(type(ctx.g), "_shockproof_adopts", False):
        return
    ctx.g.shockproof_trace_id = span.trace_hex
    span.outer_g = ctx.g


def _on_exception(sender: Any, exception: BaseException | None = None, **extra: Any) -> None:
    """Flask's ``got_request_exception``: an exception no error handler took (500)."""
    span = current_request()
    if isinstance(span, _RequestSpan) and span.app is sender and span.error is None \
            and exception is not None:
        span.error = (exception, None)
        span.note_request()


class Telemetry:
    """Flask extension: request spans, request log lines, error recording, ``X-Trace-Id``."""

    def __init__(self, app: Flask | None = None, *, log_requests: bool = True,
                 excluded_paths: Iterable[str] = (), duration_histogram: bool = False,
                 user: UserOf | None = None, user_hash_key: str | bytes | None = None) -> None:
        self.log_requests = log_requests
        self.user, self.user_hash_key = user, user_hash_key
        self._key: tuple[object, bytes] | None = None
        self.excluded_paths = frozenset(excluded_paths)
        self.duration_histogram = duration_histogram
        self._log = Logger(_LOGGER)
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask) -> None:
        """Wrap ``app.wsgi_app`` and ``app``'s ``g`` class (the span starts before Flask runs)."""
        app.extensions[EXTENSION_KEY] = self
        app.app_ctx_globals_class = _globals_class(app.app_ctx_globals_class)
        app.wsgi_app = _Middleware(self, app, app.wsgi_app)  # type: ignore[method-assign]
        got_request_exception.connect(_on_exception)

    def _identify(self, rt: _config.Runtime, span: _RequestSpan, req: Any) -> None:
        """``enduser.pseudo.id`` from the ``user`` callable (a failing callable costs only it)."""
        if self.user is None:
            return
        try:
            user = self.user(req)
        except Exception as exc:
            drops.report("requests", 0, exc)
            return
        cached = self._key
        if cached is None or cached[0] is not rt.store:
            cached = self._key = (rt.store, hash_key(self.user_hash_key, rt.store))
        if (pid := pseudo_id(user, cached[1])) is not None:
            span.set_attribute(sc.USER_PSEUDO_ID, pid)

    def _count(self, rt: _config.Runtime, method: str, route: str, status: int,
               seconds: float) -> None:
        rt.metrics.requests.record(method, route, status, seconds)
        if self.duration_histogram:
            self._histogram(rt, method, route, status, seconds)

    @staticmethod
    def _histogram(rt: _config.Runtime, method: str, route: str, status: int,
                   seconds: float) -> None:
        rt.metrics.http_duration.record(seconds, {
            sc.HTTP_REQUEST_METHOD: method, sc.HTTP_ROUTE: route,
            sc.HTTP_RESPONSE_STATUS_CODE: status})

    def _failed(self, rt: _config.Runtime, span: _RequestSpan,
                error: tuple[BaseException, str | None], status: int, route: str, path: str,
                seconds: float) -> None:
        """A request that raised: the span and the log line name the error (the full log chain)."""
        fields: dict[str, Any] = {
            sc.HTTP_REQUEST_METHOD: span.method, sc.HTTP_ROUTE: route, sc.URL_PATH: path,
            sc.HTTP_RESPONSE_STATUS_CODE: status, sc.DURATION_MS: int(seconds * 1_000_000 + 0.5) / 1000,
            sc.LOG_TRACE_ID: span.trace_hex,
            sc.LOG_SPAN_ID: f"{span.get_span_context().span_id:016x}"}
        self._error(rt, span, error, status, fields)
        if self.log_requests:
            getattr(self._log, _level(status))(sc.LOG_REQUEST, **fields)

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


def _level(status: int) -> str:
    return "error" if status >= 500 else "warning" if status >= 400 else "info"


def _path(environ: dict[str, Any]) -> str:
    """``request.path`` as werkzeug computes it (PATH_INFO, WSGI-decoded, one leading slash)."""
    raw: str = environ.get("PATH_INFO") or ""
    if not raw.isascii():
        raw = raw.encode("latin1").decode(errors="replace")
    return "/" + raw.lstrip("/")


def _remote_parent(environ: dict[str, Any]) -> SpanContext | None:
    """The caller's span from its W3C ``traceparent`` (and ``tracestate``), if valid."""
    carrier = {sc.TRACEPARENT_HEADER: str(environ["HTTP_TRACEPARENT"])}
    if state := environ.get("HTTP_TRACESTATE"):
        carrier["tracestate"] = str(state)
    remote = extract_context(carrier)
    found = remote.get(SPAN_KEY) if remote is not None else None
    return found.get_span_context() if isinstance(found, Span) else None


class Shockproof:
    """One extension for both halves: ``telemetry.flask`` and ``resilience.flask``.

    ``settings`` go to ``telemetry.configure()`` when telemetry is not configured yet
    (the service name defaults to the app's name); otherwise they are ignored, with a
    :class:`~telemetry.TelemetryWarning`. ``user`` and ``user_hash_key`` go to
    :class:`Telemetry`.
    """

    def __init__(self, app: Flask | None = None, *, user: UserOf | None = None,
                 user_hash_key: str | bytes | None = None, **settings: Any) -> None:
        self.settings = settings
        self.telemetry = Telemetry(user=user, user_hash_key=user_hash_key)
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
