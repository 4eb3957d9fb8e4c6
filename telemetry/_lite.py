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
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any, cast

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan, SpanProcessor
from opentelemetry.sdk.trace.id_generator import IdGenerator
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
from opentelemetry.util import types

MAX_ATTRIBUTES = 128
MAX_EVENTS = 128
_LOW_64 = (1 << 64) - 1
_SAMPLED = TraceFlags(TraceFlags.SAMPLED)
_NOT_SAMPLED = TraceFlags(TraceFlags.DEFAULT)
_PRIMITIVES = (str, bool, int, float)
_UNSET = Status(StatusCode.UNSET)


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

    def start(self, name: str, *, parent: otel_context.Context | None = None,
              kind: SpanKind = SpanKind.INTERNAL, start_ns: int | None = None,
              attributes: Mapping[str, Any] | None = None) -> trace.Span:
        """A span child of ``parent`` (or of the current span); non-recording if not sampled."""
        parent_ctx = trace.get_current_span(parent).get_span_context()
        if parent_ctx.is_valid:
            trace_id, sampled = parent_ctx.trace_id, parent_ctx.trace_flags.sampled
            state, parent_or_none = parent_ctx.trace_state, parent_ctx
        else:
            trace_id = self.ids.generate_trace_id()
            sampled, state, parent_or_none = (trace_id & _LOW_64) < self._bound, None, None
        ctx = SpanContext(trace_id, self.ids.generate_span_id(), False,
                          _SAMPLED if sampled else _NOT_SAMPLED, state)
        if not sampled:
            return NonRecordingSpan(ctx)
        return LiteSpan(self, name, ctx, parent_or_none, kind,
                        start_ns if start_ns is not None else time.time_ns(), attributes)


class LiteSpan(trace.Span, ReadableSpan):
    """The OpenTelemetry Span API on a plain object that is its own ``ReadableSpan``.

    Like the SDK's ``Span`` it is both; unlike it, nothing is validated or locked per
    call and nothing is copied at ``end()``: the processors get the span itself, and
    every mutation after ``end()`` is ignored.
    """

    def __init__(self, tracer: LiteTracer, name: str, ctx: SpanContext, parent: SpanContext | None,
                 kind: SpanKind, start_ns: int, attributes: Mapping[str, Any] | None) -> None:
        # ReadableSpan's fields, set directly (its __init__ would build a Resource when None).
        self._tracer = tracer
        self._name = name
        self._context = ctx
        self._parent = parent
        self._kind = kind
        self._start_time = start_ns
        self._end_time: int | None = None
        self._attributes: dict[str, Any] = dict(attributes) if attributes else {}
        self._events: list[Event] = []
        self._links: list[Link] = []
        self._status = _UNSET
        self._resource = tracer.resource
        self._instrumentation_scope = tracer.scope
        self._instrumentation_info = None

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
            self._events.append(Event(name, clean(attributes), timestamp or time.time_ns()))

    def add_link(self, context: SpanContext, attributes: types.Attributes = None) -> None:
        if self._end_time is None and context.is_valid:
            self._links.append(Link(context, clean(attributes)))

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
