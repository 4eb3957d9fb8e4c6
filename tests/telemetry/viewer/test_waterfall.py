"""Laying out one trace: tree order, the time axis, markers, retry chains, logs, the first error."""

from __future__ import annotations

import pytest

from telemetry import _semconv as sc
from telemetry._records import LogRecord, SpanEventRecord
from telemetry.query import TraceDetail
from telemetry.viewer import layout
from telemetry.viewer._format import duration, parse_since
from telemetry.viewer._waterfall import SCALE, chain, positions_css

from .conftest import sid, span, tid
from .scenario import Scenario

T0 = 1_700_000_000 * 10**9
MS = 10**6


def detail(*spans: object, logs: tuple[LogRecord, ...] = ()) -> TraceDetail:
    return TraceDetail(tid(1), None, tuple(spans), logs)  # type: ignore[arg-type]


def test_spans_are_in_depth_first_order_with_depths() -> None:
    """Children follow their parent, in start order; depth counts from the root."""
    wf = layout(detail(span(1, 1, name="root", start=T0, duration=10 * MS),
                       span(1, 2, parent=1, name="a", start=T0 + MS),
                       span(1, 3, parent=1, name="b", start=T0 + 5 * MS),
                       span(1, 4, parent=2, name="a.1", start=T0 + 2 * MS)))
    assert [(r.span.name, r.depth) for r in wf.rows] == [("root", 0), ("a", 1), ("a.1", 2), ("b", 1)]


def test_orphans_and_cycles_are_still_shown() -> None:
    """A span whose parent is missing is a root; spans in a parent cycle appear once each."""
    wf = layout(detail(span(1, 1, parent=99, name="orphan", start=T0),
                       span(1, 2, parent=3, name="x", start=T0 + MS),
                       span(1, 3, parent=2, name="y", start=T0 + 2 * MS)))
    assert sorted(r.span.name for r in wf.rows) == ["orphan", "x", "y"]


def test_bars_are_placed_in_thousandths_of_the_trace() -> None:
    """A span starting halfway through and lasting a quarter sits at 500, 250 wide."""
    wf = layout(detail(span(1, 1, start=T0, duration=100 * MS),
                       span(1, 2, parent=1, start=T0 + 50 * MS, duration=25 * MS)))
    assert (wf.rows[1].left, wf.rows[1].width) == (500, 250)
    assert wf.ticks[-1] == (SCALE, "100 ms")


def test_markers_say_what_each_event_was() -> None:
    """Each event gets a marker of its kind at its time."""
    events = (SpanEventRecord(sc.EVENT_FAULT, T0 + 10 * MS, {sc.FAULT_KIND: "io", sc.FAULT_SITE: "disk"}),
              SpanEventRecord(sc.EVENT_CIRCUIT, T0 + 20 * MS, {sc.CIRCUIT_NAME: "db",
                                                               sc.CIRCUIT_OLD_STATE: "closed",
                                                               sc.CIRCUIT_STATE: "open"}))
    (row,) = layout(detail(span(1, 1, start=T0, duration=100 * MS, events=events))).rows
    assert [(m.kind, m.pos) for m in row.markers] == [("fault", 100), ("circuit", 200)]
    assert row.markers[1].label == "circuit state changed: db: closed → open"
    assert row.fault


def test_a_recovered_call_ends_its_chain_with_a_success() -> None:
    """attempt 1 failed, a wait, then attempt 2 succeeded."""
    events = (SpanEventRecord(sc.EVENT_ATTEMPT_FAILED, T0, {sc.ATTEMPT: 1, sc.KIND: "network",
                                                          sc.EXCEPTION_TYPE: "ConnectionError"}),
              SpanEventRecord(sc.EVENT_RETRY, T0, {sc.ATTEMPT: 1, sc.WAIT_S: 0.25}))
    call = span(1, 1, start=T0, events=events, attrs={sc.OUTCOME: "success", sc.ATTEMPTS: 2})
    assert [(s.kind, s.text) for s in chain(call)] == [
        ("failed k-network", "attempt 1 ✗"), ("wait", "wait 250 ms"), ("ok", "attempt 2 ✓")]


def test_a_call_without_retry_events_has_no_chain() -> None:
    """Nothing to chain."""
    assert chain(span(1, 1, start=T0)) == ()


def test_logs_go_under_their_span_and_unknown_ones_under_the_root() -> None:
    """A log of a known span is listed with it; one of an unknown span with the root."""
    logs = (LogRecord(T0 + MS, "info", "inside", "app", tid(1), sid(2), {}),
            LogRecord(T0 + 2 * MS, "error", "elsewhere", "app", tid(1), sid(77), {"k": 1}))
    wf = layout(detail(span(1, 1, start=T0, duration=10 * MS),
                       span(1, 2, parent=1, start=T0 + MS), logs=logs))
    assert [line.record.event for line in wf.rows[0].logs] == ["elsewhere"]
    assert [line.record.event for line in wf.rows[1].logs] == ["inside"]
    assert [m.kind for m in wf.rows[0].markers] == ["log"]


def test_first_error_is_the_innermost_failed_span() -> None:
    """The request failed because its call did: the page jumps to the call."""
    wf = layout(detail(span(1, 1, start=T0, status="error", duration=10 * MS),
                       span(1, 2, parent=1, start=T0 + MS, status="error"),
                       span(1, 3, parent=1, start=T0 + 3 * MS, status="error")))
    assert wf.first_error == sid(2)


def test_without_failed_spans_the_first_error_is_a_span_with_a_kind() -> None:
    """A 422 has no error status but its span carries the validation kind."""
    wf = layout(detail(span(1, 1, start=T0, duration=10 * MS),
                       span(1, 2, parent=1, start=T0 + MS, attrs={sc.KIND: "validation"})))
    assert wf.first_error == sid(2)


def test_exceptions_repeated_by_the_request_span_are_listed_once() -> None:
    """The same type and message on the call and the request appear once, the earliest."""
    exc = {sc.EXCEPTION_TYPE: "KeyError", sc.EXCEPTION_MESSAGE: "'id'", sc.EXCEPTION_STACKTRACE: "tb"}
    wf = layout(detail(
        span(1, 1, start=T0, duration=10 * MS, events=(SpanEventRecord("exception", T0 + 9 * MS, exc),)),
        span(1, 2, parent=1, start=T0 + MS, events=(SpanEventRecord("exception", T0 + 2 * MS, exc),))))
    assert [(e.type, e.span_id) for e in wf.exceptions] == [("KeyError", sid(2))]


def test_an_empty_trace_lays_out_as_nothing() -> None:
    """No spans, no logs: no rows, no error."""
    wf = layout(detail())
    assert (wf.rows, wf.first_error) == ((), None)


def test_position_classes_cover_every_thousandth() -> None:
    """The stylesheet has l0..l1000 and w0..w1000."""
    css = positions_css()
    assert ".l0{left:0%}" in css
    assert ".l1000{left:100%}" in css
    assert ".w455{width:45.5%}" in css


@pytest.mark.parametrize(("ns", "text"), [(850_000, "850 µs"), (12_345_678, "12.3 ms"),
                                          (250 * MS, "250 ms"), (1_240 * MS, "1.24 s"),
                                          (123 * 10**9, "2 min 3 s")])
def test_durations_read_naturally(ns: int, text: str) -> None:
    """Durations pick their unit."""
    assert duration(ns) == text


@pytest.mark.parametrize(("text", "seconds"), [("90s", 90), ("15m", 900), ("2h", 7200), ("7d", 604800),
                                               ("30", 30)])
def test_since_durations_parse(text: str, seconds: int) -> None:
    """--since takes s, m, h, d (or bare seconds)."""
    assert parse_since(text) == seconds


@pytest.mark.parametrize("text", ["", "abc", "-5m", "0"])
def test_bad_since_durations_are_refused(text: str) -> None:
    """Anything else is a ValueError."""
    with pytest.raises(ValueError, match="duration"):
        parse_since(text)


def test_rows_escape_names_labels_chains_and_logs() -> None:
    """Markup in a span name, an event (a marker's title, a chain step) and a log line is text."""
    from telemetry.viewer._rows import row_html

    evil = '"><script>alert(1)</script><b x=\''
    events = (SpanEventRecord(sc.EVENT_ATTEMPT_FAILED, T0, {sc.ATTEMPT: 1, sc.KIND: "network",
                                                          sc.EXCEPTION_TYPE: evil}),)
    logs = (LogRecord(T0, "error", evil, evil, tid(1), sid(1), {evil: evil}),)
    wf = layout(detail(span(1, 1, name=evil, start=T0, events=events), logs=logs))
    html = row_html(wf.rows[0], None)
    assert "<script>" not in html
    assert "<b x=" not in html
    assert html.count("&quot;&gt;&lt;script&gt;alert(1)&lt;/script&gt;&lt;b x=&#x27;") >= 6


def test_batched_trends_match_query_group_trend(scenario: Scenario) -> None:
    """ErrorFeed.trends gives, in one statement, what Query.group_trend gives group by group."""
    import time

    from telemetry.query import Query
    from telemetry.viewer import ErrorFeed

    now = time.time_ns()
    with Query(scenario.store) as q, ErrorFeed(scenario.store) as feed:
        fingerprints = [g.fingerprint for g in q.error_groups()]
        batched = feed.trends(fingerprints, 12, now - 3600 * 10**9, now)
        assert batched == {fp: q.group_trend(fp, 12, now - 3600 * 10**9, now) for fp in fingerprints}
        assert sum(sum(t.counts) for t in batched.values()) > 0
