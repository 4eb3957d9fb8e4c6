"""Backoff strategies: bounds, doubling, fixed waits, composition with +, plain callables."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from resilience import ConfigurationError, Policy, Retry, exponential, fixed, none
from resilience.testing import fake_clock

_INITIAL = st.floats(min_value=1e-6, max_value=1e3, allow_nan=False, allow_infinity=False)
_CAP = st.floats(min_value=1e-6, max_value=1e4, allow_nan=False, allow_infinity=False)
_ATTEMPT = st.integers(min_value=1, max_value=100_000)


@settings(max_examples=200, deadline=None)
@given(initial=_INITIAL, cap=_CAP, attempt=_ATTEMPT, jitter=st.booleans())
def test_exponential_stays_within_zero_and_cap(initial: float, cap: float, attempt: int,
                                               jitter: bool) -> None:
    """For any attempt number, exponential backoff (jittered or not) is within [0, cap]."""
    wait = exponential(initial, cap=cap, jitter=jitter)(attempt)
    assert 0.0 <= wait <= cap


@settings(max_examples=100, deadline=None)
@given(initial=_INITIAL, cap=_CAP, attempt=st.integers(min_value=1, max_value=60))
def test_exponential_without_jitter_doubles_until_the_cap(initial: float, cap: float,
                                                          attempt: int) -> None:
    """Without jitter, each wait is twice the previous one until the cap holds it."""
    backoff = exponential(initial, cap=cap, jitter=False)
    assert backoff(attempt + 1) == pytest.approx(min(cap, 2 * backoff(attempt)))


def test_exponential_without_jitter_starts_at_initial() -> None:
    """The first wait of non-jittered exponential backoff is ``initial``."""
    assert [exponential(0.5, cap=3.0, jitter=False)(n) for n in range(1, 6)] == [0.5, 1.0, 2.0, 3.0, 3.0]


@settings(max_examples=50, deadline=None)
@given(seconds=st.floats(min_value=0, max_value=1e4, allow_nan=False), attempt=_ATTEMPT)
def test_fixed_waits_the_same_after_every_attempt(seconds: float, attempt: int) -> None:
    """fixed(s) waits s seconds after any attempt."""
    assert fixed(seconds)(attempt) == seconds


def test_none_never_waits() -> None:
    """none() waits zero seconds after every attempt."""
    assert {none()(n) for n in range(1, 50)} == {0.0}


def test_backoffs_add() -> None:
    """backoff + backoff waits the sum of both."""
    combined = fixed(1.0) + exponential(0.5, cap=100, jitter=False)
    assert [combined(n) for n in (1, 2, 3)] == [1.5, 2.0, 3.0]


def test_a_plain_callable_adds_to_a_backoff() -> None:
    """backoff + any ``(attempt) -> seconds`` callable waits the sum of both."""
    combined = fixed(0.25) + (lambda attempt: float(attempt))
    assert [combined(n) for n in (1, 2, 3)] == [1.25, 2.25, 3.25]


@settings(max_examples=50, deadline=None)
@given(a=_CAP, b=_CAP, attempt=_ATTEMPT)
def test_a_sum_of_capped_backoffs_stays_under_the_sum_of_caps(a: float, b: float, attempt: int) -> None:
    """Adding two capped backoffs never waits longer than both caps together."""
    combined = exponential(1.0, cap=a) + exponential(1.0, cap=b, jitter=False)
    assert 0.0 <= combined(attempt) <= a + b


def test_retry_accepts_a_plain_callable_as_backoff() -> None:
    """Retry(backoff=) takes any ``(attempt) -> seconds`` callable and waits what it returns."""
    policy = Policy("plain", retry=Retry(attempts=4, backoff=lambda attempt: 0.5 * attempt, budget=None))

    def down() -> None:
        raise ConnectionError("down")

    with fake_clock() as clock, pytest.raises(ConnectionError):
        policy.call(down)
    assert clock.sleeps == [0.5, 1.0, 1.5]


def test_backoff_repr_names_the_strategy() -> None:
    """A backoff's repr says what it is (it appears in policy.describe())."""
    assert repr(fixed(2) + exponential(0.1, cap=5)) == "fixed(2.0) + exponential(0.1, cap=5.0, jitter=True)"


@pytest.mark.parametrize(
    "make",
    [
        lambda: exponential(0),
        lambda: exponential(-1.0),
        lambda: exponential(0.1, cap=0),
        lambda: exponential(0.1, cap=-5),
        lambda: exponential("0.1"),  # type: ignore[arg-type]
        lambda: exponential(True),
        lambda: fixed(-1),
        lambda: fixed("1"),  # type: ignore[arg-type]
        lambda: Retry(backoff=5),  # type: ignore[arg-type]
    ],
    ids=["zero-initial", "negative-initial", "zero-cap", "negative-cap", "str-initial",
         "bool-initial", "negative-fixed", "str-fixed", "non-callable"],
)
def test_bad_backoff_configuration_is_rejected(make: object) -> None:
    """Non-positive, non-numeric or non-callable backoff settings raise ConfigurationError."""
    with pytest.raises(ConfigurationError):
        make()  # type: ignore[operator]
