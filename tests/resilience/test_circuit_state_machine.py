"""The circuit (both modes) against a simple model, driven by Hypothesis with a fake clock.

Rules: calls that succeed, fail with a counted (network) error or an uncounted (logic)
error; calls that stay in flight and finish later, in any order; time passing;
force_open() and reset(). The model is the specification, kept deliberately plain.
"""

from __future__ import annotations

import contextlib
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Literal

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from resilience import Circuit, CircuitOpenError, Policy
from resilience.testing import FakeClock, fake_clock

Outcome = Literal["ok", "counted", "uncounted"]
OUTCOMES: tuple[Outcome, ...] = ("ok", "counted", "uncounted")
STEPS = settings(max_examples=400, stateful_step_count=50, deadline=None, database=None,
                 suppress_health_check=[HealthCheck.too_slow])


@dataclass
class Model:
    """What the circuit should do, written as plainly as possible."""

    probes_allowed: int
    success_threshold: int
    open_for: float
    consecutive: int | None = None
    failure_rate: float | None = None
    window: int = 1
    min_calls: int = 1
    stored: str = "closed"
    opened_at: float = 0.0
    failures_in_a_row: int = 0
    outcomes: deque[bool] = field(default_factory=deque)
    probe_successes: int = 0
    period: int = 0  # half-open periods so far
    probes_in_flight: int = 0  # probes of the current period

    def __post_init__(self) -> None:
        self.outcomes = deque(maxlen=self.window)

    def time_left(self, now: float) -> float:
        return self.opened_at + self.open_for - now

    def state(self, now: float) -> str:
        if self.stored == "open" and self.time_left(now) <= 0:
            return "half-open"
        return self.stored

    def admit(self, now: float) -> Literal["call", "probe", "reject"]:
        if self.stored == "closed":
            return "call"
        if self.stored == "open":
            if self.time_left(now) > 0:
                return "reject"
            self.move("half-open", now)
        if self.probes_in_flight >= self.probes_allowed:
            return "reject"
        self.probes_in_flight += 1
        return "probe"

    def finish(self, outcome: Outcome, probe_period: int | None, now: float) -> None:
        current = probe_period is not None and probe_period == self.period
        if current:
            self.probes_in_flight = max(0, self.probes_in_flight - 1)
        if outcome == "uncounted":
            return
        if self.stored == "half-open" and current:
            self.finish_probe(outcome == "counted", now)
        elif self.stored == "closed":
            self.finish_closed(outcome == "counted", now)

    def finish_probe(self, failed: bool, now: float) -> None:
        if failed:
            self.move("open", now)
            return
        self.probe_successes += 1
        if self.probe_successes >= self.success_threshold:
            self.move("closed", now)

    def finish_closed(self, failed: bool, now: float) -> None:
        if self.consecutive is not None:
            self.failures_in_a_row = self.failures_in_a_row + 1 if failed else 0
            if self.failures_in_a_row >= self.consecutive:
                self.move("open", now)
            return
        self.outcomes.append(failed)
        rate = self.failure_rate or 0.0
        calls = len(self.outcomes)
        if failed and calls >= self.min_calls and sum(self.outcomes) / calls >= rate:
            self.move("open", now)

    def move(self, new: str, now: float) -> None:
        if new == "open":
            self.opened_at = now
        if new == "half-open":
            self.period += 1
            self.probes_in_flight = 0
        if new == "closed":
            self.failures_in_a_row = 0
        self.stored = new
        self.outcomes.clear()
        self.probe_successes = 0

    def force(self, new: str, now: float) -> None:
        self.move(new, now)
        self.failures_in_a_row = 0


@dataclass
class InFlight:
    token: int  # what Circuit.acquire() returned
    probe_period: int | None  # the model's half-open period if it was admitted as a probe


class Upstream:
    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, outcome: Outcome) -> str:
        self.calls += 1
        if outcome == "counted":
            raise ConnectionError("upstream down")
        if outcome == "uncounted":
            raise ZeroDivisionError("a bug, not an outage")
        return "ok"


def _error(outcome: Outcome) -> BaseException:
    return ConnectionError("down") if outcome == "counted" else ZeroDivisionError("bug")


class CircuitMachine(RuleBasedStateMachine):
    """Shared rules; subclasses pick the mode in their ``initialize`` rule."""

    def __init__(self) -> None:
        super().__init__()
        self._stack = contextlib.ExitStack()
        self.clock: FakeClock = self._stack.enter_context(fake_clock())
        self.upstream = Upstream()
        self.in_flight: list[InFlight] = []
        self.model: Model
        self.circuit: Circuit
        self.policy: Policy

    def start(self, model: Model, **mode: Any) -> None:
        self.model = model
        self.circuit = Circuit("machine", open_for=model.open_for, half_open_probes=model.probes_allowed,
                               success_threshold=model.success_threshold, **mode)
        self.policy = Policy("machine.site", circuit=self.circuit)

    def teardown(self) -> None:
        self._stack.close()

    @property
    def now(self) -> float:
        return self.clock.time()

    # -- rules --------------------------------------------------------------------------

    @rule(outcome=st.sampled_from(OUTCOMES))
    def call(self, outcome: Outcome) -> None:
        """A guarded call that finishes at once."""
        calls_before = self.upstream.calls
        state_before = self.model.state(self.now)
        expected = self.model.admit(self.now)
        result = self._outcome_of(outcome)
        if isinstance(result, CircuitOpenError):
            assert expected == "reject", f"rejected, but the model says {expected}"
            assert self.upstream.calls == calls_before, "a rejected call ran the function"
            assert result.state == state_before
            return
        if outcome == "ok":
            assert result == "ok"
        else:
            assert type(result) is type(_error(outcome))
        assert expected != "reject", "the circuit admitted a call the model rejects"
        assert self.upstream.calls == calls_before + 1
        self.model.finish(outcome, self.model.period if expected == "probe" else None, self.now)

    def _outcome_of(self, outcome: Outcome) -> object:
        try:
            return self.policy.call(self.upstream, outcome)
        except Exception as exc:
            return exc

    @rule()
    def start_in_flight(self) -> None:
        """A call (a probe when half-open) is admitted and stays in flight."""
        expected = self.model.admit(self.now)
        try:
            token = self.circuit.acquire()
        except CircuitOpenError:
            assert expected == "reject", f"rejected, but the model says {expected}"
            return
        assert expected != "reject", "the circuit admitted a call the model rejects"
        assert bool(token) == (expected == "probe"), f"token {token!r}, model says {expected}"
        period = self.model.period if expected == "probe" else None
        self.in_flight.append(InFlight(token, period))

    @precondition(lambda self: bool(self.in_flight))
    @rule(which=st.integers(min_value=0, max_value=7), outcome=st.sampled_from(OUTCOMES))
    def finish_in_flight(self, which: int, outcome: Outcome) -> None:
        """One call in flight finishes, in any order."""
        call = self.in_flight.pop(which % len(self.in_flight))
        if outcome == "ok":
            self.circuit.record_success(call.token)
        else:
            self.circuit.record_failure(_error(outcome), call.token)
        self.model.finish(outcome, call.probe_period, self.now)

    @rule(seconds=st.sampled_from([0.25, 0.5, 1.0, 2.5]))
    def advance(self, seconds: float) -> None:
        """Some time passes."""
        self.clock.advance(seconds)

    @precondition(lambda self: self.model.stored == "open" and self.model.time_left(self.now) > 0)
    @rule()
    def wait_out_open_time(self) -> None:
        """Exactly the open time left passes: the circuit is due to go half-open."""
        self.clock.advance(self.model.time_left(self.now))

    @rule()
    def force_open(self) -> None:
        """An operator opens the circuit."""
        self.circuit.force_open()
        self.model.force("open", self.now)

    @rule()
    def reset(self) -> None:
        """An operator closes the circuit."""
        self.circuit.reset()
        self.model.force("closed", self.now)

    # -- invariants ---------------------------------------------------------------------

    @invariant()
    def state_matches_the_model(self) -> None:
        assert self.circuit.state == self.model.state(self.now)

    @invariant()
    def retry_after_is_the_open_time_left(self) -> None:
        expected = max(0.0, self.model.time_left(self.now)) if self.model.stored == "open" else 0.0
        assert self.circuit.retry_after == expected

    @invariant()
    def half_open_admits_at_most_n_probes(self) -> None:
        current = [c for c in self.in_flight
                   if c.token and c.probe_period == self.model.period and self.model.stored == "half-open"]
        assert len(current) <= self.model.probes_allowed


probes = st.integers(min_value=1, max_value=3)
thresholds = st.integers(min_value=1, max_value=3)
open_fors = st.sampled_from([1.0, 2.0])


class ConsecutiveMachine(CircuitMachine):
    """Consecutive-failure mode, pybreaker's model."""

    @initialize(n=st.integers(min_value=1, max_value=4), probes=probes, threshold=thresholds,
                open_for=open_fors)
    def configure(self, n: int, probes: int, threshold: int, open_for: float) -> None:
        self.start(Model(probes, threshold, open_for, consecutive=n), consecutive=n)


class RateMachine(CircuitMachine):
    """Failure-rate mode over a sliding window with a minimum number of calls."""

    @initialize(window=st.integers(min_value=1, max_value=6), data=st.data(), probes=probes,
                threshold=thresholds, open_for=open_fors,
                rate=st.sampled_from([0.25, 0.5, 0.6, 0.75, 1.0]))
    def configure(self, window: int, data: st.DataObject, probes: int, threshold: int,
                  open_for: float, rate: float) -> None:
        min_calls = data.draw(st.integers(min_value=1, max_value=window), label="min_calls")
        model = Model(probes, threshold, open_for, failure_rate=rate, window=window, min_calls=min_calls)
        self.start(model, failure_rate=rate, window=window, min_calls=min_calls)


TestConsecutiveCircuitAgainstModel = ConsecutiveMachine.TestCase
TestConsecutiveCircuitAgainstModel.settings = STEPS
TestRateCircuitAgainstModel = RateMachine.TestCase
TestRateCircuitAgainstModel.settings = STEPS
