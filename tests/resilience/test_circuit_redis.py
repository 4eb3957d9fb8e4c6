"""Circuits sharing state through a real redis-server: across objects and across processes.

The server is started by the session fixture ``redis_url`` (tests/helpers/redis_server.py).
Each test uses its own key prefix. ``open_for`` is an hour, so it never elapses during
a test: nothing here waits for real time. pybreaker's Redis storage keeps ``opened_at``
in whole seconds; the tests that need exact times use a fake clock set in the future.
"""

from __future__ import annotations

import json
import math
import select
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from resilience import Circuit, CircuitOpenError, Policy, redis_storage
from resilience.testing import fake_clock

pytestmark = pytest.mark.redis

OPEN_FOR = 3600.0
REPO = Path(__file__).resolve().parents[2]
TIMEOUT = 30.0  # only reached when a worker is stuck


@pytest.fixture
def prefix() -> str:
    """A key prefix of this test's own."""
    return f"shockproof-test-{uuid.uuid4().hex}"


def shared(url: str, prefix: str, **config: Any) -> Circuit:
    settings: dict[str, Any] = {"consecutive": 3, "open_for": OPEN_FOR, **config}
    return Circuit("shared", storage=redis_storage(url, prefix=prefix), **settings)


class Upstream:
    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, fail: bool) -> str:
        self.calls += 1
        if fail:
            raise ConnectionError("upstream down")
        return "ok"


def attempt(circuit: Circuit, upstream: Upstream, fail: bool = False) -> Any:
    try:
        return Policy("redis.site", circuit=circuit).call(upstream, fail)
    except Exception as exc:
        return exc


def trip(circuit: Circuit, failures: int = 3) -> None:
    upstream = Upstream()
    for _ in range(failures):
        attempt(circuit, upstream, fail=True)


# -- two circuit objects in one process -------------------------------------------------------


def test_two_circuits_with_the_same_name_agree_on_open(redis_url: str, prefix: str) -> None:
    """When one object trips the shared circuit, the other reports it open."""
    one, other = shared(redis_url, prefix), shared(redis_url, prefix)
    trip(one)
    assert (one.state, other.state) == ("open", "open")


def test_the_other_circuit_rejects_without_calling_the_function(redis_url: str, prefix: str) -> None:
    """A call through the other object is rejected and its function never runs."""
    one, other = shared(redis_url, prefix), shared(redis_url, prefix)
    upstream = Upstream()
    trip(one)
    outcome = attempt(other, upstream)
    assert isinstance(outcome, CircuitOpenError)
    assert upstream.calls == 0


def test_failures_counted_by_two_circuits_add_up(redis_url: str, prefix: str) -> None:
    """Consecutive failures through either object count towards one shared threshold."""
    one, other = shared(redis_url, prefix, consecutive=2), shared(redis_url, prefix, consecutive=2)
    trip(one, 1)
    assert other.state == "closed"
    trip(other, 1)
    assert one.state == "open"


def test_reset_through_one_circuit_closes_the_other(redis_url: str, prefix: str) -> None:
    """After reset() on one object, the other admits calls again."""
    one, other = shared(redis_url, prefix), shared(redis_url, prefix)
    upstream = Upstream()
    trip(one)
    other.reset()
    assert attempt(one, upstream) == "ok"
    assert one.state == "closed"


def test_the_other_circuit_notes_the_change_in_its_history(redis_url: str, prefix: str) -> None:
    """A change made through another object shows in this one's history when it next looks."""
    one, other = shared(redis_url, prefix), shared(redis_url, prefix)
    trip(one)
    attempt(other, Upstream())
    assert [(c.old, c.new) for c in other.history] == [("closed", "open")]


def test_prefixes_keep_circuits_apart(redis_url: str, prefix: str) -> None:
    """The same circuit name under another prefix is a different circuit."""
    one, stranger = shared(redis_url, prefix), shared(redis_url, prefix + "-other")
    trip(one)
    assert stranger.state == "closed"


def test_retry_after_from_redis_is_the_open_time_left(redis_url: str, prefix: str) -> None:
    """The other object's rejection says how long is left, within the storage's one second."""
    one, other = shared(redis_url, prefix), shared(redis_url, prefix)
    trip(one)
    outcome = attempt(other, Upstream())
    assert isinstance(outcome, CircuitOpenError)
    assert OPEN_FOR - 2 < outcome.retry_after <= OPEN_FOR


def test_the_circuit_that_opened_keeps_its_full_open_time(redis_url: str, prefix: str) -> None:
    """Whole-second storage does not cut the open time of the object that opened it."""
    start = math.floor(time.time()) + 86_400 + 0.75  # ahead of the real clock, mid-second
    with fake_clock(start) as clock:
        circuit = shared(redis_url, prefix, consecutive=1, open_for=0.5)
        trip(circuit, 1)
        assert (circuit.state, circuit.retry_after) == ("open", 0.5)
        clock.advance(0.5)
        assert circuit.state == "half-open"


# -- two real processes ---------------------------------------------------------------------------

WORKER = """
import json, sys
from resilience import Circuit, CircuitOpenError, Policy, redis_storage

url, prefix = sys.argv[1], sys.argv[2]
circuit = Circuit("shared", consecutive=3, open_for=3600, storage=redis_storage(url, prefix=prefix))
policy = Policy("worker.site", circuit=circuit)
calls = 0

def upstream(fail):
    global calls
    calls += 1
    if fail:
        raise ConnectionError("upstream down")
    return "ok"

def answer(outcome):
    print(json.dumps({"outcome": outcome, "calls": calls, "state": circuit.state}), flush=True)

answer("ready")
for line in sys.stdin:
    command = line.strip()
    if command == "reset":
        circuit.reset()
        answer("reset")
        continue
    try:
        answer(policy.call(upstream, command == "fail"))
    except Exception as exc:
        answer(type(exc).__name__)
"""


class Worker:
    """Another Python process holding its own Circuit on the same Redis keys."""

    def __init__(self, url: str, prefix: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-c", WORKER, url, prefix], cwd=REPO, text=True,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )

    def read(self) -> dict[str, Any]:
        stdout = self.process.stdout
        assert stdout is not None
        ready, _, _ = select.select([stdout], [], [], TIMEOUT)
        line = stdout.readline() if ready else ""
        if not line:
            self.process.kill()
            _, err = self.process.communicate(timeout=TIMEOUT)
            raise AssertionError(f"worker gave no answer; stderr:\n{err}")
        answer: dict[str, Any] = json.loads(line)
        return answer

    def ask(self, command: str) -> dict[str, Any]:
        stdin = self.process.stdin
        assert stdin is not None
        stdin.write(command + "\n")
        stdin.flush()
        return self.read()

    def close(self) -> None:
        try:
            self.process.communicate(timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.communicate(timeout=TIMEOUT)


@pytest.fixture
def workers(redis_url: str, prefix: str) -> Iterator[tuple[Worker, Worker]]:
    """Two processes, each with the same circuit on the same Redis, both ready."""
    a, b = Worker(redis_url, prefix), Worker(redis_url, prefix)
    try:
        assert a.read()["state"] == b.read()["state"] == "closed"
        yield a, b
    finally:
        a.close()
        b.close()


def test_a_process_is_rejected_after_another_process_tripped_the_circuit(
    workers: tuple[Worker, Worker],
) -> None:
    """Process A trips the circuit; process B's call is rejected and its function never runs."""
    a, b = workers
    tripping = [a.ask("fail") for _ in range(3)]
    answer = b.ask("ok")
    assert [t["outcome"] for t in tripping] == ["ConnectionError"] * 3
    assert tripping[-1]["state"] == "open"
    assert answer == {"outcome": "CircuitOpenError", "calls": 0, "state": "open"}


def test_reset_in_one_process_closes_the_circuit_for_the_other(workers: tuple[Worker, Worker]) -> None:
    """After B resets the circuit A tripped, A sees it closed and its calls go through."""
    a, b = workers
    for _ in range(3):
        a.ask("fail")
    assert b.ask("reset")["state"] == "closed"
    assert a.ask("ok") == {"outcome": "ok", "calls": 4, "state": "closed"}
