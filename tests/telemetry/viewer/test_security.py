"""The viewer's guard: bind refusal, Host and cross-origin checks, the token, security headers."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient

from telemetry.viewer import BindRefused, check_bind, create_app, is_loopback, loopback_hosts, main
from telemetry.viewer._security import COOKIE, CSP, HostPolicy

from .conftest import close

TOKEN = "s3cret-viewer-token-0123456789"
HOST = "127.0.0.1:8001"


@pytest.fixture
def guarded(tmp_path: Path) -> Iterator[Flask]:
    """A viewer with a token, answering only its loopback names on port 8001."""
    app = create_app(tmp_path / "t.db", token=TOKEN, allowed_hosts=loopback_hosts(8001))
    yield app
    close(app)


@pytest.fixture
def open_app(tmp_path: Path) -> Iterator[Flask]:
    """A viewer without a token, answering only its loopback names on port 8001."""
    app = create_app(tmp_path / "t.db", allowed_hosts=[*loopback_hosts(8001), "viewer.test"])
    yield app
    close(app)


def get(client: FlaskClient, url: str = "/", **headers: str) -> int:
    return client.get(url, headers={"Host": HOST, **headers}).status_code


# -- binding ------------------------------------------------------------------------------------


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "localhost", "::1", "[::1]"])
def test_loopback_addresses_are_recognised(host: str) -> None:
    """Loopback names and addresses are loopback."""
    assert is_loopback(host)


@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.10", "::", "example.com"])
def test_other_addresses_are_not_loopback(host: str) -> None:
    """Anything else is not."""
    assert not is_loopback(host)


def test_remote_bind_is_refused_without_allow_remote() -> None:
    """A non-loopback address needs --allow-remote, even with a token."""
    with pytest.raises(BindRefused, match="--allow-remote"):
        check_bind("0.0.0.0", allow_remote=False, token=TOKEN)


def test_remote_bind_is_refused_without_a_token() -> None:
    """--allow-remote alone is not enough: a token is required."""
    with pytest.raises(BindRefused, match="token"):
        check_bind("0.0.0.0", allow_remote=True, token=None)


def test_remote_bind_is_allowed_with_both_safeguards() -> None:
    """--allow-remote and a token together allow it; loopback needs neither."""
    check_bind("0.0.0.0", allow_remote=True, token=TOKEN)
    check_bind("127.0.0.1", allow_remote=False, token=None)


def test_serve_refuses_a_remote_bind_with_a_clear_error(capsys: pytest.CaptureFixture[str],
                                                        tmp_path: Path) -> None:
    """The command exits 2 and says why, before listening on anything."""
    status = main(["serve", "--store", str(tmp_path / "t.db"), "--host", "0.0.0.0",
                   "--port", "1"])
    assert status == 2
    assert "refusing to listen on 0.0.0.0" in capsys.readouterr().err


# -- Host header ----------------------------------------------------------------------------------


@pytest.mark.parametrize("host", ["127.0.0.1:8001", "localhost:8001", "[::1]:8001", "viewer.test",
                                  "LOCALHOST:8001"])
def test_expected_hosts_are_answered(open_app: Flask, host: str) -> None:
    """The loopback names with the viewer's port, and configured names, are answered."""
    assert open_app.test_client().get("/", headers={"Host": host}).status_code == 200


@pytest.mark.parametrize("host", ["evil.example:8001", "localhost:9999", "127.0.0.1.evil.example",
                                  "attacker.test"])
def test_foreign_host_is_forbidden(open_app: Flask, host: str) -> None:
    """Any other Host (a DNS-rebinding page) gets 403."""
    assert open_app.test_client().get("/", headers={"Host": host}).status_code == 403


def test_host_policy_without_a_list_allows_loopback_names_on_any_port() -> None:
    """The embedding default: loopback names, any port; nothing else."""
    policy = HostPolicy()
    assert policy.allows("localhost")
    assert policy.allows("127.0.0.1:5555")
    assert not policy.allows("example.com")
    assert not policy.allows("")


# -- cross-origin ------------------------------------------------------------------------------------


def test_cross_origin_post_is_forbidden(open_app: Flask) -> None:
    """An ingest POST carrying another site's Origin gets 403."""
    response = open_app.test_client().post(
        "/v1/traces", data=b"{}", content_type="application/json",
        headers={"Host": HOST, "Origin": "http://evil.example"})
    assert response.status_code == 403


def test_cross_site_fetch_metadata_on_post_is_forbidden(open_app: Flask) -> None:
    """Sec-Fetch-Site: cross-site on a POST gets 403 even without an Origin."""
    response = open_app.test_client().post(
        "/v1/traces", data=b"{}", content_type="application/json",
        headers={"Host": HOST, "Sec-Fetch-Site": "cross-site"})
    assert response.status_code == 403


def test_same_origin_post_is_accepted(open_app: Flask) -> None:
    """A POST from the viewer's own origin is fine."""
    response = open_app.test_client().post(
        "/v1/traces", data=b"{}", content_type="application/json",
        headers={"Host": HOST, "Origin": f"http://{HOST}", "Sec-Fetch-Site": "same-origin"})
    assert response.status_code == 200


def test_other_process_post_without_origin_is_accepted(open_app: Flask) -> None:
    """An exporter in another process sends no Origin: fine."""
    response = open_app.test_client().post("/v1/traces", data=b"{}",
                                           content_type="application/json", headers={"Host": HOST})
    assert response.status_code == 200


def test_cross_site_read_by_a_script_is_forbidden(open_app: Flask) -> None:
    """Another site's page fetching the JSON API gets 403."""
    assert get(open_app.test_client(), "/api/errors", **{
        "Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "cors", "Sec-Fetch-Dest": "empty"}) == 403


def test_cross_site_navigation_is_allowed(open_app: Flask) -> None:
    """A person following a link from elsewhere gets the page."""
    assert get(open_app.test_client(), "/", **{
        "Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "navigate",
        "Sec-Fetch-Dest": "document"}) == 200


# -- the token ------------------------------------------------------------------------------------


def test_missing_token_is_401(guarded: Flask) -> None:
    """Without a token, pages, APIs, static files and ingest are all refused."""
    client = guarded.test_client()
    for url in ("/", "/api/errors", "/static/viewer.css", "/traces"):
        assert get(client, url) == 401
    response = client.post("/v1/traces", data=b"{}", content_type="application/json",
                           headers={"Host": HOST})
    assert response.status_code == 401


def test_wrong_token_is_401(guarded: Flask) -> None:
    """A wrong bearer token, a wrong cookie, or a cookie holding the raw token, is refused."""
    client = guarded.test_client()
    assert get(client, "/", Authorization="Bearer nope") == 401
    assert get(client, "/", Authorization=f"Basic {TOKEN}") == 401
    assert get(client, "/", Cookie=f"{COOKIE}=wrong") == 401
    assert get(client, "/", Cookie=f"{COOKIE}={TOKEN}") == 401


def test_bearer_token_is_accepted(guarded: Flask) -> None:
    """Authorization: Bearer <token> opens every route."""
    assert get(guarded.test_client(), "/api/traces", Authorization=f"Bearer {TOKEN}") == 200


def test_login_link_sets_a_cookie_and_strips_the_token(guarded: Flask) -> None:
    """?token= sets an HttpOnly SameSite cookie and redirects to the URL without the token."""
    client = guarded.test_client()
    response = client.get(f"/traces?kind=io&token={TOKEN}", headers={"Host": HOST})
    assert response.status_code == 303
    assert response.headers["Location"] == "/traces?kind=io"
    cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie
    assert "SameSite=Strict" in cookie
    assert TOKEN not in cookie
    value = cookie.split(";")[0].split("=", 1)[1]
    assert get(client, "/traces?kind=io", Cookie=f"{COOKIE}={value}") == 200


def test_login_link_with_a_wrong_token_is_401(guarded: Flask) -> None:
    """A bad login link sets nothing."""
    response = guarded.test_client().get("/?token=nope", headers={"Host": HOST})
    assert response.status_code == 401
    assert "Set-Cookie" not in response.headers


def test_api_refusals_are_problem_json(guarded: Flask) -> None:
    """An API client gets problem+json with a WWW-Authenticate challenge."""
    response = guarded.test_client().get("/api/errors", headers={"Host": HOST})
    assert response.mimetype == "application/problem+json"
    assert response.get_json()["status"] == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


# -- headers ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("url", ["/", "/traces", "/static/viewer.js", "/api/errors", "/nowhere"])
def test_security_headers_are_on_every_response(open_app: Flask, url: str) -> None:
    """CSP without inline code, nosniff, no-referrer and DENY framing, on pages, files and errors."""
    with open_app.test_client().get(url, headers={"Host": HOST}) as response:
        headers = response.headers
    assert headers["Content-Security-Policy"] == CSP
    assert "script-src 'self';" in CSP
    assert "style-src 'self';" in CSP
    assert "unsafe-inline" not in CSP
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Referrer-Policy"] == "no-referrer"
    assert headers["X-Frame-Options"] == "DENY"


def test_pages_have_no_inline_script_or_style(client: FlaskClient) -> None:
    """No <script> without src, no <style>, no style= or on*= attributes in any page."""
    import re

    for url in ("/", "/traces", "/circuits", "/faults"):
        html = client.get(url).get_data(as_text=True)
        assert re.findall(r"<script(?![^>]*\bsrc=)", html) == []
        assert "<style" not in html
        assert re.findall(r"\sstyle=", html) == []
        assert re.findall(r"\son[a-z]+=", html) == []
