"""Retry budgets: retries stay a bounded fraction of calls, so an outage is no retry storm."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from resilience import ConfigurationError, Policy, RetriesExhausted, Retry, RetryBudget, none


class Dependency:
    """Fails ``failures`` times with a network error, then answers."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.runs = 0

    def __call__(self) -> str:
        self.runs += 1
        if self.runs <= self.failures:
            raise ConnectionError("down")
        return "ok"


_EPS = 1e-9  # float rounding of ratio * calls
_RATIO = st.floats(min_value=0.0, max_value=1.0, allow_nan=False)
_BURST = st.integers(min_value=0, max_value=10)


@settings(max_examples=200, deadline=None)
@given(ratio=_RATIO, burst=_BURST, ops=st.lists(st.booleans(), max_size=200))
def test_retries_never_exceed_burst_plus_ratio_of_calls(ratio: float, burst: int, ops: list[bool]) -> None:
    """Under any interleaving of calls and retry requests, granted <= burst + ratio * calls."""
    budget = RetryBudget(ratio, burst)
    calls = granted = 0
    for is_call in ops:
        if is_call:
            budget.record_call()
            calls += 1
        elif budget.try_spend():
            granted += 1
        assert granted <= burst + ratio * calls + _EPS


@settings(max_examples=60, deadline=None)
@given(ratio=_RATIO, burst=_BURST,
       failures=st.lists(st.integers(min_value=0, max_value=6), min_size=1, max_size=40))
def test_guarded_retries_stay_within_the_budget(ratio: float, burst: int, failures: list[int]) -> None:
    """Through a policy, for any per-call failure counts, retries <= burst + ratio * calls."""
    policy = Policy("svc.budget", retry=Retry(attempts=4, backoff=none(), budget=ratio, budget_burst=burst))
    runs = 0
    for count in failures:
        dependency = Dependency(count)
        try:
            policy.call(dependency)
        except ConnectionError:
            pass
        runs += dependency.runs
    retries = runs - len(failures)
    assert retries <= burst + ratio * len(failures) + _EPS


def test_outage_stops_retrying_once_the_budget_is_spent(events: list[object]) -> None:
    """During an outage, after the burst is used, calls fail after one attempt (reason "budget")."""
    runs = 0

    def down() -> None:
        nonlocal runs
        runs += 1
        raise ConnectionError("dependency down")

    policy = Policy("svc.outage", retry=Retry(attempts=3, backoff=none(), budget=0.1, budget_burst=4))
    for _ in range(40):
        with pytest.raises(ConnectionError):
            policy.call(down)
    reasons = [e.reason for e in events if isinstance(e, RetriesExhausted)]
    assert runs - 40 <= 4 + 0.1 * 40
    assert reasons[-10:] == ["budget"] * 10


def test_outage_without_a_budget_retries_every_call() -> None:
    """With budget=None every call of an outage uses all its attempts (the storm a budget prevents)."""
    runs = 0

    def down() -> None:
        nonlocal runs
        runs += 1
        raise ConnectionError("dependency down")

    policy = Policy("svc.storm", retry=Retry(attempts=3, backoff=none(), budget=None))
    for _ in range(40):
        with pytest.raises(ConnectionError):
            policy.call(down)
    assert runs == 120


def test_budget_refills_with_successful_calls() -> None:
    """Calls deposit tokens: after enough calls a spent budget grants a retry again."""
    budget = RetryBudget(ratio=0.5, burst=0)
    assert budget.try_spend() is False
    budget.record_call()
    budget.record_call()
    assert budget.try_spend() is True


def test_budget_balance_is_capped() -> None:
    """A long quiet spell cannot bank more than ``cap`` retries."""
    budget = RetryBudget(ratio=1.0, burst=0, cap=3)
    for _ in range(1000):
        budget.record_call()
    granted = sum(budget.try_spend() for _ in range(10))
    assert (granted, budget.balance) == (3, 0.0)


def test_each_policy_has_its_own_budget() -> None:
    """Spending one policy's budget leaves another policy's untouched."""
    retry = Retry(attempts=2, backoff=none(), budget=0.0, budget_burst=1)
    first, second = Policy("svc.a", retry=retry), Policy("svc.b", retry=retry)
    runs = 0

    def flaky_once() -> str:
        nonlocal runs
        runs += 1
        if runs % 2:
            raise ConnectionError("blip")
        return "ok"

    assert (first.call(flaky_once), second.call(flaky_once), runs) == ("ok", "ok", 4)


@pytest.mark.parametrize(("ratio", "burst"), [(-0.1, 1), (1.5, 1), (0.2, -1)])
def test_bad_budget_configuration_is_rejected(ratio: float, burst: int) -> None:
    """A ratio outside [0, 1] or a negative burst raises ConfigurationError."""
    with pytest.raises(ConfigurationError):
        RetryBudget(ratio, burst)
