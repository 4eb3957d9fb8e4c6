"""Fixtures for the fault-injection tests: every test starts and ends with faults off."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask
from werkzeug.serving import BaseWSGIServer, make_server

import fault_injection
from fault_injection import control


@pytest.fixture(autouse=True)
def _faults_off() -> Iterator[None]:
    """No rule and no switch leaks from one test into the next."""
    fault_injection.disable()
    yield
    fault_injection.disable()


TOKEN = "test-token-0123456789"


def make_app(tmp_path: Path, **options: object) -> Flask:
    """A small app with the control API mounted and one route that is a fault site."""
    app = Flask("faults-test")
    app.register_blueprint(control.blueprint(token=TOKEN, data_dir=tmp_path, announce=None,
                                             **options))  # type: ignore[arg-type]

    @app.get("/work")
    def work() -> dict[str, object]:
        try:
            fault_injection.point("app.work")
        except ConnectionError as exc:
            return {"faulted": True, "rule": fault_injection.injected_rule(exc)}
        return {"faulted": False, "context": fault_injection.fault_context() is not None}

    return app


@pytest.fixture
def app(tmp_path: Path) -> Flask:
    """The test app, token ``TOKEN``, loopback only."""
    return make_app(tmp_path)


@pytest.fixture
def served(app: Flask) -> Iterator[str]:
    """The test app served over real HTTP on a free loopback port; yields its base URL."""
    server: BaseWSGIServer = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(5)
        server.server_close()


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port
