"""The Faults page reads the armed rules from a running app's fault control API."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask

import fault_injection
from fault_injection import control
from fault_injection.pytest_plugin import Faults
from telemetry.viewer import create_app

from .conftest import Served, close

TOKEN = "control-token-for-tests"


@pytest.fixture
def control_api(tmp_path: Path) -> Iterator[str]:
    """A small app with the control API mounted, on a loopback server; yields its URL."""
    app = Flask("control")
    app.register_blueprint(control.blueprint(token=TOKEN, data_dir=tmp_path, announce=None))
    running = Served(app)
    yield f"{running.url}{control.DEFAULT_PREFIX}"
    running.stop()


def faults_page(tmp_path: Path, url: str, token: str | None) -> str:
    app = create_app(tmp_path / "t.db", faults_url=url, faults_token=token)
    try:
        return app.test_client().get("/faults").get_data(as_text=True)
    finally:
        close(app)


def test_armed_rules_are_listed(faults: Faults, control_api: str, tmp_path: Path) -> None:
    """A rule armed in the app shows with its site, fault and trigger."""
    faults.add("catalog.*", fault_injection.network("reset"), rate=0.5, id="flaky-catalog")
    html = faults_page(tmp_path, control_api, TOKEN)
    assert "Fault injection is <strong class=\"on\">on</strong>" in html
    assert "<code>flaky-catalog</code>" in html
    assert "<code>catalog.*</code>" in html
    assert "network (variant=reset)" in html
    assert "50%" in html


def test_a_refused_token_is_reported(control_api: str, tmp_path: Path) -> None:
    """A wrong token is said on the page; the page still answers."""
    assert "the token was refused" in faults_page(tmp_path, control_api, "wrong")


def test_an_unreachable_control_api_is_reported(tmp_path: Path) -> None:
    """Nothing listening: the page says so instead of failing."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    html = faults_page(tmp_path, f"http://127.0.0.1:{port}/_shockproof/faults", TOKEN)
    assert "could not be read: unreachable" in html


def test_the_control_token_never_reaches_the_page(faults: Faults, control_api: str,
                                                  tmp_path: Path) -> None:
    """The token is used server-side only."""
    faults.add("x", fault_injection.logic())
    assert TOKEN not in faults_page(tmp_path, control_api, TOKEN)
