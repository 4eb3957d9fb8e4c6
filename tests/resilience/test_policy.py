"""guard()/Policy: the fixed layer order, every callable kind, fallback, validation, interceptors."""

from __future__ import annotations

import asyncio
import inspect
import itertools
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pydantic
import pytest

import resilience
from resilience import (
    AttemptInfo,
    Bulkhead,
    BulkheadFull,
    CallFinished,
    Circuit,
    CircuitOpenError,
    ConfigurationError,
    DeadlineExceeded,
    FallbackUsed,
    Policy,
    Retry,
    ValidationFailed,
    ValidationRejected,
    add_interceptor,
    attempts_of,
    fixed,
    guard,
    none,
    on_types,
    policy_of,
    remaining,
    remove_interceptor,
)
from resilience.testing import FakeClock, fake_clock

_names = itertools.count()


def _circuit(**kwargs: Any) -> Circuit:
    """A circuit with a name no other test uses (circuits are registered by name)."""
    return Circuit(f"test-policy-{next(_names)}", **kwargs)


def _retry(attempts: int = 3) -> Retry:
    return Retry(attempts=attempts, backoff=none(), budget=None)


@pytest.fixture
def clock() -> Iterator[FakeClock]:
    with fake_clock() as c:
        yield c


# -- the four callable kinds ------------------------------------------------------------------


@dataclass(frozen=True)
class Kind:
    """One callable kind: how to write a function of it, call it, and recognise it."""

    name: str
    make: Callable[[Callable[[int], str]], Callable[..., Any]]
    run: Callable[..., Any]
    is_kind: Callable[[Any], bool]
    items: bool  # results (and fallback answers) are streams of items

    def answer(self, value: str) -> Any:
        """What a fallback returns for this kind (an iterable of items for streams)."""
        return [value] if self.items else value

    def result(self, value: str) -> Any:
        """What :meth:`run` yields for a call whose answer is ``value``."""
        return [value] if self.items else value


def _make_sync(body: Callable[[int], str]) -> Callable[..., Any]:
    def fetch(item_id: int, *, verbose: bool = False) -> str:
        """Fetch one item."""
        return body(item_id)

    return fetch


def _make_async(body: Callable[[int], str]) -> Callable[..., Any]:
    async def fetch(item_id: int, *, verbose: bool = False) -> str:
        """Fetch one item."""
        return body(item_id)

    return fetch


def _make_gen(body: Callable[[int], str]) -> Callable[..., Any]:
    def fetch(item_id: int, *, verbose: bool = False) -> Iterator[str]:
        """Fetch one item."""
        yield body(item_id)

    return fetch


def _make_agen(body: Callable[[int], str]) -> Callable[..., Any]:
    async def fetch(item_id: int, *, verbose: bool = False) -> AsyncIterator[str]:
        """Fetch one item."""
        yield body(item_id)

    return fetch


async def _collect(stream: AsyncIterator[str]) -> list[str]:
    return [item async for item in stream]


def _is_plain(fn: Any) -> bool:
    return not (inspect.iscoroutinefunction(fn) or inspect.isgeneratorfunction(fn)
                or inspect.isasyncgenfunction(fn))


KINDS = [
    Kind("sync", _make_sync, lambda fn, *a, **k: fn(*a, **k), _is_plain, items=False),
    Kind("async", _make_async, lambda fn, *a, **k: asyncio.run(fn(*a, **k)),
         inspect.iscoroutinefunction, items=False),
    Kind("generator", _make_gen, lambda fn, *a, **k: list(fn(*a, **k)),
         inspect.isgeneratorfunction, items=True),
    Kind("async-generator", _make_agen, lambda fn, *a, **k: asyncio.run(_collect(fn(*a, **k))),
         inspect.isasyncgenfunction, items=True),
]


@pytest.fixture(params=KINDS, ids=lambda k: k.name)
def kind(request: pytest.FixtureRequest) -> Kind:
    """Each test using this runs once per callable kind."""
    k: Kind = request.param
    return k


class Body:
    """The work inside the function: raises the queued exceptions in turn, then answers."""

    def __init__(self, *failures: BaseException) -> None:
        self.failures = list(failures)
        self.calls: list[int] = []

    def __call__(self, item_id: int) -> str:
        self.calls.append(item_id)
        if self.failures:
            raise self.failures.pop(0)
        return f"item-{item_id}"


def test_wrapper_keeps_the_signature(kind: Kind) -> None:
    """The guarded function has the original's signature."""
    original = kind.make(Body())
    guarded = guard("svc.kind", retry=_retry())(original)
    assert inspect.signature(guarded) == inspect.signature(original)


def test_wrapper_keeps_name_doc_and_wrapped(kind: Kind) -> None:
    """The guarded function keeps __name__, __qualname__, __doc__ and points __wrapped__ at the original."""
    original = kind.make(Body())
    guarded: Any = guard("svc.kind")(original)
    assert (guarded.__name__, guarded.__qualname__, guarded.__doc__, guarded.__wrapped__) == (
        original.__name__, original.__qualname__, "Fetch one item.", original)


def test_wrapper_keeps_the_callable_kind(kind: Kind) -> None:
    """Sync stays plain, async stays a coroutine function, generators stay generator functions."""
    guarded = guard("svc.kind", retry=_retry(), bulkhead=Bulkhead(2))(kind.make(Body()))
    assert kind.is_kind(guarded)


def test_every_kind_is_retried(kind: Kind) -> None:
    """Transient failures are retried for every callable kind."""
    body = Body(ConnectionError("a"), ConnectionError("b"))
    guarded = guard("svc.kind", retry=_retry())(kind.make(body))
    assert (kind.run(guarded, 7), body.calls) == (kind.result("item-7"), [7, 7, 7])


def test_every_kind_gets_the_fallback(kind: Kind) -> None:
    """When retries run out the fallback answers, for every callable kind."""
    body = Body(*[ConnectionError()] * 5)
    guarded = guard("svc.kind", retry=_retry(2), fallback=lambda exc: kind.answer("cached"))(kind.make(body))
    assert (kind.run(guarded, 1), len(body.calls)) == (kind.result("cached"), 2)


def test_every_kind_is_validated(kind: Kind) -> None:
    """Invalid arguments are rejected before the body runs, for every callable kind."""

    class Args(pydantic.BaseModel):
        item_id: pydantic.PositiveInt

    body = Body()
    guarded = guard("svc.kind", validate=Args)(kind.make(body))
    with pytest.raises(ValidationFailed) as info:
        kind.run(guarded, -1)
    assert ([e["field"] for e in info.value.errors], body.calls) == (["item_id"], [])


def test_every_kind_passes_arguments_through(kind: Kind) -> None:
    """Keyword arguments reach the function unchanged."""
    body = Body()
    guarded = guard("svc.kind", retry=_retry())(kind.make(body))
    assert (kind.run(guarded, item_id=3, verbose=True), body.calls) == (kind.result("item-3"), [3])


def test_policy_of_returns_the_policy(kind: Kind) -> None:
    """policy_of() finds the policy a guarded function runs under."""
    policy = Policy("svc.kind")
    assert (policy_of(policy(kind.make(Body()))), policy_of(kind.make(Body()))) == (policy, None)


class Seen(list[BaseException]):
    """A fallback that remembers the exceptions it was given and answers "cached"."""

    def __call__(self, exc: BaseException) -> str:
        self.append(exc)
        return "cached"


# -- composition order --------------------------------------------------------------------


def _full_policy() -> Policy:
    def validate_args(item_id: int) -> None:
        pass

    def cached(exc: BaseException) -> str:
        return "cached"

    return Policy("svc.all", validate=validate_args, fallback=cached, retry=_retry(),
                  deadline=5.0, circuit=_circuit(consecutive=3), bulkhead=Bulkhead(4),
                  attempt_timeout=1.0)


def test_layers_are_listed_in_the_fixed_order() -> None:
    """layers() lists validate, fallback, retry, deadline, circuit, bulkhead, attempt timeout, call."""
    heads = [layer.split("(")[0] for layer in _full_policy().layers()]
    assert heads == ["validate", "fallback", "retry", "deadline", "circuit", "bulkhead",
                     "attempt_timeout", "call"]


def test_describe_shows_the_layers_nested_outermost_first() -> None:
    """describe() prints one line per layer, each indented inside the one before."""
    policy = _full_policy()
    lines = policy.describe().splitlines()
    assert lines[0] == "policy 'svc.all':"
    assert [line.strip().removeprefix("-> ") for line in lines[1:]] == policy.layers()
    indents = [len(line) - len(line.lstrip()) for line in lines[1:]]
    assert indents == sorted(set(indents))


def test_describe_omits_absent_layers() -> None:
    """A policy lists only the layers it has."""
    assert Policy("svc.min", retry=_retry(2)).layers() == [_retry(2).describe(), "call"]


def test_fallback_runs_once_outside_all_retries(clock: FakeClock) -> None:
    """The fallback sees the last exception after every attempt failed (it wraps retry)."""
    failures = [ConnectionError("1"), ConnectionError("2"), ConnectionError("3")]
    body, seen = Body(*failures), Seen()
    guarded = guard("svc.order", retry=_retry(3), fallback=seen)(_make_sync(body))
    assert (guarded(1), seen, len(body.calls)) == ("cached", [failures[2]], 3)


def test_each_retry_goes_through_the_circuit(clock: FakeClock) -> None:
    """Retry wraps the circuit: failures count per attempt, and an opened circuit stops the retries."""
    circuit = _circuit(consecutive=2)
    body, seen = Body(*[ConnectionError()] * 5), Seen()
    guarded = guard("svc.order", retry=_retry(5), circuit=circuit, fallback=seen)(_make_sync(body))
    assert (guarded(1), len(body.calls), circuit.state) == ("cached", 2, "open")
    assert isinstance(seen[0], CircuitOpenError)


def test_circuit_rejects_before_the_bulkhead() -> None:
    """Circuit wraps bulkhead: an open circuit rejects without asking the (full) bulkhead."""
    circuit, bulkhead = _circuit(consecutive=1), Bulkhead(1)
    circuit.force_open()
    assert bulkhead.try_acquire()
    guarded = guard("svc.order", circuit=circuit, bulkhead=bulkhead)(_make_sync(Body()))
    with pytest.raises(CircuitOpenError):
        guarded(1)


def test_interceptors_run_inside_bulkhead_and_attempt_deadline(clock: FakeClock) -> None:
    """An interceptor runs with the bulkhead slot taken and the attempt budget in force."""
    bulkhead, seen = Bulkhead(3), []
    add_interceptor(lambda info: seen.append((bulkhead.in_flight, remaining())))
    guard("svc.order", bulkhead=bulkhead, deadline=10.0, attempt_timeout=0.5)(_make_sync(Body()))(1)
    assert seen == [(1, 0.5)]


def test_validation_runs_before_fallback_and_retry() -> None:
    """Validate is outermost: invalid input is neither retried nor answered by a fallback."""

    def reject(item_id: int, *, verbose: bool = False) -> None:
        raise ValidationFailed.from_mapping({"item_id": "no"})

    body, fallback_calls = Body(), []
    guarded = guard("svc.order", validate=reject, retry=_retry(3),
                    fallback=lambda exc: fallback_calls.append(exc),
                    fallback_on=lambda exc: True)(_make_sync(body))
    with pytest.raises(ValidationFailed):
        guarded(1)
    assert (body.calls, fallback_calls) == ([], [])


# -- fallback -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "exc",
    [ConnectionError("net"), TimeoutError("slow"), FileNotFoundError("gone"), OSError(28, "full"),
     CircuitOpenError("c", 1.0), BulkheadFull("b", 1), DeadlineExceeded(1.0)],
    ids=lambda e: type(e).__name__,
)
def test_fallback_answers_network_io_and_rejections(exc: Exception) -> None:
    """By default the fallback handles network, I/O, open-circuit, full-bulkhead and deadline errors."""
    guarded = guard("svc.fb", fallback=lambda e: ("cached", e))(_make_sync(Body(exc)))
    assert guarded(1) == ("cached", exc)


@pytest.mark.parametrize("exc", [ZeroDivisionError(), KeyError("k"), ValidationFailed([])],
                         ids=lambda e: type(e).__name__)
def test_fallback_does_not_hide_logic_or_validation_errors(exc: Exception) -> None:
    """By default logic and validation errors reach the caller; the fallback is not called."""
    called: list[BaseException] = []
    guarded = guard("svc.fb", fallback=called.append)(_make_sync(Body(exc)))
    with pytest.raises(type(exc)) as info:
        guarded(1)
    assert (info.value, called) == (exc, [])


def test_fallback_on_overrides_what_is_handled() -> None:
    """fallback_on= decides which failures the fallback answers."""
    guarded = guard("svc.fb", fallback=lambda e: "cached", fallback_on=on_types(ZeroDivisionError))
    assert guarded(_make_sync(Body(ZeroDivisionError())))(1) == "cached"
    with pytest.raises(ConnectionError):
        guarded(_make_sync(Body(ConnectionError())))(1)


def test_fallback_is_skipped_on_success() -> None:
    """A successful call never runs the fallback."""
    called: list[BaseException] = []
    assert guard("svc.fb", fallback=called.append)(_make_sync(Body()))(4) == "item-4"
    assert called == []


def test_async_fallback_may_be_a_coroutine_function() -> None:
    """An async guarded call awaits a fallback that returns an awaitable."""

    async def cached(exc: BaseException) -> str:
        return "cached"

    guarded = guard("svc.fb", fallback=cached)(_make_async(Body(ConnectionError())))
    assert asyncio.run(guarded(1)) == "cached"


def test_fallback_used_event_carries_the_exception(events: list[object]) -> None:
    """Answering from the fallback emits FallbackUsed with the exception it replaced."""
    exc = ConnectionError("down")
    guard("svc.fb", fallback=lambda e: "cached")(_make_sync(Body(exc)))(1)
    assert [e.exception for e in events if isinstance(e, FallbackUsed)] == [exc]


# -- validation -----------------------------------------------------------------------------


class Signup(pydantic.BaseModel):
    name: str = pydantic.Field(min_length=1)
    age: int = pydantic.Field(ge=13)


def _signup_handler(body: Body) -> Callable[..., str]:
    @guard("svc.signup", validate=Signup, retry=_retry(3),
           fallback=lambda e: "cached", fallback_on=lambda e: True)
    def signup(name: str, age: int) -> str:
        return body(age)

    return signup


def test_pydantic_model_validates_the_arguments_by_name() -> None:
    """validate=Model checks the call's arguments; valid ones pass through to the function."""
    body = Body()
    assert (_signup_handler(body)("ada", age=36), body.calls) == ("item-36", [36])


def test_pydantic_model_reports_every_invalid_field() -> None:
    """Invalid arguments raise ValidationFailed listing each field with message and type."""
    body = Body()
    with pytest.raises(ValidationFailed) as info:
        _signup_handler(body)("", age=7)
    fields = {e["field"]: e["type"] for e in info.value.errors}
    assert (fields, body.calls) == ({"name": "string_too_short", "age": "greater_than_equal"}, [])
    assert all(e["message"] for e in info.value.errors)


def test_validation_failure_is_a_value_error_and_never_retried_or_answered() -> None:
    """ValidationFailed is a ValueError, is raised once and never replaced by the fallback."""
    body = Body()
    with pytest.raises(ValueError) as info:
        _signup_handler(body)("ada", age="old")
    assert isinstance(info.value, ValidationFailed)
    assert (body.calls, attempts_of(info.value)) == ([], 1)


def test_callable_validator_raising_value_error_gives_field_errors() -> None:
    """A validator callable that raises ValueError becomes ValidationFailed with a root error."""

    def check(item_id: int, *, verbose: bool = False) -> None:
        if item_id < 0:
            raise ValueError("item_id must be positive")

    with pytest.raises(ValidationFailed) as info:
        guard("svc.v", validate=check)(_make_sync(Body()))(-1)
    assert info.value.errors == [
        {"field": "__root__", "message": "item_id must be positive", "type": "value_error"}]


def test_callable_validator_raising_validation_failed_passes_it_through() -> None:
    """A validator that raises ValidationFailed itself keeps its field errors."""
    rejection = ValidationFailed.from_mapping({"item_id": "unknown item"})

    def check(item_id: int, *, verbose: bool = False) -> None:
        raise rejection

    with pytest.raises(ValidationFailed) as info:
        guard("svc.v", validate=check)(_make_sync(Body()))(1)
    assert info.value is rejection


def test_validation_rejected_event_lists_the_fields(events: list[object]) -> None:
    """Rejected input emits ValidationRejected with the field errors."""
    with pytest.raises(ValidationFailed):
        _signup_handler(Body())("ada", age=3)
    assert [[e["field"] for e in ev.errors] for ev in events if isinstance(ev, ValidationRejected)] == [["age"]]


# -- interceptors -----------------------------------------------------------------------------


def test_interceptor_sees_each_attempt_number(clock: FakeClock) -> None:
    """Interceptors run before every attempt with the site and the attempt number."""
    seen: list[AttemptInfo] = []
    add_interceptor(seen.append)
    guard("svc.icpt", retry=_retry(3))(_make_sync(Body(ConnectionError(), ConnectionError())))(1)
    assert [(i.site, i.attempt) for i in seen] == [("svc.icpt", 1), ("svc.icpt", 2), ("svc.icpt", 3)]


def test_interceptor_attempts_of_one_call_share_its_call_info(clock: FakeClock) -> None:
    """Attempts of one call carry the same CallInfo; separate calls get different call ids."""
    seen: list[AttemptInfo] = []
    add_interceptor(seen.append)
    guarded = guard("svc.icpt", retry=_retry(3))(_make_sync(Body(ConnectionError())))
    guarded(1)
    guarded(2)
    ids = [i.call.call_id for i in seen]
    assert ids[0] == ids[1] != ids[2]


def test_interceptor_raising_fails_that_attempt(clock: FakeClock) -> None:
    """An exception from an interceptor fails the attempt (the function is not run) and is retried."""
    body = Body()

    def inject(info: AttemptInfo) -> None:
        if info.attempt == 1:
            raise ConnectionError("injected")

    add_interceptor(inject)
    result = guard("svc.icpt", retry=_retry(3))(_make_sync(body))(5)
    assert (result, body.calls) == ("item-5", [5])


def test_interceptor_failure_counts_for_the_circuit(clock: FakeClock) -> None:
    """Interceptors run inside the circuit: an injected failure is recorded by it."""
    circuit = _circuit(consecutive=1)
    add_interceptor(lambda info: (_ for _ in ()).throw(ConnectionError("injected")))
    with pytest.raises(ConnectionError):
        guard("svc.icpt", circuit=circuit)(_make_sync(Body()))(1)
    assert circuit.state == "open"


def test_interceptor_logic_error_is_not_retried(clock: FakeClock) -> None:
    """An injected logic error is treated like a real one: raised, not retried."""
    seen: list[int] = []

    def inject(info: AttemptInfo) -> None:
        seen.append(info.attempt)
        raise ZeroDivisionError("injected")

    add_interceptor(inject)
    with pytest.raises(ZeroDivisionError):
        guard("svc.icpt", retry=_retry(3))(_make_sync(Body()))(1)
    assert seen == [1]


def test_interceptor_delay_is_waited_through_the_clock(clock: FakeClock) -> None:
    """A delay returned by an interceptor is waited via the clock before the attempt."""
    add_interceptor(lambda info: 0.75)
    body = Body()
    assert (guard("svc.icpt")(_make_sync(body))(1), clock.sleeps, body.calls) == ("item-1", [0.75], [1])


def test_async_interceptor_delay_is_awaited_through_the_clock(clock: FakeClock) -> None:
    """Async calls wait an interceptor's delay through the clock too."""
    add_interceptor(lambda info: 0.5)
    assert (asyncio.run(guard("svc.icpt")(_make_async(Body()))(1)), clock.sleeps) == ("item-1", [0.5])


def test_removed_interceptor_no_longer_runs(clock: FakeClock) -> None:
    """remove_interceptor() stops an interceptor (and removing twice is harmless)."""
    seen: list[AttemptInfo] = []
    add_interceptor(seen.append)
    remove_interceptor(seen.append)
    remove_interceptor(seen.append)
    guard("svc.icpt")(_make_sync(Body()))(1)
    assert seen == []


# -- hooks and CallFinished -------------------------------------------------------------------


def test_a_raising_hook_never_breaks_the_call(clock: FakeClock) -> None:
    """A hook that raises on every event does not change the call's result."""
    resilience.subscribe(lambda event: 1 / 0)
    body = Body(ConnectionError())
    assert guard("svc.hook", retry=_retry(2))(_make_sync(body))(1) == "item-1"


def test_a_raising_hook_never_replaces_the_callers_exception(clock: FakeClock) -> None:
    """A hook that raises does not replace the exception the caller gets."""
    resilience.subscribe(lambda event: 1 / 0)
    exc = ConnectionError("down")
    with pytest.raises(ConnectionError) as info:
        guard("svc.hook", retry=_retry(1))(_make_sync(Body(exc)))(1)
    assert info.value is exc


def test_quick_clean_call_emits_no_call_finished(clock: FakeClock, events: list[object]) -> None:
    """A fast call in which nothing happened emits no events at all."""
    guard("svc.fin", retry=_retry())(_make_sync(Body()))(1)
    assert events == []


def test_call_with_a_retry_emits_call_finished(clock: FakeClock, events: list[object]) -> None:
    """A call that needed a retry ends with CallFinished(success, attempts=2)."""
    guard("svc.fin", retry=_retry())(_make_sync(Body(ConnectionError())))(1)
    finished = [(e.outcome, e.attempts, e.exception) for e in events if isinstance(e, CallFinished)]
    assert finished == [("success", 2, None)]


def test_slow_call_emits_call_finished(clock: FakeClock, events: list[object]) -> None:
    """A call slower than settings.slow_call emits CallFinished with its duration."""
    resilience.configure(slow_call=1.0)

    def slow(item_id: int) -> str:
        clock.advance(2.5)
        return "done"

    guard("svc.fin")(slow)(1)
    assert [(e.outcome, e.duration) for e in events if isinstance(e, CallFinished)] == [("success", 2.5)]


def test_call_under_slow_call_threshold_emits_nothing(clock: FakeClock, events: list[object]) -> None:
    """A call faster than settings.slow_call in which nothing happened emits nothing."""
    resilience.configure(slow_call=5.0)

    def fairly_slow(item_id: int) -> str:
        clock.advance(2.5)
        return "done"

    guard("svc.fin")(fairly_slow)(1)
    assert events == []


def test_failed_call_emits_call_finished_with_error(clock: FakeClock, events: list[object]) -> None:
    """A call that fails ends with one CallFinished(error) carrying the exception and attempts."""
    exc = ConnectionError("down")
    with pytest.raises(ConnectionError):
        guard("svc.fin", retry=_retry(2))(_make_sync(Body(ConnectionError(), exc)))(1)
    finished = [(e.outcome, e.exception, e.attempts) for e in events if isinstance(e, CallFinished)]
    assert finished == [("error", exc, 2)]


def test_fallback_call_emits_call_finished_with_fallback(clock: FakeClock, events: list[object]) -> None:
    """A call answered by its fallback ends with CallFinished(fallback)."""
    guard("svc.fin", fallback=lambda e: "cached")(_make_sync(Body(ConnectionError())))(1)
    assert [e.outcome for e in events if isinstance(e, CallFinished)] == ["fallback"]


# -- configuration ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs",
    [
        {"name": ""},
        {"name": 5},
        {"retry": 3},
        {"retry": fixed(1)},
        {"circuit": "catalog"},
        {"bulkhead": 4},
        {"deadline": 0},
        {"deadline": -1.0},
        {"deadline": float("nan")},
        {"deadline": float("inf")},
        {"deadline": True},
        {"deadline": "2"},
        {"attempt_timeout": 0},
        {"attempt_timeout": float("inf")},
        {"attempt_timeout": "1"},
        {"fallback": "cached"},
        {"fallback_on": "always"},
        {"fallback_on": None},
        {"validate": 42},
    ],
    ids=lambda kw: f"{next(iter(kw))}={next(iter(kw.values()))!r}",
)
def test_bad_guard_arguments_raise_configuration_error(kwargs: dict[str, Any]) -> None:
    """guard() and Policy() reject every wrongly typed or out-of-range argument at once."""
    name = kwargs.pop("name", "svc.cfg")
    with pytest.raises(ConfigurationError):
        guard(name, **kwargs)
    with pytest.raises(ConfigurationError):
        Policy(name, **kwargs)


def test_configuration_error_is_a_type_error() -> None:
    """ConfigurationError is also a TypeError (a usage mistake, like passing the wrong type)."""
    with pytest.raises(TypeError):
        guard("svc.cfg", retry=3)  # type: ignore[arg-type]
