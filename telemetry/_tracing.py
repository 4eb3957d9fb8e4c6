"""Traces: our own TracerProvider, the no-op-until-configured tracer, and where spans go.

Finished spans reach every sink through one fan-out processor: a
``BatchSpanProcessor`` per exporter (the store, OTLP/HTTP, the caller's own) and
the in-memory captures of ``telemetry.testing``. Each exporter is wrapped so that
spans are **redacted** on the exporter's thread (off the request path) before
anything leaves the process, and so that an exporter that raises or fails costs
dropped spans, counted, never an exception in the application.

Resilience's events become spans in :mod:`telemetry._spans`.
"""

from __future__ import annotations

import logging
import threading
import traceback
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased
from opentelemetry.trace import Link, Span, Status, StatusCode
from opentelemetry.util.types import Attributes

from resilience import ErrorKind, classify, field_errors

from . import _config
from . import _semconv as sc
from ._exporter import StoreSink
from ._fingerprint import fingerprint, type_name
from ._lite import LiteTracer
from ._metrics import Metrics, drops
from ._redact import Redactor
from ._store import TraceStore

if TYPE_CHECKING:
    from ._config import TelemetryConfig
    from ._logs import Logs

_MAX_MESSAGE = 2_000
_MAX_STACK = 16_000
#: Loggers of the OTLP exporters: their per-batch errors are replaced by our one rate-limited warning.
QUIET_LOGGERS = (
    "opentelemetry.exporter.otlp.proto.http.trace_exporter",
    "opentelemetry.exporter.otlp.proto.http._log_exporter",
    "opentelemetry.exporter.otlp.proto.http.metric_exporter",
)


# -- redaction and never-raise at the exporter boundary ---------------------------------------


def redact_span(span: ReadableSpan, redactor: Redactor) -> ReadableSpan:
    """``span`` with its name, attributes, events, links and status redacted (itself if all clean)."""
    name = redactor.text(span.name)
    attrs = redactor.attributes(span.attributes)
    events = [(e, redactor.text(e.name), redactor.attributes(e.attributes)) for e in span.events]
    links = [(link, redactor.attributes(link.attributes)) for link in span.links]
    status = span.status
    description = redactor.text(status.description) if status.description else status.description
    if (name is span.name and description is status.description and _same(span.attributes, attrs)
            and all(n is e.name and _same(e.attributes, a) for e, n, a in events)
            and all(_same(link.attributes, a) for link, a in links)):
        return span
    return ReadableSpan(
        name=name, context=span.context, parent=span.parent, resource=span.resource,
        attributes=attrs, events=tuple(Event(n, a, e.timestamp) for e, n, a in events),
        links=tuple(Link(link.context, a) for link, a in links), kind=span.kind,
        status=Status(status.status_code, description), start_time=span.start_time,
        end_time=span.end_time, instrumentation_scope=span.instrumentation_scope,
    )


def _same(before: Attributes, after: dict[str, Any]) -> bool:
    """True when redaction left every value as it was (the very same objects)."""
    return all(after.get(k) is v for k, v in (before or {}).items())


class SafeSpanExporter(SpanExporter):
    """Redacts, then exports through ``inner``; failures are counted as drops, never raised."""

    def __init__(self, inner: SpanExporter, redactor: Redactor, source: str) -> None:
        self.inner = inner
        self.redactor = redactor
        self.source = source

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        try:
            result = self.inner.export([redact_span(s, self.redactor) for s in spans])
        except Exception as exc:
            drops.report(self.source, len(spans), exc)
            return SpanExportResult.FAILURE
        if result is not SpanExportResult.SUCCESS:
            drops.report(self.source, len(spans))
        return result

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        try:
            return bool(self.inner.force_flush(timeout_millis))
        except Exception as exc:
            drops.report(self.source, 0, exc)
            return False

    def shutdown(self) -> None:
        try:
            self.inner.shutdown()
        except Exception as exc:
            drops.report(self.source, 0, exc)


class FanOut(SpanProcessor):
    """Hands each finished span to every sink; sinks come and go (copy-on-write tuple)."""

    def __init__(self) -> None:
        self.sinks: tuple[SpanProcessor, ...] = ()
        self._queues: tuple[tuple[SpanProcessor, Any, int], ...] = ()
        self._lock = threading.Lock()

    def add(self, sink: SpanProcessor) -> None:
        with self._lock:
            self._set((*self.sinks, sink))

    def remove(self, sink: SpanProcessor) -> None:
        with self._lock:
            self._set(tuple(s for s in self.sinks if s is not sink))

    def _set(self, sinks: tuple[SpanProcessor, ...]) -> None:
        self._queues = tuple((sink, *_queue_of(sink)) for sink in sinks)
        self.sinks = sinks

    def on_start(self, span: Any, parent_context: otel_context.Context | None = None) -> None:
        return None

    def on_end(self, span: ReadableSpan) -> None:
        for sink, queue, limit in self._queues:
            try:
                if queue is not None and len(queue) >= limit:
                    drops.report("spans_queue_full", 1)
                    continue
                sink.on_end(span)
            except Exception as exc:
                drops.report("spans", 1, exc)

    def shutdown(self) -> None:
        for sink in self.sinks:
            try:
                sink.shutdown()
            except Exception as exc:
                drops.report("spans", 0, exc)

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        ok = True
        for sink in self.sinks:
            try:
                ok = bool(sink.force_flush(timeout_millis)) and ok
            except Exception as exc:
                drops.report("spans", 0, exc)
                ok = False
        return ok


def _queue_of(sink: SpanProcessor) -> tuple[Any, int]:
    """A BatchSpanProcessor's queue and its limit (a full one would drop silently: we count),
    or (None, 0)."""
    inner = getattr(sink, "_batch_processor", None)
    queue = getattr(inner, "_queue", None)
    limit = getattr(inner, "_max_queue_size", None)
    return (queue, limit) if queue is not None and limit is not None else (None, 0)


class _QuietFilter(logging.Filter):
    """Drops the OTLP exporters' own per-batch error logs (our drop counter reports instead)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno < logging.WARNING


_QUIET = _QuietFilter()


# -- the provider -----------------------------------------------------------------------------


class Tracing:
    """Our TracerProvider, its sinks, and the bridge from resilience events to spans."""

    def __init__(self, config: TelemetryConfig, resource: Resource, redactor: Redactor,
                 store: TraceStore | None, metrics: Metrics, logs: Logs) -> None:
        from ._spans import CallSpans

        self.config = config
        self.redactor = redactor
        self.fanout = FanOut()
        sampler = ParentBased(TraceIdRatioBased(config.sample_ratio))
        self.provider = TracerProvider(resource=resource, sampler=sampler, shutdown_on_exit=False)
        self.provider.add_span_processor(self.fanout)
        self.tracer = self.provider.get_tracer("shockproof")
        self.lite = LiteTracer(self.provider.id_generator, self.fanout, resource, config.sample_ratio)
        if store is not None:
            self.fanout.add(StoreSink(store, redactor))
        for exporter, source in self._exporters(config):
            self.fanout.add(BatchSpanProcessor(SafeSpanExporter(exporter, redactor, source)))
        self.calls = CallSpans(self.lite, config, metrics, logs)
        install_global_provider()

    @staticmethod
    def _exporters(config: TelemetryConfig) -> list[tuple[SpanExporter, str]]:
        out: list[tuple[SpanExporter, str]] = []
        if config.otlp_endpoint is not None:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            for name in QUIET_LOGGERS:
                logging.getLogger(name).addFilter(_QUIET)
            out.append((OTLPSpanExporter(endpoint=f"{config.otlp_endpoint}/v1/traces",
                                         timeout=config.otlp_timeout), "otlp"))
        out += [(e, type(e).__name__) for e in config.span_exporters]
        return out

    def listen(self) -> None:
        """Subscribe to resilience's events (and, in ``always`` mode, intercept attempts)."""
        self.calls.listen()

    def flush(self, timeout: float) -> bool:
        try:
            return bool(self.provider.force_flush(int(timeout * 1000)))
        except Exception as exc:
            drops.report("spans", 0, exc)
            return False

    def stop(self) -> None:
        self.calls.stop()
        self.provider.shutdown()
        for name in QUIET_LOGGERS:
            logging.getLogger(name).removeFilter(_QUIET)


# -- before configure(): a tracer that is a no-op until there is a provider -------------------


class ProxyTracer(trace.Tracer):
    """Delegates to the configured provider's tracer, or to a no-op one (OTel's ProxyTracer model)."""

    def __init__(self, name: str, version: str | None = None) -> None:
        self._name = name
        self._version = version
        self._provider: TracerProvider | None = None
        self._tracer: trace.Tracer = trace.NoOpTracer()

    def _real(self) -> trace.Tracer:
        runtime = _config.runtime
        provider = runtime.tracing.provider if runtime is not None else None
        if provider is not self._provider:
            self._provider = provider
            self._tracer = (provider.get_tracer(self._name, self._version) if provider is not None
                            else trace.NoOpTracer())
        return self._tracer

    def start_span(self, *args: Any, **kwargs: Any) -> Span:
        return self._real().start_span(*args, **kwargs)

    def start_as_current_span(self, *args: Any, **kwargs: Any) -> Any:
        return self._real().start_as_current_span(*args, **kwargs)


class GlobalTracerProvider(trace.TracerProvider):
    """Set as OpenTelemetry's global provider (once, if nobody set one): follows configure/reset."""

    def get_tracer(self, instrumenting_module_name: str, instrumenting_library_version: str | None = None,
                   schema_url: str | None = None, attributes: Attributes | None = None) -> trace.Tracer:
        return ProxyTracer(instrumenting_module_name, instrumenting_library_version)


_global_lock = threading.Lock()


def install_global_provider() -> None:
    """Make OpenTelemetry's global provider ours, unless the application already set one."""
    with _global_lock:
        if isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider):
            trace.set_tracer_provider(GlobalTracerProvider())


def get_tracer(name: str = "shockproof", version: str | None = None) -> trace.Tracer:
    """A tracer that is a no-op before ``configure()`` and records after it."""
    return ProxyTracer(name, version)


# -- errors on spans -------------------------------------------------------------------------


def error_attributes(exc: BaseException) -> dict[str, Any]:
    """``error.type``, kind, transient and fingerprint of ``exc``."""
    c = classify(exc)
    return {sc.ERROR_TYPE: type_name(exc), sc.KIND: c.kind.value, sc.TRANSIENT: c.transient,
            sc.FINGERPRINT: fingerprint(exc)}


def safe_message(exc: BaseException) -> str:
    """The exception's message, except for validation errors: their messages (and their causes')
    carry the rejected input, so only the field names and error types are kept."""
    if classify(exc).kind is ErrorKind.VALIDATION:
        errors = field_errors(exc)
        return "invalid: " + ", ".join(f"{e['field']} ({e['type']})" for e in errors)
    return str(exc)[:_MAX_MESSAGE]


def stacktrace(exc: BaseException) -> str:
    """The formatted traceback (no locals, ever); validation errors without their input."""
    if classify(exc).kind is ErrorKind.VALIDATION:
        frames = "".join(traceback.format_tb(exc.__traceback__))
        text = f"Traceback (most recent call last):\n{frames}{type_name(exc)}: {safe_message(exc)}\n"
    else:
        text = "".join(traceback.format_exception(exc))
    return text[-_MAX_STACK:]


def exception_attributes(exc: BaseException) -> dict[str, str]:
    """OpenTelemetry's ``exception.*`` attributes."""
    return {sc.EXCEPTION_TYPE: type_name(exc), sc.EXCEPTION_MESSAGE: safe_message(exc),
            sc.EXCEPTION_STACKTRACE: stacktrace(exc)}


def record_error(span: Span, exc: BaseException, *, exceptions_as: str, status: bool = True,
                 exception_event: bool = True) -> dict[str, Any]:
    """Mark ``span`` failed by ``exc``: error type, kind, fingerprint; ERROR status if ``status``.

    The ``exception`` event is added only when exceptions go to span events (the other
    choice, ``"logs"``, is the caller's log line).
    """
    attrs = error_attributes(exc)
    span.set_attributes(attrs)
    if status:
        span.set_status(Status(StatusCode.ERROR, safe_message(exc)))
    if exception_event and exceptions_as == "span_events":
        span.add_event(sc.EXCEPTION_EVENT, {**exception_attributes(exc), sc.KIND: attrs[sc.KIND],
                                            sc.FINGERPRINT: attrs[sc.FINGERPRINT]})
    return attrs


def current_ids() -> tuple[str, str] | None:
    """(trace_id, span_id) in hex of the current span, or None outside any span."""
    ctx = trace.get_current_span().get_span_context()
    if not ctx.is_valid:
        return None
    return f"{ctx.trace_id:032x}", f"{ctx.span_id:016x}"


def current_trace_id() -> str | None:
    """The current trace id (32 hex digits), or None outside any span."""
    ids = current_ids()
    return ids[0] if ids else None



def record_exception(exc: BaseException, *, error_id: str | None = None) -> str:
    """Record ``exc`` on the current span, as an error log line and in Sentry; returns its fingerprint.

    For errors the application handles itself but wants seen. A no-op (apart from
    the fingerprint) before ``configure()``; never raises.
    """
    runtime = _config.runtime
    fp = fingerprint(exc)
    if runtime is None:
        return fp
    try:
        span = trace.get_current_span()
        attrs = record_error(span, exc, exceptions_as=runtime.config.exceptions_as)
        if error_id is not None:
            span.set_attribute(sc.ERROR_ID, error_id)
        runtime.metrics.error(attrs[sc.KIND])
        fields: dict[str, Any] = dict(attrs)
        if runtime.config.exceptions_as == "logs":
            fields["exc_info"] = exc
        if error_id is not None:
            fields[sc.ERROR_ID] = error_id
        runtime.logs.internal("app").error(sc.LOG_EXCEPTION, **fields)
        if runtime.sentry is not None:
            runtime.sentry.capture(exc, error_id=error_id)
    except Exception as err:
        drops.report("exceptions", 1, err)
    return fp
