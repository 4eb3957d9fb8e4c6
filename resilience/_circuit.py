"""Circuit breakers on pybreaker's state machine and storage, without its lock-across-call.

pybreaker's ``CircuitBreaker.call()`` holds an ``RLock`` while the user's function
runs, so every thread sharing a breaker waits in line. Here the lock is taken only
to check the state before a call and to record its outcome; transitions go through
pybreaker's ``open()``/``half_open()``/``close()`` on its storage (memory, or Redis
so that several processes agree). This is the only module that imports pybreaker;
its errors become ours in :func:`map_pybreaker_error`.

Two modes:

* ``consecutive=N`` — opens after N counted failures in a row (pybreaker's model);
* ``failure_rate=r, window=N, min_calls=M`` — opens when at least M of the last N
  calls were made and the share that failed is >= r (resilience4j/Polly's model).

Open for ``open_for`` seconds, then half-open: at most ``half_open_probes`` calls
are admitted at once, the rest are rejected; ``success_threshold`` probe successes
close it, one probe failure opens it again.
"""

from __future__ import annotations

import threading
import weakref
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pybreaker as _pybreaker

from ._classify import ErrorKind, classify
from ._config import get_settings
from ._errors import CircuitOpenError, ConfigurationError
from ._events import CallInfo, CircuitStateChanged, emit, hub

CLOSED: str = _pybreaker.STATE_CLOSED
OPEN: str = _pybreaker.STATE_OPEN
HALF_OPEN: str = _pybreaker.STATE_HALF_OPEN

_registry: weakref.WeakValueDictionary[str, Circuit] = weakref.WeakValueDictionary()


def counts_by_default(exc: BaseException) -> bool:
    """Network and I/O failures (and anything transient) count; logic and validation do not."""
    c = classify(exc)
    return c.transient or c.kind in (ErrorKind.NETWORK, ErrorKind.IO)


def map_pybreaker_error(exc: BaseException, circuit: str, retry_after: float) -> BaseException:
    """Turn pybreaker's exceptions into ours (anything else is returned unchanged)."""
    if isinstance(exc, _pybreaker.CircuitBreakerError):
        return CircuitOpenError(circuit, retry_after)
    return exc


@dataclass(frozen=True, slots=True)
class RedisStorage:
    """Where to keep shared circuit state: ``redis_storage(url)``; built per circuit name."""

    url: str
    prefix: str = "shockproof"
    socket_timeout: float = 0.25

    def build(self, circuit: str) -> Any:
        import redis as _redis

        client = _redis.Redis.from_url(
            self.url, socket_timeout=self.socket_timeout, socket_connect_timeout=self.socket_timeout
        )
        return _pybreaker.CircuitRedisStorage(CLOSED, client, namespace=f"{self.prefix}:{circuit}")


def redis_storage(url: str, *, prefix: str = "shockproof", socket_timeout: float = 0.25) -> RedisStorage:
    """Share circuit state between processes through pybreaker's Redis storage."""
    if not isinstance(url, str) or not url.startswith(("redis://", "rediss://", "unix://")):
        raise ConfigurationError(f"redis_storage() needs a redis:// URL, got {url!r}")
    return RedisStorage(url, prefix, socket_timeout)


@dataclass(frozen=True, slots=True)
class StateChange:
    """One entry of a circuit's state history."""

    at: float
    old: str
    new: str
    failure_rate: float | None


class Circuit:
    """A named circuit breaker; share the object to share the breaker."""

    def __init__(
        self,
        name: str,
        *,
        consecutive: int | None = None,
        failure_rate: float | None = None,
        window: int = 20,
        min_calls: int = 10,
        open_for: float = 30.0,
        half_open_probes: int = 1,
        success_threshold: int | None = None,
        counts: Callable[[BaseException], bool] = counts_by_default,
        storage: RedisStorage | Any | None = None,
        history: int = 200,
    ) -> None:
        _check_config(name, consecutive, failure_rate, window, min_calls, open_for, half_open_probes,
                      success_threshold)
        self.name = name
        self.rate_mode = failure_rate is not None
        self.consecutive = consecutive if consecutive is not None else (0 if self.rate_mode else 5)
        self.failure_rate_threshold = failure_rate
        self.window = window
        self.min_calls = min_calls
        self.open_for = float(open_for)
        self.half_open_probes = half_open_probes
        self.success_threshold = success_threshold or half_open_probes
        self.counts = counts
        built: Any = storage.build(name) if isinstance(storage, RedisStorage) else storage
        self._storage: Any = built if built is not None else _pybreaker.CircuitMemoryStorage(CLOSED)
        self.shared = not isinstance(self._storage, _pybreaker.CircuitMemoryStorage)
        self._breaker = _pybreaker.CircuitBreaker(
            fail_max=max(self.consecutive, 1), reset_timeout=self.open_for,
            success_threshold=self.success_threshold, state_storage=self._storage, name=name,
        )
        self._lock = threading.Lock()
        #: Rate mode: the last ``window`` outcomes (True = failed). Successes are appended
        #: without the lock (``deque.append`` is atomic); failures count the window under it.
        self._outcomes: deque[bool] = deque(maxlen=window)
        self._probes = 0
        #: Counts half-open periods; a probe's token is the period it was admitted in, so a
        #: probe that outlives its period neither frees a slot nor decides the next one.
        self._generation = 0
        self._opened_at: float | None = None
        self._seen = self._storage.state
        #: True when a call needs no bookkeeping at all: in-memory, consecutive mode,
        #: closed, no failure pending. Read without the lock by the policy's fast path;
        #: a stale read only costs a trip through the slow path.
        self.quiet = False
        #: True when admission needs no check: in-memory and closed (both modes).
        self.free = False
        #: Rate mode, in-memory and closed: where a success is recorded, lock-free.
        self.window_sink: Callable[[bool], None] | None = None
        self._requiet()
        self.history: deque[StateChange] = deque(maxlen=history)
        _registry[name] = self

    # -- the hot path ---------------------------------------------------------------

    def acquire(self) -> int:
        """Admit a call or raise :class:`CircuitOpenError`; a probe token (truthy) or 0."""
        state = self._storage.state
        if state == CLOSED and self._seen == CLOSED:
            return False
        return self._acquire_slow()

    def record_success(self, probe: int) -> None:
        """The admitted call succeeded."""
        sink = self.window_sink
        if sink is not None and not probe:
            # In memory and closed, a rate-mode success only slides the window: it never
            # transitions, so it needs neither the lock nor events.
            sink(False)
            return
        if probe or self.rate_mode:
            self._record(False, probe, None)
        elif self._storage.counter:
            with self._lock:
                self._storage.reset_counter()
                self._requiet()

    def _requiet(self) -> None:
        """Refresh the flags the policy's fast path reads without the lock."""
        local_closed = not self.shared and self._seen == CLOSED
        self.free = local_closed
        self.window_sink = self._outcomes.append if local_closed and self.rate_mode else None
        self.quiet = local_closed and not self.rate_mode and not self._storage.counter

    def record_failure(self, exc: BaseException, probe: int) -> None:
        """The admitted call raised ``exc``; it counts only if ``counts(exc)``."""
        if self.counts(exc):
            self._record(True, probe, None)
        elif probe:
            with self._lock:
                self._release_probe(probe)

    def _release_probe(self, probe: int) -> bool:
        """Free the slot of a probe of the current half-open period; False for a stale one."""
        if probe != self._generation:
            return False
        self._probes = max(0, self._probes - 1)
        return True

    # -- slow paths -------------------------------------------------------------------

    def _acquire_slow(self) -> int:
        events: list[CircuitStateChanged] = []
        try:
            with self._lock:
                state = self._sync_state(events)
                if state == CLOSED:
                    return False
                if state == OPEN:
                    left = self._open_left()
                    if left > 0:
                        raise CircuitOpenError(self.name, left)
                    self._transition(HALF_OPEN, events)
                if self._probes >= self.half_open_probes:
                    raise CircuitOpenError(self.name, min(self.open_for, 1.0), HALF_OPEN)
                self._probes += 1
                return self._generation
        finally:
            self._emit(events)

    def _record(self, failed: bool, probe: int, call: CallInfo | None) -> None:
        events: list[CircuitStateChanged] = []
        with self._lock:
            state = self._sync_state(events)
            current = bool(probe) and self._release_probe(probe)
            if state == HALF_OPEN and current:
                self._record_probe(failed, events)
            elif state == CLOSED:
                self._record_closed(failed, events)
        self._emit(events)

    def _record_probe(self, failed: bool, events: list[CircuitStateChanged]) -> None:
        if failed:
            self._transition(OPEN, events)
            return
        self._storage.increment_success_counter()
        if self._storage.success_counter >= self.success_threshold:
            self._transition(CLOSED, events)

    def _record_closed(self, failed: bool, events: list[CircuitStateChanged]) -> None:
        if not self.rate_mode:
            if failed:
                self.quiet = False
                self._storage.increment_counter()
                if self._storage.counter >= self.consecutive:
                    self._transition(OPEN, events)
            elif self._storage.counter:
                self._storage.reset_counter()
                self._requiet()
            return
        self._outcomes.append(failed)
        if not failed:
            return
        calls = len(self._outcomes)
        threshold = self.failure_rate_threshold or 0.0
        if calls >= self.min_calls and self._outcomes.count(True) / calls >= threshold:
            self._transition(OPEN, events)

    def _sync_state(self, events: list[CircuitStateChanged]) -> str:
        """Read the stored state; note a change made elsewhere (another process)."""
        state: str = self._storage.state
        if state != self._seen:
            self._note(self._seen, state, events)
            if state == HALF_OPEN:
                self._probes = 0
                self._generation += 1
        return state

    def _open_left(self) -> float:
        opened = self._opened_at
        if self.shared or opened is None:
            stamp = self._storage.opened_at
            if stamp is not None:  # Redis keeps whole seconds: our own exact time wins if later
                opened = stamp.timestamp() if opened is None else max(opened, stamp.timestamp())
        if opened is None:
            return 0.0
        return opened + self.open_for - get_settings().clock.time()

    def _transition(self, new: str, events: list[CircuitStateChanged]) -> None:
        old = self._seen
        if new == OPEN:
            now = get_settings().clock.time()
            self._breaker.open()
            self._opened_at = now
            self._storage.opened_at = datetime.fromtimestamp(now, UTC)
        elif new == HALF_OPEN:
            self._breaker.half_open()
            self._probes = 0
            self._generation += 1
        else:
            self._breaker.close()
        if new != old:  # reset() of a closed circuit is no transition
            self._note(old, new, events)  # before clearing: it records the rate that tripped it
        self._outcomes.clear()

    def _note(self, old: str, new: str, events: list[CircuitStateChanged]) -> None:
        rate = self.failure_rate
        self._seen = new
        self._requiet()
        self.history.append(StateChange(get_settings().clock.time(), old, new, rate))
        if hub.hooks:
            events.append(CircuitStateChanged(self.name, old, new, rate, None))

    @staticmethod
    def _emit(events: list[CircuitStateChanged]) -> None:
        for event in events:
            emit(event)

    # -- inspection and control -----------------------------------------------------------

    @property
    def state(self) -> str:
        """``"closed"``, ``"open"`` or ``"half-open"`` (open turns half-open once its time is up)."""
        state: str = self._storage.state
        if state == OPEN and self._open_left() <= 0:
            return HALF_OPEN
        return state

    @property
    def failure_rate(self) -> float | None:
        """Share of failures in the window (rate mode), else None."""
        if not self.rate_mode or not self._outcomes:
            return None
        outcomes = self._outcomes
        calls = len(outcomes)
        return outcomes.count(True) / calls if calls else None

    @property
    def retry_after(self) -> float:
        """Seconds until an open circuit admits a probe (0 when not open)."""
        return max(0.0, self._open_left()) if self._storage.state == OPEN else 0.0

    def force_open(self) -> None:
        """Open now (operations: take a dependency out of rotation)."""
        self._force(OPEN)

    def reset(self) -> None:
        """Close now and forget the recent outcomes."""
        self._force(CLOSED)

    def _force(self, new: str) -> None:
        events: list[CircuitStateChanged] = []
        with self._lock:
            self._sync_state(events)
            self._transition(new, events)
            self._storage.reset_counter()
            self._requiet()
        self._emit(events)

    def describe(self) -> str:
        if self.rate_mode:
            mode = f"failure_rate={self.failure_rate_threshold}, window={self.window}, min_calls={self.min_calls}"
        else:
            mode = f"consecutive={self.consecutive}"
        where = ", shared" if self.shared else ""
        return f"circuit({self.name!r}, {mode}, open_for={self.open_for}, probes={self.half_open_probes}{where})"

    def __repr__(self) -> str:
        return f"<Circuit {self.name!r} {self.state}>"


def _check_config(name: str, consecutive: int | None, failure_rate: float | None, window: int,
                  min_calls: int, open_for: float, probes: int, success_threshold: int | None) -> None:
    problems = []
    if not isinstance(name, str) or not name:
        problems.append("a non-empty name")
    if consecutive is not None and failure_rate is not None:
        problems.append("either consecutive= or failure_rate=, not both")
    if consecutive is not None and (not isinstance(consecutive, int) or consecutive < 1):
        problems.append("consecutive >= 1")
    if failure_rate is not None and not 0 < failure_rate <= 1:
        problems.append("0 < failure_rate <= 1")
    if window < 1 or min_calls < 1 or min_calls > window:
        problems.append("1 <= min_calls <= window")
    if not open_for > 0:
        problems.append("open_for > 0")
    if probes < 1:
        problems.append("half_open_probes >= 1")
    if success_threshold is not None and success_threshold < 1:
        problems.append("success_threshold >= 1")
    if problems:
        raise ConfigurationError(f"Circuit({name!r}) needs " + "; ".join(problems))


def circuits() -> dict[str, Circuit]:
    """Every live circuit in this process, by name."""
    return dict(_registry)
