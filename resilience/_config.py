"""Process-wide defaults, in one place, behind a lock, with a public reset."""

from __future__ import annotations

import threading
from dataclasses import dataclass, replace

from ._clock import SYSTEM_CLOCK, Clock


@dataclass(frozen=True, slots=True)
class Settings:
    """The process-wide defaults every policy reads at call time."""

    clock: Clock = SYSTEM_CLOCK
    #: False turns every backoff and probe wait into zero (tests).
    waits: bool = True
    #: Calls slower than this emit a CallFinished event (when anyone subscribes).
    slow_call: float = 1.0


_lock = threading.Lock()
_settings = Settings()


def get_settings() -> Settings:
    """The settings in force now."""
    return _settings


def configure(**changes: object) -> Settings:
    """Change process-wide defaults (``clock``, ``waits``, ``slow_call``); returns the old ones."""
    global _settings
    with _lock:
        old = _settings
        _settings = replace(old, **changes)  # type: ignore[arg-type]
        return old


def restore(settings: Settings) -> None:
    """Put back settings returned by :func:`configure`."""
    global _settings
    with _lock:
        _settings = settings


def reset() -> None:
    """Back to the built-in defaults."""
    restore(Settings())
