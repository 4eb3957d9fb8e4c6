"""The web page: server-rendered, no inline script or style (strict CSP), friendly when the catalog fails."""

from __future__ import annotations

import re

from flask.testing import FlaskClient

from tests.demo_app.servers import Server
from tests.demo_app.support import MakeApp


def test_the_page_lists_the_catalog(client: FlaskClient) -> None:
    """/ renders every title with play and details buttons."""
    response = client.get("/")
    html = response.get_data(as_text=True)
    assert response.status_code == 200
    assert response.mimetype == "text/html"
    assert "Night Train to Lisbon" in html
    assert html.count('class="js-play primary"') == 3


def test_the_page_works_under_a_strict_csp(client: FlaskClient) -> None:
    """CSP allows only same-origin scripts and the page has no inline script, style or handler."""
    response = client.get("/")
    html = response.get_data(as_text=True)
    csp = response.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp
    assert "unsafe-inline" not in csp
    assert re.findall(r"<script(?![^>]*\bsrc=)[^>]*>", html) == []
    assert re.findall(r"\sstyle=|\son[a-z]+=|<style", html) == []


def test_the_static_script_is_served(client: FlaskClient) -> None:
    """The page's script is a static file."""
    response = client.get("/static/app.js")
    assert response.status_code == 200
    assert "addEventListener" in response.get_data(as_text=True)
    response.close()


def test_the_page_explains_a_down_catalog_instead_of_crashing(make_app: MakeApp, own_upstream: Server) -> None:
    """Upstream stopped and nothing cached: the page still renders, with a helpful note."""
    client = make_app(upstream_url=own_upstream.url).test_client()
    own_upstream.stop()
    response = client.get("/")
    assert response.status_code == 200
    assert "The catalog is unavailable right now" in response.get_data(as_text=True)


def test_the_page_marks_a_degraded_catalog(make_app: MakeApp, own_upstream: Server) -> None:
    """Upstream stopped after a good answer: the page shows the cached catalog with a warning."""
    client = make_app(upstream_url=own_upstream.url).test_client()
    client.get("/api/catalog")
    own_upstream.stop()
    html = client.get("/").get_data(as_text=True)
    assert "last good copy" in html
    assert "Night Train to Lisbon" in html
