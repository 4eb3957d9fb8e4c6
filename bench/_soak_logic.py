"""The soak's arithmetic: percentiles, what counts as success, and the ledger of acknowledged writes.

No network and no clock here: everything takes its inputs as arguments, so
``tests/proof_crash/test_soak_logic.py`` checks it with made-up samples.

**Success.** A request succeeded when the user got what they asked for: a 2xx
(a catalog answer served *degraded* from the cache is a 200 and counts, and is
also counted apart). A 5xx, a 4xx (the load sends only valid requests) or a
transport error (refused, reset, timed out) is a failure. A 500 whose problem
body says ``kind == "logic"`` is a *logic fault*: the plan injects those on
purpose, so they are left out of the success rate, but never more of them than
the plan's logic rules report hits (``logic_hits``): a logic 500 beyond that
count is a real bug and counts as a failure.

**The ledger.** Watch progress is overwritten per (user, title). For each key the
ledger keeps the values sent, in order, and whether each was acknowledged. A read
is consistent when it returns the last acknowledged value, or a value sent after
it whose answer never came (the write may have happened before the failure); with
nothing acknowledged yet, "nothing saved" is consistent too. Any other value
(an older one, or nothing after an acknowledgement) is an acknowledged write lost.
"""

from __future__ import annotations

import bisect
import math
import threading
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any, Final

#: What a progress read can return: a position in seconds, or None (404, nothing saved).
Value = float | None

OK_STATUSES: Final = range(200, 300)


class Outcome(Enum):
    """How one request ended, from the user's side."""

    OK = "ok"
    DEGRADED = "degraded"  # 200 from the cache while the upstream failed: served, marked so
    LOGIC_FAULT = "logic_fault"  # a 500 with kind "logic": candidate injected logic fault
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class Sample:
    """One request of the load, as the client saw it.

    ``start`` and ``end`` are seconds on one monotonic clock; ``status`` is None when
    no HTTP answer came (``error`` then names the exception); ``kind`` is the problem
    body's ``kind`` for error answers; ``degraded`` is the ``X-Shockproof-Degraded`` marker.
    """

    phase: str
    route: str
    start: float
    end: float
    status: int | None
    kind: str | None = None
    degraded: bool = False
    error: str = ""

    @property
    def latency(self) -> float:
        return self.end - self.start


def outcome(sample: Sample) -> Outcome:
    """Classify one request (see the module docstring)."""
    if sample.status is None:
        return Outcome.FAILED
    if sample.status in OK_STATUSES:
        return Outcome.DEGRADED if sample.degraded else Outcome.OK
    if sample.status == 500 and sample.kind == "logic":
        return Outcome.LOGIC_FAULT
    return Outcome.FAILED


def percentile(ordered: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile ``q`` (0-100] of an already sorted sequence; None when empty."""
    if not ordered:
        return None
    if not 0 < q <= 100:
        raise ValueError(f"q must be in (0, 100], got {q}")
    rank = math.ceil(q / 100 * len(ordered))
    return ordered[min(max(rank, 1), len(ordered)) - 1]


def ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 2)


@dataclass(frozen=True, slots=True)
class Figures:
    """The figures of a set of samples."""

    requests: int
    ok: int
    degraded: int
    logic_faults_excluded: int
    failed: int
    success_rate: float | None
    p50_ms: float | None
    p99_ms: float | None
    max_ms: float | None
    failures: Mapping[str, int]

    def as_dict(self) -> dict[str, Any]:
        return {"requests": self.requests, "ok": self.ok, "degraded": self.degraded,
                "logic_faults_excluded": self.logic_faults_excluded, "failed": self.failed,
                "success_rate": self.success_rate, "p50_ms": self.p50_ms, "p99_ms": self.p99_ms,
                "max_ms": self.max_ms, "failures": dict(self.failures)}


def figures(samples: Sequence[Sample], logic_hits: int = 0) -> Figures:
    """Success rate on non-logic-fault requests and latency percentiles of ``samples``.

    At most ``logic_hits`` logic 500s are excluded (the plan's logic rules fired that
    often); any beyond are real failures.
    """
    counts = Counter(outcome(s) for s in samples)
    excluded = min(counts[Outcome.LOGIC_FAULT], max(0, logic_hits))
    failed = counts[Outcome.FAILED] + counts[Outcome.LOGIC_FAULT] - excluded
    served = counts[Outcome.OK] + counts[Outcome.DEGRADED]
    counted = served + failed
    ordered = sorted(s.latency for s in samples)
    return Figures(
        requests=len(samples), ok=counts[Outcome.OK], degraded=counts[Outcome.DEGRADED],
        logic_faults_excluded=excluded, failed=failed,
        success_rate=served / counted if counted else None,
        p50_ms=ms(percentile(ordered, 50)), p99_ms=ms(percentile(ordered, 99)),
        max_ms=ms(ordered[-1] if ordered else None), failures=failure_reasons(samples, excluded))


def failure_reasons(samples: Iterable[Sample], logic_excluded: int = 0) -> dict[str, int]:
    """Failed requests by ``"<route> -> <status or error>"`` (logic 500s beyond the excluded)."""
    reasons: Counter[str] = Counter()
    spare = logic_excluded
    for sample in samples:
        result = outcome(sample)
        if result is Outcome.LOGIC_FAULT and spare > 0:
            spare -= 1
            continue
        if result in (Outcome.FAILED, Outcome.LOGIC_FAULT):
            what = sample.error if sample.status is None else f"{sample.status} {sample.kind or ''}".strip()
            reasons[f"{sample.route} -> {what}"] += 1
    return dict(sorted(reasons.items()))


# -- the ledger -----------------------------------------------------------------------------


@dataclass(slots=True)
class _Write:
    value: float
    acked: bool | None = None  # None: no answer yet


@dataclass(frozen=True, slots=True)
class Lost:
    """A read that no acknowledged history explains."""

    key: str
    observed: Value
    allowed: tuple[Value, ...]


class Ledger:
    """Writes sent per key, in order, and which were acknowledged (thread-safe).

    One writer per key at a time: a key's next write is sent after the previous one's
    answer (or failure) is known.
    """

    def __init__(self) -> None:
        self._writes: dict[str, list[_Write]] = {}
        self._lock = threading.Lock()

    def sent(self, key: str, value: float) -> int:
        """Record that ``value`` is being written to ``key``; returns the write's index."""
        with self._lock:
            writes = self._writes.setdefault(key, [])
            writes.append(_Write(value))
            return len(writes) - 1

    def answered(self, key: str, index: int, acked: bool) -> None:
        """The write ``index`` of ``key`` was acknowledged (True) or failed/unanswered (False)."""
        with self._lock:
            self._writes[key][index].acked = acked

    def written(self) -> list[str]:
        """Every key written to, sorted."""
        with self._lock:
            return sorted(self._writes)

    def last_acked(self, key: str) -> Value:
        """The last acknowledged value of ``key`` (None when none was)."""
        with self._lock:
            writes = list(self._writes.get(key, ()))
        return next((w.value for w in reversed(writes) if w.acked), None)

    def acknowledged(self) -> int:
        """How many writes were acknowledged, over every key."""
        with self._lock:
            return sum(w.acked is True for writes in self._writes.values() for w in writes)

    def allowed(self, key: str) -> tuple[Value, ...]:
        """The values a read of ``key`` may return now (see the module docstring)."""
        with self._lock:
            writes = list(self._writes.get(key, ()))
        last = max((i for i, w in enumerate(writes) if w.acked), default=-1)
        base: Value = writes[last].value if last >= 0 else None
        return (base, *(w.value for w in writes[last + 1:]))

    def check(self, key: str, observed: Value) -> Lost | None:
        """None when ``observed`` is consistent for ``key``, else what was lost."""
        allowed = self.allowed(key)
        if observed in allowed:
            return None
        return Lost(key, observed, allowed)

    def check_all(self, observed: Mapping[str, Value]) -> list[Lost]:
        """Every inconsistent read among ``observed`` (a key never read counts as None)."""
        found = [self.check(key, observed.get(key)) for key in self.written()]
        return [lost for lost in found if lost is not None]


# -- the circuit's timeline -----------------------------------------------------------------

#: (monotonic time, circuit state) observations, in time order.
Timeline = Sequence[tuple[float, str]]


def first_at(timeline: Timeline, state: str, after: float) -> float | None:
    """When ``state`` was first observed at or after ``after`` (None: never)."""
    return next((t for t, seen in timeline if t >= after and seen == state), None)


def within(samples: Iterable[Sample], timeline: Timeline, state: str) -> list[Sample]:
    """The samples that ran wholly while the circuit was in ``state``.

    A sample counts when the last observation before it started, every observation
    while it ran, and the first observation after it ended all saw ``state``.
    """
    times = [t for t, _ in timeline]
    found = []
    for sample in samples:
        before = bisect.bisect_right(times, sample.start) - 1
        after = bisect.bisect_left(times, sample.end)
        if before < 0 or after >= len(times):
            continue
        if all(seen == state for _, seen in timeline[before:after + 1]):
            found.append(sample)
    return found
