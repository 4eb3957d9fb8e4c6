"""Validation path: POST /api/signup validates every field and never keeps or echoes the password."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from demo_app.storage import verify_password
from tests.demo_app.support import MakeApp, demo_state, files_under, problem

PASSWORD = "correct-horse-battery-staple"
GOOD = {"email": "Ann@Example.com", "display_name": "Ann", "password": PASSWORD, "plan": "premium"}


def _stored_user(app: Flask, user_id: str) -> dict[str, Any]:
    found = demo_state(app).users.get(user_id)
    assert found is not None
    return found


def test_signup_creates_the_account_and_answers_201(make_app: MakeApp) -> None:
    """A valid JSON signup is stored and answered with 201 and the public account fields."""
    app = make_app()
    response = app.test_client().post("/api/signup", json=GOOD)
    body = response.get_json()
    assert response.status_code == 201
    assert (body["display_name"], body["plan"]) == ("Ann", "premium")
    assert _stored_user(app, body["user_id"])["email"] == "ann@example.com"


def test_signup_sets_an_httponly_samesite_lax_cookie(make_app: MakeApp) -> None:
    """The user cookie carries the new user id, HttpOnly and SameSite=Lax."""
    response = make_app().test_client().post("/api/signup", json=GOOD)
    cookie = response.headers["Set-Cookie"]
    assert cookie.startswith(f"shockproof_user={response.get_json()['user_id']};")
    assert "HttpOnly" in cookie
    assert "SameSite=Lax" in cookie


def test_form_fields_are_accepted_too(make_app: MakeApp) -> None:
    """The same signup as url-encoded form fields works."""
    response = make_app().test_client().post("/api/signup", data=GOOD)
    assert response.status_code == 201


def test_the_password_is_stored_only_as_a_salted_scrypt_hash(make_app: MakeApp, tmp_path: Path) -> None:
    """No file in the data dir holds the clear password; the stored hash verifies it."""
    app = make_app()
    user_id = app.test_client().post("/api/signup", json=GOOD).get_json()["user_id"]
    stored = _stored_user(app, user_id)["password_hash"]
    assert stored.startswith("scrypt$")
    assert verify_password(PASSWORD, stored)
    assert not verify_password(PASSWORD + "x", stored)
    data = tmp_path / "data"
    assert [f for f in files_under(data) if PASSWORD.encode() in (data / f).read_bytes()] == []


def test_two_signups_with_one_password_get_different_hashes(make_app: MakeApp) -> None:
    """Each hash has its own salt."""
    app = make_app()
    client = app.test_client()
    ids = [client.post("/api/signup", json={**GOOD, "email": f"u{i}@example.com"}).get_json()["user_id"]
           for i in range(2)]
    hashes = {_stored_user(app, i)["password_hash"] for i in ids}
    assert len(hashes) == 2


def test_every_invalid_field_is_listed(make_app: MakeApp) -> None:
    """Four bad fields give one 422 naming all four."""
    bad = {"email": "not-an-email", "display_name": "", "password": "short", "plan": "gold"}
    response = make_app().test_client().post("/api/signup", json=bad)
    body = problem(response)
    assert response.status_code == 422
    assert sorted(e["field"] for e in body["errors"]) == ["display_name", "email", "password", "plan"]


@pytest.mark.parametrize(
    ("field", "value"),
    [("email", "a@b"), ("email", "x" * 250 + "@example.com"), ("display_name", "bell\x07"),
     ("display_name", "n" * 41), ("password", "x" * 9), ("password", "x" * 129), ("plan", "FREE")],
)
def test_each_bad_value_is_rejected_naming_its_field(make_app: MakeApp, field: str, value: str) -> None:
    """Each single bad value is a 422 naming exactly that field."""
    response = make_app().test_client().post("/api/signup", json={**GOOD, field: value})
    assert [e["field"] for e in problem(response)["errors"]] == [field]


def test_a_missing_body_lists_every_required_field(make_app: MakeApp) -> None:
    """No body: each of the four fields is reported missing."""
    body = problem(make_app().test_client().post("/api/signup"))
    assert sorted((e["field"], e["type"]) for e in body["errors"]) == [
        ("display_name", "missing"), ("email", "missing"), ("password", "missing"), ("plan", "missing")]


def test_the_rejected_password_is_never_echoed(make_app: MakeApp) -> None:
    """A too-short (or wrongly typed) password appears nowhere in the 422."""
    client = make_app().test_client()
    for secret in ("hunter2", ["hunter2-in-a-list"]):
        response = client.post("/api/signup", json={**GOOD, "password": secret})
        assert response.status_code == 422
        assert "hunter2" not in response.get_data(as_text=True)


def test_malformed_json_is_400(make_app: MakeApp) -> None:
    """A body that is not JSON is a 400 malformed-request problem."""
    response = make_app().test_client().post("/api/signup", data=b'{"email": "a@b.c",',
                                             content_type="application/json")
    assert response.status_code == 400
    assert problem(response)["type"].endswith("/malformed-request")


def test_a_registered_email_is_409(make_app: MakeApp) -> None:
    """Signing up twice with one email (any case) is a 409 and stores no second user."""
    app = make_app()
    client = app.test_client()
    client.post("/api/signup", json=GOOD)
    response = client.post("/api/signup", json={**GOOD, "email": "ANN@example.com"})
    assert response.status_code == 409
    assert problem(response)["type"].endswith("/email-taken")
    users = list(demo_state(app).users.root.glob("*.json"))
    assert len(users) == 1


def test_a_broken_user_store_is_a_503_io_problem(make_app: MakeApp, tmp_path: Path) -> None:
    """When the users directory cannot exist (a file is in its place) the answer is 503, kind io."""
    app = make_app()
    (tmp_path / "data" / "users").write_text("not a directory")
    response = app.test_client().post("/api/signup", json=GOOD)
    body = problem(response)
    assert (response.status_code, body["kind"]) == (503, "io")
    assert "users" not in json.dumps(body)
