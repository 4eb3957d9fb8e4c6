"""Viewer fixtures: the scenario store (built once), the viewer app and its test client, and
helpers to write records straight into a store."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.serving import BaseWSGIServer, make_server

from telemetry._records import LogRecord, SpanEventRecord, SpanRecord
from telemetry._store import TraceStore
from telemetry.viewer import Viewer, create_app
from telemetry.viewer._app import EXTENSION

from .scenario import Scenario, build


@pytest.fixture(scope="session")
def scenario(tmp_path_factory: pytest.TempPathFactory) -> Scenario:
    """A store filled by real guarded calls and requests (see scenario.py), built once."""
    return build(tmp_path_factory.mktemp("scenario") / "telemetry.db")


def close(app: Flask) -> None:
    state: Viewer = app.extensions[EXTENSION]
    state.close()


@pytest.fixture
def app(scenario: Scenario) -> Iterator[Flask]:
    """The viewer over the scenario store."""
    viewer = create_app(scenario.store)
    yield viewer
    close(viewer)


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def empty_app(tmp_path: Path) -> Iterator[Flask]:
    """The viewer over a store that does not exist yet (ingest creates it)."""
    viewer = create_app(tmp_path / "ingest.db")
    yield viewer
    close(viewer)


class Served:
    """A viewer app served by a real HTTP server thread on a free loopback port."""

    def __init__(self, app: Flask) -> None:
        self.server: BaseWSGIServer = make_server("127.0.0.1", 0, app, threaded=True)
        self.port = self.server.server_port
        self.url = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05},
                                       daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


@pytest.fixture
def served(empty_app: Flask) -> Iterator[Served]:
    """The empty-store viewer on a real loopback server."""
    running = Served(empty_app)
    yield running
    running.stop()


# -- records written straight to a store --------------------------------------------------------


def tid(n: int) -> str:
    return f"{n:032x}"


def sid(n: int) -> str:
    return f"{n:016x}"


def span(trace: int, span_no: int, *, parent: int | None = None, name: str = "work",
         start: int, duration: int = 1_000_000, status: str = "unset",
         attrs: dict[str, Any] | None = None, events: Sequence[SpanEventRecord] = (),
         kind: str = "internal") -> SpanRecord:
    """A span of trace ``trace`` with id ``span_no``."""
    return SpanRecord(tid(trace), sid(span_no), sid(parent) if parent is not None else None, name,
                      kind, start, start + duration, status, "", attrs or {}, tuple(events), "test")


def write(path: Path, spans: Sequence[SpanRecord], logs: Sequence[LogRecord] = ()) -> None:
    """Write records to the store at ``path`` and wait until they are stored."""
    with TraceStore(path) as store:
        store.add_spans(list(spans))
        store.add_logs(list(logs))
        assert store.flush(10)
