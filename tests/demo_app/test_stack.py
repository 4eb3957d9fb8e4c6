"""``python -m demo_app`` for real: the stack starts, serves, and leaves no process behind."""

from __future__ import annotations

import signal
import socket
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from tests.demo_app.servers import (
    ROOT,
    LineReader,
    alive,
    child_env,
    commands_running,
    descendants,
    python,
    stop,
)
from tests.helpers.redis_server import free_port

READY = "Shockproof demo is ready"


@dataclass
class Stack:
    process: subprocess.Popen[bytes]
    output: LineReader
    app: str
    upstream: str
    viewer: str
    data_dir: Path
    proxy_control: str


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """The whole demo started as a user would, on free ports, until it prints that it is ready.

    One stack for the module: the last test stops it with SIGTERM.
    """
    app_port, upstream_port, viewer_port = free_port(), free_port(), free_port()
    proxy_port, control_port = free_port(), free_port()
    data_dir = tmp_path_factory.mktemp("stack") / "demo-data"
    process = subprocess.Popen(
        python("demo_app", "--port", app_port, "--upstream-port", upstream_port,
               "--viewer-port", viewer_port, "--proxy-port", proxy_port,
               "--proxy-control-port", control_port, "--data-dir", data_dir),
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        env=child_env(), cwd=ROOT, start_new_session=True)
    output = LineReader(process)
    try:
        assert output.wait_for(READY, timeout=60), "\n".join(output.lines)
        yield Stack(process, output, f"http://127.0.0.1:{app_port}",
                    f"http://127.0.0.1:{upstream_port}", f"http://127.0.0.1:{viewer_port}", data_dir,
                    f"http://127.0.0.1:{control_port}")
    finally:
        stop(process)


def test_the_stack_serves_the_app_and_the_upstream(stack: Stack) -> None:
    """Once ready: /healthz answers, the catalog comes from the upstream, media is seeded."""
    assert requests.get(stack.app + "/healthz", timeout=5).json() == {"status": "ok"}
    catalog = requests.get(stack.app + "/api/catalog", timeout=10).json()
    assert [t["id"] for t in catalog["titles"]] == [1, 2, 3]
    assert requests.get(stack.upstream + "/healthz", timeout=5).status_code == 200
    sizes = [(stack.data_dir / "media" / f"{i}.wav").stat().st_size for i in (1, 2, 3)]
    assert min(sizes) >= 100 * 1024
    printed = "\n".join(stack.output.lines)
    assert stack.app in printed
    assert stack.upstream in printed


def test_the_stack_starts_the_trace_viewer_on_its_port(stack: Stack) -> None:
    """telemetry.viewer is installed, so the runner starts it and prints its URL."""
    assert requests.get(stack.viewer + "/", timeout=10).status_code == 200
    assert f"viewer    {stack.viewer}" in "\n".join(stack.output.lines)


def test_the_app_reaches_the_upstream_through_the_chaos_proxy(stack: Stack) -> None:
    """A reset toxic on the proxy makes the next catalog answer degraded: real sockets in between."""
    from fault_injection.proxy import ProxyClient, reset_peer

    assert requests.get(stack.app + "/api/catalog", timeout=10).json()["degraded"] is False
    token = (stack.data_dir / "faults.token").read_text().strip()
    client = ProxyClient(stack.proxy_control, token)
    client.add_toxic(reset_peer(name="stack-reset"))
    try:
        answer = requests.get(stack.app + "/api/catalog", timeout=10)
    finally:
        client.remove_toxic("stack-reset")
    assert (answer.status_code, answer.json()["degraded"]) == (200, True)
    assert answer.headers["X-Shockproof-Degraded"] == "1"


def test_the_stack_enables_fault_injection_behind_its_token(stack: Stack) -> None:
    """The app's fault control API is on, and refuses a request without the shared token."""
    token = (stack.data_dir / "faults.token").read_text().strip()
    url = stack.app + "/_shockproof/faults/status"
    assert requests.get(url, timeout=5).status_code == 401
    status = requests.get(url, headers={"Authorization": f"Bearer {token}"}, timeout=5).json()
    assert status["enabled"] is True


def test_sigterm_stops_every_child_process(stack: Stack) -> None:
    """SIGTERM to the runner: it exits 0 and none of the processes it started is left."""
    children = descendants(stack.process.pid)
    assert len(children) >= 3  # upstream, proxy and app (and their helpers)
    stack.process.send_signal(signal.SIGTERM)
    assert stack.process.wait(timeout=30) == 0
    assert sorted(pid for pid in children if alive(pid)) == []
    assert stack.output.wait_for("stopped every process", timeout=5)
    with pytest.raises(requests.ConnectionError):
        requests.get(stack.app + "/healthz", timeout=2)


def test_a_child_that_cannot_start_stops_the_stack_with_status_1(tmp_path: Path) -> None:
    """The upstream's port is taken: the runner says so, exits 1 and leaves no process behind."""
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen(1)
        taken = squatter.getsockname()[1]
        process = subprocess.Popen(
            python("demo_app", "--port", free_port(), "--upstream-port", taken,
                   "--data-dir", tmp_path / "d"),
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env=child_env(), cwd=ROOT, start_new_session=True)
        output = LineReader(process)
        try:
            assert process.wait(timeout=60) == 1
        finally:
            stop(process)
    assert output.wait_for("upstream exited with status", timeout=5), "\n".join(output.lines)
    assert commands_running("demo_app", str(taken)) == []
