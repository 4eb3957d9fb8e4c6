"""The resilience exception tree.

::

    Exception
     └── ResilienceError                      root of everything raised by this package
          ├── ConfigurationError (TypeError)   a usage mistake: fix the code, never retried
          ├── CircuitOpenError                 runtime: the circuit rejected the call
          │                                     .circuit, .retry_after
          ├── DeadlineExceeded (TimeoutError)  runtime: the time budget ran out
          │                                     .budget, .site
          ├── BulkheadFull                     runtime: too many calls in flight
          │                                     .bulkhead, .max_concurrent
          └── ValidationFailed (ValueError)    runtime: input rejected by a schema
                                                .errors: list of {field, message, type}

When retries run out, the caller gets the *original* exception, not a wrapper;
the number of attempts is attached as ``exc.__shockproof_attempts__`` and read
with :func:`attempts_of`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TypedDict

ATTEMPTS_ATTR = "__shockproof_attempts__"


class FieldError(TypedDict):
    """One invalid field: where, what is wrong, and a machine-readable type."""

    field: str
    message: str
    type: str


class ResilienceError(Exception):
    """Root of every exception this package raises."""


class ConfigurationError(ResilienceError, TypeError):
    """A policy was built wrongly (a usage mistake, never a runtime outcome)."""


class CircuitOpenError(ResilienceError):
    """The circuit is open (or half-open and out of probes): the call was not made."""

    def __init__(self, circuit: str, retry_after: float, state: str = "open") -> None:
        super().__init__(f"circuit {circuit!r} is {state}; retry after {retry_after:.3g}s")
        self.circuit = circuit
        self.retry_after = retry_after
        self.state = state

    def __reduce__(self) -> tuple[type[CircuitOpenError], tuple[str, float, str]]:
        return (type(self), (self.circuit, self.retry_after, self.state))


class DeadlineExceeded(ResilienceError, TimeoutError):
    """The time budget for the call ran out."""

    def __init__(self, budget: float, site: str = "") -> None:
        where = f" in {site!r}" if site else ""
        super().__init__(f"deadline of {budget:.3g}s exceeded{where}")
        self.budget = budget
        self.site = site

    def __reduce__(self) -> tuple[type[DeadlineExceeded], tuple[float, str]]:
        return (type(self), (self.budget, self.site))


class BulkheadFull(ResilienceError):
    """The bulkhead had no free slot within its wait time."""

    def __init__(self, bulkhead: str, max_concurrent: int) -> None:
        super().__init__(f"bulkhead {bulkhead!r} is full ({max_concurrent} in flight)")
        self.bulkhead = bulkhead
        self.max_concurrent = max_concurrent

    def __reduce__(self) -> tuple[type[BulkheadFull], tuple[str, int]]:
        return (type(self), (self.bulkhead, self.max_concurrent))


class ValidationFailed(ResilienceError, ValueError):
    """Input was rejected; ``errors`` lists every invalid field."""

    def __init__(self, errors: Sequence[FieldError], title: str = "validation failed") -> None:
        fields = ", ".join(e["field"] for e in errors) or "input"
        super().__init__(f"{title}: {fields}")
        self.errors: list[FieldError] = list(errors)
        self.title = title

    def __reduce__(self) -> tuple[type[ValidationFailed], tuple[list[FieldError], str]]:
        return (type(self), (self.errors, self.title))

    @classmethod
    def from_mapping(cls, errors: Mapping[str, str]) -> ValidationFailed:
        """Build from ``{field: message}`` with type ``value_error``."""
        return cls([FieldError(field=f, message=m, type="value_error") for f, m in errors.items()])


def attempts_of(exc: BaseException) -> int:
    """How many attempts were made before ``exc`` reached the caller (1 if unknown)."""
    value = getattr(exc, ATTEMPTS_ATTR, 1)
    return value if isinstance(value, int) else 1


def _attach_attempts(exc: BaseException, attempts: int) -> None:
    try:
        setattr(exc, ATTEMPTS_ATTR, attempts)
    except (AttributeError, TypeError):  # exceptions with __slots__ and no __dict__
        pass
