"""telemetry.query: every filter, ordering, pagination and ranking the viewer relies on."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from telemetry import _semconv as sc
from telemetry._records import LogRecord, SpanEventRecord, SpanRecord
from telemetry._store import TraceStore
from telemetry.query import IMPACT_HALF_LIFE_S, Query, impact

from .test_store import MS, NOW, failure, make_span, sid, tid

HOUR = 3600 * 10**9


def request(n: int, route: str, *, start: int, duration: int, code: int, method: str = "GET",
            child: SpanRecord | None = None) -> list[SpanRecord]:
    """A request span (trace ``n``, span ``n * 10``), with an optional child already built."""
    root = make_span(n, n * 10, name=f"{method} {route}", kind="server", start=start,
                     duration=duration, status="error" if code >= 500 else "unset",
                     attrs={sc.HTTP_ROUTE: route, sc.HTTP_REQUEST_METHOD: method,
                            sc.HTTP_RESPONSE_STATUS_CODE: code})
    return [root] if child is None else [child, root]


def call(n: int, *, start: int, status: str = "unset", attrs: dict[str, object] | None = None,
         events: tuple[SpanEventRecord, ...] = ()) -> SpanRecord:
    """A guarded call inside request ``n``."""
    return make_span(n, n * 10 + 1, parent=n * 10, name="call", start=start + MS, status=status,
                     attrs=attrs, events=events)


def five_requests() -> list[SpanRecord]:
    """Five requests an hour apart, newest last: one of each kind of trouble, and one fine."""
    t = [NOW - (6 - n) * HOUR for n in range(1, 6)]
    fault = SpanEventRecord(sc.EVENT_FAULT, t[3] + 2 * MS, {sc.FAULT_SITE: "progress.save",
                                                            sc.FAULT_KIND: "io"})
    return [
        *request(1, "/catalog", start=t[0], duration=20 * MS, code=200,
                 child=call(1, start=t[0], events=(failure("net", time_ns=t[0] + 2 * MS),))),
        *request(2, "/upload", start=t[1], duration=300 * MS, code=500, method="POST",
                 child=call(2, start=t[1], status="error",
                            attrs={sc.KIND: "logic", sc.FINGERPRINT: "logic"})),
        *request(3, "/signup", start=t[2], duration=5 * MS, code=422, method="POST",
                 child=call(3, start=t[2], status="error", attrs={sc.KIND: "validation"})),
        *request(4, "/progress", start=t[3], duration=50 * MS, code=507, method="PUT",
                 child=call(4, start=t[3], status="error", events=(fault,),
                            attrs={sc.KIND: "io", sc.FINGERPRINT: "io",
                                   sc.FAULT_INJECTED: True})),
        *request(5, "/catalog", start=t[4], duration=2 * MS, code=200),
    ]


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "telemetry.db"


@pytest.fixture
def store(path: Path) -> Iterator[TraceStore]:
    with TraceStore(path) as s:
        yield s


@pytest.fixture
def query(path: Path) -> Iterator[Query]:
    with Query(path, now=lambda: NOW) as q:
        yield q


@pytest.fixture
def filled(store: TraceStore, query: Query) -> Query:
    store.add_spans(five_requests())
    store.add_logs([LogRecord(NOW - 2 * HOUR + 3 * MS, "error", "save failed", "app", tid(4),
                              sid(41), {sc.FINGERPRINT: "io"})])
    assert store.flush()
    return query


def ids(summaries: object) -> list[int]:
    return [int(s.trace_id, 16) for s in summaries]  # type: ignore[attr-defined]


# -- traces ------------------------------------------------------------------------------------


def test_traces_are_listed_newest_first(filled: Query) -> None:
    """Without filters every trace is listed, the most recent first."""
    assert ids(filled.traces()) == [5, 4, 3, 2, 1]


@pytest.mark.parametrize(("kind", "expected"), [
    ("network", [1]), ("logic", [2]), ("validation", [3]), ("io", [4])])
def test_traces_filter_by_kind(filled: Query, kind: str, expected: list[int]) -> None:
    """kind= keeps traces where an error of that kind appeared (even a recovered one)."""
    assert ids(filled.traces(kind=kind)) == expected


@pytest.mark.parametrize(("status", "expected"), [("error", [4, 3, 2]), ("ok", [5, 1])])
def test_traces_filter_by_status(filled: Query, status: str, expected: list[int]) -> None:
    """status='error' keeps traces with an error span; 'ok' the others."""
    assert ids(filled.traces(status=status)) == expected


def test_traces_filter_by_route(filled: Query) -> None:
    """route= keeps the traces of that route only."""
    assert ids(filled.traces(route="/catalog")) == [5, 1]


@pytest.mark.parametrize(("min_ms", "expected"), [(0, [5, 4, 3, 2, 1]), (20, [4, 2, 1]),
                                                  (50, [4, 2]), (120, [2]), (1000, [])])
def test_traces_filter_by_minimum_duration(filled: Query, min_ms: float,
                                           expected: list[int]) -> None:
    """min_duration_ms= keeps traces at least that long, also past the slow-trace indexes."""
    assert ids(filled.traces(min_duration_ms=min_ms)) == expected


def test_traces_filter_by_time_window(filled: Query) -> None:
    """since_ns is inclusive and until_ns exclusive, on the trace's start."""
    assert ids(filled.traces(since_ns=NOW - 4 * HOUR, until_ns=NOW - 2 * HOUR)) == [3, 2]


@pytest.mark.parametrize(("has_fault", "expected"), [(True, [4]), (False, [5, 3, 2, 1])])
def test_traces_filter_by_injected_fault(filled: Query, has_fault: bool,
                                         expected: list[int]) -> None:
    """has_fault= separates traces with an injected fault from the others."""
    assert ids(filled.traces(has_fault=has_fault)) == expected


def test_traces_filter_by_trace_id_prefix(store: TraceStore, query: Query) -> None:
    """A prefix of the trace id, in any case, finds the traces that start with it."""
    traces = (0xABC1 << 112, 0xABD2 << 112, 7)
    store.add_spans([make_span(t, n, start=NOW + n) for n, t in enumerate(traces, 1)])
    assert store.flush()
    assert ids(query.traces(trace_id_prefix="ABC")) == [0xABC1 << 112]
    assert ids(query.traces(trace_id_prefix="ab")) == [0xABD2 << 112, 0xABC1 << 112]


def test_traces_filters_combine(filled: Query) -> None:
    """Several filters narrow the list together."""
    assert ids(filled.traces(status="error", min_duration_ms=40, has_fault=False)) == [2]


def test_traces_paginate_with_limit_and_offset(filled: Query) -> None:
    """Pages of two: newest first, then the next two, then the rest."""
    pages = [ids(filled.traces(limit=2, offset=o)) for o in (0, 2, 4, 6)]
    assert pages == [[5, 4], [3, 2], [1], []]


def test_a_trace_summary_reports_its_request(filled: Query) -> None:
    """The summary carries the request's route, method, status code, duration and counts."""
    (summary,) = filled.traces(route="/progress")
    assert (summary.root_name, summary.method, summary.status_code) == ("PUT /progress", "PUT", 507)
    assert (summary.duration_ms, summary.span_count, summary.error_count) == (50.0, 2, 2)
    assert (summary.error_kind, summary.has_fault, summary.service_name) == ("io", True, "svc")


def test_unknown_kind_or_status_is_a_usage_error(filled: Query) -> None:
    """A kind or status that does not exist raises ValueError instead of matching nothing."""
    with pytest.raises(ValueError, match="kind"):
        filled.traces(kind="cosmic")
    with pytest.raises(ValueError, match="status"):
        filled.traces(status="meh")


def test_routes_lists_each_route_once(filled: Query) -> None:
    """routes() gives the distinct routes, sorted, for filter menus."""
    assert filled.routes() == ("/catalog", "/progress", "/signup", "/upload")


# -- one trace ---------------------------------------------------------------------------------


def test_trace_returns_spans_by_start_with_events_and_logs(filled: Query) -> None:
    """One trace: its spans in start order with their events, its logs, its summary."""
    detail = filled.trace(tid(4))
    assert detail is not None
    assert [s.span_id for s in detail.spans] == [sid(40), sid(41)]
    assert [e.name for e in detail.spans[1].events] == [sc.EVENT_FAULT]
    assert [log.event for log in detail.logs] == ["save failed"]
    assert detail.summary is not None
    assert detail.summary.trace_id == tid(4)


def test_trace_of_an_unknown_id_is_none(filled: Query) -> None:
    """Nothing stored under that id: None."""
    assert filled.trace(tid(99)) is None


def test_trace_with_only_logs_has_no_summary(store: TraceStore, query: Query) -> None:
    """Logs of a trace whose spans were not stored still read back, without a summary."""
    store.add_logs([LogRecord(NOW, "info", "alone", "app", tid(7), None, {})])
    assert store.flush()
    detail = query.trace(tid(7))
    assert detail is not None
    assert (detail.summary, detail.spans, len(detail.logs)) == (None, (), 1)


def test_a_large_trace_reads_back_whole(store: TraceStore, query: Query) -> None:
    """A trace of 2,000 spans written over several batches reads back complete and ordered."""
    spans = [make_span(1, n, parent=None if n == 1 else 1, start=NOW + n) for n in range(1, 2001)]
    store.add_spans(spans)
    assert store.flush()
    detail = query.trace(tid(1))
    assert detail is not None
    assert [s.span_id for s in detail.spans] == [sid(n) for n in range(1, 2001)]


# -- error groups -------------------------------------------------------------------------------


def occurrences(store: TraceStore, fingerprint: str, traces: range, per_trace: int,
                time_ns: int, kind: str = "network") -> None:
    spans = [make_span(t, t, start=time_ns, events=tuple(
        failure(fingerprint, kind=kind, time_ns=time_ns) for _ in range(per_trace)))
        for t in traces]
    store.add_spans(spans)
    assert store.flush()


def test_impact_grows_with_traces_and_count_and_decays_with_age() -> None:
    """The documented formula: traces x (1 + log2 count), halved every half-life of age."""
    assert impact(1, 1, NOW, NOW) == 1.0
    assert impact(8, 2, NOW, NOW) == 8.0
    half_life = int(IMPACT_HALF_LIFE_S * 10**9)
    assert impact(8, 2, NOW - half_life, NOW) == 4.0
    assert impact(0, 0, NOW, NOW) == 0.0


def test_groups_affecting_more_requests_rank_higher(store: TraceStore, query: Query) -> None:
    """Four requests hit once outrank one request hit eight times, at the same time."""
    occurrences(store, "deep", range(1, 2), per_trace=8, time_ns=NOW)
    occurrences(store, "wide", range(10, 14), per_trace=1, time_ns=NOW)
    assert [g.fingerprint for g in query.error_groups()] == ["wide", "deep"]


def test_recent_groups_rank_above_stale_ones(store: TraceStore, query: Query) -> None:
    """Equal figures: the group seen more recently ranks first."""
    occurrences(store, "stale", range(1, 3), per_trace=1, time_ns=NOW - 24 * HOUR)
    occurrences(store, "fresh", range(10, 12), per_trace=1, time_ns=NOW - HOUR)
    groups = query.error_groups()
    assert [g.fingerprint for g in groups] == ["fresh", "stale"]
    assert groups[0].impact > groups[1].impact > 0


def test_error_groups_filter_by_kind_and_route(filled: Query) -> None:
    """kind= matches the group's kind; route= the route of the request it happened in."""
    assert [g.fingerprint for g in filled.error_groups(kind="io")] == ["io"]
    (upload,) = filled.error_groups(route="/upload")
    assert (upload.fingerprint, upload.route) == ("logic", "/upload")


def test_error_groups_in_a_window_count_only_that_window(store: TraceStore, query: Query) -> None:
    """Figures, first/last seen and the sample trace cover the window only."""
    occurrences(store, "fp", range(1, 3), per_trace=1, time_ns=NOW - 5 * HOUR)
    occurrences(store, "fp", range(3, 6), per_trace=2, time_ns=NOW - HOUR)
    (group,) = query.error_groups(since_ns=NOW - 2 * HOUR, until_ns=NOW)
    assert (group.count, group.trace_count, group.first_seen_ns) == (6, 3, NOW - HOUR)
    assert group.sample_trace_id in {tid(3), tid(4), tid(5)}
    assert query.error_groups(since_ns=NOW - 10 * HOUR, until_ns=NOW - 6 * HOUR) == ()


def test_error_groups_respect_the_limit(store: TraceStore, query: Query) -> None:
    """limit= keeps the highest-impact groups only."""
    for n, fp in enumerate(("a", "b", "c")):
        occurrences(store, fp, range(10 * n + 1, 10 * n + 2 + n), per_trace=1, time_ns=NOW)
    assert [g.fingerprint for g in query.error_groups(limit=2)] == ["c", "b"]


def test_error_group_by_fingerprint(filled: Query) -> None:
    """One group by fingerprint; an unknown fingerprint gives None."""
    group = filled.error_group("io")
    assert group is not None
    assert (group.kind, group.count, group.injected_count, group.route) == ("io", 1, 1, "/progress")
    assert filled.error_group("nope") is None


def test_error_group_over_a_window(store: TraceStore, query: Query) -> None:
    """error_group() with a window reports that window's figures and a sample from it."""
    occurrences(store, "fp", range(1, 3), per_trace=1, time_ns=NOW - 5 * HOUR)
    occurrences(store, "fp", range(3, 4), per_trace=4, time_ns=NOW - HOUR)
    group = query.error_group("fp", since_ns=NOW - 6 * HOUR, until_ns=NOW - 4 * HOUR)
    assert group is not None
    assert (group.count, group.trace_count, group.last_seen_ns) == (2, 2, NOW - 5 * HOUR)
    assert group.sample_trace_id in {tid(1), tid(2)}
    assert query.error_group("fp", since_ns=NOW) is None


def test_group_trend_counts_per_bucket(store: TraceStore, query: Query) -> None:
    """Occurrences land in their time bucket, oldest bucket first; injected ones are split out."""
    occurrences(store, "fp", range(1, 3), per_trace=1, time_ns=NOW - 23 * HOUR + 1)
    occurrences(store, "fp", range(3, 4), per_trace=3, time_ns=NOW - HOUR // 2)
    trend = query.group_trend("fp", buckets=24)
    assert trend.bucket_ns == HOUR
    assert trend.counts[1] == 2
    assert trend.counts[23] == 3
    assert sum(trend.counts) == 5
    assert trend.injected == (0,) * 24


# -- circuits, faults, stats --------------------------------------------------------------------


def circuit_change(name: str, old: str, new: str, at: int) -> SpanEventRecord:
    return SpanEventRecord(sc.EVENT_CIRCUIT, at, {sc.CIRCUIT_NAME: name, sc.CIRCUIT_OLD_STATE: old,
                                                  sc.CIRCUIT_STATE: new,
                                                  sc.CIRCUIT_FAILURE_RATE: 0.5})


@pytest.fixture
def circuits(store: TraceStore, query: Query) -> Query:
    changes = [circuit_change("catalog", "closed", "open", NOW + 1),
               circuit_change("catalog", "open", "half-open", NOW + 2),
               circuit_change("catalog", "half-open", "closed", NOW + 3),
               circuit_change("upload", "closed", "open", NOW + 4)]
    store.add_spans([make_span(n, n, events=(c,)) for n, c in enumerate(changes, 1)])
    assert store.flush()
    return query


def test_circuits_give_each_circuits_latest_state(circuits: Query) -> None:
    """One row per circuit, by name: the last state, since when, and how many changes."""
    assert [(c.circuit, c.state, c.since_ns, c.changes) for c in circuits.circuits()] == [
        ("catalog", "closed", NOW + 3, 3), ("upload", "open", NOW + 4, 1)]


def test_circuit_history_is_chronological_and_filterable(circuits: Query) -> None:
    """History oldest first; name= and since_ns= narrow it; limit keeps the latest."""
    assert [c.new_state for c in circuits.circuit_history("catalog")] == [
        "open", "half-open", "closed"]
    assert [c.circuit for c in circuits.circuit_history(since_ns=NOW + 3)] == ["catalog", "upload"]
    assert [c.new_state for c in circuits.circuit_history(limit=2)] == ["closed", "open"]


def test_injected_faults_newest_first_and_filterable(store: TraceStore, query: Query) -> None:
    """Faults newest first; since_ns=, site= and limit= narrow the list."""
    faults = [SpanEventRecord(sc.EVENT_FAULT, NOW + n, {sc.FAULT_SITE: f"site{n % 2}"})
              for n in range(1, 5)]
    store.add_spans([make_span(n, n, events=(f,)) for n, f in enumerate(faults, 1)])
    assert store.flush()
    assert [f.time_ns - NOW for f in query.injected_faults()] == [4, 3, 2, 1]
    assert [f.time_ns - NOW for f in query.injected_faults(since_ns=NOW + 3)] == [4, 3]
    assert [f.time_ns - NOW for f in query.injected_faults(site="site1")] == [3, 1]
    assert len(query.injected_faults(limit=1)) == 1


def test_stats_count_every_table(filled: Query) -> None:
    """stats() reports rows per table, the covered time and no drops."""
    stats = filled.stats()
    assert (stats.spans, stats.traces, stats.logs, stats.error_groups) == (9, 5, 1, 3)
    assert (stats.span_events, stats.faults, stats.circuit_events, stats.dropped) == (2, 1, 0, 0)
    assert (stats.oldest_ns, stats.newest_ns) == (NOW - 5 * HOUR, NOW - HOUR)
    assert stats.size_bytes > 0


def test_a_missing_store_reads_as_empty(tmp_path: Path) -> None:
    """Before any writer created the file, queries return nothing instead of failing."""
    with Query(tmp_path / "absent.db") as q:
        assert (q.traces(), q.error_groups(), q.circuits(), q.trace(tid(1))) == ((), (), (), None)
        assert q.stats().spans == 0
    assert not (tmp_path / "absent.db").exists()


def test_a_closed_query_refuses_to_read(filled: Query) -> None:
    """After close(), reading is a usage error."""
    filled.close()
    with pytest.raises(ValueError, match="closed"):
        filled.traces()
