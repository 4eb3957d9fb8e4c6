"""Telemetry test fixtures: a reset after every test, captures, and loopback HTTP receivers."""

from __future__ import annotations

import gzip
import io
import json
import socket
import threading
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

import telemetry
import telemetry.testing


@pytest.fixture(autouse=True)
def _reset_telemetry() -> Iterator[None]:
    """Every test ends with telemetry reset: providers shut down, hooks removed."""
    yield
    telemetry.reset()


@pytest.fixture
def cap() -> Iterator[telemetry.testing.Capture]:
    """Telemetry configured for the test (no store), spans and logs captured."""
    with telemetry.testing.capture() as captured:
        yield captured


@pytest.fixture
def log_stream() -> io.StringIO:
    """A stream to hand to configure(log_stream=...)."""
    return io.StringIO()


def json_lines(stream: io.StringIO) -> list[dict[str, Any]]:
    """The JSON log lines written to ``stream``."""
    return [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]


# -- loopback receivers -------------------------------------------------------------------------


@dataclass
class Received:
    """One request a :class:`Recorder` got."""

    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Recorder:
    """A loopback HTTP server recording every POST (Sentry envelopes, OTLP exports)."""

    server: ThreadingHTTPServer
    requests: list[Received] = field(default_factory=list)
    arrived: threading.Condition = field(default_factory=threading.Condition)

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def bodies(self, path_suffix: str) -> list[bytes]:
        return [r.body for r in list(self.requests) if r.path.endswith(path_suffix)]

    def wait_for(self, path_suffix: str, count: int = 1, timeout: float = 10.0) -> list[bytes]:
        """Bodies sent to a path ending with ``path_suffix``, once ``count`` arrived (or timeout)."""
        with self.arrived:
            self.arrived.wait_for(lambda: len(self.bodies(path_suffix)) >= count, timeout)
        return self.bodies(path_suffix)


def _handler(recorder_ref: list[Recorder]) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = _decode(self.rfile.read(length), self.headers.get("Content-Encoding", ""))
            recorder = recorder_ref[0]
            with recorder.arrived:
                recorder.requests.append(Received(self.path, dict(self.headers.items()), body))
                recorder.arrived.notify_all()
            payload = b"{}"
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format: str, *args: Any) -> None:
            return None

    return Handler


def _decode(body: bytes, encoding: str) -> bytes:
    if encoding == "gzip":
        return gzip.decompress(body)
    if encoding == "deflate":
        return zlib.decompress(body)
    assert encoding in ("", "identity"), f"unexpected Content-Encoding {encoding!r}"
    return body


@pytest.fixture
def recorder() -> Iterator[Recorder]:
    """A recording HTTP server on a free loopback port, stopped after the test."""
    ref: list[Recorder] = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(ref))
    server.daemon_threads = True
    rec = Recorder(server)
    ref.append(rec)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield rec
    server.shutdown()
    server.server_close()
    thread.join(5)


@pytest.fixture
def closed_port() -> int:
    """A loopback port nothing listens on (connections are refused at once)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


def envelope_items(body: bytes) -> list[tuple[dict[str, Any], Any]]:
    """Decode a Sentry envelope: ``[(item_header, payload), ...]`` (JSON payloads parsed)."""
    items: list[tuple[dict[str, Any], Any]] = []
    _, _, rest = body.partition(b"\n")  # the envelope header
    while rest.strip():
        header_line, _, rest = rest.partition(b"\n")
        header = json.loads(header_line)
        length = header.get("length")
        if length is None:
            payload, _, rest = rest.partition(b"\n")
        else:
            payload, rest = rest[:length], rest[length + 1:]
        is_json = header.get("content_type", "application/json") == "application/json"
        items.append((header, json.loads(payload) if is_json else payload))
    return items


def sentry_events(recorder: Recorder) -> list[dict[str, Any]]:
    """Every error event the Sentry SDK delivered to ``recorder``."""
    events = []
    for body in recorder.bodies("/envelope/"):
        events += [payload for header, payload in envelope_items(body) if header.get("type") == "event"]
    return events
