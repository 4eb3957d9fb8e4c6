"""Bulkheads: a bounded number of calls in flight, sync, async and streaming."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Generator, Iterator
from typing import Any

import pytest

import resilience
from resilience import (
    Bulkhead,
    BulkheadFull,
    CallRejected,
    ConfigurationError,
    Retry,
    guard,
    none,
)
from resilience.testing import FakeClock

JOIN = 10.0  # generous upper bound for threads that are released explicitly


class YieldingClock(FakeClock):
    """A fake clock whose async sleep lets other tasks run (fake time, real interleaving)."""

    async def asleep(self, seconds: float) -> None:
        self.sleep(seconds)
        await asyncio.sleep(0)


def _hold_slot(fn: Any) -> tuple[threading.Thread, threading.Event]:
    """Run ``fn(entered, release)`` in a thread; return once it is inside the guarded call."""
    entered, release = threading.Event(), threading.Event()
    thread = threading.Thread(target=fn, args=(entered, release))
    thread.start()
    assert entered.wait(JOIN)
    return thread, release


def test_max_concurrent_calls_run_together_and_no_more() -> None:
    """With max_concurrent=2, calls overlap in pairs and never three at once."""
    lock, active, peak = threading.Lock(), [0], [0]
    pair = threading.Barrier(2, timeout=JOIN)  # breaks if the bulkhead admitted fewer than 2

    @guard("svc.pool", bulkhead=Bulkhead(2, max_wait=JOIN))
    def work() -> str:
        with lock:
            active[0] += 1
            peak[0] = max(peak[0], active[0])
        pair.wait()
        with lock:
            active[0] -= 1
        return "ok"

    results: list[str] = []
    threads = [threading.Thread(target=lambda: results.append(work())) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(JOIN)
    assert (results, peak[0]) == (["ok"] * 6, 2)


def test_full_bulkhead_rejects_at_once_with_zero_wait() -> None:
    """With max_wait=0 a call finding every slot taken raises BulkheadFull without running."""
    ran: list[str] = []

    @guard("svc.one", bulkhead=Bulkhead(1, max_wait=0, name="uploads"))
    def hold(entered: threading.Event, release: threading.Event) -> None:
        ran.append("holder")
        entered.set()
        release.wait(JOIN)

    thread, release = _hold_slot(hold)
    try:
        with pytest.raises(BulkheadFull) as info:
            hold(threading.Event(), threading.Event())
    finally:
        release.set()
        thread.join(JOIN)
    assert (ran, info.value.bulkhead, info.value.max_concurrent) == (["holder"], "uploads", 1)


def test_rejection_emits_call_rejected(events: list[object]) -> None:
    """A full bulkhead emits CallRejected with reason bulkhead_full and the bulkhead's name."""

    @guard("svc.one", bulkhead=Bulkhead(1))
    def hold(entered: threading.Event, release: threading.Event) -> None:
        entered.set()
        release.wait(JOIN)

    thread, release = _hold_slot(hold)
    try:
        with pytest.raises(BulkheadFull):
            hold(threading.Event(), threading.Event())
    finally:
        release.set()
        thread.join(JOIN)
    rejected = [(e.reason, e.target) for e in events if isinstance(e, CallRejected)]
    assert rejected == [("bulkhead_full", "svc.one")]


def test_bulkhead_full_is_not_retried() -> None:
    """A rejection by the bulkhead is not retried by the default retry condition."""
    bulkhead = Bulkhead(1)
    assert bulkhead.try_acquire()
    runs: list[int] = []
    guarded = guard("svc.full", bulkhead=bulkhead, retry=Retry(attempts=3, backoff=none()))(
        lambda: runs.append(1))
    with pytest.raises(BulkheadFull) as info:
        guarded()
    assert (runs, resilience.attempts_of(info.value)) == ([], 1)


def test_slot_is_released_after_success() -> None:
    """A call that returns gives its slot back."""
    bulkhead = Bulkhead(1)
    guarded = guard("svc.ok", bulkhead=bulkhead)(lambda: "ok")
    assert (guarded(), guarded(), bulkhead.in_flight) == ("ok", "ok", 0)


def test_slot_is_released_after_failure() -> None:
    """A call that raises gives its slot back."""
    bulkhead = Bulkhead(1)

    @guard("svc.fail", bulkhead=bulkhead)
    def fail() -> None:
        raise ZeroDivisionError

    for _ in range(3):
        with pytest.raises(ZeroDivisionError):
            fail()
    assert bulkhead.in_flight == 0


def test_slot_is_released_between_retries() -> None:
    """Each retry takes a slot again: a one-slot bulkhead does not reject its own retries."""
    bulkhead, runs = Bulkhead(1), [0]

    @guard("svc.retry", bulkhead=bulkhead, retry=Retry(attempts=3, backoff=none(), budget=None))
    def flaky() -> str:
        runs[0] += 1
        if runs[0] < 3:
            raise ConnectionError
        return "ok"

    assert (flaky(), runs[0], bulkhead.in_flight) == ("ok", 3, 0)


def test_async_full_bulkhead_rejects() -> None:
    """An async call that finds no slot within max_wait raises BulkheadFull."""
    bulkhead = Bulkhead(1, max_wait=0)

    @guard("svc.async", bulkhead=bulkhead)
    async def hold(entered: asyncio.Event, release: asyncio.Event) -> None:
        entered.set()
        await release.wait()

    async def main() -> BaseException | None:
        entered, release = asyncio.Event(), asyncio.Event()
        holder = asyncio.create_task(hold(entered, release))
        await entered.wait()
        try:
            await hold(asyncio.Event(), asyncio.Event())
        except BulkheadFull as exc:
            return exc
        finally:
            release.set()
            await holder
        return None

    assert isinstance(asyncio.run(main()), BulkheadFull)
    assert bulkhead.in_flight == 0


def test_async_call_waits_for_a_slot_to_free_up() -> None:
    """An async call waiting within max_wait gets the slot once the holder finishes."""
    clock = YieldingClock()
    resilience.configure(clock=clock)
    bulkhead = Bulkhead(1, max_wait=60)
    order: list[str] = []

    @guard("svc.async", bulkhead=bulkhead)
    async def use(name: str, release: asyncio.Event) -> None:
        order.append(f"{name} in")
        await release.wait()
        order.append(f"{name} out")

    async def main() -> None:
        first, second = asyncio.Event(), asyncio.Event()
        second.set()
        holder = asyncio.create_task(use("a", first))
        await asyncio.sleep(0)
        waiter = asyncio.create_task(use("b", second))
        for _ in range(3):
            await asyncio.sleep(0)  # b polls for a slot meanwhile
        first.set()
        await asyncio.gather(holder, waiter)

    asyncio.run(main())
    assert (order, bulkhead.in_flight) == (["a in", "a out", "b in", "b out"], 0)


def test_async_call_gives_up_after_max_wait_on_the_clock() -> None:
    """An async call waits at most max_wait, measured on the policy's clock."""
    clock = YieldingClock()
    resilience.configure(clock=clock)
    bulkhead = Bulkhead(1, max_wait=0.5)
    assert bulkhead.try_acquire()

    @guard("svc.async", bulkhead=bulkhead)
    async def call() -> None:
        raise AssertionError("ran without a slot")

    start = clock.monotonic()
    with pytest.raises(BulkheadFull):
        asyncio.run(call())
    assert clock.monotonic() - start == pytest.approx(0.5)


def test_async_slot_is_released_after_failure() -> None:
    """An async call that raises gives its slot back."""
    bulkhead = Bulkhead(1)

    @guard("svc.async", bulkhead=bulkhead)
    async def fail() -> None:
        raise ZeroDivisionError

    for _ in range(2):
        with pytest.raises(ZeroDivisionError):
            asyncio.run(fail())
    assert bulkhead.in_flight == 0


def test_generator_holds_its_slot_until_the_stream_ends() -> None:
    """A guarded generator keeps its slot while items flow and frees it at the end."""
    bulkhead = Bulkhead(1)

    @guard("svc.stream", bulkhead=bulkhead)
    def stream() -> Iterator[int]:
        yield from range(3)

    first = stream()
    assert next(first) == 0
    with pytest.raises(BulkheadFull):
        next(stream())
    assert (list(first), bulkhead.in_flight) == ([1, 2], 0)


def test_abandoned_generator_releases_its_slot_on_close() -> None:
    """Closing a guarded generator early frees its slot."""
    bulkhead = Bulkhead(1)

    @guard("svc.stream", bulkhead=bulkhead)
    def stream() -> Generator[int, None, None]:
        yield from range(3)

    gen = stream()
    next(gen)
    gen.close()
    assert bulkhead.in_flight == 0


def test_generator_failing_mid_stream_releases_its_slot() -> None:
    """A stream that raises after its first item frees its slot."""
    bulkhead = Bulkhead(1)

    @guard("svc.stream", bulkhead=bulkhead)
    def stream() -> Iterator[int]:
        yield 1
        raise OSError("disk")

    with pytest.raises(OSError, match="disk"):
        list(stream())
    assert bulkhead.in_flight == 0


def test_async_generator_holds_its_slot_until_the_stream_ends() -> None:
    """A guarded async generator keeps its slot while items flow and frees it at the end."""
    bulkhead = Bulkhead(1)

    @guard("svc.astream", bulkhead=bulkhead)
    async def stream() -> AsyncIterator[int]:
        for i in range(3):
            yield i

    async def main() -> tuple[int, bool, list[int]]:
        first = stream()
        head = await anext(first)
        other = stream()
        try:
            await anext(other)
            rejected = False
        except BulkheadFull:
            rejected = True
        rest = [item async for item in first]
        return head, rejected, rest

    assert (asyncio.run(main()), bulkhead.in_flight) == ((0, True, [1, 2]), 0)


def test_abandoned_async_generator_releases_its_slot_on_aclose() -> None:
    """Closing a guarded async generator early frees its slot."""
    bulkhead = Bulkhead(1)

    @guard("svc.astream", bulkhead=bulkhead)
    async def stream() -> AsyncIterator[int]:
        for i in range(3):
            yield i

    async def main() -> int:
        agen = stream()
        await anext(agen)
        await agen.aclose()  # type: ignore[attr-defined]
        return bulkhead.in_flight

    assert asyncio.run(main()) == 0


@pytest.mark.parametrize(
    ("args", "kwargs"),
    [((0,), {}), ((-1,), {}), (("2",), {}), ((1.5,), {}), ((True,), {}),
     ((1,), {"max_wait": -0.1}), ((1,), {"max_wait": "1"})],
)
def test_bad_bulkhead_configuration_is_rejected(args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    """Bulkhead() needs an int >= 1 and a non-negative max_wait."""
    with pytest.raises(ConfigurationError):
        Bulkhead(*args, **kwargs)
