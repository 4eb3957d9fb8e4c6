"""Finished requests completed in batches: in order, at a full batch, on demand, within the interval."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import ClassVar

import pytest

from telemetry._deferred import Deferred
from telemetry._metrics import drops


class Item:
    """A completion that records its turn."""

    def __init__(self, n: int, done: list[int], fail: bool = False,
                 then: Callable[[], object] | None = None) -> None:
        self.n, self.done, self.fail, self.then = n, done, fail, then

    def complete(self) -> None:
        if self.fail:
            raise RuntimeError("broken completion")
        self.done.append(self.n)
        if self.then is not None:
            self.then()


@pytest.fixture(autouse=True)
def _clean_drops() -> Iterator[None]:
    """The process-wide drop counter starts and ends empty."""
    drops.clear()
    yield
    drops.clear()


@pytest.fixture
def deferred() -> Iterator[Deferred]:
    """A Deferred whose flusher would wait an hour (only batches and drains complete)."""
    d = Deferred(batch=3, interval=3600.0)
    yield d
    d.close()


def test_a_full_batch_is_completed_in_order(deferred: Deferred) -> None:
    """The item that fills a batch completes the batch, oldest first."""
    done: list[int] = []
    for n in range(2):
        deferred.add(Item(n, done))
    assert done == []
    deferred.add(Item(2, done))
    assert done == [0, 1, 2]


def test_drain_completes_what_waits_and_then_runs_after() -> None:
    """drain() completes every waiting item, then the after-batch step."""
    done: list[int] = []
    deferred = Deferred(batch=100, interval=3600.0, after=lambda: done.append(-1))
    try:
        deferred.add(Item(1, done))
        deferred.add(Item(2, done))
        deferred.drain()
        assert done == [1, 2, -1]
    finally:
        deferred.close()


def test_a_failing_completion_is_counted_and_the_others_complete(deferred: Deferred) -> None:
    """One broken item costs itself (counted as a dropped request), not its batch."""
    done: list[int] = []
    for n, fail in ((1, False), (2, True), (3, False)):
        deferred.add(Item(n, done, fail))
    assert done == [1, 3]
    assert drops.counts()["requests"] == 1


def test_immediate_mode_completes_each_item_as_it_comes(deferred: Deferred) -> None:
    """While immediate is set (telemetry.testing.capture), nothing waits."""
    done: list[int] = []
    deferred.immediate += 1
    deferred.add(Item(7, done))
    assert done == [7]


def test_the_flusher_completes_a_lone_item_within_its_interval() -> None:
    """A request alone (no batch, no drain) is completed by the flusher thread."""
    finished = threading.Event()
    deferred = Deferred(batch=100, interval=0.01)
    try:
        deferred.add(Item(1, [], then=finished.set))
        assert finished.wait(10.0)
    finally:
        deferred.close()


def test_close_completes_what_waits() -> None:
    """close() completes the waiting items and stops the flusher."""
    done: list[int] = []
    deferred = Deferred(batch=100, interval=3600.0)
    deferred.add(Item(1, done))
    deferred.close()
    assert done == [1]
    assert deferred._thread is None or not deferred._thread.is_alive()


def test_a_drain_completes_only_what_waited_when_it_began(deferred: Deferred) -> None:
    """Items added while a drain runs are left for the next one (a drain always ends)."""
    done: list[int] = []
    deferred.add(Item(1, done, then=lambda: deferred._pending.append(Item(99, done))))
    deferred.drain()
    assert done == [1]
    deferred.drain()
    assert done == [1, 99]


class Many(Item):
    """A completion whose class completes runs of its items in one call."""

    calls: ClassVar[list[list[int]]] = []

    @staticmethod
    def complete_many(items: list[Many]) -> None:
        Many.calls.append([item.n for item in items])
        for item in items:
            item.complete()


def test_runs_of_a_class_with_complete_many_are_completed_together() -> None:
    """Consecutive items of a class offering complete_many go in one call; order is kept."""
    done: list[int] = []
    Many.calls = []
    deferred = Deferred(batch=100, interval=3600.0)
    try:
        for item in (Many(1, done), Many(2, done), Item(3, done), Many(4, done)):
            deferred.add(item)
        deferred.drain()
    finally:
        deferred.close()
    assert done == [1, 2, 3, 4]
    assert Many.calls == [[1, 2], [4]]


def test_a_failing_complete_many_counts_its_run(deferred: Deferred) -> None:
    """complete_many raising costs the items of its run, counted; the others complete."""
    done: list[int] = []
    Many.calls = []
    deferred.add(Item(1, done))
    deferred.add(Many(2, done, fail=True))
    deferred.add(Many(3, done))
    assert done == [1]
    assert drops.counts()["requests"] == 2
