"""The errors page's users column and its route-filtered sparkline, in the page and the CLI."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask.testing import FlaskClient

from telemetry import _semconv as sc
from telemetry.viewer import create_app
from telemetry.viewer._cli import main
from telemetry.viewer._queries import ErrorFeed

from .conftest import close, span, write

FINGERPRINT = "f" * 16
NOW = time.time_ns()
#: (route, pseudonymous user or None) of each failed request; 3 on /a by 2 users, 2 on /b.
REQUESTS = (("/a", "u1"), ("/a", "u1"), ("/a", "u2"), ("/b", "u3"), ("/b", None))


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One error group seen in five requests on two routes by three known users."""
    path = tmp_path_factory.mktemp("users") / "telemetry.db"
    spans = []
    for n, (route, user) in enumerate(REQUESTS, 1):
        attrs = {sc.HTTP_ROUTE: route, sc.FINGERPRINT: FINGERPRINT, sc.KIND: "logic",
                 sc.ERROR_TYPE: "ZeroDivisionError", sc.HTTP_RESPONSE_STATUS_CODE: 500}
        if user is not None:
            attrs[sc.USER_PSEUDO_ID] = user
        spans.append(span(n, n, name=f"GET {route}", kind="server", status="error",
                          start=NOW - n * 60 * 10**9, attrs=attrs))
    write(path, spans)
    return path


@pytest.fixture
def client(store: Path) -> Iterator[FlaskClient]:
    app = create_app(store, now=lambda: NOW)
    yield app.test_client()
    close(app)


def cell(html: str, css: str) -> list[str]:
    return re.findall(rf'<td class="[^"]*\b{css}\b[^"]*">([^<]*)</td>', html)


def test_errors_page_shows_distinct_users(client: FlaskClient) -> None:
    """The users column counts distinct pseudonymous users, not requests."""
    html = client.get("/").get_data(as_text=True)
    assert re.search(r"<th[^>]*>Users</th>", html)
    assert cell(html, "users") == ["3"]


def test_errors_page_users_follow_the_route_filter(client: FlaskClient) -> None:
    """With a route filter, only that route's users are counted."""
    assert cell(client.get("/?route=/a").get_data(as_text=True), "users") == ["2"]


def test_sparkline_with_a_route_filter_counts_only_that_route(client: FlaskClient) -> None:
    """The sparkline of ``route=/b`` sums that route's 2 occurrences, not all 5."""
    def total(url: str) -> str:
        found = re.search(r'<svg class="spark"[^>]*aria-label="(\d+) occurrence',
                          client.get(url).get_data(as_text=True))
        assert found is not None
        return found.group(1)

    assert (total("/"), total("/?route=/b"), total("/?route=/a")) == ("5", "2", "3")


def test_trends_with_a_route_count_only_that_route(store: Path) -> None:
    """``ErrorFeed.trends(route=...)`` leaves out the other routes' occurrences."""
    since = NOW - 3600 * 10**9
    with ErrorFeed(store) as feed:
        every = feed.trends([FINGERPRINT], 6, since, NOW)[FINGERPRINT]
        on_b = feed.trends([FINGERPRINT], 6, since, NOW, route="/b")[FINGERPRINT]
    assert (sum(every.counts), sum(on_b.counts)) == (5, 2)


def test_cli_errors_shows_users_in_table_and_json(store: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    """``shockproof-traces errors`` has a users column; ``--json`` has ``users``."""
    assert main(["errors", "--store", str(store), "--json"]) == 0
    assert [g["users"] for g in json.loads(capsys.readouterr().out)] == [3]
    assert main(["errors", "--store", str(store)]) == 0
    assert "users" in capsys.readouterr().out
