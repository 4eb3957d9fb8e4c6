"""Deadlines: budgets in a contextvar, nested budgets, I/O timeouts, and guarded calls."""

from __future__ import annotations

import asyncio
import math
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from resilience import (
    AttemptInfo,
    ConfigurationError,
    DeadlineExceeded,
    DeadlineExpired,
    Policy,
    Retry,
    add_interceptor,
    check_deadline,
    current_budget,
    deadline,
    fixed,
    guard,
    none,
    remaining,
    timeout_or,
)
from resilience.testing import FakeClock, fake_clock

TINY = 0.02  # the only real wait in this file: async cancellation needs a real event loop timer


@pytest.fixture
def clock() -> Iterator[FakeClock]:
    with fake_clock() as c:
        yield c


def test_remaining_is_infinite_without_a_deadline() -> None:
    """Outside any deadline there is no budget: remaining() is infinite."""
    assert (remaining(), current_budget()) == (math.inf, None)


def test_remaining_counts_down_with_the_clock(clock: FakeClock) -> None:
    """Inside deadline(s), remaining() is s minus the time elapsed."""
    with deadline(5):
        clock.advance(2)
        assert remaining() == 3.0


def test_remaining_never_goes_negative(clock: FakeClock) -> None:
    """Past the deadline, remaining() is zero, not negative."""
    with deadline(1):
        clock.advance(10)
        assert remaining() == 0.0


def test_deadline_is_gone_after_the_block(clock: FakeClock) -> None:
    """Leaving the block removes its budget."""
    with deadline(1):
        pass
    assert remaining() == math.inf


def test_deadline_is_removed_when_the_block_raises(clock: FakeClock) -> None:
    """A block that raises still removes its budget."""
    with pytest.raises(KeyError), deadline(1):
        raise KeyError("x")
    assert remaining() == math.inf


def test_nested_shorter_budget_wins(clock: FakeClock) -> None:
    """A shorter inner deadline tightens the budget."""
    with deadline(10), deadline(2):
        assert (remaining(), current_budget()) == (2.0, 2.0)


def test_nested_longer_budget_cannot_extend(clock: FakeClock) -> None:
    """A longer inner deadline does not extend the outer one."""
    with deadline(2):
        clock.advance(1)
        with deadline(10):
            assert (remaining(), current_budget()) == (1.0, 2.0)


def test_outer_budget_returns_after_the_inner_block(clock: FakeClock) -> None:
    """After an inner deadline ends, the outer budget is in force again."""
    with deadline(10):
        with deadline(2):
            pass
        assert remaining() == 10.0


def test_timeout_or_passes_the_default_without_a_deadline() -> None:
    """Without a deadline, timeout_or(default) is the default (None included)."""
    assert (timeout_or(7.0), timeout_or(None)) == (7.0, None)


def test_timeout_or_takes_the_smaller(clock: FakeClock) -> None:
    """Inside a deadline, timeout_or() is the smaller of the default and what remains."""
    with deadline(5):
        assert (timeout_or(10.0), timeout_or(2.0), timeout_or(None)) == (5.0, 2.0, 5.0)


def test_check_deadline_passes_while_time_remains(clock: FakeClock) -> None:
    """check_deadline() does nothing while the budget lasts."""
    with deadline(5):
        clock.advance(4.9)
        check_deadline("svc")
        assert remaining() == pytest.approx(0.1)


def test_check_deadline_raises_when_spent(clock: FakeClock) -> None:
    """check_deadline() raises DeadlineExceeded, a TimeoutError, once the budget is spent."""
    with deadline(5):
        clock.advance(5)
        with pytest.raises(TimeoutError) as info:
            check_deadline("svc.check")
    assert isinstance(info.value, DeadlineExceeded)
    assert (info.value.budget, info.value.site) == (5.0, "svc.check")


@pytest.mark.parametrize("seconds", [0, -1, True, "1", float("nan")])
def test_bad_deadline_is_rejected(seconds: Any) -> None:
    """deadline() needs a positive number of seconds."""
    with pytest.raises(ConfigurationError), deadline(seconds):
        pass


def test_threads_do_not_share_deadlines() -> None:
    """Two threads inside different deadlines at the same moment each see only their own."""
    barrier = threading.Barrier(2, timeout=10)
    seen: dict[str, float | None] = {}

    def worker(name: str, seconds: float) -> None:
        with deadline(seconds):
            barrier.wait()  # both are inside their deadline now
            seen[name] = current_budget()
            barrier.wait()

    threads = [threading.Thread(target=worker, args=(n, s)) for n, s in (("a", 1.0), ("b", 100.0))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert seen == {"a": 1.0, "b": 100.0}


def test_a_new_thread_does_not_inherit_the_callers_deadline() -> None:
    """A thread started inside a deadline runs without it (contextvars are per thread)."""
    seen: list[float] = []
    with deadline(1):
        t = threading.Thread(target=lambda: seen.append(remaining()))
        t.start()
        t.join()
    assert seen == [math.inf]


def test_asyncio_tasks_do_not_share_deadlines() -> None:
    """Concurrent tasks with different deadlines each see only their own."""

    async def task(seconds: float, both_inside: asyncio.Barrier) -> float | None:
        with deadline(seconds):
            await both_inside.wait()
            return current_budget()

    async def main() -> list[float | None]:
        both_inside = asyncio.Barrier(2)
        return list(await asyncio.gather(task(1.0, both_inside), task(100.0, both_inside)))

    assert asyncio.run(main()) == [1.0, 100.0]


def test_a_deadline_set_in_a_task_does_not_leak_to_its_parent() -> None:
    """While a child task is inside its deadline, the task that started it has none."""

    async def main() -> float:
        inside, release = asyncio.Event(), asyncio.Event()

        async def child() -> None:
            with deadline(1):
                inside.set()
                await release.wait()

        task = asyncio.create_task(child())
        await inside.wait()
        seen = remaining()
        release.set()
        await task
        return seen

    assert asyncio.run(main()) == math.inf


def test_guarded_call_sees_the_policy_deadline(clock: FakeClock) -> None:
    """Inside a call guarded with deadline=s, remaining() is s."""
    assert guard("svc.dl", deadline=3.0)(remaining)() == 3.0


def test_policy_deadline_covers_all_attempts(clock: FakeClock) -> None:
    """The overall deadline is one budget across attempts: each retry sees less time."""
    seen: list[float] = []

    def down() -> None:
        seen.append(remaining())
        raise ConnectionError("down")

    policy = Policy("svc.dl", deadline=3.5, retry=Retry(attempts=10, backoff=fixed(1.0), budget=None))
    with pytest.raises(ConnectionError):
        policy.call(down)
    assert seen == [3.5, 2.5, 1.5, 0.5]


def test_enclosing_shorter_deadline_beats_the_policy_deadline(clock: FakeClock) -> None:
    """A caller's tighter deadline wins over the policy's own."""
    with deadline(1.0):
        assert guard("svc.dl", deadline=30.0)(remaining)() == 1.0


def test_attempt_timeout_gives_each_attempt_a_fresh_budget(clock: FakeClock) -> None:
    """attempt_timeout= is a per-attempt budget: every attempt starts with all of it."""
    seen: list[float] = []

    def down() -> None:
        seen.append(remaining())
        raise ConnectionError("down")

    policy = Policy("svc.at", attempt_timeout=1.0, retry=Retry(attempts=3, backoff=fixed(5), budget=None))
    with pytest.raises(ConnectionError):
        policy.call(down)
    assert seen == [1.0, 1.0, 1.0]


def test_overall_deadline_caps_the_attempt_timeout(clock: FakeClock) -> None:
    """When less of the overall deadline remains than attempt_timeout, the overall one wins."""
    seen: list[float] = []

    def down() -> None:
        seen.append(remaining())
        raise ConnectionError("down")

    policy = Policy("svc.at", deadline=2.5, attempt_timeout=2.0,
                    retry=Retry(attempts=5, backoff=fixed(1.0), budget=None))
    with pytest.raises(ConnectionError):
        policy.call(down)
    assert seen == [2.0, 1.5, 0.5]


def test_sync_call_that_overruns_is_not_killed(clock: FakeClock) -> None:
    """A sync call that outlives its deadline finishes and its result is returned."""

    def slow() -> str:
        clock.advance(10)
        return "done"

    assert guard("svc.slow", deadline=1.0)(slow)() == "done"


def test_injected_delay_past_attempt_timeout_fails_the_attempt(clock: FakeClock) -> None:
    """An interceptor delay longer than attempt_timeout fails that attempt with DeadlineExceeded."""
    runs: list[int] = []
    add_interceptor(lambda info: 5.0 if info.attempt == 1 else None)

    @guard("svc.lat", attempt_timeout=1.0, retry=Retry(attempts=2, backoff=none(), budget=None))
    def call() -> str:
        runs.append(1)
        return "ok"

    assert (call(), len(runs)) == ("ok", 1)


def test_async_deadline_cancels_the_call() -> None:
    """An async guarded call past its deadline is cancelled and raises DeadlineExceeded."""
    cancelled: list[bool] = []

    @guard("svc.hang", deadline=TINY)
    async def hang() -> None:
        try:
            await asyncio.Event().wait()  # never set
        except asyncio.CancelledError:
            cancelled.append(True)
            raise

    with pytest.raises(DeadlineExceeded) as info:
        asyncio.run(hang())
    assert (cancelled, info.value.budget, info.value.site) == ([True], TINY, "svc.hang")


def test_async_deadline_emits_deadline_expired(events: list[object]) -> None:
    """Cancelling an async call at its deadline emits DeadlineExpired with the budget."""

    @guard("svc.hang", deadline=TINY)
    async def hang() -> None:
        await asyncio.Event().wait()

    with pytest.raises(DeadlineExceeded):
        asyncio.run(hang())
    assert [e.budget for e in events if isinstance(e, DeadlineExpired)] == [TINY]


def test_async_attempt_timeout_cancels_one_attempt_and_retries() -> None:
    """An async attempt that hangs past attempt_timeout is cancelled and the next attempt runs."""
    attempts: list[AttemptInfo] = []
    add_interceptor(attempts.append)

    @guard("svc.hang-once", attempt_timeout=TINY, retry=Retry(attempts=2, backoff=none(), budget=None))
    async def hang_once() -> str:
        if len(attempts) == 1:
            await asyncio.Event().wait()
        return "ok"

    assert (asyncio.run(hang_once()), [a.attempt for a in attempts]) == ("ok", [1, 2])


def test_async_call_that_raises_its_own_timeout_is_not_a_deadline() -> None:
    """A TimeoutError raised by the call itself passes through unchanged, not as DeadlineExceeded."""
    own = TimeoutError("upstream said so")

    @guard("svc.own", deadline=30.0)
    async def call() -> None:
        raise own

    with pytest.raises(TimeoutError) as info:
        asyncio.run(call())
    assert info.value is own
