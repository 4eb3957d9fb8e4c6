"""Circuit: both modes, half-open probes, control, history, events, registry, configuration."""

from __future__ import annotations

import asyncio
import gc
import inspect
from collections.abc import Callable, Iterator
from typing import Any

import pybreaker
import pydantic
import pytest

from resilience import (
    Circuit,
    CircuitOpenError,
    CircuitStateChanged,
    ConfigurationError,
    Policy,
    StateChange,
    ValidationFailed,
    circuits,
    guard,
    redis_storage,
)
from resilience._circuit import map_pybreaker_error
from resilience.testing import FakeClock, fake_clock

OPEN_FOR = 30.0


class Upstream:
    """A dependency that counts its calls and fails with ``error`` when one is set."""

    def __init__(self) -> None:
        self.calls = 0
        self.error: BaseException | None = None

    def __call__(self) -> str:
        self.calls += 1
        if self.error is not None:
            raise self.error
        return "ok"


class _Signup(pydantic.BaseModel):
    email: str


def _pydantic_error() -> pydantic.ValidationError:
    try:
        _Signup.model_validate({})
    except pydantic.ValidationError as exc:
        return exc
    raise AssertionError("the model accepted an empty payload")


@pytest.fixture
def clock() -> Iterator[FakeClock]:
    with fake_clock() as fake:
        yield fake


@pytest.fixture
def upstream() -> Upstream:
    return Upstream()


def attempt(circuit: Circuit, fn: Callable[[], Any]) -> Any:
    """One call of ``fn`` through a policy with only this circuit; the outcome, raised or returned."""
    try:
        return Policy("test.site", circuit=circuit).call(fn)
    except Exception as exc:
        return exc


def fail(circuit: Circuit, times: int, error: BaseException | None = None) -> None:
    """``times`` calls that fail with ``error`` (a network error by default)."""
    upstream = Upstream()
    upstream.error = error if error is not None else ConnectionError("upstream down")
    for _ in range(times):
        attempt(circuit, upstream)


def succeed(circuit: Circuit, times: int = 1) -> None:
    for _ in range(times):
        assert attempt(circuit, Upstream()) == "ok"


def tripped(clock: FakeClock, **config: Any) -> Circuit:
    """A circuit opened just now by one counted failure."""
    circuit = Circuit("tripped", consecutive=1, open_for=OPEN_FOR, **config)
    fail(circuit, 1)
    assert circuit.state == "open"
    return circuit


def half_open(clock: FakeClock, **config: Any) -> Circuit:
    """A circuit whose open time is up: the next call is a probe."""
    circuit = tripped(clock, **config)
    clock.advance(OPEN_FOR)
    assert circuit.state == "half-open"
    return circuit


# -- consecutive mode --------------------------------------------------------------------


def test_consecutive_mode_stays_closed_below_the_threshold(clock: FakeClock) -> None:
    """N-1 counted failures in a row leave the circuit closed."""
    circuit = Circuit("c", consecutive=3, open_for=OPEN_FOR)
    fail(circuit, 2)
    assert circuit.state == "closed"


def test_consecutive_mode_opens_after_n_counted_failures(clock: FakeClock) -> None:
    """The Nth counted failure in a row opens the circuit."""
    circuit = Circuit("c", consecutive=3, open_for=OPEN_FOR)
    fail(circuit, 3)
    assert circuit.state == "open"


def test_a_success_resets_the_consecutive_count(clock: FakeClock) -> None:
    """Failures separated by a success are not consecutive."""
    circuit = Circuit("c", consecutive=3, open_for=OPEN_FOR)
    fail(circuit, 2)
    succeed(circuit)
    fail(circuit, 2)
    assert circuit.state == "closed"


def test_io_errors_count_as_failures(clock: FakeClock) -> None:
    """File I/O failures count towards opening by default."""
    circuit = Circuit("c", consecutive=2, open_for=OPEN_FOR)
    fail(circuit, 2, FileNotFoundError(2, "gone"))
    assert circuit.state == "open"


@pytest.mark.parametrize(
    "error",
    [ZeroDivisionError("division by zero"), KeyError("missing"),
     ValidationFailed.from_mapping({"email": "required"}), _pydantic_error()],
    ids=["logic", "logic-keyerror", "validation", "pydantic-validation"],
)
def test_logic_and_validation_errors_never_trip_the_circuit(
    clock: FakeClock, upstream: Upstream, error: BaseException
) -> None:
    """Logic and validation errors pass through without counting, however many there are."""
    circuit = Circuit("c", consecutive=2, open_for=OPEN_FOR)
    upstream.error = error
    outcomes = [attempt(circuit, upstream) for _ in range(10)]
    assert circuit.state == "closed"
    assert upstream.calls == 10
    assert all(outcome is error for outcome in outcomes)


def test_uncounted_errors_do_not_break_a_run_of_counted_failures(clock: FakeClock) -> None:
    """An uncounted error between counted failures neither counts nor resets the count."""
    circuit = Circuit("c", consecutive=2, open_for=OPEN_FOR)
    fail(circuit, 1)
    fail(circuit, 1, ZeroDivisionError())
    assert circuit.state == "closed"
    fail(circuit, 1)
    assert circuit.state == "open"


def test_a_custom_counts_predicate_decides_what_trips(clock: FakeClock) -> None:
    """``counts=`` replaces the default: here only KeyError counts."""
    circuit = Circuit("c", consecutive=1, open_for=OPEN_FOR,
                      counts=lambda exc: isinstance(exc, KeyError))
    fail(circuit, 3, ConnectionError())
    assert circuit.state == "closed"
    fail(circuit, 1, KeyError("x"))
    assert circuit.state == "open"


# -- open --------------------------------------------------------------------------------


def test_open_circuit_rejects_without_calling_the_function(clock: FakeClock, upstream: Upstream) -> None:
    """While open, calls fail fast with CircuitOpenError and the function never runs."""
    circuit = tripped(clock)
    outcome = attempt(circuit, upstream)
    assert isinstance(outcome, CircuitOpenError)
    assert upstream.calls == 0


def test_circuit_open_error_names_the_circuit(clock: FakeClock, upstream: Upstream) -> None:
    """The rejection carries the circuit's name and its state."""
    outcome = attempt(tripped(clock), upstream)
    assert isinstance(outcome, CircuitOpenError)
    assert (outcome.circuit, outcome.state) == ("tripped", "open")


def test_retry_after_counts_down_as_the_clock_advances(clock: FakeClock, upstream: Upstream) -> None:
    """The rejection's retry_after is the open time left, shrinking as time passes."""
    circuit = tripped(clock)
    first = attempt(circuit, upstream)
    clock.advance(10)
    second = attempt(circuit, upstream)
    assert isinstance(first, CircuitOpenError)
    assert isinstance(second, CircuitOpenError)
    assert (first.retry_after, second.retry_after) == (OPEN_FOR, OPEN_FOR - 10)


def test_circuit_retry_after_matches_the_open_time_left(clock: FakeClock) -> None:
    """Circuit.retry_after is the open time left, and zero once closed again."""
    circuit = tripped(clock)
    clock.advance(12)
    assert circuit.retry_after == OPEN_FOR - 12
    circuit.reset()
    assert circuit.retry_after == 0.0


def test_open_stays_open_until_open_for_has_elapsed(clock: FakeClock) -> None:
    """A moment before open_for is up the circuit is still open."""
    circuit = tripped(clock)
    clock.advance(OPEN_FOR - 0.5)
    assert circuit.state == "open"


def test_open_turns_half_open_once_open_for_has_elapsed(clock: FakeClock) -> None:
    """When open_for is up the circuit reports half-open."""
    circuit = tripped(clock)
    clock.advance(OPEN_FOR)
    assert circuit.state == "half-open"


# -- half-open ----------------------------------------------------------------------------


def test_half_open_admits_the_first_call_as_a_probe(clock: FakeClock, upstream: Upstream) -> None:
    """The first call after open_for runs (as a probe)."""
    circuit = half_open(clock)
    assert attempt(circuit, upstream) == "ok"
    assert upstream.calls == 1


@pytest.mark.parametrize("probes", [1, 3])
def test_half_open_admits_at_most_n_concurrent_probes(clock: FakeClock, probes: int) -> None:
    """With N probes in flight, the next caller is rejected as half-open."""
    circuit = half_open(clock, half_open_probes=probes)
    admitted = [circuit.acquire() for _ in range(probes)]
    with pytest.raises(CircuitOpenError) as caught:
        circuit.acquire()
    assert all(admitted)
    assert caught.value.state == "half-open"


def test_a_finished_probe_frees_its_slot(clock: FakeClock) -> None:
    """Once an in-flight probe finishes without deciding, another probe is admitted."""
    circuit = half_open(clock, half_open_probes=1, success_threshold=2)
    first = circuit.acquire()
    circuit.record_success(first)
    assert circuit.acquire()


def test_an_uncounted_probe_failure_frees_its_slot_without_deciding(clock: FakeClock) -> None:
    """A probe that fails with a logic error neither closes nor reopens; its slot is free again."""
    circuit = half_open(clock, half_open_probes=1)
    probe = circuit.acquire()
    circuit.record_failure(ZeroDivisionError(), probe)
    assert circuit.state == "half-open"
    assert circuit.acquire()


def test_half_open_closes_after_success_threshold_probe_successes(clock: FakeClock) -> None:
    """success_threshold probe successes close the circuit, not one fewer."""
    circuit = half_open(clock, half_open_probes=1, success_threshold=3)
    succeed(circuit, 2)
    assert circuit.state == "half-open"
    succeed(circuit)
    assert circuit.state == "closed"


def test_success_threshold_defaults_to_the_number_of_probes(clock: FakeClock) -> None:
    """Without success_threshold, every one of the N probes must succeed."""
    circuit = half_open(clock, half_open_probes=2)
    succeed(circuit)
    assert circuit.state == "half-open"
    succeed(circuit)
    assert circuit.state == "closed"


def test_a_probe_failure_reopens_the_circuit(clock: FakeClock) -> None:
    """One counted probe failure opens the circuit again, for a full open_for."""
    circuit = half_open(clock, half_open_probes=2)
    succeed(circuit)
    fail(circuit, 1)
    assert circuit.state == "open"
    assert circuit.retry_after == OPEN_FOR


def test_a_stale_probe_does_not_decide_a_later_half_open(clock: FakeClock) -> None:
    """A probe admitted before the circuit reopened cannot close the next half-open period."""
    circuit = half_open(clock, half_open_probes=1)
    stale = circuit.acquire()
    circuit.force_open()
    clock.advance(OPEN_FOR)
    current = circuit.acquire()
    circuit.record_success(stale)
    assert circuit.state == "half-open"
    circuit.record_success(current)
    assert circuit.state == "closed"


def test_a_stale_probe_does_not_free_a_current_probe_slot(clock: FakeClock) -> None:
    """A stale probe finishing does not let more than N probes into the current period."""
    circuit = half_open(clock, half_open_probes=1)
    stale = circuit.acquire()
    circuit.force_open()
    clock.advance(OPEN_FOR)
    assert circuit.acquire()
    circuit.record_failure(ZeroDivisionError(), stale)
    with pytest.raises(CircuitOpenError):
        circuit.acquire()


# -- failure-rate mode -----------------------------------------------------------------------


def rate_circuit(**config: Any) -> Circuit:
    defaults: dict[str, Any] = {"failure_rate": 0.5, "window": 4, "min_calls": 4, "open_for": OPEN_FOR}
    return Circuit("rate", **{**defaults, **config})


def test_failure_rate_mode_needs_min_calls_before_it_can_open(clock: FakeClock) -> None:
    """Fewer than min_calls outcomes never open it, even when all of them failed."""
    circuit = rate_circuit(min_calls=4)
    fail(circuit, 3)
    assert circuit.state == "closed"


def test_failure_rate_mode_opens_when_the_rate_reaches_the_threshold(clock: FakeClock) -> None:
    """With min_calls reached, a failure rate equal to the threshold opens it."""
    circuit = rate_circuit(failure_rate=0.5, window=4, min_calls=4)
    succeed(circuit, 2)
    fail(circuit, 1)
    assert circuit.state == "closed"
    fail(circuit, 1)
    assert circuit.state == "open"


def test_failure_rate_mode_stays_closed_below_the_threshold(clock: FakeClock) -> None:
    """A full window whose failure share is under the threshold keeps it closed."""
    circuit = rate_circuit(failure_rate=0.5, window=4, min_calls=4)
    for _ in range(3):
        succeed(circuit, 3)
        fail(circuit, 1)
    assert circuit.state == "closed"
    assert circuit.failure_rate == 0.25


def test_old_outcomes_slide_out_of_the_window(clock: FakeClock) -> None:
    """Only the last ``window`` calls count: older failures no longer weigh."""
    circuit = rate_circuit(failure_rate=0.75, window=4, min_calls=4)
    fail(circuit, 2)
    succeed(circuit, 4)
    assert circuit.failure_rate == 0.0
    fail(circuit, 2)
    assert circuit.state == "closed"
    assert circuit.failure_rate == 0.5


def test_failure_rate_mode_does_not_count_logic_errors(clock: FakeClock) -> None:
    """Logic errors never enter the window."""
    circuit = rate_circuit(failure_rate=0.5, window=4, min_calls=1)
    succeed(circuit)
    fail(circuit, 5, ZeroDivisionError())
    assert circuit.state == "closed"
    assert circuit.failure_rate == 0.0


def test_failure_rate_mode_starts_a_fresh_window_after_closing(clock: FakeClock) -> None:
    """After half-open closes it, min_calls outcomes are needed again before it can open."""
    circuit = rate_circuit(failure_rate=0.5, window=4, min_calls=3)
    fail(circuit, 3)
    clock.advance(OPEN_FOR)
    succeed(circuit)
    assert circuit.state == "closed"
    fail(circuit, 1)
    assert circuit.state == "closed"


# -- control ---------------------------------------------------------------------------------


def test_force_open_rejects_calls_until_reset(clock: FakeClock, upstream: Upstream) -> None:
    """force_open() takes the dependency out of rotation; reset() puts it back."""
    circuit = Circuit("c", consecutive=5, open_for=OPEN_FOR)
    circuit.force_open()
    rejected = attempt(circuit, upstream)
    circuit.reset()
    assert isinstance(rejected, CircuitOpenError)
    assert attempt(circuit, upstream) == "ok"
    assert upstream.calls == 1


def test_reset_forgets_recent_failures(clock: FakeClock) -> None:
    """After reset(), the consecutive count starts from zero again."""
    circuit = Circuit("c", consecutive=3, open_for=OPEN_FOR)
    fail(circuit, 2)
    circuit.reset()
    fail(circuit, 2)
    assert circuit.state == "closed"


def test_reset_forgets_the_failure_rate_window(clock: FakeClock) -> None:
    """After reset(), a rate-mode circuit has an empty window."""
    circuit = rate_circuit()
    fail(circuit, 3)
    circuit.reset()
    assert circuit.failure_rate is None
    fail(circuit, 3)
    assert circuit.state == "closed"


# -- history and events ----------------------------------------------------------------------


def test_history_records_each_transition_with_its_time(clock: FakeClock) -> None:
    """closed -> open -> half-open -> closed, each stamped with the clock's time."""
    start = clock.time()
    circuit = tripped(clock)
    clock.advance(OPEN_FOR)
    succeed(circuit)
    assert list(circuit.history) == [
        StateChange(start, "closed", "open", None),
        StateChange(start + OPEN_FOR, "open", "half-open", None),
        StateChange(start + OPEN_FOR, "half-open", "closed", None),
    ]


def test_history_records_the_failure_rate_that_opened_the_circuit(clock: FakeClock) -> None:
    """A rate-mode opening is recorded with the failure rate that tripped it."""
    circuit = rate_circuit(failure_rate=0.5, window=4, min_calls=4)
    succeed(circuit, 2)
    fail(circuit, 2)
    assert circuit.history[-1].new == "open"
    assert circuit.history[-1].failure_rate == 0.5


def test_history_is_bounded(clock: FakeClock) -> None:
    """Only the last ``history`` transitions are kept."""
    circuit = Circuit("c", consecutive=1, open_for=OPEN_FOR, history=3)
    for _ in range(4):
        circuit.force_open()
        circuit.reset()
    assert len(circuit.history) == 3
    assert circuit.history[-1].new == "closed"


def test_resetting_a_closed_circuit_records_no_transition(clock: FakeClock, events: list[object]) -> None:
    """reset() on a closed circuit changes nothing, so it records and emits nothing."""
    circuit = Circuit("c", consecutive=1, open_for=OPEN_FOR)
    circuit.reset()
    assert list(circuit.history) == []
    assert [e for e in events if isinstance(e, CircuitStateChanged)] == []


def test_state_changes_are_emitted_as_events(clock: FakeClock, events: list[object]) -> None:
    """Every transition reaches subscribers as a CircuitStateChanged event."""
    circuit = tripped(clock)
    clock.advance(OPEN_FOR)
    fail(circuit, 1)
    changes = [e for e in events if isinstance(e, CircuitStateChanged)]
    assert [(e.circuit, e.old, e.new) for e in changes] == [
        ("tripped", "closed", "open"), ("tripped", "open", "half-open"), ("tripped", "half-open", "open"),
    ]


def test_rate_mode_events_carry_the_failure_rate(clock: FakeClock, events: list[object]) -> None:
    """The event for a rate-mode opening carries the rate that tripped it."""
    circuit = rate_circuit(failure_rate=0.5, window=4, min_calls=2)
    succeed(circuit)
    fail(circuit, 1)
    changes = [e for e in events if isinstance(e, CircuitStateChanged)]
    assert [(e.new, e.failure_rate) for e in changes] == [("open", 0.5)]


# -- registry, description, configuration -----------------------------------------------------


def test_circuits_lists_live_circuits_by_name() -> None:
    """circuits() maps each live circuit's name to the circuit."""
    catalog = Circuit("registry.catalog")
    storage = Circuit("registry.storage", failure_rate=0.5)
    found = circuits()
    assert found["registry.catalog"] is catalog
    assert found["registry.storage"] is storage


def test_circuits_forgets_circuits_nobody_holds() -> None:
    """A circuit that was garbage-collected drops out of circuits()."""
    Circuit("registry.gone")
    gc.collect()
    assert "registry.gone" not in circuits()


def test_describe_names_the_mode_and_its_settings() -> None:
    """describe() says which mode, thresholds and open time are in force."""
    rate = Circuit("d", failure_rate=0.5, window=20, min_calls=10, open_for=30, half_open_probes=2)
    assert rate.describe() == (
        "circuit('d', failure_rate=0.5, window=20, min_calls=10, open_for=30.0, probes=2)")
    assert Circuit("e", consecutive=5).describe() == "circuit('e', consecutive=5, open_for=30.0, probes=1)"


@pytest.mark.parametrize(
    "config",
    [
        {"name": ""},
        {"consecutive": 3, "failure_rate": 0.5},
        {"consecutive": 0},
        {"failure_rate": 0.0},
        {"failure_rate": 1.5},
        {"failure_rate": 0.5, "window": 0},
        {"failure_rate": 0.5, "min_calls": 0},
        {"failure_rate": 0.5, "window": 5, "min_calls": 6},
        {"open_for": 0},
        {"open_for": -1},
        {"half_open_probes": 0},
        {"success_threshold": 0},
        {"success_threshold": -1},
    ],
    ids=lambda config: ",".join(f"{k}={v!r}" for k, v in config.items()),
)
def test_bad_configuration_raises_configuration_error(config: dict[str, Any]) -> None:
    """Impossible settings are refused when the circuit is built."""
    kwargs = {"name": "bad", **config}
    with pytest.raises(ConfigurationError):
        Circuit(**kwargs)


@pytest.mark.parametrize("url", ["localhost:6379", "http://127.0.0.1:6379", ""])
def test_redis_storage_needs_a_redis_url(url: str) -> None:
    """redis_storage() refuses anything but a redis://, rediss:// or unix:// URL."""
    with pytest.raises(ConfigurationError):
        redis_storage(url)


# -- with guard() ------------------------------------------------------------------------------


def test_guard_fallback_serves_while_the_circuit_is_open(clock: FakeClock, upstream: Upstream) -> None:
    """With a fallback, an open circuit answers from it, without calling the function."""
    seen: list[BaseException] = []

    def cached(exc: BaseException) -> str:
        seen.append(exc)
        return "cached"

    circuit = tripped(clock)
    fetch = guard("catalog.fetch", circuit=circuit, fallback=cached)(upstream)
    assert fetch() == "cached"
    assert upstream.calls == 0
    assert isinstance(seen[0], CircuitOpenError)


def test_guard_async_call_is_rejected_while_open(clock: FakeClock) -> None:
    """Async guarded functions are rejected by an open circuit too, without running."""
    ran: list[int] = []

    async def fetch() -> str:
        ran.append(1)
        return "ok"

    guarded = guard("catalog.afetch", circuit=tripped(clock))(fetch)
    with pytest.raises(CircuitOpenError):
        asyncio.run(guarded())
    assert ran == []


# -- the pybreaker boundary ----------------------------------------------------------------------


def pybreaker_exceptions() -> list[type[BaseException]]:
    """Every exception class pybreaker itself defines."""
    return [cls for _, cls in inspect.getmembers(pybreaker, inspect.isclass)
            if issubclass(cls, BaseException) and cls.__module__ == pybreaker.__name__]


def test_every_pybreaker_exception_maps_to_circuit_open_error() -> None:
    """map_pybreaker_error turns each exception pybreaker defines into CircuitOpenError."""
    found = pybreaker_exceptions()
    unmapped = [cls.__name__ for cls in found
                if not isinstance(map_pybreaker_error(cls("boom"), "c", 2.0), CircuitOpenError)]
    assert found, "pybreaker defines no exceptions? the enumeration is broken"
    assert unmapped == []


def test_mapped_pybreaker_error_carries_circuit_and_retry_after() -> None:
    """The mapped error names our circuit and the time left."""
    mapped = map_pybreaker_error(pybreaker.CircuitBreakerError("open"), "catalog", 2.5)
    assert isinstance(mapped, CircuitOpenError)
    assert (mapped.circuit, mapped.retry_after) == ("catalog", 2.5)


def test_other_exceptions_pass_through_the_mapping_unchanged() -> None:
    """Exceptions that are not pybreaker's are returned as they are."""
    original = ConnectionError("down")
    assert map_pybreaker_error(original, "c", 1.0) is original
