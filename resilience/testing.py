"""Testing helpers (public API): switch waits off, drive time by hand.

::

    with resilience.testing.waits_off():
        flaky_call()                 # retries happen, nobody sleeps

    with resilience.testing.fake_clock() as clock:
        ...; clock.advance(30)       # circuits and deadlines see the jump
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from . import _config, _events

__all__ = ["FakeClock", "fake_clock", "isolated", "waits_off"]


class FakeClock:
    """A clock that moves only when told to; ``sleep`` advances it instead of blocking."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self._now = float(start)
        self._lock = threading.Lock()
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return self._now

    def time(self) -> float:
        return self._now

    def advance(self, seconds: float) -> None:
        """Move time forward (never back)."""
        if seconds < 0:
            raise ValueError("a fake clock only moves forward")
        with self._lock:
            self._now += seconds

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.advance(max(0.0, seconds))

    async def asleep(self, seconds: float) -> None:
        self.sleep(seconds)

    def __repr__(self) -> str:
        return f"FakeClock(now={self._now})"


@contextmanager
def waits_off() -> Iterator[None]:
    """Within the block, backoff waits are zero (decisions are made as usual)."""
    old = _config.configure(waits=False)
    try:
        yield
    finally:
        _config.restore(old)


@contextmanager
def fake_clock(start: float = 1_700_000_000.0) -> Iterator[FakeClock]:
    """Within the block, every clock reading and wait of the package uses a :class:`FakeClock`."""
    clock = FakeClock(start)
    old = _config.configure(clock=clock)
    try:
        yield clock
    finally:
        _config.restore(old)


@contextmanager
def isolated() -> Iterator[None]:
    """Fresh process-wide settings, hooks and interceptors for the block, restored after."""
    old = _config.get_settings()
    hub = _events.hub
    hooks, interceptors, filters = hub.hooks, hub.interceptors, hub.filters
    _config.reset()
    _events.clear()
    try:
        yield
    finally:
        _config.restore(old)
        with hub.lock:
            hub.hooks = hooks
            _events._publish(dict(zip(interceptors, filters, strict=True)))
