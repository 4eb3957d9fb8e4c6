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
returns, in one place; its ``start_response`` adds ``X-Trace-Id`` and notes the
status. The app's ``g`` class is subclassed so that the ``g`` of each request, the
moment Flask creates it, gets ``shockproof_trace_id`` and is remembered (to read
``shockproof_error`` at the end). The route template is read from the request
object once the request is done. A request that failed is recorded before the
middleware returns; for one that did not, the rest (span attributes and end, log
line, counts) is completed with its batch (:mod:`telemetry._deferred`, at the
latest 50 ms later), its log line rendered directly
(:meth:`telemetry._logs.Logs.request_line`: same fields, same redaction, same JSON
as the processor chain, which every other line still takes). See "Requests: what
each one pays for" in the package README.

Nothing here raises into a request: a telemetry failure costs the request's
telemetry, counted in ``telemetry.dropped()``.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Iterable
from typing import Any

from flask import Flask, got_request_exception, has_app_context
from flask import current_app as _current_app
from flask import g as _g
from flask.ctx import _AppCtxGlobals
from opentelemetry import context as otel_context
from opentelemetry.trace import Span, SpanKind, Status, StatusCode
from werkzeug.exceptions import HTTPException

from . import _config
from . import _semconv as sc
from ._lite import MAX_ATTRIBUTES, LiteSpan, attach, current_request, detach
from ._logs import Logger
from ._metrics import drops
from ._propagation import extract_context
from ._pseudo import hash_key, pseudo_id
from ._tracing import record_error

__all__ = ["EXTENSION_KEY", "Shockproof", "Telemetry"]

EXTENSION_KEY = "shockproof.telemetry"
_ROOT = otel_context.Context()  # no traceparent came in: the request starts a trace
_HEADER = sc.TRACE_ID_HEADER.lower()
_LOGGER = "telemetry.flask"
_SERVER = SpanKind.SERVER
StartResponse = Callable[..., Any]
UserOf = Callable[[Any], object]
WSGIApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


class _RequestSpan(LiteSpan):
    """A request's SERVER span, and what the middleware learns about the request meanwhile.

    One object for both, and the request's start and end done in few steps: every
    allocation and call here is paid by every request. Its attributes are written at
    the end, when the route is known. The references to the request (environ,
    request, ``g``) are dropped then, so that a span waiting in an exporter's queue
    keeps nothing of the request alive.
    """

    __slots__ = ("app", "done", "environ", "method", "respond", "started", "token", "trace_hex")
    #: What ``complete()`` needs: (extension, runtime, status, route, path, scheme, seconds, end).
    done: tuple[Telemetry, _config.Runtime, int, str | None, str, str, float, int]
    # Learnt during the request (class-level None until then).
    http_status: int | None = None
    error: tuple[BaseException, str | None] | None = None
    g: Any = None
    request: Any = None

    def begin(self, app: Flask, environ: dict[str, Any], respond: StartResponse,
              method: str) -> None:
        """The request this span is for."""
        self.trace_hex = f"{self.get_span_context().trace_id:032x}"
        self.app: Flask | None = app
        self.environ: dict[str, Any] | None = environ
        self.respond = respond
        self.method = method
        self.token: object = None
        self.started = time.perf_counter()

    def start_response(self, status: str, headers: list[tuple[str, str]],
                       exc_info: Any = None) -> Any:
        """The app's ``start_response``: notes the status and adds ``X-Trace-Id``."""
        try:
            self.http_status = int(status[:3])
            if self.request is None and self.environ is not None:
                self.request = self.environ.get("werkzeug.request")
            for name, _ in headers:
                if name.lower() == _HEADER:
                    headers = [h for h in headers if h[0].lower() != _HEADER]
                    break
            headers = [*headers, (sc.TRACE_ID_HEADER, self.trace_hex)]
        except Exception as exc:
            drops.report("requests", 0, exc)
        return self.respond(status, headers, exc_info)

    @property
    def route(self) -> str | None:
        """The matched route template (``/items/<int:item_id>``), None when nothing matched."""
        req = self.request
        if req is None and self.environ is not None:  # during the request, before it was seen
            req = self.environ.get("werkzeug.request")
        rule = getattr(req, "url_rule", None)
        return rule.rule if rule is not None else None

    def outcome(self) -> tuple[int, tuple[BaseException, str | None] | None, str | None, str, str]:
        """Status, error, route (None when nothing matched), path and scheme of the request.

        The error is resilience.flask's ``(exception, error_id)`` if it left one, else an
        exception nobody handled, else None.
        """
        g, environ = self.g, self.environ
        error = g.__dict__.get("shockproof_error") if g is not None else None
        if error is None:
            error = self.error
        status = self.http_status
        if status is None:
            status = 500 if error else 200
        req = self.request
        if req is None and environ is not None:
            req = environ.get("werkzeug.request")
        rule = getattr(req, "url_rule", None)
        if req is not None:
            return status, error, rule.rule if rule is not None else None, req.path, req.scheme
        return status, error, None, _path(environ or {}), (environ or {}).get("wsgi.url_scheme", "http")

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
        """What is left once a request that did not fail is over (see ``_deferred``): the span's
        attributes, the log line, the counts, and the span's end; then the request is let go."""
        owner, rt, status, route, path, scheme, seconds, end_ns = self.done
        self.label(status, route, path, scheme)
        route = route or ""
        if status < 400:
            level = "info"
        else:
            level = "warning" if status < 500 else "error"
            if status >= 500:
                self.set_status(Status(StatusCode.ERROR))
        if owner.log_requests:
            rt.logs.request_line(level, _LOGGER, self.method, route, path, status,
                                 int(seconds * 1_000_000 + 0.5) / 1000, self.trace_hex,
                                 f"{self.get_span_context().span_id:016x}", end_ns)
        rt.metrics.requests.record(self.method, route, status, seconds)
        if owner.duration_histogram:
            owner._histogram(rt, self.method, route, status, seconds)
        self.end(end_ns)
        self.app = self.environ = self.g = self.request = None

    def forget_request(self) -> None:
        """Drop the references to the request (``respond`` stays: an app may start late)."""
        self.app = self.environ = self.g = self.request = None


class _Middleware:
    """Wraps ``app.wsgi_app``: the request's span, status, header, log line and metrics."""

    __slots__ = ("app", "inner", "telemetry")

    def __init__(self, telemetry: Telemetry, app: Flask, inner: WSGIApp) -> None:
        self.telemetry = telemetry
        self.app = app
        self.inner = inner

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        rt = _config.runtime
        if rt is None:
            return self.inner(environ, start_response)
        span = self.telemetry._open(rt, self.app, environ, start_response)
        if span is None:
            return self.inner(environ, start_response)
        try:
            return self.inner(environ, span.start_response)
        except BaseException as exc:  # it escapes the app (PROPAGATE_EXCEPTIONS, testing)
            if span.error is None:
                span.error = (exc, None)
            raise
        finally:
            self.telemetry._close(span)


def _globals_class(base: type[_AppCtxGlobals]) -> type[_AppCtxGlobals]:
    """``base`` whose instances (each request's ``g``) are adopted by the request being served:
    the ``g`` gets ``shockproof_trace_id`` as Flask creates it, and is read at the end."""
    if getattr(base, "_shockproof_adopts", False):
        return base
    own_init = base.__init__ is not object.__init__

    class ShockproofGlobals(base):  # type: ignore[valid-type,misc]
        _shockproof_adopts = True

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            if own_init:
                super().__init__(*args, **kwargs)
            span = current_request()
            if span is not None and span.g is None:
                try:
                    _adopt(span, self)
                except Exception as exc:
                    drops.report("requests", 0, exc)

    ShockproofGlobals.__name__ = ShockproofGlobals.__qualname__ = f"Shockproof{base.__name__}"
    return ShockproofGlobals


def _adopt(span: _RequestSpan, g: Any) -> None:
    """``g`` is the request's: it gets the trace id now and is read for errors at the end (and
    the request object is noted: Flask made it just before)."""
    span.g = g
    g.shockproof_trace_id = span.trace_hex
    if span.request is None and span.environ is not None:
        span.request = span.environ.get("werkzeug.request")


def _on_exception(sender: Any, exception: BaseException | None = None, **extra: Any) -> None:
    """Flask's ``got_request_exception``: an exception no error handler took (500)."""
    span = current_request()
    if isinstance(span, _RequestSpan) and span.app is sender and span.error is None \
            and exception is not None:
        span.error = (exception, None)


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

    # -- the start of a request ------------------------------------------------------------

    def _open(self, rt: _config.Runtime, app: Flask, environ: dict[str, Any],
              start_response: StartResponse) -> _RequestSpan | None:
        try:
            if self.excluded_paths and _path(environ) in self.excluded_paths:
                return None
            if not getattr(app.app_ctx_globals_class, "_shockproof_adopts", False):
                app.app_ctx_globals_class = _globals_class(app.app_ctx_globals_class)
            parent = _remote_parent(environ) if "HTTP_TRACEPARENT" in environ else _ROOT
            method = environ.get("REQUEST_METHOD") or "GET"
            span = rt.tracing.lite.start(method, parent, _SERVER, None, None, _RequestSpan)
            assert isinstance(span, _RequestSpan)
            span.begin(app, environ, start_response, method)
            if has_app_context() and _current_app._get_current_object() is app:  # type: ignore[attr-defined]
                _adopt(span, _g._get_current_object())  # Flask will reuse this app context
            span.token = attach(span, span)  # last: nothing after it can fail and leave it current
            return span
        except Exception as exc:
            drops.report("requests", 1, exc)
            return None

    # -- the end of a request ----------------------------------------------------------------

    def _close(self, span: _RequestSpan) -> None:
        deferred = False
        try:
            seconds = time.perf_counter() - span.started
            end_ns = (span.start_time or 0) + int(seconds * 1e9)
            rt = _config.runtime
            status, error, route, path, scheme = span.outcome()
            if self.user is not None and rt is not None:
                self._identify(rt, span)
            if rt is not None and error is None:  # the rest can wait for its batch
                span.done = (self, rt, status, route, path, scheme, seconds, end_ns)
                rt.deferred.add(span)
                deferred = True
                return
            span.label(status, route, path, scheme)
            if rt is not None and error is not None:
                self._failed(rt, span, error, status, route or "", path, seconds)
                self._count(rt, span.method, route or "", status, seconds)
            span.end(end_ns)
        except Exception as err:
            drops.report("requests", 1, err)
        finally:
            if not deferred:
                span.forget_request()
            detach(span.token)

    def _identify(self, rt: _config.Runtime, span: _RequestSpan) -> None:
        """``enduser.pseudo.id`` from the ``user`` callable (a failing callable costs only it)."""
        req = span.request
        if req is None and span.environ is not None:
            req = span.environ.get("werkzeug.request")
        if req is None or self.user is None:
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


def _remote_parent(environ: dict[str, Any]) -> otel_context.Context:
    """The caller's span from its W3C ``traceparent`` (and ``tracestate``), if valid."""
    carrier = {sc.TRACEPARENT_HEADER: str(environ["HTTP_TRACEPARENT"])}
    if state := environ.get("HTTP_TRACESTATE"):
        carrier["tracestate"] = str(state)
    return extract_context(carrier) or _ROOT


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
