"""Retry: what is retried, how often, how long it waits, and what the caller gets."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from typing import Any

import pydantic
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import resilience
from resilience import (
    ConfigurationError,
    Policy,
    RetriesExhausted,
    Retry,
    RetryScheduled,
    ValidationFailed,
    attempts_of,
    deadline,
    fixed,
    none,
    on_kinds,
    on_types,
    transient,
)
from resilience import ErrorKind as K
from resilience._events import CallInfo
from resilience.testing import fake_clock, waits_off


class Flaky:
    """A callable that raises the queued exceptions in turn, then returns ``"ok"``."""

    def __init__(self, *failures: BaseException) -> None:
        self.failures = list(failures)
        self.calls = 0

    def __call__(self) -> str:
        self.calls += 1
        if self.failures:
            raise self.failures.pop(0)
        return "ok"


class Hinted(ConnectionError):
    """A transient error carrying a server's Retry-After hint."""

    def __init__(self, retry_after: float) -> None:
        super().__init__("slow down")
        self.retry_after = retry_after


def _policy(**retry: Any) -> Policy:
    retry.setdefault("budget", None)
    retry.setdefault("backoff", none())
    return Policy("svc.retry", retry=Retry(**retry))


@pytest.fixture
def clock() -> Iterator[Any]:
    with fake_clock() as c:
        yield c


def test_transient_errors_are_retried_until_success() -> None:
    """Network errors are retried and the eventual result is returned."""
    fn = Flaky(ConnectionError("a"), TimeoutError("b"))
    assert (_policy(attempts=3).call(fn), fn.calls) == ("ok", 3)


def _pydantic_error() -> Exception:
    class Form(pydantic.BaseModel):
        email: str

    try:
        Form.model_validate({})
    except pydantic.ValidationError as exc:
        return exc
    raise AssertionError("validation passed")


@pytest.mark.parametrize(
    "make",
    [lambda: ZeroDivisionError("x"), lambda: KeyError("k"), lambda: ValidationFailed.from_mapping({"a": "b"}),
     _pydantic_error, lambda: FileNotFoundError("f")],
    ids=["logic", "lookup", "validation", "pydantic", "permanent-io"],
)
def test_permanent_errors_are_never_retried(make: Callable[[], Exception]) -> None:
    """Logic, validation and permanent I/O errors reach the caller after one attempt."""
    exc = make()
    fn = Flaky(exc, exc, exc)
    with pytest.raises(type(exc)):
        _policy(attempts=5).call(fn)
    assert fn.calls == 1


@settings(max_examples=60, deadline=None)
@given(exc=st.sampled_from([ZeroDivisionError(), TypeError(), AttributeError(), IndexError(),
                            ValidationFailed([]), PermissionError(), NotADirectoryError()]),
       attempts=st.integers(min_value=1, max_value=8), listening=st.booleans())
def test_permanent_errors_are_never_retried_for_any_limit(exc: Exception, attempts: int,
                                                          listening: bool) -> None:
    """Whatever the attempt limit, and whether or not anyone listens, permanent errors run once."""
    fn = Flaky(*[exc] * attempts)
    seen: list[object] = []
    if listening:
        resilience.subscribe(seen.append)
    try:
        with pytest.raises(type(exc)):
            _policy(attempts=attempts).call(fn)
    finally:
        resilience.unsubscribe(seen.append)
    assert fn.calls == 1


@settings(max_examples=100, deadline=None)
@given(attempts=st.integers(min_value=1, max_value=8),
       outcomes=st.lists(st.booleans(), max_size=12), listening=st.booleans())
def test_attempts_never_exceed_the_limit(attempts: int, outcomes: list[bool], listening: bool) -> None:
    """For any failure sequence, calls stop at the first success or at the attempt limit."""
    failures = []
    for ok in outcomes:
        if ok:
            break
        failures.append(ConnectionError("down"))
    fn = Flaky(*failures)
    seen: list[object] = []
    if listening:
        resilience.subscribe(seen.append)
    try:
        result: object = _policy(attempts=attempts).call(fn)
    except ConnectionError as exc:
        result = exc
    finally:
        resilience.unsubscribe(seen.append)
    assert fn.calls == min(len(failures) + 1, attempts)
    if len(failures) >= attempts:
        assert isinstance(result, ConnectionError)
        assert attempts_of(result) == attempts
    else:
        assert result == "ok"


def test_caller_gets_the_original_exception_with_attempts_attached() -> None:
    """When retries run out the very exception raised last reaches the caller, not a wrapper."""
    last = ConnectionError("third")
    fn = Flaky(ConnectionError("first"), ConnectionError("second"), last)
    with pytest.raises(ConnectionError) as info:
        _policy(attempts=3).call(fn)
    assert info.value is last
    assert attempts_of(info.value) == 3


def test_a_non_retried_error_reports_one_attempt() -> None:
    """A permanent error that was not retried says one attempt was made."""
    with pytest.raises(ZeroDivisionError) as info:
        _policy(attempts=3).call(Flaky(ZeroDivisionError()))
    assert attempts_of(info.value) == 1


def test_waits_come_from_the_backoff(clock: Any) -> None:
    """Between attempts the policy waits what the backoff says, through the clock."""
    fn = Flaky(*[ConnectionError()] * 3)
    _policy(attempts=4, backoff=fixed(0.5)).call(fn)
    assert clock.sleeps == [0.5, 0.5, 0.5]


def test_waits_off_skips_waiting_but_still_retries(clock: Any) -> None:
    """With waits off retries still happen, but nothing sleeps."""
    fn = Flaky(ConnectionError(), ConnectionError())
    with waits_off():
        assert _policy(attempts=3, backoff=fixed(5)).call(fn) == "ok"
    assert (fn.calls, clock.sleeps) == (3, [])


@pytest.mark.parametrize("listening", [False, True], ids=["quiet", "listened"])
def test_max_time_bounds_the_whole_sequence(clock: Any, listening: bool) -> None:
    """No retry is scheduled whose wait would take the sequence past max_time."""
    if listening:
        resilience.subscribe(lambda event: None)
    fn = Flaky(*[ConnectionError()] * 10)
    with pytest.raises(ConnectionError) as info:
        _policy(attempts=10, backoff=fixed(1.0), max_time=2.5).call(fn)
    assert (fn.calls, clock.sleeps, attempts_of(info.value)) == (3, [1.0, 1.0], 3)


def test_max_time_is_reported_as_the_reason(clock: Any, events: list[object]) -> None:
    """Giving up because of max_time says so in RetriesExhausted."""
    with pytest.raises(ConnectionError):
        _policy(attempts=10, backoff=fixed(1.0), max_time=1.5).call(Flaky(*[ConnectionError()] * 10))
    assert [e.reason for e in events if isinstance(e, RetriesExhausted)] == ["max_time"]


def test_retry_after_hint_sets_a_longer_wait(clock: Any) -> None:
    """A ``retry_after`` hint longer than the backoff is the wait."""
    _policy(attempts=2, backoff=fixed(0.1)).call(Flaky(Hinted(7.0)))
    assert clock.sleeps == [7.0]


def test_backoff_wins_over_a_shorter_hint(clock: Any) -> None:
    """A ``retry_after`` hint shorter than the backoff does not shorten the wait."""
    _policy(attempts=2, backoff=fixed(3.0)).call(Flaky(Hinted(1.0)))
    assert clock.sleeps == [3.0]


def test_hint_over_max_retry_after_gives_up(clock: Any) -> None:
    """A hint longer than max_retry_after ends the retries at once."""
    fn = Flaky(Hinted(120.0))
    with pytest.raises(Hinted):
        _policy(attempts=5, max_retry_after=60.0).call(fn)
    assert (fn.calls, clock.sleeps) == (1, [])


def test_hint_over_max_retry_after_is_reported_as_the_reason(clock: Any, events: list[object]) -> None:
    """Giving up on a too-long Retry-After hint says so in RetriesExhausted.reason."""
    with pytest.raises(Hinted):
        _policy(attempts=5, max_retry_after=60.0).call(Flaky(Hinted(120.0)))
    assert [e.reason for e in events if isinstance(e, RetriesExhausted)] == ["retry_after"]


@pytest.mark.parametrize("hint", [-1.0, float("nan"), float("inf"), "10", True])
def test_nonsense_hints_are_ignored(clock: Any, hint: object) -> None:
    """Negative, non-finite or non-numeric retry_after values do not set the wait."""
    exc = ConnectionError("x")
    exc.retry_after = hint  # type: ignore[attr-defined]
    _policy(attempts=2, backoff=fixed(0.25)).call(Flaky(exc))
    assert clock.sleeps == [0.25]


def test_policy_deadline_stops_retries(clock: Any, events: list[object]) -> None:
    """No retry is scheduled whose wait would end past the overall deadline (reason "deadline")."""
    fn = Flaky(*[ConnectionError()] * 10)
    policy = Policy("svc.dl", deadline=2.5, retry=Retry(attempts=10, backoff=fixed(1.0), budget=None))
    with pytest.raises(ConnectionError):
        policy.call(fn)
    exhausted = [e for e in events if isinstance(e, RetriesExhausted)]
    assert (fn.calls, [e.reason for e in exhausted]) == (3, ["deadline"])


def test_enclosing_deadline_stops_retries(clock: Any) -> None:
    """A deadline set by the caller also limits the retries of a guarded call inside it."""
    fn = Flaky(*[ConnectionError()] * 10)
    with deadline(1.5), pytest.raises(ConnectionError):
        _policy(attempts=10, backoff=fixed(1.0)).call(fn)
    assert fn.calls == 2


def test_or_condition_retries_either(clock: Any) -> None:
    """``on=a | b`` retries errors matching either condition."""
    fn = Flaky(KeyError("k"), ConnectionError())
    assert _policy(attempts=3, on=on_types(KeyError) | transient).call(fn) == "ok"


def test_and_not_condition_excludes(clock: Any) -> None:
    """``on=transient & ~on_types(X)`` does not retry X although X is transient."""
    fn = Flaky(ConnectionResetError(), ConnectionResetError())
    with pytest.raises(ConnectionResetError):
        _policy(attempts=3, on=transient & ~on_types(ConnectionResetError)).call(fn)
    assert fn.calls == 1


def test_and_not_condition_keeps_the_rest(clock: Any) -> None:
    """``on=transient & ~on_types(X)`` still retries other transient errors."""
    fn = Flaky(ConnectionRefusedError())
    assert _policy(attempts=3, on=transient & ~on_types(ConnectionResetError)).call(fn) == "ok"


def test_on_kinds_retries_permanent_errors_of_that_kind(clock: Any) -> None:
    """``on=on_kinds(IO)`` retries I/O errors even when they are permanent."""
    fn = Flaky(FileNotFoundError("f"))
    assert (_policy(attempts=2, on=on_kinds(K.IO)).call(fn), fn.calls) == ("ok", 2)


def test_plain_callable_condition_is_accepted(clock: Any) -> None:
    """Any ``(exc) -> bool`` callable works as ``on=``."""
    fn = Flaky(ZeroDivisionError())
    assert _policy(attempts=2, on=lambda exc: isinstance(exc, ArithmeticError)).call(fn) == "ok"


def test_condition_composes_with_a_plain_callable(clock: Any) -> None:
    """A Condition combines with ``|`` and a plain predicate."""
    fn = Flaky(KeyError("k"))
    assert _policy(attempts=2, on=transient | (lambda exc: isinstance(exc, KeyError))).call(fn) == "ok"


def test_condition_repr_shows_the_composition() -> None:
    """Composed conditions describe themselves (shown by policy.describe())."""
    cond = (transient | on_types(KeyError)) & ~on_kinds(K.LOGIC)
    assert repr(cond) == "((transient | on_types(KeyError)) & ~on_kinds(logic))"


def test_retry_scheduled_events_carry_attempt_and_wait(clock: Any, events: list[object]) -> None:
    """Each scheduled retry is an event with the failed attempt's number and the wait."""
    failures = [ConnectionError("a"), ConnectionError("b")]
    _policy(attempts=3, backoff=fixed(0.5)).call(Flaky(*failures))
    scheduled = [e for e in events if isinstance(e, RetryScheduled)]
    assert [(e.attempt, e.wait, e.exception) for e in scheduled] == [(1, 0.5, failures[0]), (2, 0.5, failures[1])]


def test_retries_exhausted_event_carries_attempts_and_reason(clock: Any, events: list[object]) -> None:
    """Running out of attempts emits RetriesExhausted with the count, the exception and the reason."""
    last = ConnectionError("c")
    with pytest.raises(ConnectionError):
        _policy(attempts=3).call(Flaky(ConnectionError(), ConnectionError(), last))
    exhausted = [e for e in events if isinstance(e, RetriesExhausted)]
    assert [(e.attempts, e.exception, e.reason) for e in exhausted] == [(3, last, "attempts")]


def test_permanent_error_reports_reason_permanent(events: list[object]) -> None:
    """A permanent error ends the retries with reason "permanent"."""
    with pytest.raises(ZeroDivisionError):
        _policy(attempts=3).call(Flaky(ZeroDivisionError()))
    assert [e.reason for e in events if isinstance(e, RetriesExhausted)] == ["permanent"]


def test_retry_scheduled_wait_is_reported_with_waits_off(clock: Any, events: list[object]) -> None:
    """With waits off the event still says what the backoff chose, though nothing sleeps."""
    with waits_off():
        _policy(attempts=2, backoff=fixed(2.0)).call(Flaky(ConnectionError()))
    assert [e.wait for e in events if isinstance(e, RetryScheduled)] == [2.0]


def test_success_calls_once_and_builds_no_events(monkeypatch: pytest.MonkeyPatch) -> None:
    """The success path calls the function exactly once and builds no event when nobody listens."""
    built: list[object] = []
    original = CallInfo.__init__

    def counting(self: CallInfo, *args: Any, **kwargs: Any) -> None:
        built.append(self)
        original(self, *args, **kwargs)

    monkeypatch.setattr(CallInfo, "__init__", counting)
    fn = Flaky()
    assert (_policy(attempts=3).call(fn), fn.calls, built) == ("ok", 1, [])


def test_async_transient_errors_are_retried(clock: Any) -> None:
    """Async calls are retried like sync ones, waiting through the clock."""
    fn = Flaky(ConnectionError(), ConnectionError())

    async def call() -> str:
        return fn()

    policy = _policy(attempts=3, backoff=fixed(0.25))
    assert (asyncio.run(policy.acall(call)), fn.calls, clock.sleeps) == ("ok", 3, [0.25, 0.25])


@pytest.mark.parametrize(
    "kwargs",
    [{"attempts": 0}, {"attempts": True}, {"attempts": 2.5}, {"max_time": 0}, {"max_time": -1},
     {"budget": 1.5}, {"budget": -0.1}, {"max_retry_after": -1}, {"on": "transient"}],
    ids=lambda kw: next(iter(kw)) + "=" + repr(next(iter(kw.values()))),
)
def test_bad_retry_configuration_is_rejected(kwargs: dict[str, Any]) -> None:
    """Retry() raises ConfigurationError for every out-of-range or wrongly typed setting."""
    with pytest.raises(ConfigurationError):
        Retry(**kwargs)
