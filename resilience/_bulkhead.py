"""Bulkheads: at most ``max_concurrent`` calls in flight, waiting at most ``max_wait`` for a slot."""

from __future__ import annotations

import threading

from ._config import get_settings
from ._errors import BulkheadFull, ConfigurationError

_ASYNC_POLL = 0.005


class Bulkhead:
    """A counting limit shared by sync threads and async tasks alike."""

    def __init__(self, max_concurrent: int, max_wait: float = 0.0, *, name: str = "") -> None:
        if not isinstance(max_concurrent, int) or isinstance(max_concurrent, bool) or max_concurrent < 1:
            raise ConfigurationError(f"Bulkhead(max_concurrent=) must be an int >= 1, got {max_concurrent!r}")
        if not isinstance(max_wait, int | float) or isinstance(max_wait, bool) or max_wait < 0:
            raise ConfigurationError(f"Bulkhead(max_wait=) must be >= 0, got {max_wait!r}")
        self.max_concurrent = max_concurrent
        self.max_wait = float(max_wait)
        self.name = name
        self._in_flight = 0
        self._cond = threading.Condition(threading.Lock())

    @property
    def in_flight(self) -> int:
        return self._in_flight

    def try_acquire(self) -> bool:
        with self._cond:
            if self._in_flight < self.max_concurrent:
                self._in_flight += 1
                return True
            return False

    def acquire(self, site: str = "") -> None:
        """Take a slot, waiting up to ``max_wait`` (real time: a thread must block)."""
        with self._cond:
            ok = self._cond.wait_for(lambda: self._in_flight < self.max_concurrent, self.max_wait)
            if not ok:
                raise BulkheadFull(self.name or site, self.max_concurrent)
            self._in_flight += 1

    async def acquire_async(self, site: str = "") -> None:
        """Take a slot without blocking the event loop, polling through the clock."""
        clock = get_settings().clock
        give_up = clock.monotonic() + self.max_wait
        while not self.try_acquire():
            left = give_up - clock.monotonic()
            if left <= 0:
                raise BulkheadFull(self.name or site, self.max_concurrent)
            await clock.asleep(min(_ASYNC_POLL, left))

    def release(self) -> None:
        with self._cond:
            self._in_flight -= 1
            self._cond.notify()

    def describe(self) -> str:
        return f"bulkhead(max_concurrent={self.max_concurrent}, max_wait={self.max_wait})"
