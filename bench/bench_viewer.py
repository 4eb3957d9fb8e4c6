"""The trace viewer (issue 6): page latency with 1,000,000 spans stored, and a 5,000-span trace.

1. **List pages**: the viewer app (``telemetry.viewer.create_app``) over the
   1M-span store that ``bench_store`` builds and caches in ``bench/.cache/``;
   every errors-page and traces-page variant (filters, windows, pagination, and
   their live-refresh JSON twins) is requested ``REPEAT`` times, interleaved,
   through Flask's test client: the figure is the viewer's whole work (queries,
   layout, templates), without the HTTP server. Target: p95 <= 150 ms.
2. **A 5,000-span trace**: its page rendered by the app (p95 of ``TRACE_REPEAT``),
   and, when Chromium is installed, opened in the browser from a real server
   thread: time until the failed span deep inside it is focused (the page has
   jumped to it), p95 of ``BROWSER_REPEAT``. Target: under 1 s.
"""

from __future__ import annotations

import logging
import random
import statistics
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from flask.testing import FlaskClient

from telemetry import _semconv as sc
from telemetry._records import LogRecord, SpanEventRecord, SpanRecord
from telemetry._store import TraceStore
from telemetry.query import Query
from telemetry.viewer import Viewer, create_app

from ._harness import Bench, Result
from .bench_store import BIG_SPANS, BIG_TRACE_ID, CACHE, big_store

REPEAT = 30
TRACE_REPEAT = 10
BROWSER_REPEAT = 5
PAGE_TARGET_MS = 150.0
TRACE_TARGET_MS = 1000.0
TRACE_SPANS = 5_000
FAILING = 3_700
TRACE_ID = f"{0x5000:032x}"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


def page_cases(client: FlaskClient, q: Query) -> dict[str, dict[str, str]]:
    """Every errors-page and traces-page variant the viewer serves, by section."""
    prefix = q.traces(limit=1, offset=777)[0].trace_id[:4]
    errors = ["/", "/?range=1h", "/?range=24h", "/?range=7d", "/?kind=network", "/?route=/upload",
              "/?kind=io&range=24h", "/api/errors", "/api/errors?range=24h"]
    traces = ["/traces", "/traces?page=50", "/traces?status=error", "/traces?kind=io",
              "/traces?route=/signup", "/traces?min_ms=200", "/traces?fault=yes",
              "/traces?range=1h", f"/traces?q={prefix}", "/traces?kind=logic&route=/upload&status=error",
              "/api/traces", "/api/traces?status=error"]
    return {"errors page": {u: u for u in errors}, "traces page": {u: u for u in traces},
            "other pages": {"/circuits": "/circuits", "/faults": "/faults"}}


def timed(client: FlaskClient, url: str) -> float:
    """Milliseconds to answer ``url`` (the whole body read)."""
    start = time.perf_counter()
    response = client.get(url)
    body = response.get_data()
    elapsed = (time.perf_counter() - start) * 1000
    if response.status_code != 200 or not body:
        raise RuntimeError(f"{url} answered {response.status_code}")
    return elapsed


def sample(client: FlaskClient, urls: list[str], repeat: int) -> dict[str, list[float]]:
    """Milliseconds per request of each URL, ``repeat`` interleaved rounds after a warm-up."""
    for url in urls:
        timed(client, url)
    out: dict[str, list[float]] = {u: [] for u in urls}
    for _ in range(repeat):
        for url in urls:
            out[url].append(timed(client, url))
    return out


def p95(values: list[float]) -> float:
    return statistics.quantiles(values, n=20, method="inclusive")[-1] if len(values) > 1 else values[0]


def record(bench: Bench, section: str, samples: dict[str, list[float]], target: float) -> None:
    """p95 of each case, and each against the target."""
    budget = f"target: {section}"
    bench.results[budget] = Result(section, budget, target, "ms p95", (target,), 1, budget)
    for name, values in samples.items():
        bench.results[name] = Result(section, name, p95(values), "ms p95", tuple(values),
                                     len(values), budget)
        bench.compare(f"{name} p95 / {target:.0f} ms", name, budget, at_most=1.0)


# -- the 5,000-span trace -------------------------------------------------------------------------


def trace_store() -> Path:
    """A small store holding one request of 5,000 spans (guarded items, retries, logs, one
    failure deep inside), cached in ``bench/.cache/``."""
    path = CACHE / f"viewer-trace-{TRACE_SPANS}.db"
    if path.exists():
        return path
    CACHE.mkdir(exist_ok=True)
    rng = random.Random(3)
    start = time.time_ns()
    root = f"{1:016x}"
    spans = [SpanRecord(TRACE_ID, root, None, "POST /batch", "server", start,
                        start + TRACE_SPANS * 200_000, "error", "", {sc.HTTP_ROUTE: "/batch",
                        sc.HTTP_REQUEST_METHOD: "POST", sc.HTTP_RESPONSE_STATUS_CODE: 500}, (),
                        "bench")]
    logs = []
    for n in range(2, TRACE_SPANS + 1):
        at = start + n * 200_000
        failed = n == FAILING
        events: tuple[SpanEventRecord, ...] = ()
        if rng.random() < 0.1 or failed:
            events = (SpanEventRecord(sc.EVENT_ATTEMPT_FAILED, at + 10_000, {
                sc.ATTEMPT: 1, sc.KIND: "network", sc.EXCEPTION_TYPE: "ConnectionError",
                sc.EXCEPTION_MESSAGE: "reset by peer"}),
                SpanEventRecord(sc.EVENT_RETRY, at + 11_000, {sc.ATTEMPT: 1, sc.WAIT_S: 0.05}))
        attrs: dict[str, Any] = {sc.SITE: "batch.item", "item": n}
        if failed:
            attrs |= {sc.KIND: "io", sc.FINGERPRINT: "bench-batch", sc.ERROR_TYPE: "OSError"}
            logs.append(LogRecord(at + 100_000, "error", "item failed", "bench", TRACE_ID,
                                  f"{n:016x}", {"item": n}))
        spans.append(SpanRecord(TRACE_ID, f"{n:016x}", root, f"item {n}", "internal", at,
                                at + 150_000, "error" if failed else "unset", "", attrs, events,
                                "bench"))
    partial = path.with_suffix(".building")
    with TraceStore(partial, max_bytes=2**32, queue_size=TRACE_SPANS * 2) as store:
        store.add_spans(spans)
        store.add_logs(logs)
        if not store.flush(120):
            raise RuntimeError("the 5,000-span trace was not written in time")
    partial.rename(path)
    return path


def browser_samples(path: Path) -> list[float] | None:
    """Milliseconds from navigation to the failed span focused, in Chromium (None without it)."""
    try:
        from playwright.sync_api import sync_playwright
        from werkzeug.serving import make_server
    except ImportError:
        return None
    if not CHROMIUM.exists():
        return None
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    app = create_app(path)
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_port}/traces/{TRACE_ID}"
    target = f"span-{FAILING:016x}"
    out: list[float] = []
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1280, "height": 800})
            page.goto(url)  # warm-up: caches the static files
            for _ in range(BROWSER_REPEAT):
                page.goto("about:blank")
                start = time.perf_counter()
                page.goto(url, wait_until="commit")
                page.wait_for_function("(id) => document.activeElement?.id === id", arg=target,
                                       polling="raf")
                out.append((time.perf_counter() - start) * 1000)
            browser.close()
    finally:
        server.shutdown()
        server.server_close()
        state: Viewer = app.extensions["shockproof.viewer"]
        state.close()
    return out


# -- main -------------------------------------------------------------------------------------------


def main() -> None:
    bench = Bench("viewer", rounds=REPEAT)
    big = big_store(bench)
    app = create_app(big)
    client = app.test_client()
    with Query(big) as q:
        stats = q.stats()
        cases = page_cases(client, q)
    bench.note(f"store: {stats.spans:,} spans, {stats.traces:,} traces, {stats.error_groups} "
               f"error groups ({stats.size_bytes / 2**20:,.0f} MiB), built by bench_store")
    for section, urls in cases.items():
        bench.say(f"-- {section}: {len(urls)} URLs x {REPEAT} rounds")
        record(bench, f"{section} with {BIG_SPANS:,} spans stored (ms)", sample(
            client, list(urls), REPEAT), PAGE_TARGET_MS)
    small = trace_store()
    trace_app = create_app(small)
    bench.say(f"-- {TRACE_SPANS:,}-span trace pages x {TRACE_REPEAT}")
    trace_cases: dict[str, Callable[[], float]] = {
        f"page of a {TRACE_SPANS:,}-span trace (app)": lambda: timed(trace_app.test_client(),
                                                                    f"/traces/{TRACE_ID}"),
        f"page of the 1M store's {TRACE_SPANS:,}-span trace (app)": lambda: timed(
            client, f"/traces/{BIG_TRACE_ID}"),
    }
    samples = {name: [case() for _ in range(TRACE_REPEAT)] for name, case in trace_cases.items()}
    bench.say(f"-- {TRACE_SPANS:,}-span trace in Chromium x {BROWSER_REPEAT}")
    seen = browser_samples(small)
    if seen is None:
        bench.note("Chromium (/usr/bin/chromium) or Playwright missing: browser timing skipped")
    else:
        samples[f"{TRACE_SPANS:,}-span trace in Chromium, until the failed span is focused"] = seen
    record(bench, f"a {TRACE_SPANS:,}-span trace (ms)", samples, TRACE_TARGET_MS)
    size = len(trace_app.test_client().get(f"/traces/{TRACE_ID}").get_data())
    bench.note(f"the {TRACE_SPANS:,}-span trace page weighs {size / 2**20:.1f} MiB of HTML "
               "(details of ordinary spans load on demand)")
    for each in (app, trace_app):
        state: Viewer = each.extensions["shockproof.viewer"]
        state.close()
    bench.report()


if __name__ == "__main__":
    main()
