"""The demo tells telemetry who made a request (X-User or the signup cookie), pseudonymised."""

from __future__ import annotations

import io
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

import telemetry
from demo_app.state import USER_COOKIE
from telemetry import _semconv as sc
from telemetry._pseudo import pseudo_id
from telemetry.query import Query
from tests.demo_app.support import MakeApp

SIGNUP = {"email": "dora@example.com", "display_name": "Dora",
          "password": "correct-horse-battery-staple", "plan": "premium"}


@pytest.fixture
def telemetry_reset() -> Iterator[None]:
    """The demo configures telemetry process-wide; undo it after the test."""
    yield
    telemetry.reset()


def user_ids(store: Path, trace_ids: list[str]) -> list[object]:
    """The request span's pseudonymous user id of each trace."""
    telemetry.flush(10.0)
    with Query(store) as q:
        details = [q.trace(t) for t in trace_ids]
    return [next(s.attributes.get(sc.USER_PSEUDO_ID) for s in d.spans if s.kind == "server")
            for d in details if d is not None]


def store_key(store: Path) -> bytes:
    """The store's own HMAC key (``store_settings``)."""
    conn = sqlite3.connect(store)
    try:
        return str(conn.execute("SELECT value FROM store_settings WHERE name = 'user_hash_key'")
                   .fetchone()[0]).encode()
    finally:
        conn.close()


def test_signup_cookie_and_x_user_become_pseudonymous_ids(
        make_app: MakeApp, tmp_path: Path, telemetry_reset: None) -> None:
    """Requests carry the HMAC of the cookie's user id, or of X-User; never the id itself."""
    store = tmp_path / "telemetry.db"
    telemetry.configure(store=store, log_stream=io.StringIO())
    client = make_app(telemetry=True).test_client()
    user_id = client.post("/api/signup", json=SIGNUP).get_json()["user_id"]
    client.set_cookie(USER_COOKIE, user_id)
    by_cookie = client.get("/healthz").headers[sc.TRACE_ID_HEADER]
    client.delete_cookie(USER_COOKIE)
    by_header = client.get("/healthz", headers={"X-User": "tester-7"}).headers[sc.TRACE_ID_HEADER]
    found = user_ids(store, [by_cookie, by_header])
    key = store_key(store)
    assert found == [pseudo_id(user_id, key), pseudo_id("tester-7", key)]
    assert None not in found
