"""Logs: structlog as a chain of small processors, into JSON (or console) lines and the store.

The chain, in order::

    merge_contextvars -> add_log_level -> stamp -> add_trace_ids -> add_error
        -> redact -> to_sinks -> render (JSON or console)

``add_error`` turns ``exc_info`` into ``error.type``, the kind, the fingerprint
and OpenTelemetry's ``exception.type/message/stacktrace`` (formatted without
locals). ``redact`` runs before anything leaves: the store, the OTLP logs
exporter, the captures of ``telemetry.testing`` and the rendered line all get
the redacted record. Every processor is total (it never raises), the writer
swallows a broken stream, and :class:`Logger` - what :func:`get_logger` returns -
is a no-op before ``configure()`` and never raises into the caller either.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import sys
import threading
import time
from collections.abc import Callable, Mapping, MutableMapping, Sequence
from typing import IO, TYPE_CHECKING, Any

import structlog
from opentelemetry.sdk._logs.export import LogRecordExporter, LogRecordExportResult
from opentelemetry.sdk.resources import Resource

from . import _config
from . import _semconv as sc
from ._metrics import drops
from ._records import LogRecord
from ._redact import Redactor
from ._store import TraceStore
from ._tracing import current_ids, error_attributes, exception_attributes

if TYPE_CHECKING:
    from opentelemetry.sdk._logs import LoggerProvider

    from ._config import TelemetryConfig

EventDict = MutableMapping[str, Any]
Sink = Callable[[dict[str, Any], LogRecord], None]
_TIME_KEY = "_shockproof_time_ns"
#: Fields the package computes from code, never from input; redaction skips them.
_OWN_FIELDS = frozenset({sc.LOG_LEVEL, sc.LOG_TIMESTAMP, sc.LOG_TRACE_ID, sc.LOG_SPAN_ID,
                         sc.LOGGER_NAME, sc.FINGERPRINT, sc.KIND, sc.ERROR_TYPE, sc.ERROR_ID,
                         sc.HTTP_ROUTE, sc.HTTP_RESPONSE_STATUS_CODE, sc.DURATION_MS, sc.SITE,
                         sc.ATTEMPTS, sc.ATTEMPT, sc.TRANSIENT, _TIME_KEY})
_RECORD_FIELDS = frozenset({sc.LOG_LEVEL, sc.LOG_TIMESTAMP, sc.LOG_TRACE_ID, sc.LOG_SPAN_ID,
                            sc.LOGGER_NAME, sc.LOG_EVENT, _TIME_KEY})
_SEVERITY = {"debug": 5, "info": 9, "warning": 13, "error": 17, "critical": 21}
_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING,
           "error": logging.ERROR, "critical": logging.CRITICAL}


# -- the processors (each small, each total) ----------------------------------------------------


_second: tuple[int, str] = (-1, "")


def iso_utc(time_ns: int) -> str:
    """``2026-01-02T03:04:05.678901Z`` (the seconds part is formatted once per second)."""
    global _second
    seconds, rest = divmod(time_ns, 1_000_000_000)
    cached_at, prefix = _second
    if cached_at != seconds:
        prefix = _dt.datetime.fromtimestamp(seconds, _dt.UTC).strftime("%Y-%m-%dT%H:%M:%S")
        _second = (seconds, prefix)
    return f"{prefix}.{rest // 1000:06d}Z"


def stamp(_: Any, __: str, event_dict: EventDict) -> EventDict:
    """``timestamp`` in ISO 8601 UTC, and the same instant in ns for the store."""
    now = time.time_ns()
    event_dict[_TIME_KEY] = now
    event_dict[sc.LOG_TIMESTAMP] = iso_utc(now)
    return event_dict


def add_trace_ids(_: Any, __: str, event_dict: EventDict) -> EventDict:
    """``trace_id``/``span_id`` of the current span, when there is one (and none was given)."""
    if sc.LOG_TRACE_ID in event_dict:
        return event_dict
    ids = current_ids()
    if ids is not None:
        event_dict[sc.LOG_TRACE_ID], event_dict[sc.LOG_SPAN_ID] = ids
    return event_dict


def add_error(_: Any, __: str, event_dict: EventDict) -> EventDict:
    """An ``exc_info`` becomes error type, kind, fingerprint and ``exception.*`` (never locals)."""
    exc = _exception_of(event_dict.pop("exc_info", None))
    if exc is not None:
        try:
            event_dict.update(error_attributes(exc))
            event_dict.update(exception_attributes(exc))
        except Exception as err:  # a pathological exception must not lose the log line
            drops.report("log_fields", 1, err)
    return event_dict


def _exception_of(exc_info: Any) -> BaseException | None:
    if isinstance(exc_info, BaseException):
        return exc_info
    if isinstance(exc_info, tuple) and len(exc_info) == 3:
        return exc_info[1] if isinstance(exc_info[1], BaseException) else None
    if exc_info:
        return sys.exc_info()[1]
    return None


class Redact:
    """Redacts every field the application supplied (by key and by value)."""

    def __init__(self, redactor: Redactor) -> None:
        self.redactor = redactor

    def __call__(self, _: Any, __: str, event_dict: EventDict) -> EventDict:
        redactor = self.redactor
        for key, value in event_dict.items():
            if key in _OWN_FIELDS or not isinstance(key, str):
                continue
            if type(value) is str and not redactor.secret_key(key):
                event_dict[key] = redactor.text(value)  # the common case, inlined
            else:
                event_dict[key] = redactor.pair(key, value)
        return event_dict


class ToSinks:
    """Hands a :class:`LogRecord` to the store, the OTLP exporter and the captures."""

    def __init__(self, store: TraceStore | None, otlp: Callable[[LogRecord], None] | None) -> None:
        self.store = store
        self.otlp = otlp
        self.captures: tuple[Sink, ...] = ()

    def __call__(self, _: Any, __: str, event_dict: EventDict) -> EventDict:
        time_ns = event_dict.pop(_TIME_KEY, None) or time.time_ns()
        if self.store is None and self.otlp is None and not self.captures:
            return event_dict
        try:
            record = _record(time_ns, event_dict)
            if self.store is not None:
                self.store.add_logs((record,))
            if self.otlp is not None:
                self.otlp(record)
            for capture in self.captures:
                capture(dict(event_dict), record)
        except Exception as exc:
            drops.report("logs", 1, exc)
        return event_dict


def _record(time_ns: int, ed: EventDict) -> LogRecord:
    return LogRecord(
        time_ns=time_ns, level=str(ed.get(sc.LOG_LEVEL, "info")), event=str(ed.get(sc.LOG_EVENT, "")),
        logger=str(ed.get(sc.LOGGER_NAME, "")), trace_id=ed.get(sc.LOG_TRACE_ID),
        span_id=ed.get(sc.LOG_SPAN_ID),
        attributes={k: v for k, v in ed.items() if k not in _RECORD_FIELDS},
    )


class JSONRenderer:
    """One JSON object per line (structlog's renderer builds a new encoder per call; this reuses one)."""

    def __init__(self) -> None:
        self._encode = json.JSONEncoder(default=str, ensure_ascii=True).encode

    def __call__(self, _: Any, __: str, event_dict: EventDict) -> str:
        return self._encode(event_dict)


def renderer(log_format: str) -> Callable[[Any, str, EventDict], Any]:
    """The last processor: one JSON object per line, or structlog's console format."""
    if log_format == "console":
        return structlog.dev.ConsoleRenderer(colors=False)
    return JSONRenderer()


# -- the writer ---------------------------------------------------------------------------------


class SafeWriter:
    """structlog's final logger: one line per call; a broken stream drops the line, counted."""

    def __init__(self, stream: IO[str]) -> None:
        self.stream = stream
        self._lock = threading.Lock()

    def msg(self, message: str) -> None:
        try:
            with self._lock:
                self.stream.write(message + "\n")
                self.stream.flush()
        except Exception as exc:
            drops.report("log_output", 1, exc)

    debug = info = warning = warn = error = critical = exception = fatal = log = msg


# -- the running part --------------------------------------------------------------------------


class Logs:
    """The chain, the writer, the OTLP logs exporter; structlog's global configuration too."""

    def __init__(self, config: TelemetryConfig, redactor: Redactor, store: TraceStore | None,
                 resource: Resource) -> None:
        self.writer = SafeWriter(config.log_stream or sys.stdout)
        self._provider = _otlp_provider(config, resource)
        self.sinks = ToSinks(store, _otlp_emitter(self._provider) if self._provider else None)
        self.processors: list[Any] = [
            structlog.contextvars.merge_contextvars, structlog.processors.add_log_level, stamp,
            add_trace_ids, add_error, Redact(redactor), self.sinks, renderer(config.log_format),
        ]
        self.level = _LEVELS[config.log_level]
        self.wrapper = structlog.make_filtering_bound_logger(self.level)
        structlog.configure(processors=self.processors, wrapper_class=self.wrapper,
                            logger_factory=self._factory, context_class=dict,
                            cache_logger_on_first_use=False)

    def _factory(self, *args: Any) -> SafeWriter:
        return self.writer

    def emit(self, method: str, event_dict: dict[str, Any]) -> None:
        """Run one event through the chain and write it: what structlog's BoundLogger does,
        without its per-call wrapping (our own :class:`Logger` comes here directly)."""
        processed: Any = event_dict
        try:
            for processor in self.processors:
                processed = processor(None, method, processed)
        except structlog.DropEvent:
            return
        self.writer.msg(processed)

    def internal(self, name: str) -> Logger:
        """A never-raising logger for the package's own lines."""
        return Logger(name)

    def add_capture(self, sink: Sink) -> None:
        self.sinks.captures = (*self.sinks.captures, sink)

    def remove_capture(self, sink: Sink) -> None:
        self.sinks.captures = tuple(s for s in self.sinks.captures if s != sink)

    def flush(self, timeout: float) -> bool:
        if self._provider is None:
            return True
        try:
            return bool(self._provider.force_flush(int(timeout * 1000)))
        except Exception as exc:
            drops.report("otlp_logs", 0, exc)
            return False

    def stop(self) -> None:
        structlog.reset_defaults()
        if self._provider is not None:
            self._provider.shutdown()


def _otlp_provider(config: TelemetryConfig, resource: Resource) -> LoggerProvider | None:
    if config.otlp_endpoint is None:
        return None
    from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
    from opentelemetry.sdk._logs import LoggerProvider
    from opentelemetry.sdk._logs.export import BatchLogRecordProcessor

    provider = LoggerProvider(resource=resource, shutdown_on_exit=False)
    exporter = OTLPLogExporter(endpoint=f"{config.otlp_endpoint}/v1/logs", timeout=config.otlp_timeout)
    provider.add_log_record_processor(BatchLogRecordProcessor(SafeLogExporter(exporter)))
    return provider


def _otlp_emitter(provider: LoggerProvider) -> Callable[[LogRecord], None]:
    from opentelemetry._logs import SeverityNumber

    logger = provider.get_logger("shockproof")

    def emit(record: LogRecord) -> None:
        logger.emit(timestamp=record.time_ns, severity_text=record.level.upper(),
                    severity_number=SeverityNumber(_SEVERITY.get(record.level, 9)),
                    body=record.event, attributes=_otel_attributes(record))
    return emit


def _otel_attributes(record: LogRecord) -> dict[str, Any]:
    out: dict[str, Any] = {sc.LOGGER_NAME: record.logger}
    for key, value in record.attributes.items():
        out[key] = value if isinstance(value, str | bool | int | float) else str(value)
    return out


class SafeLogExporter(LogRecordExporter):
    """Wraps an OTel log exporter: failures are counted drops, never raised."""

    def __init__(self, inner: LogRecordExporter) -> None:
        self.inner = inner

    def export(self, batch: Sequence[Any]) -> LogRecordExportResult:
        try:
            result = self.inner.export(batch)
        except Exception as exc:
            drops.report("otlp_logs", len(batch), exc)
            return LogRecordExportResult.FAILURE
        if result is not LogRecordExportResult.SUCCESS:
            drops.report("otlp_logs", len(batch))
        return result

    def shutdown(self) -> None:
        try:
            self.inner.shutdown()  # type: ignore[no-untyped-call]
        except Exception as exc:
            drops.report("otlp_logs", 0, exc)

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        try:
            return bool(self.inner.force_flush(timeout_millis))
        except Exception:
            return False


# -- the public logger ---------------------------------------------------------------------------


class Logger:
    """A structlog-style logger: a no-op before ``configure()``, records after, never raises."""

    __slots__ = ("_context", "_name")

    def __init__(self, name: str = "app", context: Mapping[str, Any] | None = None) -> None:
        self._name = name
        self._context = {sc.LOGGER_NAME: name, **(context or {})}

    def bind(self, **values: Any) -> Logger:
        """A logger whose every line carries ``values`` too."""
        return Logger(self._name, {**self._context, **values})

    def unbind(self, *keys: str) -> Logger:
        """A logger without ``keys``."""
        return Logger(self._name, {k: v for k, v in self._context.items() if k not in keys})

    def new(self, **values: Any) -> Logger:
        """A logger with only ``values`` as context."""
        return Logger(self._name, values)

    def debug(self, event: str, *args: Any, **fields: Any) -> None:
        self._emit("debug", event, args, fields)

    def info(self, event: str, *args: Any, **fields: Any) -> None:
        self._emit("info", event, args, fields)

    def warning(self, event: str, *args: Any, **fields: Any) -> None:
        self._emit("warning", event, args, fields)

    warn = warning

    def error(self, event: str, *args: Any, **fields: Any) -> None:
        self._emit("error", event, args, fields)

    def exception(self, event: str, *args: Any, **fields: Any) -> None:
        """An error line carrying the exception being handled."""
        fields.setdefault("exc_info", True)
        self._emit("error", event, args, fields)

    def critical(self, event: str, *args: Any, **fields: Any) -> None:
        self._emit("critical", event, args, fields)

    def _emit(self, method: str, event: str, args: tuple[Any, ...], fields: dict[str, Any]) -> None:
        runtime = _config.runtime
        if runtime is None or _LEVELS[method] < runtime.logs.level:
            return
        try:
            fields[sc.LOG_EVENT] = event % args if args else event
            runtime.logs.emit(method, {**self._context, **fields})
        except Exception as exc:
            drops.report("logs", 1, exc)


def get_logger(name: str = "app", **context: Any) -> Logger:
    """A logger named ``name``; cheap no-op before ``configure()``, records after it."""
    return Logger(name, context)
