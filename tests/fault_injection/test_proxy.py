"""The chaos proxy: every toxic observed from a real client socket through a real upstream."""

from __future__ import annotations

import argparse
import contextlib
import os
import select
import signal
import socket
import socketserver
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from fault_injection._proxy_cli import add_proxy_commands
from fault_injection.proxy import (
    ChaosProxy,
    ControlAuthFailed,
    ControlServer,
    ControlUnreachable,
    DuplicateToxic,
    InvalidToxic,
    ProxyClient,
    Toxic,
    UnknownToxic,
    bandwidth,
    black_hole,
    down,
    latency,
    limit_data,
    parse_address,
    reset_peer,
    slicer,
)

TOKEN = "proxy-test-token"


class _Echo(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        try:
            while data := self.request.recv(65536):
                self.request.sendall(data)
        except OSError as exc:
            self.server.errors.append(exc)  # type: ignore[attr-defined]


class EchoServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Echo)
        self.errors: list[OSError] = []

    @property
    def address(self) -> tuple[str, int]:
        host, port = self.server_address[:2]
        return str(host), int(port)


@pytest.fixture
def upstream() -> Iterator[EchoServer]:
    """A real TCP echo server on a free loopback port."""
    server = EchoServer()
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    yield server
    server.shutdown()
    thread.join(5)
    server.server_close()


@pytest.fixture
def proxy(upstream: EchoServer) -> Iterator[ChaosProxy]:
    """A running proxy in front of the echo server."""
    with ChaosProxy(upstream.address, seed=7) as running:
        yield running


@contextlib.contextmanager
def connect(proxy: ChaosProxy, timeout: float = 2.0) -> Iterator[socket.socket]:
    sock = socket.create_connection(proxy.listen, timeout=timeout)
    try:
        yield sock
    finally:
        sock.close()


def read_all(sock: socket.socket, limit: int = 1 << 20) -> bytes:
    """Everything until EOF."""
    data = b""
    while len(data) < limit and (chunk := sock.recv(65536)):
        data += chunk
    return data


def read_exactly(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n and (chunk := sock.recv(n - len(data))):
        data += chunk
    return data


def readable_within(sock: socket.socket, seconds: float) -> bool:
    """Whether data (or EOF) arrives within ``seconds`` (a select poll, no sleeping)."""
    ready, _, _ = select.select([sock], [], [], seconds)
    return bool(ready)


def test_bytes_pass_through_unchanged(proxy: ChaosProxy) -> None:
    """Without toxics the proxy forwards both ways byte for byte."""
    payload = bytes(range(256)) * 300
    with connect(proxy) as sock:
        sock.sendall(payload)
        assert read_exactly(sock, len(payload)) == payload


def test_latency_delays_the_first_byte(proxy: ChaosProxy) -> None:
    """With 0.4 s of latency downstream nothing arrives within 0.2 s, then the echo does."""
    proxy.add_toxic(latency(0.4))
    with connect(proxy) as sock:
        sock.sendall(b"ping")
        assert not readable_within(sock, 0.2)
        assert readable_within(sock, 2.0)
        assert sock.recv(16) == b"ping"


def test_latency_added_at_runtime_acts_on_an_open_connection(proxy: ChaosProxy) -> None:
    """A toxic added while a connection is open applies to its next chunk."""
    with connect(proxy) as sock:
        sock.sendall(b"a")
        assert sock.recv(1) == b"a"
        proxy.add_toxic(latency(0.4, stream="upstream"))
        sock.sendall(b"b")
        assert not readable_within(sock, 0.2)
        assert sock.recv(1) == b"b"


def test_removing_a_toxic_restores_normal_traffic(proxy: ChaosProxy) -> None:
    """After remove_toxic the black hole no longer swallows data."""
    proxy.add_toxic(black_hole(name="hole"))
    proxy.remove_toxic("hole")
    with connect(proxy) as sock:
        sock.sendall(b"back")
        assert read_exactly(sock, 4) == b"back"


def test_down_refuse_refuses_connections_until_removed(proxy: ChaosProxy) -> None:
    """down(mode=refuse) closes the listener: connecting is refused; removing it reopens."""
    proxy.add_toxic(down("refuse"))
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(proxy.listen, timeout=2).close()
    proxy.remove_toxic("down_downstream")
    with connect(proxy) as sock:
        sock.sendall(b"up")
        assert read_exactly(sock, 2) == b"up"


def test_down_close_accepts_then_closes(proxy: ChaosProxy) -> None:
    """down(mode=close) accepts the connection and closes it at once: the client reads EOF."""
    proxy.add_toxic(down("close"))
    with connect(proxy) as sock:
        assert read_all(sock) == b""


def test_down_drops_connections_already_open(proxy: ChaosProxy) -> None:
    """Adding a down toxic closes the connections it applies to."""
    with connect(proxy) as sock:
        sock.sendall(b"x")
        assert sock.recv(1) == b"x"
        proxy.add_toxic(down("close"))
        assert read_all(sock) == b""


def test_reset_peer_resets_the_client(proxy: ChaosProxy) -> None:
    """reset_peer downstream: the client gets a TCP RST (ConnectionResetError), not a clean EOF."""
    proxy.add_toxic(reset_peer())
    with connect(proxy) as sock:
        sock.sendall(b"hello")
        with pytest.raises(ConnectionResetError):
            read_all(sock)


def test_reset_peer_upstream_resets_the_upstream(proxy: ChaosProxy, upstream: EchoServer) -> None:
    """reset_peer upstream: the upstream server sees the reset; the client a normal close."""
    proxy.add_toxic(reset_peer(stream="upstream"))
    with connect(proxy) as sock:
        sock.sendall(b"hello")
        assert read_all(sock) == b""
    deadline = time.monotonic() + 2
    while not upstream.errors and time.monotonic() < deadline:
        threading.Event().wait(0.01)
    assert any(isinstance(e, ConnectionResetError) for e in upstream.errors)


def test_black_hole_never_answers(proxy: ChaosProxy) -> None:
    """timeout with timeout=0: the data is swallowed; the client's read times out."""
    proxy.add_toxic(black_hole())
    with connect(proxy, timeout=0.2) as sock:
        sock.sendall(b"anyone?")
        with pytest.raises(TimeoutError):
            sock.recv(16)


def test_black_hole_with_timeout_closes_the_connection(proxy: ChaosProxy) -> None:
    """timeout=0.1: nothing comes back, then the connection is closed."""
    proxy.add_toxic(black_hole(0.1))
    with connect(proxy) as sock:
        sock.sendall(b"anyone?")
        assert read_all(sock) == b""


def test_bandwidth_paces_the_stream(proxy: ChaosProxy) -> None:
    """At 10 kB/s, 4 kB cannot all arrive within 0.15 s; all of it arrives eventually."""
    proxy.add_toxic(bandwidth(10_000))
    payload = b"z" * 4000
    with connect(proxy) as sock:
        sock.sendall(payload)
        early, deadline = b"", time.monotonic() + 0.15
        while (left := deadline - time.monotonic()) > 0 and readable_within(sock, left):
            early += sock.recv(65536)
        assert len(early) < len(payload)
        assert early + read_exactly(sock, len(payload) - len(early)) == payload


def test_slicer_cuts_the_stream_into_small_pieces(proxy: ChaosProxy) -> None:
    """slicer(10 bytes, 50 ms apart): the first read gets at most one slice; the rest follows intact."""
    proxy.add_toxic(slicer(10, 0, 0.05))
    payload = bytes(range(100))
    with connect(proxy) as sock:
        sock.sendall(payload)
        first = sock.recv(1000)
        assert 0 < len(first) <= 10
        assert first + read_exactly(sock, len(payload) - len(first)) == payload


def test_limit_data_closes_after_n_bytes(proxy: ChaosProxy) -> None:
    """limit_data(100): the client gets exactly the first 100 bytes, then EOF."""
    proxy.add_toxic(limit_data(100))
    payload = bytes(range(250)) * 4
    with connect(proxy) as sock:
        sock.sendall(payload)
        assert read_all(sock) == payload[:100]


def test_toxicity_picks_connections_deterministically(upstream: EchoServer) -> None:
    """With toxicity 0.5 the reset connections are exactly those the seed predicts."""
    toxic = reset_peer(toxicity=0.5)
    expected = [toxic.applies_to(11, n) for n in range(1, 13)]
    assert any(expected)
    assert not all(expected)
    observed = []
    with ChaosProxy(upstream.address, seed=11, toxics=[toxic]) as proxy:
        for _ in expected:
            with connect(proxy) as sock:
                sock.sendall(b"?")
                try:
                    observed.append(read_exactly(sock, 1) != b"?")
                except ConnectionResetError:
                    observed.append(True)
    assert observed == expected


def test_an_unreachable_upstream_closes_the_client(upstream: EchoServer) -> None:
    """When the upstream refuses, the client's connection is closed and the failure counted."""
    dead = socket.socket()
    dead.bind(("127.0.0.1", 0))
    address = dead.getsockname()
    dead.close()
    with ChaosProxy(address) as proxy, connect(proxy) as sock:
        assert read_all(sock) == b""
        assert proxy.status()["connections"]["upstream_failures"] == 1


def test_toxics_are_listed_counted_and_removed(proxy: ChaosProxy) -> None:
    """toxics() lists in insertion order; hits count affected connections; unknown names raise."""
    proxy.add_toxic(latency(0.01, name="slow"))
    proxy.add_toxic(limit_data(10_000, stream="upstream"))
    assert [t.name for t in proxy.toxics()] == ["slow", "limit_data_upstream"]
    with connect(proxy) as sock:
        sock.sendall(b"x")
        assert sock.recv(1) == b"x"
    assert proxy.hits()["slow"] == 1
    proxy.remove_toxic("slow")
    assert [t.name for t in proxy.toxics()] == ["limit_data_upstream"]
    with pytest.raises(UnknownToxic):
        proxy.remove_toxic("slow")
    assert [t.name for t in proxy.clear_toxics()] == ["limit_data_upstream"]


def test_a_duplicate_toxic_name_is_refused(proxy: ChaosProxy) -> None:
    """Two toxics cannot share a name."""
    proxy.add_toxic(latency(0.1))
    with pytest.raises(DuplicateToxic) as info:
        proxy.add_toxic(latency(0.2))
    assert info.value.field == "name"


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"type": "lag"}, "type"),
        ({"type": "latency", "attributes": {"latency": 1}, "stream": "sideways"}, "stream"),
        ({"type": "latency", "attributes": {"latency": 1}, "toxicity": 1.5}, "toxicity"),
        ({"type": "latency"}, "attributes.latency"),
        ({"type": "latency", "attributes": {"latency": -1}}, "attributes.latency"),
        ({"type": "bandwidth", "attributes": {"rate": 10, "burst": 1}}, "attributes.burst"),
        ({"type": "down", "attributes": {"mode": "refuse"}, "toxicity": 0.5}, "toxicity"),
        ({"type": "down", "attributes": {"mode": "sometimes"}}, "attributes.mode"),
        ({"type": "slicer", "attributes": {"average_size": 4, "size_variation": 4}}, "attributes.size_variation"),
        ({"type": "latency", "attributes": {"latency": 1}, "name": "no spaces"}, "name"),
        ({"type": "latency", "attributes": {"latency": 1}, "colour": "red"}, "colour"),
    ],
)
def test_invalid_toxics_name_the_field(data: dict[str, object], field: str) -> None:
    """Toxic.from_dict rejects bad input and says which field."""
    with pytest.raises(InvalidToxic) as info:
        Toxic.from_dict(data)
    assert info.value.field == field


def test_toxic_round_trips_through_json_form() -> None:
    """to_dict and from_dict are inverse; defaults are filled in."""
    toxic = Toxic.from_dict({"type": "slicer", "stream": "upstream"})
    assert toxic.name == "slicer_upstream"
    assert toxic.attributes == {"average_size": 64.0, "size_variation": 0.0, "delay": 0.0}
    assert Toxic.from_dict(toxic.to_dict()) == toxic


def test_parse_address_rejects_malformed_input() -> None:
    """HOST:PORT is required; the host defaults to loopback."""
    assert parse_address(":8012") == ("127.0.0.1", 8012)
    with pytest.raises(ValueError, match="HOST:PORT"):
        parse_address("localhost")


# -- the control endpoint -----------------------------------------------------------------


@pytest.fixture
def control(proxy: ChaosProxy) -> Iterator[ControlServer]:
    with ControlServer(proxy, TOKEN, port=0) as server:
        yield server


def test_control_endpoint_adds_lists_and_removes(proxy: ChaosProxy, control: ControlServer) -> None:
    """The client manages toxics remotely; the proxy applies them."""
    client = ProxyClient(control.url, TOKEN)
    added = client.add_toxic(latency(0.25, name="remote"))
    assert added.name == "remote"
    assert [t.name for t in client.toxics()] == ["remote"]
    with connect(proxy) as sock:
        sock.sendall(b"r")
        assert not readable_within(sock, 0.1)
    assert client.remove_toxic("remote").name == "remote"
    client.add_toxic(black_hole())
    assert client.halt() == ["timeout_downstream"]
    assert proxy.toxics() == []


def test_control_endpoint_reports_invalid_duplicate_and_unknown_toxics(control: ControlServer) -> None:
    """400 names the invalid field, 409 a taken name, 404 an unknown toxic: each its own exception."""
    client = ProxyClient(control.url, TOKEN)
    with pytest.raises(UnknownToxic):
        client.remove_toxic("nothing")
    client.add_toxic(latency(0.1))
    with pytest.raises(DuplicateToxic):
        client.add_toxic(latency(0.2))
    with pytest.raises(InvalidToxic) as info:  # checked by the server too (a 400 naming the field)
        client._call("POST", "/_shockproof/proxy/toxics", {"type": "latency"})
    assert info.value.field == "attributes.latency"


def test_control_endpoint_requires_the_token(control: ControlServer) -> None:
    """A wrong token is refused with 401 (ControlAuthFailed)."""
    with pytest.raises(ControlAuthFailed) as info:
        ProxyClient(control.url, "wrong").toxics()
    assert info.value.status == 401


def test_control_endpoint_binds_to_loopback_only(proxy: ChaosProxy) -> None:
    """Asking the control endpoint to bind elsewhere than loopback is refused."""
    with pytest.raises(ValueError, match="loopback"):
        ControlServer(proxy, TOKEN, host="0.0.0.0", port=0)


def test_client_reports_an_unreachable_endpoint() -> None:
    """Nothing listening: ControlUnreachable."""
    dead = socket.socket()
    dead.bind(("127.0.0.1", 0))
    port = dead.getsockname()[1]
    dead.close()
    with pytest.raises(ControlUnreachable):
        ProxyClient(f"http://127.0.0.1:{port}", TOKEN, timeout=1).status()


# -- the CLI ----------------------------------------------------------------------------------


def cli(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="shockproof-faults")
    add_proxy_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    result: int = args.func(args)
    return result


def test_cli_toxic_add_list_remove(proxy: ChaosProxy, control: ControlServer,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    """`proxy toxic add/list/remove` drive a running proxy; exit code 0."""
    common = ["--url", control.url, "--token", TOKEN]
    assert cli("proxy", "toxic", "add", *common, "-t", "latency", "-a", "latency=0.3", "-n", "lag") == 0
    assert [t.attributes["latency"] for t in proxy.toxics()] == [0.3]
    assert cli("proxy", "toxic", "list", *common) == 0
    assert "lag" in capsys.readouterr().out
    assert cli("proxy", "toxic", "remove", *common, "lag") == 0
    assert proxy.toxics() == []


def test_cli_exit_codes(control: ControlServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Invalid toxic -> 2 (field named), bad token -> 4, unreachable -> 3."""
    assert cli("proxy", "toxic", "add", "--url", control.url, "--token", TOKEN, "-t", "latency") == 2
    assert "attributes.latency" in capsys.readouterr().err
    assert cli("proxy", "toxic", "list", "--url", control.url, "--token", "bad") == 4
    dead = socket.socket()
    dead.bind(("127.0.0.1", 0))
    port = dead.getsockname()[1]
    dead.close()
    assert cli("proxy", "toxic", "list", "--url", f"http://127.0.0.1:{port}", "--token", TOKEN) == 3
    assert cli("proxy", "toxic", "list", "--url", control.url, "--data-dir", str(tmp_path)) == 2


def test_proxy_start_runs_as_a_process(upstream: EchoServer, tmp_path: Path) -> None:
    """`python -m fault_injection proxy start` proxies, writes a 0600 token file, stops on SIGTERM."""
    command = [sys.executable, "-m", "fault_injection", "proxy", "start", "--listen", "127.0.0.1:0",
               "--upstream", "{}:{}".format(*upstream.address), "--control", "127.0.0.1:0",
               "--data-dir", str(tmp_path)]
    env = {k: v for k, v in os.environ.items() if k != "SHOCKPROOF_FAULTS_TOKEN"}
    with subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=env) as process:
        try:
            assert process.stdout is not None
            lines = [process.stdout.readline() for _ in range(3)]
            listen = next(line for line in lines if line.startswith("shockproof proxy:")).split()[2]
            with socket.create_connection(parse_address(listen), timeout=5) as sock:
                sock.sendall(b"via process")
                assert read_exactly(sock, 11) == b"via process"
            assert (tmp_path / "faults.token").stat().st_mode & 0o777 == 0o600
        finally:
            process.send_signal(signal.SIGTERM)
            assert process.wait(10) == 0
