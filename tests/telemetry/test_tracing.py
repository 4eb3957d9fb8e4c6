"""Resilience events as spans: lazy by default (true start time), always on request."""

from __future__ import annotations

import asyncio
import io
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pydantic
import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import StatusCode

import resilience
import telemetry
import telemetry.testing
from resilience import AttemptInfo, Circuit, CircuitOpenError, FaultInjected, Retry, guard
from resilience.testing import fake_clock, waits_off
from telemetry import _semconv as sc
from telemetry import fingerprint
from telemetry._metrics import total
from telemetry._spans import CallSpans
from telemetry.query import Query


class Flaky:
    """Raises ``exc`` on the first ``failures`` calls, then returns 42."""

    def __init__(self, failures: int, exc: type[Exception] = ConnectionError) -> None:
        self.failures = failures
        self.exc = exc
        self.calls = 0

    def __call__(self) -> int:
        self.calls += 1
        if self.calls <= self.failures:
            raise self.exc(f"attempt {self.calls} failed")
        return 42


@pytest.fixture(autouse=True)
def _no_waits() -> Iterator[None]:
    """Backoffs are decided but not waited."""
    with waits_off():
        yield


def ids(span: ReadableSpan) -> tuple[int, int]:
    assert span.context is not None
    return span.context.trace_id, span.context.span_id


def calls() -> CallSpans:
    rt = telemetry._config.runtime
    assert rt is not None
    return rt.tracing.calls


def test_a_call_that_succeeds_at_once_makes_no_span(cap: telemetry.testing.Capture) -> None:
    """Lazy mode: nothing happened, nothing is recorded."""
    assert guard("quiet.call")(lambda: 1)() == 1
    assert cap.spans == []


def test_a_failed_attempt_materialises_the_span_with_its_true_start(
        cap: telemetry.testing.Capture) -> None:
    """The call's span starts when the call started, not when the first failure happened."""
    before = time.time_ns()
    assert guard("flaky.call", retry=Retry(attempts=3))(Flaky(1))() == 42
    span = cap.span("flaky.call")
    first_failure = cap.events(sc.EVENT_ATTEMPT_FAILED)[0].timestamp
    assert span.start_time is not None
    assert span.end_time is not None
    assert before <= span.start_time < first_failure <= span.end_time
    assert span.attributes[sc.OUTCOME] == "success"
    assert span.attributes[sc.ATTEMPTS] == 2


def test_the_call_span_is_a_child_of_the_current_span(cap: telemetry.testing.Capture) -> None:
    """Materialised spans nest under whatever span was current during the call."""
    with telemetry.get_tracer().start_as_current_span("request"):
        guard("child.call", retry=Retry(attempts=2))(Flaky(1))()
    request, call = cap.span("request"), cap.span("child.call")
    assert call.parent is not None
    assert call.parent.span_id == ids(request)[1]
    assert ids(call)[0] == ids(request)[0]


def test_retries_are_span_events_with_attempt_wait_and_exception(cap: telemetry.testing.Capture) -> None:
    """Each retry carries its attempt number, its wait and the exception that caused it."""
    guard("retried.call", retry=Retry(attempts=3))(Flaky(2))()
    retries = cap.events(sc.EVENT_RETRY)
    assert [e.attributes[sc.ATTEMPT] for e in retries] == [1, 2]
    assert all(e.attributes[sc.WAIT_S] >= 0 for e in retries)
    assert retries[0].attributes[sc.EXCEPTION_TYPE] == "ConnectionError"
    assert retries[1].attributes[sc.EXCEPTION_MESSAGE] == "attempt 2 failed"
    failed = cap.events(sc.EVENT_ATTEMPT_FAILED)
    assert [(e.attributes[sc.KIND], e.attributes[sc.TRANSIENT]) for e in failed] == [("network", True)] * 2


def test_spans_made_during_retries_nest_under_the_call_span(cap: telemetry.testing.Capture) -> None:
    """Once materialised, the call's span is current: the retry's own spans are its children."""
    flaky = Flaky(1)

    def fetch() -> int:
        with telemetry.get_tracer().start_as_current_span("http.get"):
            return flaky()

    guard("nesting.call", retry=Retry(attempts=2))(fetch)()
    gets = cap.spans_named("http.get")
    call = cap.span("nesting.call")
    assert gets[0].parent != gets[1].parent
    assert gets[1].parent is not None
    assert gets[1].parent.span_id == ids(call)[1]


def test_a_failed_call_records_kind_fingerprint_and_exception(cap: telemetry.testing.Capture) -> None:
    """Retries exhausted: ERROR status, error.type, kind, fingerprint and the exception event."""
    with pytest.raises(ConnectionError) as info:
        guard("down.call", retry=Retry(attempts=2))(Flaky(5))()
    span = cap.span("down.call")
    assert span.status.status_code is StatusCode.ERROR
    assert span.attributes[sc.ERROR_TYPE] == "ConnectionError"
    assert span.attributes[sc.KIND] == "network"
    assert span.attributes[sc.FINGERPRINT] == fingerprint(info.value)
    assert span.attributes[sc.OUTCOME] == "error"
    (exc_event,) = cap.events(sc.EXCEPTION_EVENT)
    assert exc_event.attributes[sc.EXCEPTION_TYPE] == "ConnectionError"
    assert "in __call__" in str(exc_event.attributes[sc.EXCEPTION_STACKTRACE])
    (exhausted,) = cap.events(sc.EVENT_RETRIES_EXHAUSTED)
    assert exhausted.attributes[sc.EXHAUSTED_REASON] == "attempts"


def test_failed_calls_are_logged_with_kind_and_fingerprint(cap: telemetry.testing.Capture) -> None:
    """Every error log names its kind and fingerprint."""
    with pytest.raises(ZeroDivisionError) as info:
        guard("logic.call")(lambda: 1 / 0)()
    line = cap.log(sc.LOG_CALL_FAILED)
    assert (line["level"], line[sc.KIND], line[sc.FINGERPRINT]) == (
        "error", "logic", fingerprint(info.value))
    assert sc.EXCEPTION_STACKTRACE not in line  # exceptions go to span events by default


def test_exceptions_as_logs_moves_the_exception_to_a_log_record() -> None:
    """exceptions_as='logs': no exception event; the call's error log carries it, linked to the span."""
    with telemetry.testing.capture(exceptions_as="logs") as cap, pytest.raises(ZeroDivisionError):
        guard("logged.call")(lambda: 1 / 0)()
    span = cap.span("logged.call")
    assert cap.events(sc.EXCEPTION_EVENT) == []
    line = cap.log(sc.LOG_CALL_FAILED)
    assert line[sc.EXCEPTION_TYPE] == "ZeroDivisionError"
    assert "ZeroDivisionError" in line[sc.EXCEPTION_STACKTRACE]
    assert (line["trace_id"], line["span_id"]) == (f"{ids(span)[0]:032x}", f"{ids(span)[1]:016x}")


def test_circuit_rejection_is_an_event_and_a_metric(cap: telemetry.testing.Capture) -> None:
    """A call refused by an open circuit gets a span with the rejection; rejections are counted."""
    circuit = Circuit("tr.rejecting", consecutive=3)
    circuit.force_open()
    with pytest.raises(CircuitOpenError):
        guard("rejected.call", circuit=circuit)(lambda: 1)()
    (event,) = cap.events(sc.EVENT_REJECTED)
    assert event.attributes[sc.REJECT_REASON] == "circuit_open"
    assert event.attributes[sc.CIRCUIT_NAME] == "tr.rejecting"
    assert cap.span("rejected.call").attributes[sc.KIND] == "network"
    assert total(telemetry.metrics_snapshot(), sc.METRIC_REJECTIONS,
                 {sc.SITE: "rejected.call", sc.REJECT_REASON: "circuit_open"}) == 1
    assert cap.log(sc.LOG_CALL_FAILED)["level"] == "warning"


def test_circuit_state_changes_are_events_metrics_and_a_gauge(cap: telemetry.testing.Capture) -> None:
    """Opening a circuit is an event (on a span of its own outside any span), a count and a gauge."""
    circuit = Circuit("tr.opening", consecutive=1)
    with pytest.raises(ConnectionError):
        guard("opening.call", circuit=circuit)(Flaky(1))()
    (event,) = cap.events(sc.EVENT_CIRCUIT)
    assert (event.attributes[sc.CIRCUIT_OLD_STATE], event.attributes[sc.CIRCUIT_STATE]) == ("closed", "open")
    snapshot = telemetry.metrics_snapshot()
    assert total(snapshot, sc.METRIC_CIRCUIT_TRANSITIONS, {sc.CIRCUIT_NAME: "tr.opening"}) == 1
    assert total(snapshot, sc.METRIC_CIRCUIT_STATE, {sc.CIRCUIT_NAME: "tr.opening"}) == 2
    assert cap.log(sc.LOG_CIRCUIT)[sc.CIRCUIT_STATE] == "open"


def test_circuit_state_change_goes_on_the_current_span(cap: telemetry.testing.Capture) -> None:
    """Inside a request, the state change is an event on the request's span."""
    circuit = Circuit("tr.current", consecutive=1)
    with telemetry.get_tracer().start_as_current_span("request"), pytest.raises(ConnectionError):
        guard("current.call", circuit=circuit)(Flaky(1))()
    (event,) = cap.span("request").events
    assert event.name == sc.EVENT_CIRCUIT
    assert event.attributes[sc.CIRCUIT_NAME] == "tr.current"


def test_fallback_marks_the_span_degraded(cap: telemetry.testing.Capture) -> None:
    """A fallback answer is an event, a degraded span and a counted fallback."""
    cached = guard("fallback.call", fallback=lambda exc: "cached")(Flaky(1))
    assert cached() == "cached"
    span = cap.span("fallback.call")
    assert span.attributes[sc.DEGRADED] is True
    assert span.attributes[sc.OUTCOME] == "fallback"
    assert cap.events(sc.EVENT_FALLBACK)[0].attributes[sc.KIND] == "network"
    assert total(telemetry.metrics_snapshot(), sc.METRIC_FALLBACKS, {sc.SITE: "fallback.call"}) == 1


def test_deadline_expiry_is_recorded(cap: telemetry.testing.Capture) -> None:
    """A deadline that runs out mid-retries is an event with the budget."""
    with fake_clock() as clock:
        def slow_failure() -> None:
            clock.advance(0.6)
            raise ConnectionError("slow")

        with pytest.raises(ConnectionError):
            guard("deadline.call", retry=Retry(attempts=5), deadline=1.0)(slow_failure)()
    (event,) = cap.events(sc.EVENT_DEADLINE)
    assert event.attributes[sc.DEADLINE_S] == 1.0


class Signup(pydantic.BaseModel):
    email: str
    age: int


def test_validation_rejection_names_fields_never_values(cap: telemetry.testing.Capture) -> None:
    """Validation failures list the invalid fields and error types, not what was sent."""
    @guard("signup.call", validate=Signup)
    def signup(email: str, age: object) -> None:
        return None

    with pytest.raises(resilience.ValidationFailed):
        signup("x@example.com", "not-a-number-SECRET")
    (event,) = cap.events(sc.EVENT_VALIDATION)
    assert event.attributes[sc.VALIDATION_FIELDS] == "age"
    assert "SECRET" not in str(cap.span("signup.call").to_json())


def test_injected_fault_is_tagged_on_the_call_span(cap: telemetry.testing.Capture) -> None:
    """A FaultInjected event for a call marks its span (rule id, seed) and adds the event."""
    def inject(info: AttemptInfo) -> None:
        resilience.emit(FaultInjected(info.site, "error", resilience.ErrorKind.NETWORK, "rule-7", 1234,
                                      1, info.call, "injected reset"))
        raise ConnectionResetError("injected")

    resilience.add_interceptor(inject)
    with pytest.raises(ConnectionResetError):
        guard("faulty.call")(lambda: 1)()
    span = cap.span("faulty.call")
    assert (span.attributes[sc.FAULT_INJECTED], span.attributes[sc.FAULT_RULE_ID],
            span.attributes[sc.FAULT_SEED]) == (True, "rule-7", 1234)
    (event,) = cap.events(sc.EVENT_FAULT)
    assert event.attributes[sc.FAULT_SITE] == "faulty.call"
    assert event.attributes[sc.KIND] == "network"
    assert cap.log(sc.LOG_FAULT)[sc.FAULT_RULE_ID] == "rule-7"


def test_fault_outside_a_call_goes_on_the_current_span(cap: telemetry.testing.Capture) -> None:
    """A fault injected at an explicit point (no guarded call) tags the current span."""
    with telemetry.get_tracer().start_as_current_span("request"):
        resilience.emit(FaultInjected("storage.write", "errno", resilience.ErrorKind.IO, "r1", 9, 1))
    assert cap.span("request").attributes[sc.FAULT_INJECTED] is True


def test_a_slow_call_gets_a_span_with_its_true_start(cap: telemetry.testing.Capture) -> None:
    """Nothing failed but the call was slower than slow_call: it gets its span."""
    with fake_clock() as clock:
        before = time.time_ns()
        guard("slow.call")(lambda: clock.advance(1.5))()
    span = cap.span("slow.call")
    assert span.start_time is not None
    assert before <= span.start_time
    assert span.attributes[sc.OUTCOME] == "success"


def test_always_mode_makes_a_span_for_every_call() -> None:
    """spans='always': even calls that succeed at once get a span, current during the call."""
    with telemetry.testing.capture(spans="always") as cap:
        def work() -> int:
            with telemetry.get_tracer().start_as_current_span("inside"):
                return 1

        guard("every.call")(work)()
        guard("every.call")(work)()
    calls_ = cap.spans_named("every.call")
    assert len(calls_) == 2
    inside = cap.spans_named("inside")
    assert inside[0].parent is not None
    assert inside[0].parent.span_id == ids(calls_[0])[1]


def test_async_calls_are_traced(cap: telemetry.testing.Capture) -> None:
    """Async guarded calls materialise spans the same way."""
    flaky = Flaky(1)

    @guard("async.call", retry=Retry(attempts=2))
    async def fetch() -> int:
        return flaky()

    assert asyncio.run(fetch()) == 42
    assert [e.attributes[sc.ATTEMPT] for e in cap.events(sc.EVENT_RETRY)] == [1]


def test_no_span_is_left_open_or_current(cap: telemetry.testing.Capture) -> None:
    """After successes, failures, fallbacks and rejections, no call span stays open or current."""
    circuit = Circuit("tr.leak", consecutive=1)
    with telemetry.get_tracer().start_as_current_span("request") as request:
        for fn in (guard("a", retry=Retry(attempts=2))(Flaky(1)), guard("b")(Flaky(9)),
                   guard("c", fallback=lambda e: 0)(Flaky(9)), guard("d", circuit=circuit)(Flaky(9)),
                   guard("d", circuit=circuit)(Flaky(9))):
            try:
                fn()
            except Exception:
                pass
            assert telemetry.current_trace_id() == f"{request.get_span_context().trace_id:032x}"
            assert request.get_span_context().span_id == telemetry.get_tracer().start_span(
                "probe").parent.span_id  # type: ignore[union-attr]
    assert calls().open_count() == 0


def test_errors_are_counted_by_kind_and_site(cap: telemetry.testing.Capture) -> None:
    """The errors metric is labelled with kind and site."""
    for _ in range(2):
        with pytest.raises(ZeroDivisionError):
            guard("count.call")(lambda: 1 / 0)()
    assert total(telemetry.metrics_snapshot(), sc.METRIC_ERRORS,
                 {sc.KIND: "logic", sc.SITE: "count.call"}) == 2


def test_retries_are_counted(cap: telemetry.testing.Capture) -> None:
    """Each scheduled retry is counted per site."""
    guard("count.retry", retry=Retry(attempts=3))(Flaky(2))()
    assert total(telemetry.metrics_snapshot(), sc.METRIC_RETRIES, {sc.SITE: "count.retry"}) == 2


def test_sample_ratio_zero_records_nothing_and_changes_nothing() -> None:
    """With nothing sampled, calls behave the same and no span is exported."""
    with telemetry.testing.capture(sample_ratio=0.0) as cap:
        assert guard("unsampled", retry=Retry(attempts=2))(Flaky(1))() == 42
    assert cap.spans == []


def test_span_attributes_are_redacted_before_export(cap: telemetry.testing.Capture) -> None:
    """What the application puts on a span is redacted before any exporter sees it."""
    with telemetry.get_tracer().start_as_current_span("user mail a@example.com") as span:
        span.set_attribute("enduser.email", "a@example.com")
        span.set_attribute("note", "password=hunter2")
    exported = cap.span("user mail [REDACTED]")
    assert exported.attributes["enduser.email"] == "[REDACTED]"
    assert exported.attributes["note"] == "password=[REDACTED]"


def test_record_exception_marks_the_current_span(cap: telemetry.testing.Capture) -> None:
    """record_exception(): error attributes on the current span, an error log line, the fingerprint."""
    with telemetry.get_tracer().start_as_current_span("handled"):
        try:
            {}["missing"]
        except KeyError as exc:
            fp = telemetry.record_exception(exc, error_id="e-1")
    span = cap.span("handled")
    assert span.attributes[sc.FINGERPRINT] == fp
    assert span.attributes[sc.ERROR_ID] == "e-1"
    assert cap.log(sc.LOG_EXCEPTION)[sc.FINGERPRINT] == fp


def test_record_exception_before_configure_returns_the_fingerprint() -> None:
    """Before configure() it only computes the fingerprint."""
    exc = ValueError("x")
    assert telemetry.record_exception(exc) == fingerprint(exc)


def test_current_trace_id_inside_and_outside_spans(cap: telemetry.testing.Capture) -> None:
    """current_trace_id() is 32 hex digits inside a span and None outside."""
    assert telemetry.current_trace_id() is None
    with telemetry.get_tracer().start_as_current_span("x") as span:
        assert telemetry.current_trace_id() == f"{span.get_span_context().trace_id:032x}"


def test_a_broken_event_handler_costs_telemetry_not_the_call(
        cap: telemetry.testing.Capture, monkeypatch: pytest.MonkeyPatch) -> None:
    """An exception inside the event bridge is counted as dropped; the call is unaffected."""
    def broken(self: CallSpans, event: object) -> None:
        raise RuntimeError("bug in telemetry")

    monkeypatch.setitem(calls()._handlers, resilience.RetryScheduled, broken.__get__(calls()))
    assert guard("broken.bridge", retry=Retry(attempts=2))(Flaky(1))() == 42
    assert telemetry.dropped()["events"] == 1


def test_spans_and_errors_reach_the_store(tmp_path: Path, log_stream: object) -> None:
    """With a store, the call span, its events and its error group are queryable after flush."""
    path = tmp_path / "traces.db"
    telemetry.configure(store=path, log_stream=log_stream)  # type: ignore[arg-type]
    with telemetry.get_tracer().start_as_current_span("request") as request, \
            pytest.raises(ZeroDivisionError) as info:
        guard("stored.call", retry=Retry(attempts=2))(lambda: 1 / 0)()
    assert telemetry.flush(10.0)
    trace_id = f"{request.get_span_context().trace_id:032x}"
    with Query(path) as query:
        detail = query.trace(trace_id)
        groups = query.error_groups()
    assert detail is not None
    call = next(s for s in detail.spans if s.name == "stored.call")
    assert call.attributes[sc.FINGERPRINT] == fingerprint(info.value)
    assert sc.EXCEPTION_EVENT in [e.name for e in call.events]
    assert [line.event for line in detail.logs] == [sc.LOG_CALL_FAILED]
    assert fingerprint(info.value) in [g.fingerprint for g in groups]


class Interrupted(BaseException):
    """Stands for KeyboardInterrupt: a BaseException that skips CallFinished."""


def test_spans_of_calls_that_never_finished_are_bounded(
        cap: telemetry.testing.Capture, monkeypatch: pytest.MonkeyPatch) -> None:
    """Beyond MAX_OPEN unfinished calls, the oldest span is ended and marked incomplete."""
    monkeypatch.setattr("telemetry._spans.MAX_OPEN", 1)

    def interrupted() -> None:
        raise Interrupted

    for _ in range(2):
        with telemetry.get_tracer().start_as_current_span("request"), pytest.raises(Interrupted):
            guard("stuck.call", retry=Retry(attempts=2))(_fail_then(interrupted))()
    (incomplete,) = cap.spans_named("stuck.call")
    assert incomplete.attributes[sc.INCOMPLETE] is True
    assert calls().open_count() == 1


def _fail_then(then: Callable[[], None]) -> Callable[[], None]:
    """A callable failing once with ConnectionError (materialising the span), then calling ``then``."""
    state = {"n": 0}

    def call() -> None:
        state["n"] += 1
        if state["n"] == 1:
            raise ConnectionError("first")
        then()

    return call


def test_circuit_history_and_injected_faults_reach_the_store(tmp_path: Path) -> None:
    """What the viewer reads: circuit transitions (even outside any span) and injected faults."""
    path = tmp_path / "circuits.db"
    telemetry.configure(store=path, log_stream=io.StringIO())
    circuit = Circuit("tr.stored", consecutive=1)
    with pytest.raises(ConnectionError):
        guard("stored.circuit", circuit=circuit)(Flaky(1))()

    def inject(info: AttemptInfo) -> None:
        resilience.emit(FaultInjected(info.site, "error", resilience.ErrorKind.IO, "rule-io", 77, 1,
                                      info.call))
        raise OSError(5, "injected")

    resilience.add_interceptor(inject, sites=lambda site: site == "stored.fault")
    with pytest.raises(OSError):
        guard("stored.fault")(lambda: 1)()
    assert telemetry.flush(10.0)
    with Query(path) as query:
        history = query.circuit_history("tr.stored")
        faults = query.injected_faults(site="stored.fault")
    assert [(c.old_state, c.new_state) for c in history] == [("closed", "open")]
    assert [(f.rule_id, f.seed) for f in faults] == [("rule-io", "77")]
