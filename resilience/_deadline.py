"""Deadlines: a time budget carried in a contextvar and handed to I/O.

Nothing is ever killed. Code that does I/O reads :func:`remaining` and passes it
as its socket or HTTP timeout; guarded calls check it between attempts. Nested
budgets take the smaller. Async code gets real cancellation via ``asyncio.timeout``.
"""

from __future__ import annotations

import contextvars
import math
from collections.abc import Iterator
from contextlib import contextmanager

from ._config import get_settings
from ._errors import ConfigurationError, DeadlineExceeded

#: Absolute expiry on the settings clock's monotonic scale, and the budget it came from.
_expiry: contextvars.ContextVar[tuple[float, float] | None] = contextvars.ContextVar(
    "shockproof_deadline", default=None
)


def _checked(seconds: float) -> float:
    if not isinstance(seconds, int | float) or isinstance(seconds, bool) or not seconds > 0:
        raise ConfigurationError(f"a deadline needs a positive number of seconds, got {seconds!r}")
    return float(seconds)


@contextmanager
def deadline(seconds: float) -> Iterator[None]:
    """Give the block at most ``seconds``; an enclosing, shorter budget still wins."""
    budget = _checked(seconds)
    token = _expiry.set(_tighter(get_settings().clock.monotonic() + budget, budget))
    try:
        yield
    finally:
        _expiry.reset(token)


def _tighter(expiry: float, budget: float) -> tuple[float, float]:
    outer = _expiry.get()
    if outer is not None and outer[0] <= expiry:
        return outer
    return (expiry, budget)


def remaining() -> float:
    """Seconds left in the current budget (``math.inf`` when there is none, never negative)."""
    current = _expiry.get()
    if current is None:
        return math.inf
    return max(0.0, current[0] - get_settings().clock.monotonic())


def timeout_or(default: float | None) -> float | None:
    """What to pass as an I/O timeout: the smaller of ``default`` and :func:`remaining`."""
    left = remaining()
    if left == math.inf:
        return default
    return left if default is None else min(default, left)


def check(site: str = "") -> None:
    """Raise :class:`DeadlineExceeded` if the current budget is spent."""
    current = _expiry.get()
    if current is not None and current[0] <= get_settings().clock.monotonic():
        raise DeadlineExceeded(current[1], site)


def current_budget() -> float | None:
    """The budget (in seconds) of the innermost deadline in force, if any."""
    current = _expiry.get()
    return None if current is None else current[1]
