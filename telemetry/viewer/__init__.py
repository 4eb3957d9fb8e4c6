"""The trace viewer: a web page and terminal views of the trace store.

Where a person goes after something broke: error groups ranked by impact,
traces filtered by kind, status, route, duration and faults, one trace as a
waterfall with its retries, circuit changes, fallbacks, injected faults,
exceptions and log lines, the circuits' state history, and the injected faults.
It reads the store through :mod:`telemetry.query`, and accepts OTLP/HTTP
(``/v1/traces``, ``/v1/logs``) into the same store.

Run it with ``shockproof-traces serve`` (127.0.0.1:8001), or embed it::

    from telemetry.viewer import create_app
    app = create_app(".shockproof/telemetry.db")

Security (see :mod:`telemetry.viewer._security`): loopback unless
``--allow-remote`` *and* a token; Host and cross-origin checks; a token on every
request when one is set; a Content-Security-Policy without inline code.

Exceptions::

    ViewerError
     └── BindRefused (also ValueError)   a non-loopback address without --allow-remote and a token
    OtlpError (ValueError)               an OTLP export request that cannot be decoded (HTTP 400)
"""

from __future__ import annotations

from ._app import Viewer, create_app
from ._cli import main
from ._otlp import OtlpError, export_logs, export_spans
from ._queries import ErrorFeed, Occurrence
from ._security import BindRefused, ViewerError, check_bind, is_loopback, loopback_hosts
from ._waterfall import Waterfall, layout

__all__ = [
    "BindRefused",
    "ErrorFeed",
    "Occurrence",
    "OtlpError",
    "Viewer",
    "ViewerError",
    "Waterfall",
    "check_bind",
    "create_app",
    "export_logs",
    "export_spans",
    "is_loopback",
    "layout",
    "loopback_hosts",
    "main",
]
