"""Events: frozen slotted objects, subscription, delivery order, and no cost without listeners."""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
import typing
from collections.abc import Iterator
from typing import Any

import pytest

from resilience import (
    AttemptFailed,
    AttemptInfo,
    Bulkhead,
    BulkheadFull,
    CallFinished,
    CallInfo,
    CallRejected,
    Circuit,
    CircuitOpenError,
    CircuitStateChanged,
    DeadlineExpired,
    ErrorKind,
    Event,
    FallbackUsed,
    FaultInjected,
    RetriesExhausted,
    Retry,
    RetryScheduled,
    ValidationFailed,
    ValidationRejected,
    add_interceptor,
    emit,
    fixed,
    guard,
    has_subscribers,
    none,
    refresh_interceptors,
    subscribe,
    unsubscribe,
)
from resilience.testing import FakeClock, fake_clock

EVENTS: list[type[Any]] = [
    AttemptFailed, RetryScheduled, RetriesExhausted, CircuitStateChanged, CallRejected,
    FallbackUsed, DeadlineExpired, ValidationRejected, FaultInjected, CallFinished,
]
DETAILS: list[type[Any]] = [*EVENTS, CallInfo, AttemptInfo]


@pytest.fixture
def clock() -> Iterator[FakeClock]:
    with fake_clock() as c:
        yield c


def _fault() -> FaultInjected:
    return FaultInjected(site="storage.write", fault="raise", kind=ErrorKind.IO, rule_id="r1",
                         seed=7, ordinal=1)


@pytest.mark.parametrize("cls", DETAILS, ids=lambda c: c.__name__)
def test_event_types_are_frozen_slotted_dataclasses(cls: type[Any]) -> None:
    """Every event and details type is a frozen dataclass with __slots__ and no __dict__."""
    assert dataclasses.is_dataclass(cls)
    assert cls.__dataclass_params__.frozen  # type: ignore[attr-defined]
    assert "__slots__" in cls.__dict__
    assert not hasattr(object.__new__(cls), "__dict__")


@pytest.mark.parametrize("cls", DETAILS, ids=lambda c: c.__name__)
def test_event_fields_cannot_be_assigned(cls: type[Any]) -> None:
    """Assigning a field of an event raises FrozenInstanceError."""
    instance = object.__new__(cls)
    first = dataclasses.fields(cls)[0].name
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(instance, first, None)


def test_event_union_names_every_event_type() -> None:
    """The Event alias is exactly the union of the event classes hooks can receive."""
    assert set(typing.get_args(Event)) == set(EVENTS)


def test_subscribe_delivers_emitted_events() -> None:
    """A subscribed hook receives what anyone emits (e.g. FaultInjected from fault injection)."""
    seen: list[object] = []
    subscribe(seen.append)
    event = _fault()
    emit(event)
    assert seen == [event]


def test_subscribe_returns_the_hook() -> None:
    """subscribe() returns its argument, so it works as a decorator."""

    def hook(event: object) -> None:
        pass

    assert subscribe(hook) is hook


def test_subscribing_twice_delivers_once() -> None:
    """Subscribing the same hook twice is idempotent: one delivery per event."""
    seen: list[object] = []
    subscribe(seen.append)
    subscribe(seen.append)
    emit(_fault())
    assert len(seen) == 1


def test_unsubscribe_stops_delivery_and_is_idempotent() -> None:
    """After unsubscribe() (once or twice) a hook receives nothing."""
    seen: list[object] = []
    subscribe(seen.append)
    unsubscribe(seen.append)
    unsubscribe(seen.append)
    emit(_fault())
    assert (seen, has_subscribers()) == ([], False)


def test_unsubscribing_an_unknown_hook_is_harmless() -> None:
    """unsubscribe() of a hook that never subscribed leaves the others in place."""
    seen: list[object] = []
    subscribe(seen.append)
    unsubscribe(print)
    emit(_fault())
    assert len(seen) == 1


def test_has_subscribers_follows_subscriptions() -> None:
    """has_subscribers() is True exactly while some hook is subscribed."""
    states = [has_subscribers()]
    subscribe(print)
    states.append(has_subscribers())
    unsubscribe(print)
    states.append(has_subscribers())
    assert states == [False, True, False]


def test_a_raising_hook_does_not_stop_the_next_hook(caplog: pytest.LogCaptureFixture) -> None:
    """emit() keeps delivering after a hook raises, and logs the failure."""
    seen: list[object] = []
    subscribe(lambda event: 1 / 0)
    subscribe(seen.append)
    with caplog.at_level(logging.WARNING, logger="resilience"):
        emit(_fault())
    assert len(seen) == 1
    assert [r.name for r in caplog.records] == ["resilience"]


def test_retry_then_success_emits_in_order(clock: FakeClock, events: list[object]) -> None:
    """A retried call emits AttemptFailed, RetryScheduled, then CallFinished, in that order."""
    runs = [0]

    @guard("svc.order", retry=Retry(attempts=3, backoff=fixed(0.5), budget=None))
    def flaky() -> str:
        runs[0] += 1
        if runs[0] == 1:
            clock.advance(0.25)
            raise ConnectionError("blip")
        return "ok"

    flaky()
    assert [type(e) for e in events] == [AttemptFailed, RetryScheduled, CallFinished]
    failed, scheduled, finished = events
    assert isinstance(failed, AttemptFailed)
    assert isinstance(scheduled, RetryScheduled)
    assert isinstance(finished, CallFinished)
    assert (failed.attempt, failed.kind, failed.transient, failed.duration) == (1, ErrorKind.NETWORK, True, 0.25)
    assert (scheduled.attempt, scheduled.wait) == (1, 0.5)
    assert (finished.outcome, finished.attempts, finished.duration) == ("success", 2, 0.75)


def test_exhausted_then_fallback_emits_in_order(clock: FakeClock, events: list[object]) -> None:
    """Failing every attempt and falling back emits the whole story in order."""

    @guard("svc.order", retry=Retry(attempts=2, backoff=none(), budget=None), fallback=lambda e: "cached")
    def down() -> str:
        raise ConnectionError("down")

    down()
    assert [type(e) for e in events] == [AttemptFailed, RetryScheduled, AttemptFailed, RetriesExhausted,
                                         FallbackUsed, CallFinished]


def test_events_of_one_call_share_its_call_info(clock: FakeClock, events: list[object]) -> None:
    """All events of one call carry the same CallInfo, naming the site and a wall-clock start."""
    before = time.time_ns()

    @guard("svc.info", retry=Retry(attempts=2, backoff=none(), budget=None))
    def down() -> str:
        raise ConnectionError("down")

    with pytest.raises(ConnectionError):
        down()
    infos = {e.call for e in events}  # type: ignore[attr-defined]
    assert len(infos) == 1
    (info,) = infos
    assert info.site == "svc.info"
    assert before <= info.started_ns <= time.time_ns()


def test_separate_calls_get_separate_call_ids(events: list[object]) -> None:
    """Two calls of one guarded function get different call ids."""

    @guard("svc.ids", fallback=lambda e: None)
    def down() -> None:
        raise ConnectionError("down")

    down()
    down()
    ids = {e.call.call_id for e in events if isinstance(e, FallbackUsed)}
    assert len(ids) == 2


def _count_event_construction(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    built: list[str] = []
    for cls in DETAILS:
        original = cls.__init__

        def counting(self: Any, *args: Any, _original: Any = original, **kwargs: Any) -> None:
            built.append(type(self).__name__)
            _original(self, *args, **kwargs)

        monkeypatch.setattr(cls, "__init__", counting)
    return built


def test_counting_hook_sees_event_construction(monkeypatch: pytest.MonkeyPatch) -> None:
    """The construction counter used below does count events when someone listens."""
    built = _count_event_construction(monkeypatch)
    subscribe(lambda event: None)
    guard("svc.quiet", fallback=lambda e: None)(lambda: _raise(ConnectionError()))()
    assert "FallbackUsed" in built


def _raise(exc: BaseException) -> None:
    raise exc


def test_no_event_is_built_without_subscribers(monkeypatch: pytest.MonkeyPatch) -> None:
    """With nobody subscribed, retries, fallbacks and rejections build no event object at all."""
    built = _count_event_construction(monkeypatch)
    with fake_clock():
        runs = [0]

        @guard("svc.quiet", retry=Retry(attempts=3, backoff=fixed(1), budget=None), fallback=lambda e: "x")
        def flaky() -> str:
            runs[0] += 1
            raise ConnectionError("down")

        flaky()
        with pytest.raises(ValidationFailed):
            guard("svc.quiet", validate=lambda: _raise(ValueError("bad")))(lambda: None)()
        circuit = Circuit("test-events-quiet", consecutive=1)
        circuit.force_open()
        with pytest.raises(CircuitOpenError):
            guard("svc.quiet", circuit=circuit)(lambda: None)()
        bulkhead = Bulkhead(1)
        bulkhead.try_acquire()
        with pytest.raises(BulkheadFull):
            guard("svc.quiet", bulkhead=bulkhead)(lambda: None)()
    assert (runs[0], built) == (3, [])


def test_no_event_is_built_for_interceptors_or_max_time_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    """An interceptor or Retry(max_time=) needs per-call bookkeeping, but still builds no event."""
    built = _count_event_construction(monkeypatch)
    seen: list[int] = []
    add_interceptor(lambda info: seen.append(info.attempt))
    with fake_clock():
        @guard("svc.timed", retry=Retry(attempts=3, backoff=fixed(1), max_time=60, budget=None),
               fallback=lambda e: "x")
        def flaky() -> str:
            raise ConnectionError("down")

        assert flaky() == "x"
    events_built = [name for name in built if name not in ("CallInfo", "AttemptInfo")]
    assert (seen, events_built) == ([1, 2, 3], [])


@pytest.mark.parametrize("asynchronous", [False, True])
def test_injected_latency_makes_a_successful_call_report_call_finished(
        events: list[object], asynchronous: bool) -> None:
    """A call that only waited out an interceptor's delay still ends with CallFinished."""
    import asyncio

    add_interceptor(lambda info: 0.25)
    with fake_clock():
        if asynchronous:
            @guard("svc.slowed")
            async def slowed_async() -> int:
                return 1

            assert asyncio.run(slowed_async()) == 1
        else:
            assert guard("svc.slowed")(lambda: 1)() == 1
    finished = [e for e in events if isinstance(e, CallFinished)]
    assert [(e.call.site, e.outcome, e.duration) for e in finished] == [("svc.slowed", "success", 0.25)]


def test_interceptor_site_filter_keeps_other_sites_uncalled() -> None:
    """An interceptor that wants only some sites is not run for the others, and learns of changes."""
    wanted = {"svc.a"}
    seen: list[str] = []
    add_interceptor(lambda info: seen.append(info.site), sites=lambda site: site in wanted)
    a = guard("svc.a")(lambda: 1)
    b = guard("svc.b")(lambda: 2)
    a(), b()
    wanted.add("svc.b")
    b()  # cached answer: not yet told
    refresh_interceptors()
    b()
    assert seen == ["svc.a", "svc.b"]


def test_hooks_receive_events_from_other_threads() -> None:
    """Events of calls made in other threads reach the hooks too."""
    seen: list[object] = []
    subscribe(seen.append)

    @guard("svc.thread", fallback=lambda e: None)
    def down() -> None:
        raise ConnectionError("down")

    thread = threading.Thread(target=down)
    thread.start()
    thread.join()
    assert FallbackUsed in {type(e) for e in seen}
