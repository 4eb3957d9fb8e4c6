"""Threads sharing one circuit run their calls in parallel; pybreaker's own call() does not.

Overlap is proven with barriers inside the guarded function and a gauge of calls in
flight, never by wall time: a barrier only opens when all its parties are inside at
once, and its timeout turns a regression into a failure instead of a hang.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pybreaker
import pytest

import resilience
from resilience import Circuit, CircuitOpenError, guard
from resilience.testing import FakeClock, fake_clock

THREADS = 16
TIMEOUT = 10.0  # only reached when something is broken
SHORT = 0.2  # how long a serialized second caller is given to (wrongly) get in


class Gauge:
    """Counts calls in flight and remembers the most seen at once."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.active = 0
        self.most = 0

    def __enter__(self) -> None:
        with self._lock:
            self.active += 1
            self.most = max(self.most, self.active)

    def __exit__(self, *exc: object) -> None:
        with self._lock:
            self.active -= 1


def run_threads(fn: Callable[[], Any], count: int = THREADS) -> list[Any]:
    """Run ``fn`` on ``count`` threads at once; each one's result or exception."""
    results: list[Any] = [None] * count

    def work(i: int) -> None:
        try:
            results[i] = fn()
        except BaseException as exc:
            results[i] = exc

    threads = [threading.Thread(target=work, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(TIMEOUT * 2)
    assert not any(thread.is_alive() for thread in threads), "a thread hung"
    return results


@pytest.fixture
def clock() -> Iterator[FakeClock]:
    with fake_clock() as fake:
        yield fake


CIRCUITS: dict[str, Callable[[], Circuit]] = {
    "consecutive": lambda: Circuit("parallel", consecutive=5),
    "failure-rate": lambda: Circuit("parallel", failure_rate=0.5, window=20, min_calls=10),
}


@pytest.mark.parametrize("make", CIRCUITS.values(), ids=CIRCUITS.keys())
@pytest.mark.parametrize("listening", [False, True], ids=["quiet", "with-subscriber"])
def test_threads_sharing_a_circuit_run_their_calls_in_parallel(
    make: Callable[[], Circuit], listening: bool
) -> None:
    """All 16 threads are inside the guarded function at the same time."""
    if listening:
        resilience.subscribe(lambda event: None)
    barrier = threading.Barrier(THREADS, timeout=TIMEOUT)
    gauge = Gauge()

    @guard("parallel.fetch", circuit=make())
    def fetch() -> str:
        with gauge:
            barrier.wait()
        return "ok"

    results = run_threads(fetch)
    assert results == ["ok"] * THREADS
    assert gauge.most == THREADS


@pytest.mark.parametrize("mode", [{"consecutive": THREADS},
                                  {"failure_rate": 1.0, "window": THREADS, "min_calls": THREADS}],
                         ids=["consecutive", "failure-rate"])
def test_parallel_failures_are_all_counted(clock: FakeClock, mode: dict[str, Any]) -> None:
    """16 overlapping counted failures open a circuit whose threshold is exactly 16."""
    barrier = threading.Barrier(THREADS, timeout=TIMEOUT)
    circuit = Circuit("parallel.failures", **mode)

    @guard("parallel.fail", circuit=circuit)
    def fetch() -> str:
        barrier.wait()
        raise ConnectionError("upstream down")

    results = run_threads(fetch)
    assert all(isinstance(r, ConnectionError) for r in results)
    assert circuit.state == "open"


def test_half_open_admits_exactly_n_of_many_concurrent_callers(clock: FakeClock) -> None:
    """16 threads hit a half-open circuit with 4 probes: 4 run (together), 12 are rejected."""
    probes = 4
    circuit = Circuit("parallel.probes", consecutive=1, open_for=30, half_open_probes=probes)
    circuit.force_open()
    clock.advance(30)
    together = threading.Barrier(probes, timeout=TIMEOUT)
    release = threading.Event()
    finished = threading.Condition()
    rejected: list[CircuitOpenError] = []
    calls = Gauge()

    @guard("parallel.probe", circuit=circuit)
    def probe() -> str:
        with calls:
            together.wait()
            release.wait(TIMEOUT)
        return "ok"

    def caller() -> str:
        try:
            return probe()
        except CircuitOpenError as exc:
            with finished:
                rejected.append(exc)
                finished.notify_all()
            raise

    def release_after_rejections() -> None:
        with finished:
            finished.wait_for(lambda: len(rejected) == THREADS - probes, TIMEOUT)
        release.set()  # only now may the probes finish (and close the circuit)

    releaser = threading.Thread(target=release_after_rejections)
    releaser.start()
    results = run_threads(caller)
    releaser.join(TIMEOUT)
    assert results.count("ok") == probes
    assert len(rejected) == THREADS - probes
    assert all(exc.state == "half-open" for exc in rejected)
    assert calls.most == probes
    assert circuit.state == "closed"


def test_async_tasks_sharing_a_circuit_run_concurrently() -> None:
    """16 tasks are inside the guarded coroutine at the same time."""
    gauge = Gauge()

    async def main() -> list[str]:
        barrier = asyncio.Barrier(THREADS)

        @guard("parallel.afetch", circuit=Circuit("parallel.async", consecutive=5))
        async def fetch() -> str:
            with gauge:
                async with asyncio.timeout(TIMEOUT):
                    await barrier.wait()
            return "ok"

        return await asyncio.gather(*(fetch() for _ in range(THREADS)))

    assert asyncio.run(main()) == ["ok"] * THREADS
    assert gauge.most == THREADS


# -- the contrast: pybreaker's own call() holds its lock across the call -----------------------


class Overlap:
    """A first call that waits inside until released, and a second one that notes it got in."""

    def __init__(self) -> None:
        self.first_inside = threading.Event()
        self.second_inside = threading.Event()
        self.release = threading.Event()
        self.gauge = Gauge()

    def first(self) -> str:
        with self.gauge:
            self.first_inside.set()
            self.release.wait(TIMEOUT * 2)  # longer than run() waits for the second
        return "first"

    def second(self) -> str:
        with self.gauge:
            self.second_inside.set()
        return "second"

    def run(self, call: Callable[[Callable[[], str]], str], wait_for_second: float) -> bool:
        """Start first, then second while first is inside; True if second got in meanwhile."""
        one = threading.Thread(target=call, args=(self.first,))
        one.start()
        assert self.first_inside.wait(TIMEOUT)
        two = threading.Thread(target=call, args=(self.second,))
        two.start()
        overlapped = self.second_inside.wait(wait_for_second)
        self.release.set()
        one.join(TIMEOUT)
        two.join(TIMEOUT)
        assert self.second_inside.is_set(), "the second call never ran"
        return overlapped


def test_pybreaker_call_serializes_threads_sharing_a_breaker() -> None:
    """With pybreaker's call(), a second thread waits until the first call has returned."""
    overlap = Overlap()
    breaker = pybreaker.CircuitBreaker()
    got_in = overlap.run(breaker.call, SHORT)
    assert not got_in
    assert overlap.gauge.most == 1


def test_circuit_lets_a_second_thread_in_while_the_first_is_inside() -> None:
    """With our Circuit, a second thread runs while the first is still inside."""
    overlap = Overlap()
    policy = resilience.Policy("overlap", circuit=Circuit("overlap", consecutive=5))
    got_in = overlap.run(policy.call, TIMEOUT)
    assert got_in
    assert overlap.gauge.most == 2
