"""Retry configuration and the conditions that decide what is retried.

Conditions are tiny callables ``(exc) -> bool`` that combine with ``|`` and ``&``
and negate with ``~``; any plain callable of that shape is accepted too.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

from ._backoff import BackoffLike, exponential
from ._classify import ErrorKind, classify
from ._errors import ConfigurationError

Predicate = Callable[[BaseException], bool]


class Condition:
    """A named predicate on exceptions that composes."""

    __slots__ = ("_fn", "_name")

    def __init__(self, fn: Predicate, name: str) -> None:
        self._fn = fn
        self._name = name

    def __call__(self, exc: BaseException) -> bool:
        return bool(self._fn(exc))

    def __or__(self, other: Predicate) -> Condition:
        return Condition(lambda e: self(e) or bool(other(e)), f"({self!r} | {other!r})")

    def __and__(self, other: Predicate) -> Condition:
        return Condition(lambda e: self(e) and bool(other(e)), f"({self!r} & {other!r})")

    def __invert__(self) -> Condition:
        return Condition(lambda e: not self(e), f"~{self!r}")

    def __repr__(self) -> str:
        return self._name


#: The default: whatever :func:`classify` calls transient (network and transient I/O).
transient = Condition(lambda e: classify(e).transient, "transient")


def on_kinds(*kinds: ErrorKind) -> Condition:
    """True for exceptions of these kinds (transient or not)."""
    wanted = frozenset(kinds)
    return Condition(lambda e: classify(e).kind in wanted, f"on_kinds({', '.join(k.value for k in kinds)})")


def on_types(*types: type[BaseException]) -> Condition:
    """True for instances of these exception types."""
    return Condition(lambda e: isinstance(e, types), f"on_types({', '.join(t.__name__ for t in types)})")


def retry_after_of(exc: BaseException) -> float | None:
    """A server's hint, in seconds, carried on the exception as ``retry_after``."""
    hint = getattr(exc, "retry_after", None)
    if isinstance(hint, int | float) and not isinstance(hint, bool) and math.isfinite(hint) and hint >= 0:
        return float(hint)
    return None


@dataclass(frozen=True, slots=True)
class Retry:
    """How to try again.

    ``attempts`` counts the first call. Waits come from ``backoff`` (full-jitter
    exponential by default) or from a ``retry_after`` hint on the exception when
    that is longer (up to ``max_retry_after``). ``max_time`` bounds the whole
    sequence. ``budget`` is the fraction of calls that may be retried (plus a
    burst of ``budget_burst``); ``None`` turns the budget off.
    """

    attempts: int = 3
    backoff: BackoffLike = field(default_factory=lambda: exponential(0.1, cap=10.0))
    max_time: float | None = None
    on: Predicate = transient
    budget: float | None = 0.2
    budget_burst: int = 10
    max_retry_after: float = 60.0

    def __post_init__(self) -> None:
        if not isinstance(self.attempts, int) or isinstance(self.attempts, bool) or self.attempts < 1:
            raise ConfigurationError(f"Retry(attempts=) must be an int >= 1, got {self.attempts!r}")
        if not callable(self.backoff):
            raise ConfigurationError(f"Retry(backoff=) must be callable, got {self.backoff!r}")
        if not callable(self.on):
            raise ConfigurationError(f"Retry(on=) must be callable, got {self.on!r}")
        if self.max_time is not None and not self.max_time > 0:
            raise ConfigurationError(f"Retry(max_time=) must be positive, got {self.max_time!r}")
        if self.budget is not None and not 0 <= self.budget <= 1:
            raise ConfigurationError(f"Retry(budget=) must be within [0, 1], got {self.budget!r}")
        if self.max_retry_after < 0:
            raise ConfigurationError("Retry(max_retry_after=) must be >= 0")

    def describe(self) -> str:
        parts = [f"attempts={self.attempts}", f"backoff={self.backoff!r}", f"on={self.on!r}"]
        if self.max_time is not None:
            parts.append(f"max_time={self.max_time}")
        if self.budget is not None:
            parts.append(f"budget={self.budget:.0%}+{self.budget_burst}")
        return f"retry({', '.join(parts)})"
