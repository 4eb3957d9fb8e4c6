"""The viewer's pages over a store filled by real guarded calls and requests (scenario.py)."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
from flask.testing import FlaskClient

from telemetry.query import Query
from telemetry.viewer import create_app

from .conftest import close
from .scenario import Scenario

KIND_ERRORS = {"logic": "ZeroDivisionError", "validation": "ValidationFailed",
               "network": "ConnectionRefusedError", "io": "PermissionError"}


def page(client: FlaskClient, url: str, status: int = 200) -> str:
    response = client.get(url)
    assert response.status_code == status, response.get_data(as_text=True)[:500]
    return response.get_data(as_text=True)


def rows(html: str) -> list[str]:
    """The ``data-href`` of every clickable row, in page order."""
    return re.findall(r'<tr[^>]* data-href="([^"]+)"', html)


def span_ids(scenario: Scenario, key: str) -> dict[str, str]:
    """Span name -> span id of one of the scenario's traces."""
    with Query(scenario.store) as q:
        detail = q.trace(scenario.traces[key])
    assert detail is not None
    return {s.name: s.span_id for s in detail.spans}


# -- Errors -----------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", list(KIND_ERRORS))
def test_errors_page_lists_a_group_of_each_kind(client: FlaskClient, kind: str) -> None:
    """Every provoked kind of error has a group with its kind badge and its exception type."""
    html = page(client, "/")
    row = re.search(rf'<tr class="k-{kind}".*?</tr>', html, re.S)
    assert row is not None
    assert f'badge k-{kind}' in row.group(0)
    assert KIND_ERRORS[kind] in html


def test_error_group_links_to_its_sample_trace(client: FlaskClient, scenario: Scenario) -> None:
    """Clicking the network group opens the trace it happened in."""
    html = page(client, "/?kind=network&route=/catalog")
    assert rows(html) == [f"/traces/{scenario.traces['network']}"]


def test_errors_page_filters_by_kind(client: FlaskClient) -> None:
    """A kind filter keeps only that kind's groups."""
    html = page(client, "/?kind=io")
    assert "PermissionError" in html
    assert "ZeroDivisionError" not in html
    assert len(rows(html)) == 1


def test_errors_page_filters_by_route(client: FlaskClient, scenario: Scenario) -> None:
    """A route filter keeps the groups seen on that route."""
    html = page(client, "/?route=/upload")
    assert rows(html) == [f"/traces/{scenario.traces['logic']}"]


def test_errors_page_time_range_leaves_out_older_errors(scenario: Scenario) -> None:
    """Two days later, the last 24 hours hold no error and the last 7 days all of them."""
    later = time.time_ns() + 2 * 86400 * 10**9
    app = create_app(scenario.store, now=lambda: later)
    try:
        client = app.test_client()
        assert rows(page(client, "/?range=24h")) == []
        assert len(rows(page(client, "/?range=7d"))) == 5
    finally:
        close(app)


def test_errors_page_splits_injected_from_real(client: FlaskClient) -> None:
    """The network group counts its injected occurrence apart from the real ones."""
    html = page(client, "/?kind=network&route=/catalog")
    assert '<span class="inj-n">1</span> injected' in html
    assert 'badge fault' in html


def test_errors_page_trend_is_server_rendered_svg(client: FlaskClient) -> None:
    """Each group has an inline SVG sparkline with at least one bar."""
    html = page(client, "/?kind=logic")
    spark = re.search(r'<svg class="spark".*?</svg>', html, re.S)
    assert spark is not None
    assert '<rect class="real"' in spark.group(0)


def test_errors_page_rejects_an_unknown_kind(client: FlaskClient) -> None:
    """A bad filter value answers 400 and says what was wrong."""
    html = page(client, "/?kind=cosmic", status=400)
    assert "kind must be one of" in html


def test_errors_api_returns_the_region_and_the_groups(client: FlaskClient) -> None:
    """The live-refresh endpoint answers the rendered table and the groups as data."""
    data = client.get("/api/errors?kind=logic").get_json()
    assert [g["kind"] for g in data["groups"]] == ["logic"]
    assert "ZeroDivisionError" in data["html"]
    assert data["html"].lstrip().startswith("<table")


def test_empty_store_shows_an_empty_errors_page(tmp_path: Path) -> None:
    """A store that does not exist yet reads as empty, not as an error."""
    app = create_app(tmp_path / "missing.db")
    try:
        assert "No errors" in page(app.test_client(), "/")
    finally:
        close(app)


# -- Traces -----------------------------------------------------------------------------------


def test_traces_are_listed_newest_first(client: FlaskClient, scenario: Scenario) -> None:
    """The traces page lists every request, the last one first."""
    expected = [f"/traces/{t}" for t in reversed(list(scenario.traces.values()))]
    assert rows(page(client, "/traces")) == expected


@pytest.mark.parametrize(("query", "keys"), [
    ("kind=io", ["io"]),
    ("kind=validation", ["validation"]),
    ("status=ok", ["validation", "home", "home-open"]),
    ("route=/upload", ["logic"]),
    ("fault=yes", ["network"]),
    ("min_ms=100000", []),
])
def test_traces_page_filters(client: FlaskClient, scenario: Scenario, query: str,
                             keys: list[str]) -> None:
    """Each filter keeps exactly the matching traces."""
    assert rows(page(client, f"/traces?{query}")) == [f"/traces/{scenario.traces[k]}" for k in keys]


def test_traces_page_finds_a_trace_by_id_prefix(client: FlaskClient, scenario: Scenario) -> None:
    """The search box takes the first hex digits of a trace id."""
    wanted = scenario.traces["io"]
    assert f"/traces/{wanted}" in rows(page(client, f"/traces?q={wanted[:10].upper()}"))


def test_traces_page_paginates(tmp_path: Path) -> None:
    """Fifty traces a page, with links to older and newer pages."""
    from .conftest import span, write

    path = tmp_path / "many.db"
    now = time.time_ns()
    write(path, [span(n, n, name=f"GET /item/{n}", start=now - n * 10**6, kind="server")
                 for n in range(1, 121)])
    app = create_app(path)
    try:
        client = app.test_client()
        first, third = page(client, "/traces"), page(client, "/traces?page=3")
        assert len(rows(first)) == 50
        assert 'href="/traces?page=2" rel="next"' in first
        assert len(rows(third)) == 20
        assert 'rel="next"' not in third
        assert 'href="/traces?page=2" rel="prev"' in third
    finally:
        close(app)


def test_traces_page_rejects_a_bad_page_number(client: FlaskClient) -> None:
    """page=0 is a 400."""
    page(client, "/traces?page=0", status=400)


# -- one trace --------------------------------------------------------------------------------------


def test_trace_shows_the_retry_chain(client: FlaskClient, scenario: Scenario) -> None:
    """Three attempts, two waits, and how it ended, in order."""
    html = page(client, f"/traces/{scenario.traces['network']}")
    chain = re.search(r'<ol class="chain".*?</ol>', html, re.S)
    assert chain is not None
    steps = re.findall(r'<li class="st st-([\w-]+)', chain.group(0))
    assert steps == ["fault", "failed", "wait", "failed", "wait", "failed", "exhausted", "end-error"]
    assert "attempt 3 ✗" in chain.group(0)


def test_trace_marks_the_injected_fault(client: FlaskClient, scenario: Scenario) -> None:
    """The call with an injected fault has a fault marker and an injected badge."""
    html = page(client, f"/traces/{scenario.traces['network']}")
    row = re.search(r'<div class="span-row[^"]*is-fault[^"]*" id="span-(\w+)".*?</div>\s*</div>', html, re.S)
    assert row is not None
    assert row.group(1) == span_ids(scenario, "network")["catalog.fetch"]
    assert 'class="mk m-fault' in html


@pytest.mark.parametrize(("key", "marker"), [
    ("home-open", "m-circuit"), ("home-open", "m-fallback"), ("home", "m-rejected"),
    ("deadline", "m-deadline"), ("network", "m-retry"), ("network", "m-exception"),
])
def test_trace_marks_what_resilience_did(client: FlaskClient, scenario: Scenario, key: str,
                                        marker: str) -> None:
    """Circuit changes, fallbacks, rejections, deadline expiry, retries: each its own marker."""
    assert f'class="mk {marker} ' in page(client, f"/traces/{scenario.traces[key]}")


def test_trace_shows_the_exception_with_its_stack(client: FlaskClient, scenario: Scenario) -> None:
    """Exception type, message (as text) and stack trace are on the page."""
    html = page(client, f"/traces/{scenario.traces['network']}")
    assert '<strong class="etype">ConnectionRefusedError</strong>' in html
    assert "upstream &lt;script&gt;window.__pwned=&#39;message&#39;&lt;/script&gt; refused" in html
    assert "Traceback (most recent call last)" in html


def test_trace_interleaves_its_log_lines(client: FlaskClient, scenario: Scenario) -> None:
    """A log line sits under the span it was logged in, before that span's children."""
    html = page(client, f"/traces/{scenario.traces['network']}")
    ids = span_ids(scenario, "network")
    root = html.index(f'id="span-{ids["GET /catalog"]}"')
    log = html.index("catalog.requested")
    child = html.index(f'id="span-{ids["catalog.fetch"]}"')
    assert root < log < child


def test_trace_jumps_to_the_innermost_failed_span(client: FlaskClient, scenario: Scenario) -> None:
    """The page points the script at the guarded call that failed, not at the request span."""
    html = page(client, f"/traces/{scenario.traces['network']}")
    assert f'data-first-error="span-{span_ids(scenario, "network")["catalog.fetch"]}"' in html


def test_trace_has_copy_and_export_controls(client: FlaskClient, scenario: Scenario) -> None:
    """A copy button for the trace id and a link to the OTLP JSON export."""
    trace_id = scenario.traces["logic"]
    html = page(client, f"/traces/{trace_id}")
    assert f'<code id="trace-id">{trace_id}</code>' in html
    assert 'data-copy-target="trace-id"' in html
    assert f'href="/traces/{trace_id}/otlp.json" download' in html


def test_export_is_otlp_json_of_the_trace(client: FlaskClient, scenario: Scenario) -> None:
    """The export is an ExportTraceServiceRequest in OTLP/JSON: hex ids, camelCase, all spans."""
    trace_id = scenario.traces["network"]
    response = client.get(f"/traces/{trace_id}/otlp.json")
    assert "attachment" in response.headers["Content-Disposition"]
    spans = [s for rs in response.get_json()["resourceSpans"] for ss in rs["scopeSpans"]
             for s in ss["spans"]]
    assert {s["spanId"] for s in spans} == set(span_ids(scenario, "network").values())
    assert {s["traceId"] for s in spans} == {trace_id}
    assert all("startTimeUnixNano" in s for s in spans)


def test_unknown_trace_is_a_404(client: FlaskClient) -> None:
    """A trace that is not stored answers 404, a malformed id too."""
    page(client, f"/traces/{'ab' * 16}", status=404)
    page(client, "/traces/not-a-trace", status=404)


# -- Circuits and Faults ------------------------------------------------------------------------------


def test_circuits_page_shows_state_and_history(client: FlaskClient, scenario: Scenario) -> None:
    """The circuit that opened is shown open, with its timeline and the transition's trace."""
    html = page(client, "/circuits")
    card = re.search(r'<article class="card circuit st-open".*?</article>', html, re.S)
    assert card is not None
    assert "viewer-test.recommendations" in card.group(0)
    assert '<rect class="cs-open"' in card.group(0)
    assert f'/traces/{scenario.traces["home-open"]}' in card.group(0)


def test_faults_page_lists_recorded_injections(client: FlaskClient, scenario: Scenario) -> None:
    """The injected fault shows its site, rule and trace."""
    html = page(client, "/faults")
    assert "catalog-refused" in html
    assert "<code>catalog.fetch</code>" in html
    assert f'/traces/{scenario.traces["network"]}' in html
    assert "No fault control API configured" in html


def test_faults_page_filters_by_rule(client: FlaskClient) -> None:
    """A rule filter with no match shows none."""
    assert "No injected fault recorded for this filter" in page(client, "/faults?rule=other")


# -- escaping -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("key", ["network", "logic"])
def test_planted_markup_is_escaped_everywhere(client: FlaskClient, scenario: Scenario,
                                              key: str) -> None:
    """Script planted in messages, attributes and log fields never reaches a page as markup."""
    for url in ("/", "/traces", f"/traces/{scenario.traces[key]}", "/faults", "/api/errors"):
        body = page(client, url)
        assert "<script>window" not in body
        assert "<img src=x" not in body
    trace = page(client, f"/traces/{scenario.traces['network']}")
    assert re.search(r"&lt;script&gt;window\.__pwned=(&#39;|&#x27;)log(&#39;|&#x27;)&lt;/script&gt;",
                     trace)
    assert "&lt;img src=x onerror=" in trace
