"""The viewer's Flask application: ``create_app(store_path, ...)``.

Server-rendered pages (Jinja, autoescaped) over :class:`telemetry.query.Query`,
JSON twins of the list pages for live refresh, OTLP/HTTP ingest, and the guard
of :mod:`._security` in front of all of it. Static files are plain CSS and
JavaScript: no build step, no inline script or style anywhere.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from flask import Flask, Response, current_app, render_template, request
from werkzeug.exceptions import HTTPException

from telemetry._redact import RedactionRules, Redactor
from telemetry._store import TraceStore
from telemetry.query import Query

from . import _format as fmt
from ._faults import FaultControl
from ._queries import ErrorFeed
from ._security import Guard, HostPolicy

EXTENSION: Final = "shockproof.viewer"
DEFAULT_MAX_BODY: Final = 16 * 2**20
PROBLEM: Final = "application/problem+json"
_HERE: Final = Path(__file__).resolve().parent
_ROUTES_TTL_S: Final = 10.0
_HTML_SAFE: Final = (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"))


@dataclass(eq=False)
class Viewer:
    """What the routes share: the store (read, and written by ingest), settings, small caches."""

    store_path: Path
    query: Query
    redactor: Redactor
    faults: FaultControl | None
    refresh_ms: int
    feed: ErrorFeed
    now: Callable[[], int]
    _writer: TraceStore | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _routes: tuple[float, tuple[str, ...]] = (0.0, ())
    #: Recently shown traces (trace id -> (monotonic time, TraceDetail)), for span details.
    details: dict[str, tuple[float, Any]] = field(default_factory=dict)

    def writer(self) -> TraceStore:
        """The store ingest writes to, opened on first use."""
        with self._lock:
            if self._writer is None:
                self._writer = TraceStore(self.store_path)
            return self._writer

    def routes(self) -> tuple[str, ...]:
        """Every route seen (for the filter menus), cached for a few seconds."""
        at, cached = self._routes
        if time.monotonic() - at > _ROUTES_TTL_S:
            cached = self.query.routes()
            self._routes = (time.monotonic(), cached)
        return cached

    def close(self) -> None:
        with self._lock:
            writer, self._writer = self._writer, None
        if writer is not None:
            writer.close()
        self.query.close()
        self.feed.close()


def viewer() -> Viewer:
    """The :class:`Viewer` of the current app."""
    state: Viewer = current_app.extensions[EXTENSION]
    return state


def create_app(store_path: str | os.PathLike[str], *, token: str | None = None,
               allowed_hosts: Iterable[str] | None = None, faults_url: str | None = None,
               faults_token: str | None = None, refresh_seconds: float = 3.0,
               max_body_bytes: int = DEFAULT_MAX_BODY, redact: RedactionRules | None = None,
               now: Callable[[], int] = time.time_ns) -> Flask:
    """The viewer as a Flask app reading (and, for OTLP ingest, writing) the store at ``store_path``.

    ``token``: required on every request when given. ``allowed_hosts``: ``Host``
    values answered (``name:port`` or ``name``); by default the loopback names on
    any port. ``faults_url``/``faults_token``: a fault control API to show the
    active rules of. ``redact``: rules for what ingest receives (the defaults
    otherwise). ``now``: the clock (nanoseconds) for windows and "ago" labels.
    """
    from . import _ingest, _pages

    app = Flask("telemetry.viewer", template_folder=str(_HERE / "templates"),
                static_folder=str(_HERE / "static"), static_url_path="/static")
    app.config["MAX_CONTENT_LENGTH"] = max_body_bytes
    path = Path(store_path)
    app.extensions[EXTENSION] = Viewer(
        path, Query(path, now=now), Redactor(redact),
        FaultControl(faults_url, faults_token) if faults_url else None,
        max(500, int(refresh_seconds * 1000)), ErrorFeed(path), now)
    Guard(token=token, hosts=HostPolicy(allowed_hosts), refuse=refuse).init_app(app)
    _filters(app)
    app.register_blueprint(_pages.blueprint)
    app.register_blueprint(_ingest.blueprint)
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(Exception, _unexpected)
    return app


def _filters(app: Flask) -> None:
    env = app.jinja_env
    env.autoescape = True
    env.trim_blocks = env.lstrip_blocks = True
    env.filters.update(duration=fmt.duration, clock=fmt.clock, timestamp=fmt.timestamp,
                       iso=fmt.iso, short_id=fmt.short_id, truncate_text=fmt.truncate,
                       seconds=fmt.seconds, zip_self=lambda xs: [(x, x) for x in xs])
    env.globals.update(ago=lambda ns: fmt.ago(ns, viewer().now()),
                       refresh_ms=lambda: viewer().refresh_ms)


def wants_json() -> bool:
    """API, ingest and non-browser clients get problem+json; browsers get a page."""
    if request.path.startswith(("/api/", "/v1/")):
        return True
    best = request.accept_mimetypes.best_match(["text/html", "application/json", PROBLEM])
    return best in ("application/json", PROBLEM)


def refuse(status: int, title: str, detail: str) -> Response:
    """An error answer: problem+json for APIs, an HTML page for people. Never a stack trace."""
    if wants_json():
        response = json_response({"type": "about:blank", "title": title, "status": status,
                                  "detail": detail}, status)
        response.mimetype = PROBLEM
        return response
    html = render_template("error.html", status=status, title=title, detail=detail)
    return Response(html, status=status, mimetype="text/html")


def _http_error(exc: HTTPException) -> Response:
    status = exc.code or 500
    response = refuse(status, exc.name, exc.description or exc.name)
    if status == 405 and (allow := exc.get_response().headers.get("Allow")):
        response.headers["Allow"] = allow
    return response


def _unexpected(exc: Exception) -> Response:
    if isinstance(exc, HTTPException):
        return _http_error(exc)
    current_app.logger.exception("unexpected error in the trace viewer")
    return refuse(500, "Internal Server Error", "the viewer failed to answer this request")


def json_response(payload: dict[str, Any], status: int = 200) -> Response:
    """JSON with ``<``, ``>`` and ``&`` escaped, so no byte of it can read as markup anywhere."""
    body = json.dumps(payload, ensure_ascii=False, separators=(",", ":"), default=str)
    for char, escaped in _HTML_SAFE:
        body = body.replace(char, escaped)
    return Response(body, status=status, mimetype="application/json")
