"""Resilience's events become spans, span events, metrics and log lines.

**Lazy spans** (the default). A guarded call that succeeds at once costs
telemetry nothing: no span is made. The span of a call is *materialised* at the
first event that says something happened in it (an attempt failed, a retry was
scheduled, the circuit or bulkhead rejected it, the fallback answered, the
deadline ran out, validation failed, a fault was injected) with the call's
**true start time** (``CallInfo.started_ns``), as a child of the span current at
that moment, and it becomes the current span until the call finishes, so the
retries' own spans and logs nest under it. ``CallFinished`` ends it; a slow call
that had no other event gets its span at that point, start time and all.

**Always** (``spans="always"``): every guarded call gets a span. An interceptor
(run before each attempt) materialises it at the first attempt, and resilience's
``slow_call`` threshold is set to 0 so that every call reports ``CallFinished``.
Calls rejected before any attempt get theirs from the event. (Known limit, and the
resilience hook that would lift it, in the README: a call ended by a BaseException
never reports ``CallFinished``; its span is ended as incomplete later.)

Circuit state changes without a call, and faults injected outside a guarded
call, go on the current span (the request's, usually).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Span

import resilience
from resilience import (
    AttemptFailed,
    AttemptInfo,
    BulkheadFull,
    CallFinished,
    CallInfo,
    CallRejected,
    CircuitOpenError,
    CircuitStateChanged,
    DeadlineExpired,
    FallbackUsed,
    FaultInjected,
    RetriesExhausted,
    RetryScheduled,
    ValidationRejected,
)

from . import _semconv as sc
from ._fingerprint import type_name
from ._lite import LiteTracer
from ._metrics import Metrics, drops
from ._tracing import record_error, safe_message

if TYPE_CHECKING:
    from ._config import TelemetryConfig
    from ._logs import Logs

#: Spans of calls that never reported CallFinished (killed by a BaseException) are ended
#: as incomplete beyond this many.
MAX_OPEN = 10_000
_MAX_MESSAGE = 500


@dataclass(slots=True)
class _Open:
    span: Span
    token: object | None


def _failure(exc: BaseException) -> dict[str, Any]:
    return {sc.EXCEPTION_TYPE: type_name(exc), sc.EXCEPTION_MESSAGE: safe_message(exc)[:_MAX_MESSAGE]}


class CallSpans:
    """The resilience hook (and, in ``always`` mode, interceptor) that makes call spans."""

    def __init__(self, tracer: LiteTracer, config: TelemetryConfig, metrics: Metrics,
                 logs: Logs) -> None:
        self._tracer = tracer
        self._always = config.spans == "always"
        self._exceptions_as = config.exceptions_as
        self._metrics = metrics
        self._log = logs.internal("resilience")
        self._open: dict[int, _Open] = {}
        self._lock = threading.Lock()
        self._handlers: dict[type, Callable[[Any], None]] = {
            AttemptFailed: self._attempt_failed, RetryScheduled: self._retry,
            RetriesExhausted: self._exhausted, CallRejected: self._rejected,
            FallbackUsed: self._fallback, DeadlineExpired: self._deadline,
            ValidationRejected: self._validation, CircuitStateChanged: self._circuit,
            FaultInjected: self._fault, CallFinished: self._finished,
        }

    # -- wiring ---------------------------------------------------------------------------

    def listen(self) -> None:
        resilience.subscribe(self)
        if self._always:
            resilience.add_interceptor(self.before_attempt)

    def stop(self) -> None:
        resilience.unsubscribe(self)
        resilience.remove_interceptor(self.before_attempt)
        with self._lock:
            stale, self._open = list(self._open.values()), {}
        for entry in stale:
            _end_incomplete(entry.span)

    def __call__(self, event: object) -> None:
        handler = self._handlers.get(type(event))
        if handler is None:
            return
        try:
            handler(event)
        except Exception as exc:
            drops.report("events", 1, exc)

    def before_attempt(self, info: AttemptInfo) -> None:
        """``always`` mode: the call's span starts (true start time) before its first attempt."""
        if info.attempt == 1:
            try:
                self._span_for(info.call)
            except Exception as exc:
                drops.report("events", 1, exc)

    def open_count(self) -> int:
        """Spans of calls in flight (tests and the README's leak check)."""
        return len(self._open)

    # -- materialising ------------------------------------------------------------------------

    def _span_for(self, call: CallInfo) -> Span:
        entry = self._open.get(call.call_id)
        if entry is not None:
            return entry.span
        span = self._tracer.start(call.site, start_ns=call.started_ns, attributes={sc.SITE: call.site})
        token = otel_context.attach(trace.set_span_in_context(span))
        with self._lock:
            self._open[call.call_id] = _Open(span, token)
            if len(self._open) > MAX_OPEN:
                _end_incomplete(self._open.pop(next(iter(self._open))).span)
        return span

    # -- one handler per event ------------------------------------------------------------------

    def _attempt_failed(self, ev: AttemptFailed) -> None:
        self._span_for(ev.call).add_event(sc.EVENT_ATTEMPT_FAILED, {
            sc.ATTEMPT: ev.attempt, sc.KIND: ev.kind.value, sc.TRANSIENT: ev.transient,
            sc.ATTEMPT_DURATION_S: ev.duration, **_failure(ev.exception)})

    def _retry(self, ev: RetryScheduled) -> None:
        attrs = {sc.ATTEMPT: ev.attempt, sc.WAIT_S: ev.wait, **_failure(ev.exception)}
        self._span_for(ev.call).add_event(sc.EVENT_RETRY, attrs)
        self._metrics.retries.add(1, {sc.SITE: ev.call.site})
        self._log.info(sc.LOG_RETRY, **{sc.SITE: ev.call.site, **attrs})

    def _exhausted(self, ev: RetriesExhausted) -> None:
        self._span_for(ev.call).add_event(sc.EVENT_RETRIES_EXHAUSTED, {
            sc.ATTEMPTS: ev.attempts, sc.EXHAUSTED_REASON: ev.reason,
            sc.EXCEPTION_TYPE: type_name(ev.exception)})

    def _rejected(self, ev: CallRejected) -> None:
        attrs: dict[str, Any] = {sc.REJECT_REASON: ev.reason, sc.REJECT_TARGET: ev.target}
        if ev.reason == "circuit_open":
            attrs[sc.CIRCUIT_NAME] = ev.target
        if ev.retry_after is not None:
            attrs[sc.RETRY_AFTER_S] = ev.retry_after
        self._span_for(ev.call).add_event(sc.EVENT_REJECTED, attrs)
        self._metrics.rejections.add(1, {sc.SITE: ev.call.site, sc.REJECT_REASON: ev.reason})

    def _fallback(self, ev: FallbackUsed) -> None:
        span = self._span_for(ev.call)
        span.set_attribute(sc.DEGRADED, True)
        attrs = {sc.ERROR_TYPE: type_name(ev.exception), sc.KIND: resilience.classify(ev.exception).kind.value}
        span.add_event(sc.EVENT_FALLBACK, attrs)
        self._metrics.fallbacks.add(1, {sc.SITE: ev.call.site})
        self._log.warning(sc.LOG_FALLBACK, **{sc.SITE: ev.call.site, **attrs})

    def _deadline(self, ev: DeadlineExpired) -> None:
        self._span_for(ev.call).add_event(sc.EVENT_DEADLINE, {sc.DEADLINE_S: ev.budget})

    def _validation(self, ev: ValidationRejected) -> None:
        self._span_for(ev.call).add_event(sc.EVENT_VALIDATION, {
            sc.VALIDATION_FIELDS: ",".join(str(e["field"]) for e in ev.errors),
            sc.VALIDATION_TYPES: ",".join(str(e["type"]) for e in ev.errors)})

    def _circuit(self, ev: CircuitStateChanged) -> None:
        entry = self._open.get(ev.call.call_id) if ev.call is not None else None
        span = entry.span if entry is not None else trace.get_current_span()
        attrs: dict[str, Any] = {sc.CIRCUIT_NAME: ev.circuit, sc.CIRCUIT_OLD_STATE: ev.old,
                                 sc.CIRCUIT_STATE: ev.new}
        if ev.failure_rate is not None:
            attrs[sc.CIRCUIT_FAILURE_RATE] = ev.failure_rate
        if span.is_recording():
            span.add_event(sc.EVENT_CIRCUIT, attrs)
        else:  # no span to carry it: a short span of its own, so circuit history is never lost
            own = self._tracer.start(f"circuit {ev.circuit}", attributes={sc.CIRCUIT_NAME: ev.circuit})
            own.add_event(sc.EVENT_CIRCUIT, attrs)
            own.end()
        self._metrics.transitions.add(1, {sc.CIRCUIT_NAME: ev.circuit, sc.CIRCUIT_STATE: ev.new})
        self._log.warning(sc.LOG_CIRCUIT, **attrs)

    def _fault(self, ev: FaultInjected) -> None:
        # A fault in a guarded call goes on the call's span (resilience reports the end of
        # every call a fault touched, injected latency included, so the span always ends).
        # A point() outside any recording span gets a short span of its own.
        own = None
        span = self._span_for(ev.call) if ev.call is not None else trace.get_current_span()
        if not span.is_recording():
            span = own = self._tracer.start(ev.site, attributes={sc.SITE: ev.site})
        attrs: dict[str, Any] = {sc.FAULT_SITE: ev.site, sc.FAULT_KIND: ev.fault,
                                 sc.FAULT_RULE_ID: ev.rule_id, sc.FAULT_SEED: ev.seed,
                                 sc.FAULT_ORDINAL: ev.ordinal}
        if ev.kind is not None:
            attrs[sc.KIND] = ev.kind.value
        if ev.detail:
            attrs[sc.FAULT_DETAIL] = ev.detail
        span.set_attributes({sc.FAULT_INJECTED: True, sc.FAULT_RULE_ID: ev.rule_id,
                             sc.FAULT_SEED: ev.seed})
        span.add_event(sc.EVENT_FAULT, attrs)
        if own is not None:
            own.end()
        self._metrics.faults.add(1, {sc.FAULT_SITE: ev.site, sc.FAULT_KIND: ev.fault})
        self._log.warning(sc.LOG_FAULT, **{sc.FAULT_INJECTED: True, **attrs})

    def _finished(self, ev: CallFinished) -> None:
        with self._lock:
            entry = self._open.pop(ev.call.call_id, None)
        if entry is None:  # a slow call, nothing else happened: its span, start to end, now
            entry = _Open(self._tracer.start(ev.call.site, start_ns=ev.call.started_ns,
                                             attributes={sc.SITE: ev.call.site}), None)
        span = entry.span
        try:
            span.set_attributes({sc.OUTCOME: ev.outcome, sc.ATTEMPTS: ev.attempts})
            if ev.outcome == "error" and ev.exception is not None:
                self._failed(span, ev, ev.exception)
            elif ev.outcome == "fallback":
                span.set_attribute(sc.DEGRADED, True)
        finally:
            span.end()
            if entry.token is not None:
                otel_context.detach(entry.token)  # type: ignore[arg-type]

    def _failed(self, span: Span, ev: CallFinished, exc: BaseException) -> None:
        attrs = record_error(span, exc, exceptions_as=self._exceptions_as)
        self._metrics.error(attrs[sc.KIND], ev.call.site)
        fields: dict[str, Any] = {sc.SITE: ev.call.site, sc.ATTEMPTS: ev.attempts, **attrs}
        if self._exceptions_as == "logs":
            fields["exc_info"] = exc
        rejected = isinstance(exc, CircuitOpenError | BulkheadFull)
        with trace.use_span(span, end_on_exit=False, record_exception=False,
                            set_status_on_exception=False):
            if rejected:
                self._log.warning(sc.LOG_CALL_FAILED, **fields)
            else:
                self._log.error(sc.LOG_CALL_FAILED, **fields)


def _end_incomplete(span: Span) -> None:
    try:
        span.set_attribute(sc.INCOMPLETE, True)
        span.end()
    except Exception as exc:
        drops.report("events", 1, exc)
