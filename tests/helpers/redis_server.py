"""Start a real ``redis-server`` on a free loopback port for a test session, and stop it.

::

    with redis_server() as server:
        client = redis.Redis.from_url(server.url)

No persistence (``--save '' --appendonly no``), bound to 127.0.0.1, its working
directory a temporary one. When the binary is missing the test FAILS (it is not
skipped): ``make test`` and ``.ci/run`` install it.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis

MISSING = (
    "redis-server was not found on PATH. The Redis tests need a real server: "
    "run `make test` or `.ci/run`, which install it (apt-get install -y redis-server)."
)
START_TIMEOUT = 15.0
POLL_INTERVAL = 0.02
START_ATTEMPTS = 3  # another process may take the free port before the server binds it


class ServerExited(RuntimeError):
    """The server process ended while starting (e.g. its port was taken meanwhile)."""


@dataclass(frozen=True, slots=True)
class RedisServer:
    """A running server: its port, URL and process."""

    port: int
    process: subprocess.Popen[bytes]
    log: Path

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"


def redis_binary() -> str:
    """Path of ``redis-server``; fails the test with instructions when it is missing."""
    found = shutil.which("redis-server")
    if found is None:
        pytest.fail(MISSING, pytrace=False)
    return found


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.contextmanager
def redis_server() -> Iterator[RedisServer]:
    """A fresh ``redis-server`` for the block; stopped (and waited for) afterwards."""
    binary = redis_binary()
    with tempfile.TemporaryDirectory(prefix="shockproof-redis-") as workdir:
        server = _launch(binary, Path(workdir))
        try:
            yield server
        finally:
            _stop(server.process)


def _launch(binary: str, workdir: Path) -> RedisServer:
    for attempt in range(1, START_ATTEMPTS + 1):
        server = _start(binary, workdir)
        try:
            _wait_until_ready(server)
        except ServerExited:
            if attempt == START_ATTEMPTS:
                raise
        except BaseException:
            _stop(server.process)
            raise
        else:
            return server
    raise AssertionError("unreachable")


def _start(binary: str, workdir: Path) -> RedisServer:
    port = free_port()
    log = workdir / "redis.log"
    argv = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
            "--appendonly", "no", "--dir", str(workdir), "--logfile", str(log)]
    process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                               stderr=subprocess.STDOUT)
    return RedisServer(port, process, log)


def _wait_until_ready(server: RedisServer) -> None:
    """Poll PING until it answers; fail with the server's log if it dies or never answers."""
    client = redis.Redis(host="127.0.0.1", port=server.port, socket_connect_timeout=0.5,
                         socket_timeout=0.5)
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            with contextlib.suppress(redis.ConnectionError, redis.TimeoutError, redis.BusyLoadingError):
                if client.ping():
                    return
            with contextlib.suppress(subprocess.TimeoutExpired):
                code = server.process.wait(timeout=POLL_INTERVAL)  # doubles as the poll interval
                raise ServerExited(f"redis-server exited with {code}: {_tail(server.log)}")
        raise RuntimeError(f"redis-server did not answer PING within {START_TIMEOUT}s: {_tail(server.log)}")
    finally:
        client.close()


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def _tail(log: Path) -> str:
    try:
        return log.read_text(errors="replace")[-2000:]
    except OSError:
        return "(no log)"
