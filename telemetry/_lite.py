"""Light spans: Shockproof's own request and call spans, without the SDK's per-span machinery.

The SDK's ``Span`` validates every attribute into ``BoundedAttributes``, takes a
lock per mutation, runs the sampler object and every processor's ``on_start``:
about 15-25 us per span on the benchmark machine, more than a minimal Flask
request itself. The spans *this package* makes (one per request, one per
eventful guarded call) need none of that, so :class:`LiteSpan` implements the
OpenTelemetry ``Span`` API on a plain object that is also the SDK's ``ReadableSpan``
and, at ``end()``, hands itself to the same processors and exporters as every other span.

What is kept: the provider's id generator, resource and sampling rule
(``ParentBased(TraceIdRatioBased(ratio))``, computed on the same trace-id bits
the SDK uses, so both agree), the W3C flags, attribute types (non-primitive
values are dropped, as the SDK does) and limits (128 attributes, 128 events).
Application spans (``telemetry.get_tracer()``) still go through the SDK.

Making one is kept to a handful of operations because a request pays for it:
both ids from one random draw (with the SDK's default id generator), the
``SpanContext`` built as the tuple it is (its ``__new__`` only re-checks ids we
know are valid), fields that rarely change (events, links, status) left at
class-level defaults until they do, and :func:`attach` setting OpenTelemetry's
context variable directly (what ``context.attach(trace.set_span_in_context(span))``
does, in one step, falling back to exactly that with another runtime context).
"""

from __future__ import annotations

import random
import time
from collections.abc import Mapping, Sequence
from contextvars import ContextVar
from typing import Any, cast

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan, SpanProcessor
from opentelemetry.sdk.trace.id_generator import IdGenerator, RandomIdGenerator
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import (
    Link,
    NonRecordingSpan,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
)
from opentelemetry.trace.span import DEFAULT_TRACE_STATE
from opentelemetry.util import types

MAX_ATTRIBUTES = 128
MAX_EVENTS = 128
_LOW_64 = (1 << 64) - 1
_SAMPLED = TraceFlags(TraceFlags.SAMPLED)
_NOT_SAMPLED = TraceFlags(TraceFlags.DEFAULT)
_PRIMITIVES = (str, bool, int, float)
_UNSET = Status(StatusCode.UNSET)
_getrandbits = random.getrandbits
_new_context = tuple.__new__

#: The key OpenTelemetry keeps the current span under (learnt through its public API).
SPAN_KEY: str = next(iter(trace.set_span_in_context(trace.INVALID_SPAN, otel_context.Context())))
_runtime = getattr(otel_context, "_RUNTIME_CONTEXT", None)
#: OpenTelemetry's context variable when its default (contextvars) runtime is in use.
_CURRENT: ContextVar[otel_context.Context] | None = getattr(_runtime, "_current_context", None)
if not isinstance(_CURRENT, ContextVar):  # pragma: no cover - another OTEL_PYTHON_CONTEXT
    _CURRENT = None


#: The flags of a sampled span (the one object every sampled span made here carries).
SAMPLED = _SAMPLED

#: Where ``telemetry.flask`` keeps the request being served, next to its span.
REQUEST_KEY: str = otel_context.create_key("shockproof-request")


def attach(span: trace.Span, request: object = None) -> object:
    """Make ``span`` current (and ``request`` the request being served, when given); returns
    the token for :func:`detach`."""
    if _CURRENT is None:  # pragma: no cover - another runtime context: the public API
        ctx = trace.set_span_in_context(span)
        if request is not None:
            ctx = otel_context.set_value(REQUEST_KEY, request, ctx)
        return otel_context.attach(ctx)
    current = _CURRENT.get()
    values: dict[str, object] = {**current, SPAN_KEY: span} if current else {SPAN_KEY: span}
    if request is not None:
        values[REQUEST_KEY] = request
    return _CURRENT.set(otel_context.Context(values))


def detach(token: object) -> None:
    """Undo :func:`attach`; never raises."""
    if _CURRENT is None:  # pragma: no cover
        otel_context.detach(token)  # type: ignore[arg-type]
        return
    try:
        _CURRENT.reset(token)  # type: ignore[arg-type]
    except (ValueError, RuntimeError, TypeError):  # another context (should not happen): leave it
        pass


def _current_context() -> otel_context.Context:
    return otel_context.get_current() if _CURRENT is None else _CURRENT.get()


def current_request() -> Any:
    """The request being served (what :func:`attach` was given), or None."""
    if _CURRENT is None:  # pragma: no cover
        return otel_context.get_value(REQUEST_KEY)
    return _CURRENT.get().get(REQUEST_KEY)


def valid_value(value: object) -> bool:
    """An attribute value OpenTelemetry accepts: a primitive or a sequence of one primitive type."""
    if isinstance(value, _PRIMITIVES):
        return True
    if isinstance(value, Sequence) and not isinstance(value, str | bytes):
        kinds = {type(v) for v in value}
        return len(kinds) <= 1 and all(issubclass(k, _PRIMITIVES) for k in kinds)
    return False


def clean(attributes: Mapping[str, Any] | None) -> dict[str, Any]:
    """Only the valid attributes, sequences as tuples."""
    out: dict[str, Any] = {}
    for key, value in (attributes or {}).items():
        if valid_value(value):
            out[key] = value if isinstance(value, _PRIMITIVES) else tuple(value)
    return out


class LiteTracer:
    """Starts light spans: sampled like the SDK would, recorded cheaply, exported like any span."""

    def __init__(self, ids: IdGenerator, sink: SpanProcessor, resource: Resource, ratio: float) -> None:
        self.ids = ids
        self.sink = sink
        self.resource = resource
        self.scope = InstrumentationScope("shockproof")
        self._bound = round(ratio * (_LOW_64 + 1))
        self._random = type(ids) is RandomIdGenerator

    def start(self, name: str, parent: otel_context.Context | None = None,
              kind: SpanKind = SpanKind.INTERNAL, start_ns: int | None = None,
              attributes: Mapping[str, Any] | None = None,
              span_type: type[LiteSpan] | None = None) -> trace.Span:
        """A span child of ``parent`` (or of the current span); non-recording if not sampled.

        With ``span_type`` (a :class:`LiteSpan` subclass) the span is always one, and
        an unsampled one is over from the start: it keeps its context, records nothing.
        """
        found = (parent if parent is not None else _current_context()).get(SPAN_KEY)
        parent_ctx = found.get_span_context() if found is not None and isinstance(
            found, trace.Span) else None
        ctx, parent_ctx = self.context_for(parent_ctx)
        sampled = ctx.trace_flags is _SAMPLED
        if span_type is None:
            if not sampled:
                return NonRecordingSpan(ctx)
            span_type = LiteSpan
        return span_type(self, name, ctx, parent_ctx, kind,
                         start_ns if start_ns is not None else time.time_ns(), attributes, sampled)

    def context_for(self, parent: SpanContext | None) -> tuple[SpanContext, SpanContext | None]:
        """A new span's context under ``parent`` (None or invalid: a new trace), and the parent
        to record (None for a root). Sampled as ``ParentBased(TraceIdRatioBased(ratio))``."""
        if parent is not None and parent.is_valid:
            flags = _SAMPLED if parent.trace_flags.sampled else _NOT_SAMPLED
            return _new_context(SpanContext, (parent.trace_id, self._span_id(), False, flags,
                                              parent.trace_state, True)), parent
        if self._random:
            bits = _getrandbits(192)
            trace_id, span_id = bits >> 64, bits & _LOW_64
            if not trace_id or not span_id:  # one draw in 2**64: draw again
                return self.context_for(None)
        else:
            trace_id, span_id = self.ids.generate_trace_id(), self.ids.generate_span_id()
        flags = _SAMPLED if (trace_id & _LOW_64) < self._bound else _NOT_SAMPLED
        return _new_context(SpanContext, (trace_id, span_id, False, flags, DEFAULT_TRACE_STATE, True)), None

    def _span_id(self) -> int:
        if self._random:
            span_id = _getrandbits(64)
            return span_id if span_id else self._span_id()
        return self.ids.generate_span_id()


class LiteSpan(trace.Span, ReadableSpan):
    """The OpenTelemetry Span API on a plain object that is its own ``ReadableSpan``.

    Like the SDK's ``Span`` it is both; unlike it, nothing is validated or locked per
    call and nothing is copied at ``end()``: the processors get the span itself, and
    every mutation after ``end()`` is ignored. A span made with ``recording=False`` is
    over from the start (the request span of an unsampled trace): it keeps its context
    and records nothing.
    """

    # ReadableSpan's fields every span sets, as slots (the instance dict is made only if
    # one of the others changes: they are class-level defaults until they do).
    __slots__ = ("_attributes", "_context", "_end_time", "_kind", "_name", "_parent",
                 "_start_time", "_tracer")
    _events: Sequence[Event] = ()
    _links: Sequence[Link] = ()
    _status = _UNSET
    _instrumentation_info = None

    def __init__(self, tracer: LiteTracer, name: str, ctx: SpanContext, parent: SpanContext | None,
                 kind: SpanKind, start_ns: int, attributes: Mapping[str, Any] | None,
                 recording: bool = True) -> None:
        # ReadableSpan's fields, set directly (its __init__ would build a Resource when None).
        self._tracer = tracer
        self._name = name
        self._context = ctx
        self._parent = parent
        self._kind = kind
        self._start_time = start_ns
        self._attributes: dict[str, Any] = dict(attributes) if attributes else {}
        self._end_time: int | None = None if recording else start_ns

    @property
    def resource(self) -> Resource:
        return self._tracer.resource

    @property
    def instrumentation_scope(self) -> InstrumentationScope:
        return self._tracer.scope

    def get_span_context(self) -> SpanContext:
        return cast(SpanContext, self._context)

    def is_recording(self) -> bool:
        return self._end_time is None

    def set_attribute(self, key: str, value: types.AnyValue) -> None:
        if self._end_time is None and valid_value(value) and (
                len(self._attributes) < MAX_ATTRIBUTES or key in self._attributes):
            self._attributes[key] = value if isinstance(value, _PRIMITIVES) else tuple(value)  # type: ignore[arg-type]

    def set_attributes(self, attributes: Mapping[str, types.AnyValue]) -> None:
        for key, value in attributes.items():
            self.set_attribute(key, value)

    def add_event(self, name: str, attributes: types.Attributes = None,
                  timestamp: int | None = None) -> None:
        if self._end_time is None and len(self._events) < MAX_EVENTS:
            if type(self._events) is not list:
                self._events = []
            cast(list[Event], self._events).append(
                Event(name, clean(attributes), timestamp or time.time_ns()))

    def add_link(self, context: SpanContext, attributes: types.Attributes = None) -> None:
        if self._end_time is None and context.is_valid:
            if type(self._links) is not list:
                self._links = []
            cast(list[Link], self._links).append(Link(context, clean(attributes)))

    def update_name(self, name: str) -> None:
        if self._end_time is None:
            self._name = name

    def set_status(self, status: Status | StatusCode, description: str | None = None) -> None:
        if self._end_time is None and self._status.status_code is not StatusCode.OK:
            self._status = status if isinstance(status, Status) else Status(status, description)

    def record_exception(self, exception: BaseException, attributes: types.Attributes = None,
                         timestamp: int | None = None, escaped: bool = False) -> None:
        from ._tracing import exception_attributes

        self.add_event("exception", {**exception_attributes(exception), **clean(attributes)}, timestamp)

    def end(self, end_time: int | None = None) -> None:
        if self._end_time is not None:
            return
        self._end_time = end_time if end_time is not None else time.time_ns()
        self._tracer.sink.on_end(self)

