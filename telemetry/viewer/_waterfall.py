"""One trace laid out for display: spans in tree order on a shared time axis.

:func:`layout` turns a :class:`~telemetry.query.TraceDetail` into rows, one per
span in depth-first order (children by start time), each with its bar's
position on the trace's time axis in thousandths (the page positions bars with
classes ``l0``..``l1000`` and ``w0``..``w1000``: no inline styles), markers for
what happened inside it (retries, faults, circuit changes, fallbacks, deadline
expiry, exceptions, log lines), the retry chain of a guarded call, and its log
lines. The web page and ``shockproof-traces show`` both read it. One pass over
the spans, one over the events, one over the logs: a 5,000-span trace lays out
in milliseconds.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from telemetry import _semconv as sc
from telemetry._records import LogRecord, SpanEventRecord, SpanRecord
from telemetry.query import TraceDetail

from . import _format as fmt

SCALE: Final = 1000
#: Indentation classes stop here (deeper spans say their depth in a tooltip).
MAX_DEPTH_CLASS: Final = 24

#: Span event name -> marker class (``m-<class>``) and what it is called on the page.
EVENT_MARKERS: Final[Mapping[str, tuple[str, str]]] = {
    sc.EVENT_ATTEMPT_FAILED: ("attempt", "attempt failed"),
    sc.EVENT_RETRY: ("retry", "retry scheduled"),
    sc.EVENT_RETRIES_EXHAUSTED: ("exhausted", "retries exhausted"),
    sc.EVENT_CIRCUIT: ("circuit", "circuit state changed"),
    sc.EVENT_REJECTED: ("rejected", "call rejected"),
    sc.EVENT_FALLBACK: ("fallback", "fallback used"),
    sc.EVENT_DEADLINE: ("deadline", "deadline expired"),
    sc.EVENT_VALIDATION: ("validation", "validation rejected"),
    sc.EVENT_FAULT: ("fault", "fault injected"),
    sc.EXCEPTION_EVENT: ("exception", "exception"),
}
#: Span events a retry chain is made of.
CHAIN_EVENTS: Final = frozenset({sc.EVENT_ATTEMPT_FAILED, sc.EVENT_RETRY, sc.EVENT_REJECTED,
                                  sc.EVENT_FALLBACK, sc.EVENT_DEADLINE, sc.EVENT_RETRIES_EXHAUSTED})
_LOUD_LEVELS: Final = frozenset({"warning", "warn", "error", "critical", "fatal"})


@dataclass(frozen=True, slots=True)
class Marker:
    """A point on a span's bar: ``kind`` picks its look, ``label`` is its tooltip."""

    kind: str
    pos: int
    label: str


@dataclass(frozen=True, slots=True)
class Step:
    """One link of a retry chain: an attempt, a wait, a rejection, the fallback..."""

    kind: str
    text: str
    detail: str = ""


@dataclass(frozen=True, slots=True)
class LogLine:
    """A log line of the trace, placed on the time axis."""

    record: LogRecord
    pos: int
    offset: str
    fields: tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class ExceptionInfo:
    """An exception recorded in the trace (on a span, or in a log line)."""

    type: str
    message: str
    stacktrace: str
    kind: str | None
    span_id: str | None
    span_name: str
    time_ns: int


@dataclass(slots=True)
class Row:
    """One span as drawn: indentation, bar, markers, retry chain, its log lines."""

    span: SpanRecord
    depth: int
    left: int
    width: int
    offset: str
    duration: str
    kind: str | None
    error: bool
    fault: bool
    degraded: bool
    markers: list[Marker] = field(default_factory=list)
    chain: tuple[Step, ...] = ()
    logs: list[LogLine] = field(default_factory=list)

    @property
    def depth_class(self) -> int:
        return min(self.depth, MAX_DEPTH_CLASS)

    @property
    def attributes(self) -> list[tuple[str, str]]:
        return sorted((k, display(v)) for k, v in self.span.attributes.items())


@dataclass(frozen=True, slots=True)
class Waterfall:
    """A trace laid out: rows in tree order, the axis, and what stands out."""

    rows: tuple[Row, ...]
    start_ns: int
    end_ns: int
    ticks: tuple[tuple[int, str], ...]
    first_error: str | None
    exceptions: tuple[ExceptionInfo, ...]
    counts: Mapping[str, int]

    @property
    def duration_ns(self) -> int:
        return self.end_ns - self.start_ns


def display(value: Any) -> str:
    """An attribute value as text (sequences joined with commas)."""
    if isinstance(value, list | tuple):
        return ", ".join(display(v) for v in value)
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


class _Axis:
    def __init__(self, start: int, end: int) -> None:
        self.start = start
        self.total = max(1, end - start)

    def pos(self, time_ns: int) -> int:
        return min(SCALE, max(0, (time_ns - self.start) * SCALE // self.total))

    def offset(self, time_ns: int) -> str:
        return "+" + fmt.duration(max(0, time_ns - self.start))


def layout(detail: TraceDetail) -> Waterfall:
    """The waterfall of one trace (see the module docstring)."""
    spans = detail.spans
    starts = [s.start_ns for s in spans] + [log.time_ns for log in detail.logs]
    ends = [s.end_ns for s in spans] + [log.time_ns for log in detail.logs]
    start, end = (min(starts), max(ends)) if starts else (0, 0)
    axis = _Axis(start, end)
    logs_by_span = _logs_by_span(detail.logs, {s.span_id for s in spans}, spans, axis)
    rows: list[Row] = []
    counts = {"spans": len(spans), "errors": 0, "retries": 0, "faults": 0, "circuit": 0,
              "fallbacks": 0, "logs": len(detail.logs)}
    exceptions: list[ExceptionInfo] = []
    for span, depth in _tree(spans):
        row = _row(span, depth, axis, logs_by_span.get(span.span_id, []), counts)
        rows.append(row)
        exceptions += _exceptions(span)
    exceptions += _log_exceptions(detail.logs, {s.span_id: s.name for s in spans})
    return Waterfall(tuple(rows), start, end, _ticks(axis), _first_error(rows),
                     tuple(_unique(exceptions)), counts)


def _tree(spans: Sequence[SpanRecord]) -> Iterable[tuple[SpanRecord, int]]:
    """Spans depth first, children in start order (input order); orphans as roots."""
    ids = {s.span_id for s in spans}
    children: dict[str | None, list[SpanRecord]] = {}
    for span in spans:
        parent = span.parent_span_id if span.parent_span_id in ids else None
        if parent == span.span_id:
            parent = None
        children.setdefault(parent, []).append(span)
    seen: set[str] = set()
    stack: list[tuple[SpanRecord, int]] = [(s, 0) for s in reversed(children.get(None, []))]
    while stack:
        span, depth = stack.pop()
        if span.span_id in seen:
            continue
        seen.add(span.span_id)
        yield span, depth
        stack += [(c, depth + 1) for c in reversed(children.get(span.span_id, []))]
    for span in spans:  # spans caught in a parent cycle: still shown
        if span.span_id not in seen:
            seen.add(span.span_id)
            yield span, 0


def _row(span: SpanRecord, depth: int, axis: _Axis, logs: list[LogLine],
         counts: dict[str, int]) -> Row:
    attrs = span.attributes
    left = axis.pos(span.start_ns)
    kind = _str(attrs.get(sc.KIND))
    markers = [_marker(e, axis) for e in span.events]
    markers += [Marker("log", line.pos, f"{line.record.level}: {line.record.event}")
                for line in logs if line.record.level.lower() in _LOUD_LEVELS]
    names = [e.name for e in span.events]
    fault = attrs.get(sc.FAULT_INJECTED) is True or sc.EVENT_FAULT in names
    error = span.status == "error"
    counts["errors"] += error
    counts["retries"] += names.count(sc.EVENT_RETRY)
    counts["faults"] += names.count(sc.EVENT_FAULT) or int(attrs.get(sc.FAULT_INJECTED) is True)
    counts["circuit"] += names.count(sc.EVENT_CIRCUIT)
    counts["fallbacks"] += names.count(sc.EVENT_FALLBACK)
    return Row(span, depth, left, max(0, axis.pos(span.end_ns) - left), axis.offset(span.start_ns),
               fmt.duration(span.end_ns - span.start_ns), kind, error, fault,
               attrs.get(sc.DEGRADED) is True, markers, chain(span), logs)


def _marker(event: SpanEventRecord, axis: _Axis) -> Marker:
    kind, label = EVENT_MARKERS.get(event.name, ("event", event.name))
    return Marker(kind, axis.pos(event.time_ns), f"{label}: {event_summary(event)}")


def event_summary(event: SpanEventRecord) -> str:
    """One line saying what an event was about."""
    a = event.attributes
    name = event.name
    if name == sc.EVENT_CIRCUIT:
        rate = a.get(sc.CIRCUIT_FAILURE_RATE)
        tail = f" (failure rate {display(rate)})" if rate is not None else ""
        return f"{a.get(sc.CIRCUIT_NAME, '?')}: {a.get(sc.CIRCUIT_OLD_STATE, '?')} → " \
               f"{a.get(sc.CIRCUIT_STATE, '?')}{tail}"
    if name == sc.EVENT_FAULT:
        rule = a.get(sc.FAULT_RULE_ID)
        return f"{a.get(sc.FAULT_KIND, 'fault')} at {a.get(sc.FAULT_SITE, '?')}" + \
               (f" (rule {rule})" if rule else "")
    if name == sc.EVENT_RETRY:
        return f"attempt {a.get(sc.ATTEMPT, '?')} failed, waiting {_wait(a)}"
    if name == sc.EVENT_DEADLINE:
        return f"budget {display(a.get(sc.DEADLINE_S, '?'))} s"
    if name == sc.EVENT_REJECTED:
        return f"{a.get(sc.REJECT_REASON, '?')} ({a.get(sc.REJECT_TARGET, '')})"
    if name == sc.EVENT_VALIDATION:
        return f"fields: {a.get(sc.VALIDATION_FIELDS, '')}"
    if name == sc.EVENT_RETRIES_EXHAUSTED:
        return f"after {a.get(sc.ATTEMPTS, '?')} attempt(s), {a.get(sc.EXHAUSTED_REASON, '')}"
    error = a.get(sc.EXCEPTION_TYPE, a.get(sc.ERROR_TYPE))
    message = a.get(sc.EXCEPTION_MESSAGE)
    if error is not None:
        return f"{error}: {fmt.truncate(str(message), 200)}" if message else str(error)
    return ", ".join(f"{k}={display(v)}" for k, v in sorted(a.items()))[:200]


def _wait(attrs: Mapping[str, Any]) -> str:
    wait = attrs.get(sc.WAIT_S)
    return fmt.seconds(float(wait)) if isinstance(wait, int | float) else "?"


def chain(span: SpanRecord) -> tuple[Step, ...]:
    """The retry chain of a guarded call's span: attempts, waits, and how it ended."""
    if not any(e.name in CHAIN_EVENTS for e in span.events):
        return ()
    steps: list[Step] = []
    failed = 0
    for event in span.events:
        a = event.attributes
        if event.name == sc.EVENT_ATTEMPT_FAILED:
            failed += 1
            steps.append(Step(f"failed k-{_str(a.get(sc.KIND)) or 'unknown'}",
                              f"attempt {a.get(sc.ATTEMPT, failed)} ✗",
                              event_summary(event)))
        elif event.name == sc.EVENT_RETRY:
            steps.append(Step("wait", f"wait {_wait(a)}"))
        elif event.name in (sc.EVENT_REJECTED, sc.EVENT_FALLBACK, sc.EVENT_DEADLINE,
                            sc.EVENT_RETRIES_EXHAUSTED, sc.EVENT_CIRCUIT, sc.EVENT_FAULT):
            kind, label = EVENT_MARKERS[event.name]
            steps.append(Step(kind, label, event_summary(event)))
    outcome = span.attributes.get(sc.OUTCOME)
    attempts = span.attributes.get(sc.ATTEMPTS)
    if outcome == "success":
        steps.append(Step("ok", f"attempt {attempts if attempts else failed + 1} ✓"))
    elif outcome in ("error", "fallback"):
        steps.append(Step("end-" + str(outcome), "failed" if outcome == "error" else "degraded"))
    return tuple(steps)


def _logs_by_span(logs: Sequence[LogRecord], ids: set[str], spans: Sequence[SpanRecord],
                  axis: _Axis) -> dict[str | None, list[LogLine]]:
    """Log lines under their span; lines of unknown spans go to the root span."""
    root = next((s.span_id for s in spans if s.parent_span_id not in ids), None)
    grouped: dict[str | None, list[LogLine]] = {}
    for log in logs:
        owner = log.span_id if log.span_id in ids else root
        fields = tuple((k, fmt.truncate(display(v), 300)) for k, v in sorted(log.attributes.items())
                       if k not in ("exception", "trace_id", "span_id"))
        grouped.setdefault(owner, []).append(
            LogLine(log, axis.pos(log.time_ns), axis.offset(log.time_ns), fields))
    return grouped


def _exceptions(span: SpanRecord) -> list[ExceptionInfo]:
    found = []
    for event in span.events:
        if event.name == sc.EXCEPTION_EVENT:
            a = event.attributes
            found.append(ExceptionInfo(
                str(a.get(sc.EXCEPTION_TYPE, "exception")), str(a.get(sc.EXCEPTION_MESSAGE, "")),
                str(a.get(sc.EXCEPTION_STACKTRACE, "")), _str(a.get(sc.KIND, span.attributes.get(sc.KIND))),
                span.span_id, span.name, event.time_ns))
    error_type = span.attributes.get(sc.ERROR_TYPE)
    if not found and span.status == "error" and error_type is not None:
        found.append(ExceptionInfo(str(error_type), span.status_message, "",
                                   _str(span.attributes.get(sc.KIND)), span.span_id, span.name,
                                   span.end_ns))
    return found


def _log_exceptions(logs: Sequence[LogRecord], names: Mapping[str, str]) -> list[ExceptionInfo]:
    """Exceptions recorded as log lines (``exceptions_as="logs"``)."""
    found = []
    for log in logs:
        stack = log.attributes.get("exception")
        if not stack:
            continue
        a = log.attributes
        error = a.get(sc.EXCEPTION_TYPE, a.get(sc.ERROR_TYPE, "exception"))
        found.append(ExceptionInfo(str(error), str(a.get(sc.EXCEPTION_MESSAGE, log.event)), str(stack),
                                   _str(a.get(sc.KIND)), log.span_id,
                                   names.get(log.span_id or "", log.logger), log.time_ns))
    return found


def _unique(found: list[ExceptionInfo]) -> list[ExceptionInfo]:
    """One entry per (type, message): the request span repeats its call's exception."""
    seen: set[tuple[str, str]] = set()
    out = []
    for info in sorted(found, key=lambda e: e.time_ns):
        key = (info.type, info.message)
        if key not in seen:
            seen.add(key)
            out.append(info)
    return out


def _first_error(rows: Sequence[Row]) -> str | None:
    """The span to jump to: the innermost failed span of the first failed subtree (rows are
    in depth-first order), else the first span with a fault, a retry chain or an error kind."""
    found: Row | None = None
    for row in rows:
        if found is not None and row.depth <= found.depth:
            break
        if row.error:
            found = row
    if found is None:
        found = next((r for r in rows if r.fault or r.chain or r.kind), None)
    return found.span.span_id if found is not None else None


def _ticks(axis: _Axis) -> tuple[tuple[int, str], ...]:
    return tuple((p, fmt.duration(axis.total * p // SCALE)) for p in (0, 250, 500, 750, 1000))


def _str(value: object) -> str | None:
    return None if value is None else str(value)


def positions_css() -> str:
    """The stylesheet of position classes: ``l<n>`` (left) and ``w<n>`` (width) in thousandths
    of the time axis, and ``d<n>`` (indentation by depth). Served as a file: the
    Content-Security-Policy allows no inline styles."""
    left = [f".l{i}{{left:{i / 10:g}%}}" for i in range(SCALE + 1)]
    width = [f".w{i}{{width:{i / 10:g}%}}" for i in range(SCALE + 1)]
    depth = [f".d{i}{{padding-left:{0.4 + i * 0.85:.2f}rem}}" for i in range(MAX_DEPTH_CLASS + 1)]
    return "\n".join(["/* generated by telemetry.viewer._waterfall.positions_css */",
                      *left, *width, *depth]) + "\n"
