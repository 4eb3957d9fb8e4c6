"""Fixtures for the demo app: a real upstream process, apps on temporary data dirs, no waits."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from demo_app import create_app
from resilience.testing import waits_off
from tests.demo_app.servers import Server, start_upstream
from tests.demo_app.support import MakeApp, config_for, demo_state


@pytest.fixture(autouse=True)
def _no_backoff_waits() -> Iterator[None]:
    """Retries still happen, nobody sleeps between them."""
    with waits_off():
        yield


@pytest.fixture(scope="session")
def upstream() -> Iterator[Server]:
    """The upstream catalog service, a real second process on a free loopback port."""
    server = start_upstream()
    yield server
    server.stop()


@pytest.fixture
def own_upstream() -> Iterator[Server]:
    """An upstream process for this test alone (tests stop and restart it)."""
    server = start_upstream()
    yield server
    server.stop()


@pytest.fixture
def make_app(tmp_path: Path, upstream: Server) -> Iterator[MakeApp]:
    """Build apps on ``tmp_path / "data"`` (default upstream: the session's)."""
    made: list[Flask] = []

    def make(**overrides: Any) -> Flask:
        overrides.setdefault("upstream_url", upstream.url)
        app = create_app(config_for(tmp_path / "data", **overrides))
        app.testing = True
        made.append(app)
        return app

    yield make
    for app in made:
        demo_state(app).catalog.close()
        for circuit in demo_state(app).circuits:
            circuit.reset()


@pytest.fixture
def app(make_app: MakeApp) -> Flask:
    return make_app()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()
