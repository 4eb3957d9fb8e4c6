"""A retry budget: retries may be at most a set fraction of calls (plus a small burst).

The token-bucket form used by gRPC's retry throttling and Finagle's RetryBudget:
every call deposits ``ratio`` tokens (up to ``cap``), every retry withdraws one.
Over any sequence, ``retries <= burst + ratio * calls``. Deposits are an unlocked
counter increment (a lost increment only makes the budget stricter); withdrawals
settle the balance under a lock on the slow path.
"""

from __future__ import annotations

import threading

from ._errors import ConfigurationError


class RetryBudget:
    """Per-policy state; create one per policy, never share between policies by accident."""

    __slots__ = ("_balance", "_calls", "_lock", "_settled_calls", "burst", "cap", "ratio")

    def __init__(self, ratio: float = 0.2, burst: int = 10, cap: float | None = None) -> None:
        if not 0 <= ratio <= 1:
            raise ConfigurationError(f"budget ratio must be within [0, 1], got {ratio!r}")
        if burst < 0:
            raise ConfigurationError(f"budget burst must be >= 0, got {burst!r}")
        self.ratio = float(ratio)
        self.burst = int(burst)
        self.cap = float(cap) if cap is not None else float(max(burst, 1)) + 100 * self.ratio
        self._balance = float(burst)
        self._calls = 0
        self._settled_calls = 0
        self._lock = threading.Lock()

    def record_call(self) -> None:
        """Count one call (hot path, no lock)."""
        self._calls += 1

    def try_spend(self) -> bool:
        """Take one retry token if there is one."""
        with self._lock:
            calls = self._calls
            self._balance = min(self.cap, self._balance + self.ratio * (calls - self._settled_calls))
            self._settled_calls = calls
            if self._balance >= 1.0:
                self._balance -= 1.0
                return True
            return False

    @property
    def balance(self) -> float:
        """Tokens available now (settling pending deposits)."""
        with self._lock:
            pending = self.ratio * (self._calls - self._settled_calls)
            return min(self.cap, self._balance + pending)

    def __repr__(self) -> str:
        return f"RetryBudget(ratio={self.ratio}, burst={self.burst})"
