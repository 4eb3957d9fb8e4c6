"""Pseudonymous user ids: set on request spans, stored per trace, counted per error group."""

from __future__ import annotations

import io
import re
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

import telemetry
from telemetry import _semconv as sc
from telemetry._records import SpanRecord
from telemetry._store import TraceStore
from telemetry._store_schema import SCHEMA_VERSION
from telemetry.flask import Telemetry
from telemetry.query import Query

RAW_USERS = ("alice-4f1c9e@example.org", "bob-77a0d2@example.org")


def make_app() -> Flask:
    """An app whose ``/boom`` fails and ``/ok`` answers; the user comes from ``X-User``."""
    app = Flask("shop")

    @app.get("/ok")
    def ok() -> str:
        return "ok"

    @app.get("/boom")
    def boom() -> str:
        return str(1 / 0)

    Telemetry(app, user=lambda request: request.headers.get("X-User"))
    return app


@pytest.fixture
def store(tmp_path: Path) -> Path:
    """Telemetry writing to a fresh store file (the conftest resets it after the test)."""
    path = tmp_path / "telemetry.db"
    telemetry.configure(store=path, log_stream=io.StringIO())
    return path


def request(app: Flask, path: str, user: str | None) -> str:
    """Make a request as ``user``; the trace id it answered."""
    headers = {"X-User": user} if user is not None else {}
    return app.test_client().get(path, headers=headers).headers[sc.TRACE_ID_HEADER]


def pseudo_ids(path: Path, trace_ids: list[str]) -> list[Any]:
    """The request span's ``enduser.pseudo.id`` of each trace, once stored."""
    telemetry.flush(10.0)
    with Query(path) as q:
        details = [q.trace(t) for t in trace_ids]
    return [next(s.attributes.get(sc.USER_PSEUDO_ID) for s in d.spans if s.kind == "server")
            for d in details if d is not None]


def test_pseudo_id_is_sixteen_hex_chars_not_the_user(store: Path) -> None:
    """The request span carries a 16-hex-char pseudonym, not the raw user id."""
    [pid] = pseudo_ids(store, [request(make_app(), "/ok", RAW_USERS[0])])
    assert isinstance(pid, str)
    assert re.fullmatch(r"[0-9a-f]{16}", pid)
    assert pid not in RAW_USERS[0]


def test_pseudo_id_is_stable_for_one_user_and_differs_between_users(store: Path) -> None:
    """The same user gets the same pseudonym on every request, another user another one."""
    app = make_app()
    traces = [request(app, "/ok", RAW_USERS[0]), request(app, "/ok", RAW_USERS[0]),
              request(app, "/ok", RAW_USERS[1])]
    first, again, other = pseudo_ids(store, traces)
    assert first == again
    assert first != other


def test_no_user_sets_no_pseudo_id(store: Path) -> None:
    """A request without a user carries no ``enduser.pseudo.id``."""
    assert pseudo_ids(store, [request(make_app(), "/ok", None)]) == [None]


def test_two_stores_handles_of_one_file_share_the_hash_key(tmp_path: Path) -> None:
    """Every writer of one store file reads the same key (counts agree across processes)."""
    path = tmp_path / "shared.db"
    with TraceStore(path) as one, TraceStore(path) as two:
        assert one.user_hash_key == two.user_hash_key
        assert len(one.user_hash_key) == 64


def test_explicit_key_gives_the_same_pseudo_id_in_another_store(tmp_path: Path) -> None:
    """With ``user_hash_key`` given, two stores agree on a user's pseudonym."""
    found = []
    for name in ("a.db", "b.db"):
        telemetry.configure(store=tmp_path / name, log_stream=io.StringIO())
        app = Flask("shop")
        app.get("/ok")(lambda: "ok")
        Telemetry(app, user=lambda r: r.headers.get("X-User"), user_hash_key="k" * 32)
        found += pseudo_ids(tmp_path / name, [request(app, "/ok", RAW_USERS[0])])
        telemetry.reset()
    assert found[0] == found[1] is not None


def test_raw_user_ids_never_reach_the_store_file(store: Path) -> None:
    """No byte of the store (database and WAL) holds a raw user id."""
    app = make_app()
    for user in RAW_USERS:
        request(app, "/boom", user)
        request(app, "/ok", user)
    telemetry.flush(10.0)
    telemetry.reset()
    blob = b"".join(p.read_bytes() for p in store.parent.iterdir() if p.name.startswith(store.name))
    assert b"pseudo.id" in blob  # the scan does see the spans' attributes
    for user in RAW_USERS:
        assert user.encode() not in blob
        assert user.split("@")[0].encode() not in blob


def test_error_group_counts_distinct_users(store: Path) -> None:
    """Three failing requests by two users, one anonymous: three requests, two users."""
    app = make_app()
    for user in (RAW_USERS[0], RAW_USERS[0], RAW_USERS[1], None):
        request(app, "/boom", user)
    telemetry.flush(10.0)
    with Query(store) as q:
        [group] = q.error_groups()
        windowed = q.error_groups(route="/boom")
        one = q.error_group(group.fingerprint)
    assert (group.trace_count, group.users) == (4, 2)
    assert [g.users for g in windowed] == [2]
    assert one is not None
    assert one.users == 2


def _version_one_file(path: Path) -> None:
    """A store file as schema version 1 left it: no ``traces.user_id``, no settings table."""
    with TraceStore(path):
        pass
    conn = sqlite3.connect(path)
    conn.execute("DROP TABLE store_settings")
    conn.execute("ALTER TABLE traces DROP COLUMN user_id")
    conn.execute("PRAGMA user_version = 1")
    conn.commit()
    conn.close()


def test_version_one_file_is_migrated_on_open(tmp_path: Path) -> None:
    """Opening a version 1 file adds ``traces.user_id``; users are then counted."""
    path = tmp_path / "old.db"
    _version_one_file(path)
    telemetry.configure(store=path, log_stream=io.StringIO())
    app = make_app()
    for user in RAW_USERS:
        request(app, "/boom", user)
    telemetry.flush(10.0)
    conn = sqlite3.connect(path)
    columns = {row[1] for row in conn.execute("PRAGMA table_info(traces)")}
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    conn.close()
    assert "user_id" in columns
    assert version == SCHEMA_VERSION
    with Query(path) as q:
        assert [g.users for g in q.error_groups()] == [2]


def test_migration_is_idempotent(tmp_path: Path) -> None:
    """Opening a migrated file again (even marked old again) neither fails nor duplicates."""
    path = tmp_path / "old.db"
    _version_one_file(path)
    with TraceStore(path):
        pass
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA user_version = 1")
    conn.commit()
    conn.close()
    with TraceStore(path) as again:
        assert again.user_hash_key


def test_user_learnt_in_a_later_batch_is_counted(tmp_path: Path) -> None:
    """An error stored before its request span (which brings the user) still counts that user."""
    path = tmp_path / "late.db"
    trace = "ab" * 16
    error = SpanRecord(trace, "1" * 16, "2" * 16, "work", "internal", 10, 20, "error", "",
                       {sc.FINGERPRINT: "f" * 16, sc.KIND: "logic"}, (), "test")
    root = SpanRecord(trace, "2" * 16, None, "GET /x", "server", 0, 30, "error", "",
                      {sc.HTTP_ROUTE: "/x", sc.USER_PSEUDO_ID: "0123456789abcdef"}, (), "test")
    with TraceStore(path) as writer:
        for record in (error, root):
            writer.add_spans([record])
            assert writer.flush(10)
    with Query(path) as q:
        assert [g.users for g in q.error_groups()] == [1]
