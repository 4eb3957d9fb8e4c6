"""Network path: catalog and titles from a real upstream process; degraded, 503 and circuit when it stops."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest
import requests

from resilience.testing import fake_clock
from tests.demo_app.servers import Server, start_upstream
from tests.demo_app.support import MakeApp, demo_state, problem

STALE = '110 - "Response is Stale"'


@pytest.fixture
def black_hole() -> Iterator[str]:
    """A URL whose server accepts connections and never answers (the kernel completes the handshake)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"


def test_catalog_lists_every_title_with_artwork(make_app: MakeApp) -> None:
    """GET /api/catalog answers the upstream's titles, not degraded."""
    response = make_app().test_client().get("/api/catalog")
    body = response.get_json()
    assert response.status_code == 200
    assert [t["id"] for t in body["titles"]] == [1, 2, 3]
    assert all("background" in t["artwork"] for t in body["titles"])
    assert body["degraded"] is False
    assert "Warning" not in response.headers


def test_title_has_details_artwork_and_recommendations(make_app: MakeApp) -> None:
    """GET /api/titles/<id> answers one title with artwork and recommendations."""
    body = make_app().test_client().get("/api/titles/2").get_json()
    assert (body["id"], body["degraded"]) == (2, False)
    assert body["recommendations"] == [1, 3]
    assert body["artwork"]["alt"].startswith("Poster of")


def test_unknown_title_is_404_and_does_not_count_against_the_circuit(make_app: MakeApp) -> None:
    """An upstream 404 is a 404 problem; the circuit stays closed however often it happens."""
    app = make_app(circuit_failures=2)
    client = app.test_client()
    for _ in range(3):
        response = client.get("/api/titles/42")
        assert response.status_code == 404
    assert problem(response)["type"].endswith("/title-not-found")
    assert demo_state(app).circuits[0].state == "closed"


def test_stopped_upstream_serves_the_last_good_answer_degraded(make_app: MakeApp, own_upstream: Server) -> None:
    """With the upstream process stopped, the cached answer comes back marked degraded."""
    client = make_app(upstream_url=own_upstream.url).test_client()
    fresh = client.get("/api/titles/1").get_json()
    own_upstream.stop()
    response = client.get("/api/titles/1")
    body = response.get_json()
    assert response.status_code == 200
    assert body["degraded"] is True
    assert {k: v for k, v in body.items() if k not in ("degraded", "cached_at")} == {
        k: v for k, v in fresh.items() if k != "degraded"}
    assert response.headers["Warning"] == STALE
    assert response.headers["X-Shockproof-Degraded"] == "1"


def test_stopped_upstream_without_cache_is_503_with_retry_after(make_app: MakeApp, own_upstream: Server) -> None:
    """Nothing cached and the upstream down: 503 problem with an integer Retry-After."""
    client = make_app(upstream_url=own_upstream.url).test_client()
    own_upstream.stop()
    response = client.get("/api/catalog")
    body = problem(response)
    assert response.status_code == 503
    assert body["kind"] == "network"
    assert int(response.headers["Retry-After"]) >= 1


def test_stopped_upstream_is_retried_before_giving_up(make_app: MakeApp, own_upstream: Server,
                                                      events: list[object]) -> None:
    """Connection refused is transient: every configured attempt is made."""
    from resilience import RetriesExhausted

    client = make_app(upstream_url=own_upstream.url, upstream_attempts=3).test_client()
    own_upstream.stop()
    client.get("/api/catalog")
    exhausted = [e for e in events if isinstance(e, RetriesExhausted)]
    assert [(e.call.site, e.attempts) for e in exhausted] == [("catalog.fetch", 3)]


def test_circuit_opens_and_later_calls_skip_the_upstream(make_app: MakeApp, own_upstream: Server) -> None:
    """After enough failures the circuit opens: 503 circuit rejections, degraded from cache if any."""
    app = make_app(upstream_url=own_upstream.url, circuit_failures=3, upstream_attempts=3)
    client = app.test_client()
    client.get("/api/titles/1")
    own_upstream.stop()
    client.get("/api/titles/1")  # three refused attempts: the circuit opens
    circuit = demo_state(app).circuits[0]
    assert circuit.state == "open"
    cached = client.get("/api/titles/1")
    uncached = client.get("/api/titles/2")
    assert (cached.status_code, cached.get_json()["degraded"]) == (200, True)
    assert uncached.status_code == 503
    assert 1 <= int(uncached.headers["Retry-After"]) <= int(circuit.open_for) + 1


def test_circuit_closes_again_when_the_upstream_is_back(make_app: MakeApp, own_upstream: Server) -> None:
    """Open for open_for seconds (fake clock), then a probe to the restarted upstream closes it."""
    with fake_clock() as clock:
        app = make_app(upstream_url=own_upstream.url, circuit_failures=2, circuit_open_for=30)
        client = app.test_client()
        own_upstream.stop()
        client.get("/api/catalog")
        circuit = demo_state(app).circuits[0]
        assert circuit.state == "open"
        restarted = start_upstream(port=own_upstream.port)
        try:
            assert client.get("/api/catalog").status_code == 503  # still open: not even tried
            clock.advance(31)
            response = client.get("/api/catalog")
        finally:
            restarted.stop()
    assert (response.status_code, response.get_json()["degraded"]) == (200, False)
    assert circuit.state == "closed"


def test_the_cache_survives_a_restart_of_the_app(make_app: MakeApp, own_upstream: Server) -> None:
    """The last good answer is on disk: a new app process (same data dir) serves it degraded."""
    make_app(upstream_url=own_upstream.url).test_client().get("/api/catalog")
    own_upstream.stop()
    response = make_app(upstream_url=own_upstream.url).test_client().get("/api/catalog")
    assert response.status_code == 200
    assert response.get_json()["degraded"] is True


def test_an_upstream_that_never_answers_times_out(make_app: MakeApp, black_hole: str) -> None:
    """The socket timeout comes from the deadline: a silent upstream costs a 503, not a hang."""
    client = make_app(upstream_url=black_hole, upstream_timeout=0.05, upstream_attempts=2).test_client()
    response = client.get("/api/catalog")
    assert response.status_code == 503
    assert problem(response)["kind"] == "network"


def test_an_upstream_error_status_is_a_transient_network_error() -> None:
    """A 5xx from the upstream becomes UpstreamError (a ConnectionError) with its Retry-After hint."""
    from demo_app.catalog_client import UpstreamError, _document
    from resilience import ErrorKind, classify

    response = requests.Response()
    response.status_code = 503
    response.headers["Retry-After"] = "4"
    with pytest.raises(UpstreamError) as caught:
        _document(response)
    assert caught.value.retry_after == 4.0
    assert classify(caught.value) == classify(ConnectionError())
    assert classify(caught.value).kind is ErrorKind.NETWORK


def test_a_non_json_upstream_body_is_an_upstream_error() -> None:
    """A body that is not a JSON object is a failed answer, not a logic error in the app."""
    from demo_app.catalog_client import UpstreamError, _document

    response = requests.Response()
    response.status_code = 200
    response._content = b"<html>proxy error</html>"
    with pytest.raises(UpstreamError):
        _document(response)
