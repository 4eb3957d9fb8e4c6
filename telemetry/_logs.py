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

The request line of ``telemetry.flask`` (one per request) skips the chain when it
can: :meth:`Logs.request_line` redacts the same fields, hands the same event dict
and :class:`~telemetry._records.LogRecord` to the sinks, and renders the same JSON
as the chain would, with its key order fixed and its scalars formatted directly
(about a third of the chain's cost). It takes the chain whenever the line could
differ: console format, or values bound with ``structlog.contextvars``.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import sys
import time
from collections.abc import Callable, Mapping, MutableMapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import structlog
import structlog.contextvars
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk._logs.export import LogRecordExporter, LogRecordExportResult
from opentelemetry.sdk.resources import Resource
from opentelemetry.trace import SpanContext, TraceFlags

from . import _config
from . import _semconv as sc
from ._metrics import drops
from ._records import LogRecord
from ._redact import Redactor
from ._store import TraceStore
from ._store_rows import JsonText, LogRow, to_json
from ._tracing import current_ids, error_attributes, exception_attributes
from ._writer import SafeWriter

if TYPE_CHECKING:
    from opentelemetry.sdk._logs import LoggerProvider

    from ._config import TelemetryConfig

EventDict = MutableMapping[str, Any]
_R = TypeVar("_R", LogRecord, LogRow)
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
#: Request line heads remembered (per distinct method, route, path, status), at most.
_HEADS_MAX = 2048
_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING,
           "error": logging.ERROR, "critical": logging.CRITICAL}


# -- the processors (each small, each total) ----------------------------------------------------

_PREFIX = structlog.contextvars.STRUCTLOG_KEY_PREFIX
#: structlog's registry of the context variables ``bind_contextvars`` made (None if it moved).
_STRUCTLOG_VARS: Mapping[str, Any] | None = getattr(structlog.contextvars, "_CONTEXT_VARS", None)


def bound_context() -> dict[str, Any]:
    """Values bound with ``structlog.contextvars`` in this context (usually none: one dict look)."""
    if _STRUCTLOG_VARS is None:
        return structlog.contextvars.get_contextvars()
    if not _STRUCTLOG_VARS:
        return {}
    out: dict[str, Any] = {}
    for name, var in tuple(_STRUCTLOG_VARS.items()):
        value = var.get(Ellipsis)
        if value is not Ellipsis:
            out[name[len(_PREFIX):]] = value
    return out


def merge_contextvars(_: Any, __: str, event_dict: EventDict) -> EventDict:
    """structlog's ``merge_contextvars``, reading its registry of the variables
    ``bind_contextvars`` made instead of copying and scanning the whole context per line."""
    if _STRUCTLOG_VARS is not None and not _STRUCTLOG_VARS:
        return event_dict
    for key, value in bound_context().items():
        event_dict.setdefault(key, value)
    return event_dict


def has_bound_context() -> bool:
    """Whether values are bound with ``structlog.contextvars`` here (usually one falsy test)."""
    if _STRUCTLOG_VARS is not None and not _STRUCTLOG_VARS:
        return False
    return bool(bound_context())


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
    """``timestamp`` in ISO 8601 UTC, and the same instant in ns for the store (now, unless the
    package's own caller says when: a request line is made once the request is over)."""
    now = event_dict.get(_TIME_KEY)
    if type(now) is not int:
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
        self._captures: tuple[Sink, ...] = ()
        #: True when some sink wants records (else a line is only rendered).
        self.active = store is not None or otlp is not None
        #: The store is the only sink (it can take a lighter record).
        self.store_only = store is not None and otlp is None

    @property
    def captures(self) -> tuple[Sink, ...]:
        return self._captures

    @captures.setter
    def captures(self, sinks: tuple[Sink, ...]) -> None:
        self._captures = sinks
        self.active = self.store is not None or self.otlp is not None or bool(sinks)
        self.store_only = self.store is not None and self.otlp is None and not sinks

    def __call__(self, _: Any, __: str, event_dict: EventDict) -> EventDict:
        time_ns = event_dict.pop(_TIME_KEY, None) or time.time_ns()
        if self.active:
            self.deliver(time_ns, event_dict)
        return event_dict

    def deliver(self, time_ns: int, event_dict: EventDict) -> None:
        """``event_dict`` (redacted, without the internal time key) to every sink; never raises."""
        try:
            if self.store_only or not self.active:  # the store's alone: a lighter record
                if self.store is not None:
                    self.store.add_log_rows((_record(time_ns, event_dict, LogRow),))
                return
            record = _record(time_ns, event_dict, LogRecord)
            if self.store is not None:
                self.store.add_logs((record,))
            if self.otlp is not None:
                self.otlp(record)
            for capture in self._captures:
                capture(dict(event_dict), record)
        except Exception as exc:
            drops.report("logs", 1, exc)


def _record(time_ns: int, ed: EventDict, kind: type[_R]) -> _R:
    return kind(
        time_ns=time_ns, level=str(ed.get(sc.LOG_LEVEL, "info")), event=str(ed.get(sc.LOG_EVENT, "")),
        logger=str(ed.get(sc.LOGGER_NAME, "")), trace_id=ed.get(sc.LOG_TRACE_ID),
        span_id=ed.get(sc.LOG_SPAN_ID),
        attributes={k: v for k, v in ed.items() if k not in _RECORD_FIELDS},
    )


_quote: Callable[[str], str] = json.encoder.encode_basestring_ascii


def _key(key: str, first: bool = False) -> str:
    """The JSON text before a value: ``{"key": `` or ``, "key": `` (the encoder's separators)."""
    return ("{" if first else ", ") + _quote(key) + ": "


_K_LOGGER, _K_METHOD, _K_ROUTE, _K_PATH = (_key(sc.LOGGER_NAME, True), _key(sc.HTTP_REQUEST_METHOD),
                                           _key(sc.HTTP_ROUTE), _key(sc.URL_PATH))
_K_STATUS, _K_DURATION = _key(sc.HTTP_RESPONSE_STATUS_CODE), _key(sc.DURATION_MS)
_K_EVENT, _K_LEVEL, _K_TIMESTAMP = _key(sc.LOG_EVENT), _key(sc.LOG_LEVEL), _key(sc.LOG_TIMESTAMP)
#: Around the ids: ``, "trace_id": "`` and ``", "span_id": "`` (the ids need no escaping).
_K_TRACE_Q, _K_SPAN_Q = f'{_key(sc.LOG_TRACE_ID)}"', f'"{_key(sc.LOG_SPAN_ID)}"'


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


# -- the running part --------------------------------------------------------------------------


class Logs:
    """The chain, the writer, the OTLP logs exporter; structlog's global configuration too."""

    def __init__(self, config: TelemetryConfig, redactor: Redactor, store: TraceStore | None,
                 resource: Resource) -> None:
        self.writer = SafeWriter(config.log_stream or sys.stdout)
        self._provider = _otlp_provider(config, resource)
        self.sinks = ToSinks(store, _otlp_emitter(self._provider) if self._provider else None)
        self.processors: list[Any] = [
            merge_contextvars, structlog.processors.add_log_level, stamp,
            add_trace_ids, add_error, Redact(redactor), self.sinks, renderer(config.log_format),
        ]
        self.level = _LEVELS[config.log_level]
        # For request_line: what redaction does to its constant parts, worked out once.
        self._redactor = redactor
        self._direct = config.log_format == "json"
        self._event = str(redactor.pair(sc.LOG_EVENT, sc.LOG_REQUEST))
        #: From the span id's closing quote to the timestamp's opening one, by level.
        self._tails = {level: f'"{_K_EVENT}{_quote(self._event)}{_K_LEVEL}{_quote(level)}'
                              f'{_K_TIMESTAMP}"' for level in _LEVELS}
        self._heads: dict[tuple[str, str, str, str, int], tuple[str, str, str, str]] = {}
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

    def request_line(self, level: str, logger: str, method: str, route: str, path: str, status: int,
                     duration_ms: float, trace_id: str, span_id: str, time_ns: int,
                     into: list[str] | None = None) -> None:
        """``telemetry.flask``'s line for a request that did not fail: exactly what the chain
        would write and hand to the sinks for ``Logger(logger).<level>("request", ...)`` at
        ``time_ns`` (the request's end), built directly (``status`` an int, ``duration_ms``
        a float) and written with its batch (:mod:`telemetry._writer`); the chain itself
        when the line could differ. With ``into``, a line rendered here is appended to it
        instead (the caller hands a batch's lines to the writer at once, with
        :meth:`~telemetry._writer.SafeWriter.batched_many`). Never raises."""
        if _LEVELS[level] < self.level:
            return
        try:
            if not self._direct or has_bound_context():
                self.emit(level, {sc.LOGGER_NAME: logger, sc.HTTP_REQUEST_METHOD: method,
                                  sc.HTTP_ROUTE: route, sc.URL_PATH: path,
                                  sc.HTTP_RESPONSE_STATUS_CODE: status, sc.DURATION_MS: duration_ms,
                                  sc.LOG_TRACE_ID: trace_id, sc.LOG_SPAN_ID: span_id,
                                  sc.LOG_EVENT: sc.LOG_REQUEST, _TIME_KEY: time_ns})
                return
            key = (logger, method, route, path, status)
            known = self._heads.get(key)
            if known is None:
                known = self._head(key)
            head, method, path, stored = known
            now = time_ns
            stamp = iso_utc(now)
            sinks = self.sinks
            if sinks.store_only and sinks.store is not None:
                sinks.store.add_log_rows((LogRow(now, level, self._event, logger, trace_id, span_id,
                                                 JsonText(f"{stored}{duration_ms!r}}}")),))
            elif sinks.active:
                sinks.deliver(now, {
                    sc.LOGGER_NAME: logger, sc.HTTP_REQUEST_METHOD: method, sc.HTTP_ROUTE: route,
                    sc.URL_PATH: path, sc.HTTP_RESPONSE_STATUS_CODE: status,
                    sc.DURATION_MS: duration_ms, sc.LOG_TRACE_ID: trace_id, sc.LOG_SPAN_ID: span_id,
                    sc.LOG_EVENT: self._event, sc.LOG_LEVEL: level, sc.LOG_TIMESTAMP: stamp})
            line = (f"{head}{duration_ms!r}{_K_TRACE_Q}{trace_id}{_K_SPAN_Q}{span_id}"
                    f"{self._tails[level]}{stamp}\"}}\n")
        except Exception as exc:
            drops.report("logs", 1, exc)
            return
        if into is None:
            self.writer.batched(line)
        else:
            into.append(line)

    def _head(self, key: tuple[str, str, str, str, int]) -> tuple[str, str, str, str]:
        """For these values: the line's JSON up to the duration, with method and path redacted
        (as the chain's ``Redact`` would), the redacted method and path, and the store's
        attributes JSON up to the duration (as :func:`~telemetry._store_rows.to_json`
        encodes them); remembered."""
        logger, method, route, path, status = key
        redactor = self._redactor
        method = redactor.pair(sc.HTTP_REQUEST_METHOD, method)
        path = redactor.pair(sc.URL_PATH, path)
        head = (f"{_K_LOGGER}{_quote(logger)}{_K_METHOD}{_quote(method)}{_K_ROUTE}{_quote(route)}"
                f"{_K_PATH}{_quote(path)}{_K_STATUS}{status!r}{_K_DURATION}")
        stored = to_json({sc.HTTP_REQUEST_METHOD: method, sc.HTTP_ROUTE: route, sc.URL_PATH: path,
                          sc.HTTP_RESPONSE_STATUS_CODE: status, sc.DURATION_MS: 0.5})
        stored = stored[:stored.rindex(":") + 1]  # up to the duration's value
        if len(self._heads) >= _HEADS_MAX:
            self._heads.clear()
        known = self._heads[key] = (head, method, path, stored)
        return known

    def internal(self, name: str) -> Logger:
        """A never-raising logger for the package's own lines."""
        return Logger(name)

    def add_capture(self, sink: Sink) -> None:
        self.sinks.captures = (*self.sinks.captures, sink)

    def remove_capture(self, sink: Sink) -> None:
        self.sinks.captures = tuple(s for s in self.sinks.captures if s != sink)

    def flush(self, timeout: float) -> bool:
        self.writer.flush()
        if self._provider is None:
            return True
        try:
            return bool(self._provider.force_flush(int(timeout * 1000)))
        except Exception as exc:
            drops.report("otlp_logs", 0, exc)
            return False

    def stop(self) -> None:
        self.writer.flush()
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
                    body=record.event, attributes=_otel_attributes(record),
                    context=_trace_context(record))
    return emit


def _trace_context(record: LogRecord) -> Context | None:
    """The record's own trace and span (it may be emitted after its span ended); None: current."""
    if not record.trace_id or not record.span_id:
        return None
    try:
        ctx = SpanContext(int(record.trace_id, 16), int(record.span_id, 16), False,
                          TraceFlags(TraceFlags.SAMPLED))
    except ValueError:
        return None
    return trace.set_span_in_context(trace.NonRecordingSpan(ctx), Context())


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
