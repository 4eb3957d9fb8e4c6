"""Events out, interceptors in.

``resilience`` never imports telemetry or fault injection; they register here.

* **Hooks** (:func:`subscribe`) receive one frozen event object each. Events are
  built only when at least one hook is subscribed, and a hook that raises is
  counted and logged, never propagated into the guarded call.
* **Interceptors** (:func:`add_interceptor`) run before every attempt of every
  guarded call. They may raise (that attempt fails with their exception, which
  is how faults are injected) or return a delay in seconds that the policy waits
  through its clock before the attempt (injected latency, sync or async alike).
"""

from __future__ import annotations

import itertools
import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from ._classify import ErrorKind
from ._errors import FieldError

_log = logging.getLogger("resilience")


@dataclass(frozen=True, slots=True)
class CallInfo:
    """One guarded call: which site, which call, and when it started (wall clock)."""

    site: str
    call_id: int
    started_ns: int


@dataclass(frozen=True, slots=True)
class AttemptInfo:
    """What an interceptor is told before an attempt."""

    site: str
    attempt: int
    call: CallInfo


@dataclass(frozen=True, slots=True)
class AttemptFailed:
    """An attempt raised."""

    call: CallInfo
    attempt: int
    exception: BaseException
    kind: ErrorKind
    transient: bool
    duration: float


@dataclass(frozen=True, slots=True)
class RetryScheduled:
    """A failed attempt will be retried after ``wait`` seconds."""

    call: CallInfo
    attempt: int
    wait: float
    exception: BaseException


ExhaustedReason = Literal["attempts", "max_time", "deadline", "budget", "permanent", "retry_after"]


@dataclass(frozen=True, slots=True)
class RetriesExhausted:
    """No further attempt will be made; ``exception`` goes to the caller (or the fallback)."""

    call: CallInfo
    attempts: int
    exception: BaseException
    reason: ExhaustedReason


@dataclass(frozen=True, slots=True)
class CircuitStateChanged:
    """A circuit moved between closed, open and half-open."""

    circuit: str
    old: str
    new: str
    failure_rate: float | None
    call: CallInfo | None


@dataclass(frozen=True, slots=True)
class CallRejected:
    """The call was refused without running: an open circuit or a full bulkhead."""

    call: CallInfo
    reason: Literal["circuit_open", "bulkhead_full"]
    target: str
    retry_after: float | None


@dataclass(frozen=True, slots=True)
class FallbackUsed:
    """The fallback answered instead of the call."""

    call: CallInfo
    exception: BaseException


@dataclass(frozen=True, slots=True)
class DeadlineExpired:
    """The time budget of the call ran out."""

    call: CallInfo
    budget: float


@dataclass(frozen=True, slots=True)
class ValidationRejected:
    """Input failed validation before the call."""

    call: CallInfo
    errors: Sequence[FieldError]


@dataclass(frozen=True, slots=True)
class FaultInjected:
    """A fault was injected on purpose (emitted by fault injection, read by telemetry)."""

    site: str
    fault: str
    kind: ErrorKind | None
    rule_id: str
    seed: int
    ordinal: int
    call: CallInfo | None = None
    detail: str = ""


@dataclass(frozen=True, slots=True)
class CallFinished:
    """A guarded call ended after something happened in it, or slowly."""

    call: CallInfo
    duration: float
    outcome: Literal["success", "error", "fallback"]
    exception: BaseException | None
    attempts: int


Event = (
    AttemptFailed | RetryScheduled | RetriesExhausted | CircuitStateChanged | CallRejected
    | FallbackUsed | DeadlineExpired | ValidationRejected | FaultInjected | CallFinished
)
Hook = Callable[[Any], object]
Interceptor = Callable[[AttemptInfo], "float | None"]
#: Which sites an interceptor wants; policies cache the answer per interceptor generation.
SitePredicate = Callable[[str], bool]


class _Hub:
    """Copy-on-write tuples: readers never lock, writers do."""

    __slots__ = ("filters", "generation", "hook_errors", "hooks", "interceptors", "lock")

    def __init__(self) -> None:
        self.hooks: tuple[Hook, ...] = ()
        self.interceptors: tuple[Interceptor, ...] = ()
        #: ``filters[i]`` says which sites ``interceptors[i]`` wants (None: all of them).
        self.filters: tuple[SitePredicate | None, ...] = ()
        #: Bumped whenever interceptors or their filters change (see refresh_interceptors).
        self.generation = 0
        self.hook_errors = 0
        self.lock = threading.Lock()


hub = _Hub()
_call_ids = itertools.count(1)


def next_call_id() -> int:
    """A process-unique id for a guarded call."""
    return next(_call_ids)


def subscribe(hook: Hook) -> Hook:
    """Call ``hook(event)`` for every event from now on. Returns ``hook`` (decorator use)."""
    with hub.lock:
        if hook not in hub.hooks:
            hub.hooks = (*hub.hooks, hook)
    return hook


def unsubscribe(hook: Hook) -> None:
    """Stop calling ``hook``; no error if it was not subscribed."""
    with hub.lock:
        hub.hooks = tuple(h for h in hub.hooks if h != hook)


def add_interceptor(interceptor: Interceptor, *, sites: SitePredicate | None = None) -> Interceptor:
    """Run ``interceptor`` before every attempt of guarded calls at the sites it wants.

    ``sites(name) -> bool`` narrows it to some sites: calls elsewhere stay on the fast
    path. Each policy asks once and caches the answer until :func:`refresh_interceptors`
    (or another add/remove); call that when the predicate's answers change. Adding an
    interceptor again replaces its predicate and keeps its place.
    """
    with hub.lock:
        pairs = dict(zip(hub.interceptors, hub.filters, strict=True))
        pairs[interceptor] = sites
        _publish(pairs)
    return interceptor


def remove_interceptor(interceptor: Interceptor) -> None:
    """Stop running ``interceptor``; no error if it was not added."""
    with hub.lock:
        pairs = dict(zip(hub.interceptors, hub.filters, strict=True))
        pairs.pop(interceptor, None)
        _publish(pairs)


def _publish(pairs: dict[Interceptor, SitePredicate | None]) -> None:
    hub.interceptors = tuple(pairs)
    hub.filters = tuple(pairs.values())
    hub.generation += 1


def refresh_interceptors() -> None:
    """Tell policies that some interceptor's site predicate may answer differently now."""
    with hub.lock:
        hub.generation += 1


def wants(site: str) -> bool:
    """True when some interceptor wants ``site`` (uncached; policies cache it)."""
    return any(f is None or f(site) for f in hub.filters)


def has_subscribers() -> bool:
    """True when events are being built (someone listens)."""
    return bool(hub.hooks)


def emit(event: object) -> None:
    """Deliver ``event`` to every hook; a hook that raises is counted, never propagated."""
    for hook in hub.hooks:
        try:
            hook(event)
        except Exception:
            hub.hook_errors += 1
            if hub.hook_errors <= 3 or hub.hook_errors % 1000 == 0:
                _log.warning("resilience hook %r raised (%d so far)", hook, hub.hook_errors,
                             exc_info=True)


def run_interceptors(info: AttemptInfo) -> float:
    """Run interceptors for one attempt; returns the total delay they asked for."""
    delay = 0.0
    for interceptor, wanted in zip(hub.interceptors, hub.filters, strict=False):
        if wanted is not None and not wanted(info.site):
            continue
        asked = interceptor(info)
        if asked:
            delay += asked
    return delay


def clear() -> None:
    """Remove every hook and interceptor (tests)."""
    with hub.lock:
        hub.hooks = ()
        _publish({})
        hub.hook_errors = 0
