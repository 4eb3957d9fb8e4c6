"""Several gunicorn workers share one circuit through a real redis-server."""

from __future__ import annotations

import json
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.demo_app.servers import ROOT, Server, child_env, python, start_upstream, stop, wait_http
from tests.helpers.redis_server import free_port, redis_server

pytestmark = pytest.mark.redis


@pytest.fixture
def redis_url() -> Iterator[str]:
    with redis_server() as server:
        yield server.url


@pytest.fixture
def two_workers(tmp_path: Path, redis_url: str) -> Iterator[tuple[str, Server]]:
    """The app under gunicorn with two sync workers, circuit state in Redis, its own upstream."""
    upstream = start_upstream()
    port = free_port()
    process = subprocess.Popen(
        python("demo_app.serve", "--port", port, "--workers", 2, "--redis-url", redis_url,
               "--upstream-url", upstream.url, "--data-dir", tmp_path / "data",
               "--circuit-failures", 3, "--upstream-attempts", 3, "--circuit-open-for", 300),
        env=child_env(), cwd=ROOT, stdin=subprocess.DEVNULL, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_http(base + "/healthz", process)
        yield base, upstream
    finally:
        stop(process)
        upstream.stop()


def _raw_get(sock: socket.socket, path: str) -> tuple[int, dict[str, Any]]:
    """Send one GET on an open socket and read the whole answer (the server closes it)."""
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode())
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    head, _, body = b"".join(chunks).partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body)


def test_a_circuit_opened_by_one_worker_is_open_in_the_other(two_workers: tuple[str, Server]) -> None:
    """Worker A opens the catalog circuit against a stopped upstream; worker B, which never
    called the upstream, reports it open too.

    Deterministic: a connection that has sent nothing keeps one sync worker (B) busy, so
    every other request goes to A; then that connection asks B.
    """
    base, upstream = two_workers
    port = int(base.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=30) as held:
        upstream.stop()
        opened = requests.get(base + "/api/titles/1", timeout=30)
        assert opened.status_code == 503
        seen_by_a = requests.get(base + "/readyz", timeout=30)
        body_a = seen_by_a.json()
        assert (seen_by_a.status_code, body_a["checks"]["circuits"]) == (503, {"catalog": "open"})
        status_b, body_b = _raw_get(held, "/readyz")
    assert body_b["pid"] != body_a["pid"]
    assert (status_b, body_b["checks"]["circuits"]) == (503, {"catalog": "open"})
