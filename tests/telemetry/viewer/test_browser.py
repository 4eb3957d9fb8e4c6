"""The viewer in real Chromium (Playwright): pages, clicks, filters, keys, live refresh, safety.

One browser for the module, a real HTTP server thread on a free loopback port, a
copy of the scenario store (so the live-refresh test may add to it). Every page
is watched for console errors, page errors and CSP violations; screenshots go to
``test-artifacts/viewer/``.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from telemetry import _semconv as sc
from telemetry.query import Query
from telemetry.viewer import create_app

from .conftest import Served, close, span, write
from .scenario import Scenario

ARTIFACTS = Path(__file__).resolve().parents[3] / "test-artifacts" / "viewer"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
BIG_TRACE = 0xB16
BIG_SPANS = 5000
FAILING_SPAN = 3700
#: Records CSP violations from the first moment of every page.
WATCH_CSP = ("window.__csp = []; document.addEventListener('securitypolicyviolation', "
             "function (e) { window.__csp.push(e.violatedDirective + ' ' + e.blockedURI); });")


def _copy(source: Path, target: Path) -> Path:
    with sqlite3.connect(f"{source.resolve().as_uri()}?mode=ro", uri=True) as src, \
            sqlite3.connect(target) as dst:
        src.backup(dst)
    return target


def _big_trace(path: Path) -> None:
    """A batch request of 5,000 spans; one deep in it fails."""
    start = time.time_ns() - 10**9
    spans = [span(BIG_TRACE, 1, name="POST /batch", start=start, duration=BIG_SPANS * 10**5,
                  kind="server", attrs={sc.HTTP_ROUTE: "/batch"})]
    for n in range(2, BIG_SPANS + 1):
        bad = n == FAILING_SPAN
        spans.append(span(BIG_TRACE, n, parent=1, name=f"item {n}", start=start + n * 10**5,
                          duration=9 * 10**4, status="error" if bad else "unset",
                          attrs={sc.KIND: "io", sc.FINGERPRINT: "batch", sc.ERROR_TYPE: "OSError"}
                          if bad else {sc.SITE: "batch.item"}))
    write(path, spans)


@pytest.fixture(scope="module")
def store(scenario: Scenario, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = _copy(scenario.store, tmp_path_factory.mktemp("browser") / "telemetry.db")
    _big_trace(path)
    return path


@pytest.fixture(scope="module")
def server(store: Path) -> Iterator[Served]:
    app = create_app(store, refresh_seconds=0.5)
    running = Served(app)
    yield running
    running.stop()
    close(app)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


class Watched:
    """A page whose console errors, page errors and CSP violations are collected."""

    def __init__(self, page: Page, base: str) -> None:
        self.page = page
        self.base = base
        self.problems: list[str] = []
        page.on("console", lambda m: self.problems.append(f"console {m.type}: {m.text}")
                if m.type in ("error", "warning") else None)
        page.on("pageerror", lambda e: self.problems.append(f"page error: {e}"))
        page.add_init_script(WATCH_CSP)

    def go(self, path: str) -> Any:
        response = self.page.goto(self.base + path)
        assert response is not None
        assert response.ok, path
        return response

    def shot(self, name: str) -> None:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        self.page.screenshot(path=str(ARTIFACTS / f"{name}.png"))

    def assert_clean(self) -> None:
        """No console error, no page error, no CSP violation, and no planted script ran."""
        assert self.page.evaluate("window.__csp") == []
        assert self.page.evaluate("typeof window.__pwned") == "undefined"
        assert self.problems == []


def _page(browser: Browser, server: Served, **options: Any) -> Iterator[Watched]:
    context = browser.new_context(**options)
    watched = Watched(context.new_page(), server.url)
    yield watched
    watched.assert_clean()
    context.close()


@pytest.fixture
def desk(browser: Browser, server: Served) -> Iterator[Watched]:
    """A 1280x800 page."""
    yield from _page(browser, server, viewport={"width": 1280, "height": 800})


@pytest.fixture
def phone(browser: Browser, server: Served) -> Iterator[Watched]:
    """A 390x844 page in dark mode."""
    yield from _page(browser, server, viewport={"width": 390, "height": 844}, color_scheme="dark",
                     is_mobile=True, has_touch=True)


def test_errors_page_lists_each_provoked_kind(desk: Watched) -> None:
    """One row per kind, each with its badge, at desktop size."""
    response = desk.go("/")
    assert "script-src 'self'" in response.headers["content-security-policy"]
    for kind in ("logic", "validation", "network", "io"):
        assert desk.page.locator(f"tr.k-{kind} .badge.k-{kind}").first.is_visible()
    desk.shot("errors-1280x800")


def test_pages_are_usable_at_phone_width(phone: Watched, scenario: Scenario) -> None:
    """At 390 px the errors, traces and trace pages fit the width (no sideways scrolling)."""
    for path, name in (("/", "errors"), ("/traces", "traces"),
                       (f"/traces/{scenario.traces['network']}", "trace")):
        phone.go(path)
        width = phone.page.evaluate("document.documentElement.scrollWidth")
        assert width <= 390, f"{path} is {width}px wide"
        phone.shot(f"{name}-390x844-dark")


def test_clicking_a_group_opens_its_trace(desk: Watched, scenario: Scenario, store: Path) -> None:
    """The network group's row opens its trace: retry chain, fault marker, failed call in view."""
    desk.go("/?kind=network")
    desk.page.locator("tr.k-network", has_text="ConnectionRefusedError").locator(".msg").click()
    desk.page.wait_for_url(f"**/traces/{scenario.traces['network']}")
    chain = desk.page.locator("ol.chain")
    assert chain.locator("li.st-wait").count() == 2
    assert chain.locator("li.st-failed").count() == 3
    assert desk.page.locator(".mk.m-fault").first.is_visible()
    with Query(store) as q:
        detail = q.trace(scenario.traces["network"])
    assert detail is not None
    fetch = next(s.span_id for s in detail.spans if s.name == "catalog.fetch")
    assert desk.page.evaluate("document.activeElement.id") == f"span-{fetch}"
    desk.shot("trace-1280x800")


def test_trace_filters_work(desk: Watched, scenario: Scenario) -> None:
    """Choosing a kind submits the filter and leaves only matching traces."""
    desk.go("/traces")
    desk.page.select_option("select[name=kind]", "validation")
    desk.page.wait_for_url("**/traces?kind=validation&range=all")
    rows = desk.page.locator("#live tbody tr")
    assert rows.count() == 1
    assert rows.first.get_attribute("data-href") == f"/traces/{scenario.traces['validation']}"


def test_keyboard_moves_through_the_list_and_opens(desk: Watched) -> None:
    """j and k move the selection; Enter opens the selected trace."""
    desk.go("/traces")
    rows = desk.page.locator("#live tbody tr")
    desk.page.keyboard.press("j")
    desk.page.keyboard.press("j")
    desk.page.keyboard.press("k")
    assert "sel" in (rows.nth(0).get_attribute("class") or "")
    target = rows.nth(0).get_attribute("data-href")
    desk.page.keyboard.press("Enter")
    desk.page.wait_for_url(f"**{target}")


def test_planted_scripts_are_shown_as_text(desk: Watched, scenario: Scenario) -> None:
    """Payloads in a message, a span attribute and a log field appear as text, never run."""
    desk.go(f"/traces/{scenario.traces['network']}")
    desk.page.locator("details.span-details").first.evaluate("d => d.open = true")
    assert desk.page.get_by_text("window.__pwned='log'").first.is_visible()
    assert desk.page.get_by_text("window.__pwned='message'").count() > 0
    assert desk.page.locator("img[src=x]").count() == 0
    for path in ("/", "/traces", "/faults"):
        desk.go(path)
        assert desk.page.evaluate("typeof window.__pwned") == "undefined"


def test_live_refresh_shows_new_errors_without_a_reload(desk: Watched, store: Path) -> None:
    """A new error group appears in place; pausing stops the refresh."""
    desk.go("/")
    desk.page.evaluate("window.__kept = 42")
    write(store, [span(0xF00D, 1, name="GET /live", start=time.time_ns(), status="error",
                       kind="server", attrs={sc.KIND: "logic", sc.FINGERPRINT: "live-one",
                                             sc.ERROR_TYPE: "LiveAppearedError"})])
    desk.page.get_by_text("LiveAppearedError").wait_for(timeout=10_000)
    assert desk.page.evaluate("window.__kept") == 42
    toggle = desk.page.locator("#live-toggle")
    toggle.click()
    assert toggle.get_attribute("aria-pressed") == "true"
    assert desk.page.locator("#live-status").inner_text() == "paused"
    toggle.click()


def test_large_trace_jumps_to_its_failed_span(desk: Watched) -> None:
    """A 5,000-span trace opens with the failed span focused and in view; details load on demand."""
    desk.go(f"/traces/{BIG_TRACE:032x}")
    target = f"span-{FAILING_SPAN:016x}"
    assert desk.page.evaluate("document.activeElement.id") == target
    box = desk.page.locator(f"#{target}").bounding_box()
    assert box is not None
    assert 0 <= box["y"] <= 800
    other = desk.page.locator(f"#span-{FAILING_SPAN + 1:016x}")
    other.locator("button.more").click()
    other.locator("details.span-details[open] table.attrs").wait_for()
    assert "batch.item" in other.inner_text()
    desk.shot("large-trace-1280x800")


def test_copy_button_copies_the_trace_id(browser: Browser, server: Served,
                                         scenario: Scenario) -> None:
    """The copy button puts the trace id on the clipboard."""
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=server.url)
    page = Watched(context.new_page(), server.url)
    try:
        page.go(f"/traces/{scenario.traces['logic']}")
        page.page.locator("button.copy").click()
        page.page.locator("button.copy.done").wait_for()
        assert page.page.evaluate("navigator.clipboard.readText()") == scenario.traces["logic"]
        page.assert_clean()
    finally:
        context.close()
