"""Configuration and the process-wide runtime, in one place, behind a lock, with a public reset.

``configure()`` resolves one immutable :class:`TelemetryConfig` from its arguments,
then the environment (``SHOCKPROOF_*`` and the standard ``OTEL_*`` where they
apply), then the defaults, and starts the parts in order: metrics, the store,
logs, traces, Sentry, and finally the subscription to resilience's events.
:func:`reset` stops them in reverse, flushing what is buffered.
"""

from __future__ import annotations

import atexit
import logging
import math
import os
import threading
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Literal

from opentelemetry.sdk.metrics.export import MetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace.export import SpanExporter

import resilience

from . import _semconv as sc
from ._metrics import Metrics, drops
from ._redact import RedactionRules, Redactor
from ._store import TraceStore

if TYPE_CHECKING:
    from ._deferred import Deferred
    from ._logs import Logs
    from ._sentry import Sentry
    from ._tracing import Tracing

_log = logging.getLogger("telemetry")

DEFAULT_STORE = str(Path(".shockproof") / "telemetry.db")
DEFAULT_SERVICE = "shockproof-app"
SpanMode = Literal["lazy", "always"]
ExceptionsAs = Literal["span_events", "logs"]
LogFormat = Literal["json", "console"]
LOG_LEVELS = ("debug", "info", "warning", "error", "critical")
_OFF = frozenset({"", "0", "off", "false", "no", "none"})


class TelemetryError(Exception):
    """Root of telemetry's exceptions (raised only by ``configure()``; runtime never raises)."""


class ConfigurationError(TelemetryError, ValueError):
    """``configure()`` was given a value (or an environment variable) it cannot use."""


class TelemetryWarning(UserWarning):
    """Telemetry was used in a way that is probably a mistake (e.g. configured twice)."""


@dataclass(frozen=True, slots=True)
class TelemetryConfig:
    """Everything ``configure()`` decided, after arguments, environment and defaults."""

    service_name: str = DEFAULT_SERVICE
    #: A path, a :class:`TraceStore` the caller owns, or None for no store.
    store: str | TraceStore | None = DEFAULT_STORE
    #: Base URL of an OTLP/HTTP receiver (``/v1/traces`` and ``/v1/logs`` are appended).
    otlp_endpoint: str | None = None
    otlp_timeout: float = 10.0
    sentry_dsn: str | None = field(default=None, repr=False)
    sentry_environment: str | None = None
    log_format: LogFormat = "json"
    log_level: str = "info"
    sample_ratio: float = 1.0
    redact: RedactionRules = field(default_factory=RedactionRules)
    spans: SpanMode = "lazy"
    exceptions_as: ExceptionsAs = "span_events"
    #: Guarded calls slower than this get a span even when nothing else happened.
    slow_call: float = 1.0
    log_stream: IO[str] | None = field(default=None, repr=False, compare=False)
    span_exporters: tuple[SpanExporter, ...] = field(default=(), repr=False, compare=False)
    metric_readers: tuple[MetricReader, ...] = field(default=(), repr=False, compare=False)


@dataclass(eq=False, slots=True)
class Runtime:
    """The running parts of one ``configure()``; replaced whole, never mutated in place."""

    config: TelemetryConfig
    redactor: Redactor
    resource: Resource
    metrics: Metrics
    logs: Logs
    tracing: Tracing
    sentry: Sentry | None
    store: TraceStore | None
    owns_store: bool
    previous_slow_call: float
    #: Finished requests' log lines, counts and span exports, done in batches.
    deferred: Deferred


_lock = threading.RLock()
#: The live runtime, or None before configure() / after reset(). Read without the lock.
runtime: Runtime | None = None
_atexit_registered = False


# -- resolving --------------------------------------------------------------------------------


def from_env(environ: Mapping[str, str]) -> dict[str, Any]:
    """The settings the environment gives (``SHOCKPROOF_*`` first, then ``OTEL_*``)."""
    env = {k: v for k, v in environ.items() if v is not None}
    out: dict[str, Any] = {}
    if name := env.get("SHOCKPROOF_SERVICE_NAME") or env.get("OTEL_SERVICE_NAME"):
        out["service_name"] = name
    if "SHOCKPROOF_STORE" in env:
        raw = env["SHOCKPROOF_STORE"].strip()
        out["store"] = None if raw.lower() in _OFF else raw
    traces = env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    if endpoint := env.get("SHOCKPROOF_OTLP_ENDPOINT") or traces or env.get("OTEL_EXPORTER_OTLP_ENDPOINT"):
        out["otlp_endpoint"] = endpoint
    for key, var in (("sentry_dsn", "SHOCKPROOF_SENTRY_DSN"),
                     ("sentry_environment", "SHOCKPROOF_SENTRY_ENVIRONMENT"),
                     ("log_format", "SHOCKPROOF_LOG_FORMAT"), ("log_level", "SHOCKPROOF_LOG_LEVEL"),
                     ("spans", "SHOCKPROOF_SPANS"), ("exceptions_as", "SHOCKPROOF_EXCEPTIONS_AS")):
        if value := env.get(var, "").strip():
            out[key] = value.lower() if key not in ("sentry_dsn", "sentry_environment") else value
    ratio = env.get("SHOCKPROOF_SAMPLE_RATIO")
    sampler = env.get("OTEL_TRACES_SAMPLER", "").strip().lower()
    if ratio is None and sampler in ("", "traceidratio", "parentbased_traceidratio"):
        ratio = env.get("OTEL_TRACES_SAMPLER_ARG")
    if ratio:
        out["sample_ratio"] = _number("SHOCKPROOF_SAMPLE_RATIO / OTEL_TRACES_SAMPLER_ARG", ratio)
    if slow := env.get("SHOCKPROOF_SLOW_CALL"):
        out["slow_call"] = _number("SHOCKPROOF_SLOW_CALL", slow)
    if timeout := env.get("OTEL_EXPORTER_OTLP_TIMEOUT"):
        out["otlp_timeout"] = _number("OTEL_EXPORTER_OTLP_TIMEOUT", timeout) / 1000.0
    return out


def _number(name: str, raw: str) -> float:
    try:
        return float(raw)
    except ValueError:
        raise ConfigurationError(f"{name} must be a number, got {raw!r}") from None


def resolve(explicit: Mapping[str, Any], environ: Mapping[str, str] | None = None) -> TelemetryConfig:
    """Arguments over environment over defaults, validated. ``store=False`` means no store."""
    known = {f.name for f in fields(TelemetryConfig)}
    unknown = sorted(set(explicit) - known)
    if unknown:
        raise ConfigurationError(f"configure() got unknown setting(s): {', '.join(unknown)}")
    merged: dict[str, Any] = from_env(os.environ if environ is None else environ)
    merged.update({k: v for k, v in explicit.items() if v is not None})
    if merged.get("store") is False:
        merged["store"] = None
    for key in ("span_exporters", "metric_readers"):
        merged[key] = tuple(merged.get(key, ()))
    config = replace(TelemetryConfig(), **merged)
    _validate(config)
    return _normalise(config)


def _validate(c: TelemetryConfig) -> None:
    problems = []
    if not isinstance(c.service_name, str) or not c.service_name.strip():
        problems.append("service_name must be a non-empty string")
    store: object = c.store
    if store is not None and not isinstance(store, str | os.PathLike | TraceStore):
        problems.append(f"store must be a path, a TraceStore, False or None, got {store!r}")
    checks: list[tuple[bool, str]] = [
        (c.log_format in ("json", "console"), f"log_format must be 'json' or 'console', got {c.log_format!r}"),
        (c.log_level in LOG_LEVELS, f"log_level must be one of {', '.join(LOG_LEVELS)}, got {c.log_level!r}"),
        (c.spans in ("lazy", "always"), f"spans must be 'lazy' or 'always', got {c.spans!r}"),
        (c.exceptions_as in ("span_events", "logs"),
         f"exceptions_as must be 'span_events' or 'logs', got {c.exceptions_as!r}"),
        (_in_range(c.sample_ratio, 0.0, 1.0), f"sample_ratio must be within [0, 1], got {c.sample_ratio!r}"),
        (_in_range(c.slow_call, 0.0, math.inf), f"slow_call must be >= 0 seconds, got {c.slow_call!r}"),
        (_in_range(c.otlp_timeout, 1e-3, math.inf), f"otlp_timeout must be > 0 seconds, got {c.otlp_timeout!r}"),
        (isinstance(c.redact, RedactionRules), f"redact must be a RedactionRules, got {c.redact!r}"),
        (c.otlp_endpoint is None or str(c.otlp_endpoint).startswith(("http://", "https://")),
         f"otlp_endpoint must be an http(s) URL, got {c.otlp_endpoint!r}"),
    ]
    problems += [message for ok, message in checks if not ok]
    if c.sentry_dsn is not None:
        from ._sentry import dsn_problem

        if (problem := dsn_problem(str(c.sentry_dsn))) is not None:
            problems.append(problem)
    if problems:
        raise ConfigurationError("telemetry.configure(): " + "; ".join(problems))


def _in_range(value: object, low: float, high: float) -> bool:
    return (isinstance(value, int | float) and not isinstance(value, bool)
            and low <= value <= high and not math.isnan(value))


def _normalise(c: TelemetryConfig) -> TelemetryConfig:
    endpoint = c.otlp_endpoint
    if endpoint is not None:
        endpoint = str(endpoint).rstrip("/").removesuffix("/v1/traces").removesuffix("/v1/logs")
    store = c.store if c.store is None or isinstance(c.store, TraceStore) else os.fspath(c.store)
    return replace(c, otlp_endpoint=endpoint, store=store, sample_ratio=float(c.sample_ratio),
                   slow_call=float(c.slow_call))


# -- starting and stopping ----------------------------------------------------------------------


def configure(
    *,
    service_name: str | None = None,
    store: str | os.PathLike[str] | TraceStore | Literal[False] | None = None,
    otlp_endpoint: str | None = None,
    otlp_timeout: float | None = None,
    sentry_dsn: str | None = None,
    sentry_environment: str | None = None,
    log_format: LogFormat | None = None,
    log_level: str | None = None,
    log_stream: IO[str] | None = None,
    sample_ratio: float | None = None,
    redact: RedactionRules | None = None,
    spans: SpanMode | None = None,
    exceptions_as: ExceptionsAs | None = None,
    slow_call: float | None = None,
    span_exporters: Sequence[SpanExporter] = (),
    metric_readers: Sequence[MetricReader] = (),
) -> TelemetryConfig:
    """Start telemetry for this process, once.

    Every argument left at None comes from the environment (``SHOCKPROOF_SERVICE_NAME``/
    ``OTEL_SERVICE_NAME``, ``SHOCKPROOF_STORE``, ``OTEL_EXPORTER_OTLP_ENDPOINT``,
    ``SHOCKPROOF_SENTRY_DSN``, ``SHOCKPROOF_LOG_FORMAT``, ``SHOCKPROOF_SAMPLE_RATIO``/
    ``OTEL_TRACES_SAMPLER_ARG`` ...) or the defaults: the store at
    ``./.shockproof/telemetry.db``, JSON logs on stdout, every trace sampled, lazy
    call spans, exceptions as span events. ``store=False`` turns the store off.
    A second call warns (:class:`TelemetryWarning`) and keeps the first
    configuration; :func:`reset` first to change it. Bad values raise
    :class:`ConfigurationError`; nothing after this call ever raises.
    """
    settings = {k: v for k, v in locals().items() if v is not None}
    return _configure(settings)


def _configure(settings: Mapping[str, Any]) -> TelemetryConfig:
    global runtime, _atexit_registered
    with _lock:
        if runtime is not None:
            warnings.warn("telemetry.configure() was already called; the first configuration stays "
                          "in force (call telemetry.reset() first to change it)",
                          TelemetryWarning, stacklevel=3)
            return runtime.config
        config = resolve(settings)
        runtime = _start(config)
        if not _atexit_registered:
            atexit.register(_at_exit)
            _atexit_registered = True
        return config


def _start(config: TelemetryConfig) -> Runtime:
    from . import _deferred, _logs, _sentry, _tracing

    redactor = Redactor(config.redact)
    resource = Resource.create({sc.SERVICE_NAME: config.service_name})
    undo: list[Callable[[], object]] = []
    try:
        metrics = Metrics(resource, config.metric_readers)
        undo.append(metrics.stop)
        store, owns_store = _open_store(config.store)
        if owns_store and store is not None:
            undo.append(store.close)
        logs = _logs.Logs(config, redactor, store, resource)
        undo.append(logs.stop)
        deferred = _deferred.Deferred(after=logs.writer.flush)
        logs.writer.before = metrics.requests.before_read = deferred.drain
        undo.append(deferred.close)
        tracing = _tracing.Tracing(config, resource, redactor, store, metrics, logs)
        undo.append(tracing.stop)
        sentry = _sentry.Sentry(config, redactor) if config.sentry_dsn else None
        if sentry is not None:
            undo.append(sentry.stop)
        previous = resilience.get_settings().slow_call
        undo.append(lambda: resilience.configure(slow_call=previous))
        resilience.configure(slow_call=0.0 if config.spans == "always" else config.slow_call)
        tracing.listen()
    except BaseException:
        for step in reversed(undo):
            _quietly(step)
        raise
    return Runtime(config, redactor, resource, metrics, logs, tracing, sentry, store, owns_store,
                   previous, deferred)


def _open_store(spec: str | TraceStore | None) -> tuple[TraceStore | None, bool]:
    if spec is None:
        return None, False
    if isinstance(spec, TraceStore):
        drops.readers["store"] = lambda: _store_losses(spec)
        return spec, False
    try:
        Path(spec).parent.mkdir(parents=True, exist_ok=True)
        store = TraceStore(spec)
    except Exception as exc:
        _log.warning("telemetry: the trace store %s cannot be opened (%s: %s); running without it",
                     spec, type(exc).__name__, exc)
        return None, False
    drops.readers["store"] = lambda: _store_losses(store)
    return store, True


def _store_losses(store: TraceStore) -> int:
    return int(store.dropped) + int(store.write_errors)


def reset() -> None:
    """Stop everything ``configure()`` started (flushing first) and forget the configuration."""
    global runtime
    with _lock:
        rt, runtime = runtime, None
        if rt is None:
            return
        _quietly(rt.deferred.close)
        _quietly(rt.tracing.stop)
        _quietly(rt.logs.stop)
        if rt.sentry is not None:
            _quietly(rt.sentry.stop)
        if rt.store is not None:
            _quietly(rt.store.close if rt.owns_store else _flusher(rt.store))
        _quietly(rt.metrics.stop)
        _quietly(lambda: resilience.configure(slow_call=rt.previous_slow_call))
        drops.clear()


def _flusher(store: TraceStore) -> Callable[[], object]:
    return lambda: store.flush(5.0)


def _quietly(step: Callable[[], object]) -> None:
    try:
        step()
    except Exception as exc:
        _log.warning("telemetry: error while stopping (%s: %s)", type(exc).__name__, exc)


def flush(timeout: float = 5.0) -> bool:
    """Push out everything buffered (spans, logs, the store, Sentry); True if all made it in time."""
    rt = runtime
    if rt is None:
        return True
    rt.deferred.drain()
    ok = rt.tracing.flush(timeout)
    ok = rt.logs.flush(timeout) and ok
    if rt.store is not None:
        try:
            ok = bool(rt.store.flush(timeout)) and ok
        except Exception as exc:
            drops.report("store", 0, exc)
            ok = False
    if rt.sentry is not None:
        ok = rt.sentry.flush(timeout) and ok
    return ok


def _at_exit() -> None:
    _quietly(lambda: flush(2.0))
    _quietly(reset)


def is_configured() -> bool:
    """True between ``configure()`` and ``reset()``."""
    return runtime is not None


def get_config() -> TelemetryConfig | None:
    """The configuration in force, or None before ``configure()``."""
    rt = runtime
    return rt.config if rt is not None else None


def current() -> Runtime | None:
    """The live runtime (package-internal)."""
    return runtime


def dropped() -> dict[str, int]:
    """Telemetry lost since ``configure()``, by source (never the application's requests)."""
    return drops.counts()


def metrics_snapshot() -> dict[str, list[dict[str, Any]]]:
    """The current value of every instrument (see ``_metrics.Metrics.snapshot``); {} before configure."""
    rt = runtime
    return rt.metrics.snapshot() if rt is not None else {}

