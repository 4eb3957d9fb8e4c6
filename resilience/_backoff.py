"""Backoff strategies: tiny callables ``(attempt) -> seconds`` that add with ``+``.

The exponential and fixed strategies run on tenacity's wait strategies
(``wait_random_exponential`` is AWS's "full jitter"); tenacity is imported here
under a private alias and none of its types appear in a signature. Any plain
callable ``(attempt: int) -> float`` is accepted wherever a backoff is.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import tenacity as _tenacity

from ._errors import ConfigurationError

BackoffLike = Callable[[int], float]


class _State:
    """The two fields of tenacity's RetryCallState that wait strategies read."""

    __slots__ = ("attempt_number", "outcome")

    def __init__(self, attempt_number: int) -> None:
        self.attempt_number = attempt_number
        self.outcome = None


class Backoff:
    """Base class: ``backoff(attempt)`` is the wait after failed attempt ``attempt`` (1-based)."""

    __slots__ = ("_wait", "cap")

    def __init__(self, wait: Any, cap: float) -> None:
        self._wait = wait
        self.cap = cap

    def __call__(self, attempt: int) -> float:
        return min(self.cap, float(self._wait(_State(attempt))))

    def __add__(self, other: BackoffLike) -> Backoff:
        theirs: Any = other._wait if isinstance(other, Backoff) else _Adapter(other)
        cap = self.cap + (other.cap if isinstance(other, Backoff) else float("inf"))
        return _named(Backoff(_tenacity.wait_combine(self._wait, theirs), cap), f"{self!r} + {other!r}")

    def __repr__(self) -> str:
        return getattr(self, "_repr", type(self).__name__)


class _Adapter:
    """Lets a plain ``(attempt) -> seconds`` callable take part in tenacity's ``wait_combine``."""

    __slots__ = ("fn",)

    def __init__(self, fn: BackoffLike) -> None:
        self.fn = fn

    def __call__(self, state: _State) -> float:
        return float(self.fn(state.attempt_number))


class _NamedBackoff(Backoff):
    __slots__ = ("_repr",)

    _repr: str


def _named(backoff: Backoff, text: str) -> Backoff:
    named = _NamedBackoff(backoff._wait, backoff.cap)
    named._repr = text
    return named


def _positive(name: str, value: float, *, allow_zero: bool = True) -> float:
    ok = isinstance(value, int | float) and not isinstance(value, bool) and (
        value >= 0 if allow_zero else value > 0
    )
    if not ok:
        raise ConfigurationError(f"{name} must be a {'non-negative' if allow_zero else 'positive'} number, got {value!r}")
    return float(value)


def exponential(initial: float = 0.1, *, cap: float = 10.0, jitter: bool = True) -> Backoff:
    """``initial * 2**(attempt-1)`` capped at ``cap``; with ``jitter`` a uniform draw below it."""
    base = _positive("initial", initial, allow_zero=False)
    top = _positive("cap", cap, allow_zero=False)
    if jitter:
        wait: Any = _tenacity.wait_random_exponential(multiplier=base, max=top)
    else:
        wait = _tenacity.wait_exponential(multiplier=base, max=top, exp_base=2)
    return _named(Backoff(wait, top), f"exponential({base}, cap={top}, jitter={jitter})")


def fixed(seconds: float) -> Backoff:
    """The same wait after every attempt."""
    value = _positive("seconds", seconds)
    return _named(Backoff(_tenacity.wait_fixed(value), value), f"fixed({value})")


def none() -> Backoff:
    """No wait between attempts."""
    return _named(Backoff(_tenacity.wait_none(), 0.0), "none()")
