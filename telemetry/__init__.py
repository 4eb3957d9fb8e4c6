"""Shockproof's telemetry: what resilience does, and every request, as traces, logs and metrics.

One call starts it (``telemetry.configure(service_name="shop")``); before that every
entry point is a cheap no-op. Spans go to the embedded trace store (SQLite, read
by the viewer and by :mod:`telemetry.query`), and over OTLP/HTTP when asked; logs
are structlog JSON lines linked to their trace; Sentry gets errors when a DSN is
given. One redaction pass guards everything that enters. Telemetry never raises
into the application and never blocks it: failures cost dropped telemetry,
counted (:func:`dropped`). See ``telemetry/README.md`` for the package's rules and
the attribute table.

Exceptions (raised by :func:`configure` only; nothing else raises)::

    TelemetryError
     └── ConfigurationError (also ValueError)   a setting or variable it cannot use
    TelemetryWarning (UserWarning)               e.g. configure() called twice
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError as _PackageNotFoundError
from importlib.metadata import version as _version

from . import query
from ._config import (
    ConfigurationError,
    TelemetryConfig,
    TelemetryError,
    TelemetryWarning,
    configure,
    dropped,
    flush,
    get_config,
    is_configured,
    metrics_snapshot,
    reset,
)
from ._exporter import StoreSpanExporter
from ._fingerprint import fingerprint
from ._logs import Logger, get_logger
from ._propagation import extract_context, httpx_event_hooks, inject_headers, requests_session
from ._records import LogRecord, SpanEventRecord, SpanRecord
from ._redact import RedactionRules, Redactor, redact
from ._store import TraceStore
from ._tracing import current_trace_id, get_tracer, record_exception

try:
    __version__ = _version("shockproof")
except _PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0+unknown"

__all__ = [
    "ConfigurationError",
    "LogRecord",
    "Logger",
    "RedactionRules",
    "Redactor",
    "SpanEventRecord",
    "SpanRecord",
    "StoreSpanExporter",
    "TelemetryConfig",
    "TelemetryError",
    "TelemetryWarning",
    "TraceStore",
    "__version__",
    "configure",
    "current_trace_id",
    "dropped",
    "extract_context",
    "fingerprint",
    "flush",
    "get_config",
    "get_logger",
    "get_tracer",
    "httpx_event_hooks",
    "inject_headers",
    "is_configured",
    "metrics_snapshot",
    "query",
    "record_exception",
    "redact",
    "requests_session",
    "reset",
]
