"""``guard()`` against tenacity, pybreaker, stamina and circuitbreaker (issue 2's targets).

Three measurements, all in the same run:

1. the success path (nothing fails) of each library's decorator around a trivial call;
2. one failure then a success per call, waits off on both sides;
3. throughput of 16 threads through one circuit around a call that sleeps 20 ms
   (pybreaker's ``call()`` holds its lock across the call; ``guard`` does not).
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from typing import Any

import circuitbreaker
import pybreaker
import stamina
import tenacity

from resilience import Circuit, Retry, guard
from resilience.testing import waits_off

from ._harness import Bench, Case, Load

SUCCESS = "success path (nothing fails)"
FLAKY = "one failure then success (waits off)"
THROUGHPUT = "throughput: 16 threads, one circuit, 20 ms call"
THREADS = 16
SLEEP = 0.02


def work() -> int:
    """The guarded call of the success path: as cheap as a call gets."""
    return 42


def sleepy() -> int:
    """The guarded call of the throughput test: 20 ms of (real) waiting, no CPU."""
    time.sleep(SLEEP)
    return 42


class Flaky:
    """Fails with ConnectionError on every other call, starting with the first."""

    __slots__ = ("calls",)

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self) -> int:
        self.calls += 1
        if self.calls % 2:
            raise ConnectionError("flaky upstream")
        return 42


def passthrough(fn: Callable[..., Any]) -> Callable[..., Any]:
    """The cheapest honest decorator: a ``functools.wraps`` pass-through."""
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        return fn(*args, **kwargs)
    return wrapper


def tenacity_retry(fn: Callable[..., Any], **extra: Any) -> Callable[..., Any]:
    """tenacity's ``@retry`` as issue 2 compares it: 4 attempts, full-jitter exponential waits."""
    decorate = tenacity.retry(stop=tenacity.stop_after_attempt(4),
                              wait=tenacity.wait_random_exponential(), **extra)
    wrapped: Callable[..., Any] = decorate(fn)
    return wrapped


def breaker() -> Any:
    return pybreaker.CircuitBreaker(fail_max=5, reset_timeout=30)


def guarded(name: str, fn: Callable[..., Any], *, rate: bool) -> Callable[..., Any]:
    """``guard`` with retry + circuit (consecutive or failure-rate mode) + deadline."""
    circuit = (Circuit(name, failure_rate=0.5, window=20, min_calls=10, open_for=30) if rate
               else Circuit(name, consecutive=5, open_for=30))
    return guard(name, retry=Retry(attempts=4), circuit=circuit, deadline=2.0)(fn)


def success_cases() -> dict[str, Case]:
    return {
        "bare call": work,
        "pass-through wrapper": passthrough(work),
        "tenacity @retry": tenacity_retry(work),
        "pybreaker": breaker()(work),
        "stamina": stamina.retry(on=ConnectionError, attempts=4)(work),
        "circuitbreaker": circuitbreaker.circuit(failure_threshold=5, recovery_timeout=30)(work),
        "tenacity+pybreaker": tenacity_retry(breaker()(work)),
        "guard (consecutive)": guarded("bench.consecutive", work, rate=False),
        "guard (failure_rate)": guarded("bench.failure_rate", work, rate=True),
        # where guard's time goes: the same policy without its deadline, and a circuit alone
        "guard (consecutive), no deadline": guard(
            "bench.no_deadline", retry=Retry(attempts=4),
            circuit=Circuit("bench.no_deadline", consecutive=5, open_for=30))(work),
        "guard (circuit only)": guard(
            "bench.circuit_only", circuit=Circuit("bench.circuit_only", consecutive=5, open_for=30))(work),
    }


def flaky_cases() -> dict[str, Case]:
    by_hand = Flaky()

    def try_twice() -> int:
        try:
            return by_hand()
        except ConnectionError:
            return by_hand()

    return {
        "try/except by hand": try_twice,
        "tenacity @retry (sleep off)": tenacity_retry(Flaky(), sleep=lambda s: None),
        "guard retry (waits_off)": guard("bench.flaky", retry=Retry(attempts=4, budget=None))(Flaky()),
    }


def throughput_cases() -> dict[str, Load]:
    shared = breaker()
    return {
        "no circuit": Load(sleepy, 10),
        "pybreaker call()": Load(functools.partial(shared.call, sleepy), 2),
        "guard, consecutive circuit": Load(guarded("bench.tp.consecutive", sleepy, rate=False), 10),
        "guard, failure_rate circuit": Load(guarded("bench.tp.failure_rate", sleepy, rate=True), 10),
    }


def run(bench: Bench, *, throughput_rounds: int = 5) -> Bench:
    """Take every measurement and record the targets of issue 2."""
    bench.time_calls(SUCCESS, success_cases(), baseline="bare call")
    with waits_off():
        bench.time_calls(FLAKY, flaky_cases(), baseline="tenacity @retry (sleep off)")
    bench.throughput(THROUGHPUT, throughput_cases(), threads=THREADS, rounds=throughput_rounds,
                     baseline="pybreaker call()")
    for mode in ("consecutive", "failure_rate"):
        g = f"guard ({mode})"
        bench.compare(f"{g} / tenacity+pybreaker", g, "tenacity+pybreaker", at_most=0.05)
        bench.compare(f"{g} / pybreaker", g, "pybreaker", at_most=0.5)
    bench.compare("guard retry / tenacity, 1 failure", "guard retry (waits_off)",
                  "tenacity @retry (sleep off)", at_most=0.2)
    for mode in ("consecutive", "failure_rate"):
        g = f"guard, {mode} circuit"
        bench.compare(f"{g} / pybreaker call(), 16 threads", g, "pybreaker call()", at_least=10)
    bench.note("success path: guard = retry(attempts=4) + circuit + deadline(2 s) unless the row says "
               "otherwise; tenacity = stop_after_attempt(4) + wait_random_exponential")
    bench.note("throughput: calls/s of 16 threads; pybreaker's call() holds its lock across the call")
    return bench


def main() -> None:
    run(Bench("resilience")).report()


if __name__ == "__main__":
    main()
