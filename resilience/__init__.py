"""Shockproof's resilience layer: classify errors, guard calls, emit events.

Pure library: it knows nothing of telemetry or fault injection. They subscribe
to its events (:func:`subscribe`) and intercept its attempts (:func:`add_interceptor`).
See ``resilience/README.md`` for the rules of the package.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError as _PackageNotFoundError
from importlib.metadata import version as _version

from ._backoff import Backoff, exponential, fixed, none
from ._budget import RetryBudget
from ._bulkhead import Bulkhead
from ._circuit import Circuit, RedisStorage, StateChange, circuits, counts_by_default, redis_storage
from ._classify import Classification, ErrorKind, classify, register, register_rule, unregister
from ._clock import Clock, SystemClock
from ._config import Settings, configure, get_settings, reset
from ._deadline import check as check_deadline
from ._deadline import current_budget, deadline, remaining, timeout_or
from ._errors import (
    BulkheadFull,
    CircuitOpenError,
    ConfigurationError,
    DeadlineExceeded,
    FieldError,
    ResilienceError,
    ValidationFailed,
    attempts_of,
)
from ._events import (
    AttemptFailed,
    AttemptInfo,
    CallFinished,
    CallInfo,
    CallRejected,
    CircuitStateChanged,
    DeadlineExpired,
    Event,
    FallbackUsed,
    FaultInjected,
    RetriesExhausted,
    RetryScheduled,
    SitePredicate,
    ValidationRejected,
    add_interceptor,
    emit,
    has_subscribers,
    refresh_interceptors,
    remove_interceptor,
    subscribe,
    unsubscribe,
)
from ._policy import Policy, guard, handled_by_fallback, policy_of
from ._retry import Condition, Retry, on_kinds, on_types, retry_after_of, transient
from ._validate import field_errors

try:
    __version__ = _version("shockproof")
except _PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0+unknown"

__all__ = [
    "AttemptFailed",
    "AttemptInfo",
    "Backoff",
    "Bulkhead",
    "BulkheadFull",
    "CallFinished",
    "CallInfo",
    "CallRejected",
    "Circuit",
    "CircuitOpenError",
    "CircuitStateChanged",
    "Classification",
    "Clock",
    "Condition",
    "ConfigurationError",
    "DeadlineExceeded",
    "DeadlineExpired",
    "ErrorKind",
    "Event",
    "FallbackUsed",
    "FaultInjected",
    "FieldError",
    "Policy",
    "RedisStorage",
    "ResilienceError",
    "RetriesExhausted",
    "Retry",
    "RetryBudget",
    "RetryScheduled",
    "Settings",
    "SitePredicate",
    "StateChange",
    "SystemClock",
    "ValidationFailed",
    "ValidationRejected",
    "__version__",
    "add_interceptor",
    "attempts_of",
    "check_deadline",
    "circuits",
    "classify",
    "configure",
    "counts_by_default",
    "current_budget",
    "deadline",
    "emit",
    "exponential",
    "field_errors",
    "fixed",
    "get_settings",
    "guard",
    "handled_by_fallback",
    "has_subscribers",
    "none",
    "on_kinds",
    "on_types",
    "policy_of",
    "redis_storage",
    "refresh_interceptors",
    "register",
    "register_rule",
    "remaining",
    "remove_interceptor",
    "reset",
    "retry_after_of",
    "subscribe",
    "timeout_or",
    "transient",
    "unregister",
    "unsubscribe",
]
