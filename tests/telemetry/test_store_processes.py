"""Several worker processes writing one trace store at once (real processes, real file locks)."""

from __future__ import annotations

import multiprocessing
import warnings
from pathlib import Path

from telemetry import _semconv as sc
from telemetry._store import TraceStore
from telemetry.query import Query

from .test_store import NOW, failure, make_span, rows, tid

WORKERS = 3
TRACES = 300


def write_share(path: str, worker: int, start: object) -> None:
    """One worker: a span in each of the shared traces, all failing alike, in small batches."""
    spans = [make_span(t, t * 10 + worker, parent=t * 10, start=NOW + t,
                       events=(failure("shared", time_ns=NOW + t),))
             for t in range(1, TRACES + 1)]
    with TraceStore(path, batch_size=20) as store:
        start.wait(30)  # type: ignore[attr-defined]
        for i in range(0, len(spans), 10):
            store.add_spans(spans[i:i + 10])
        if not store.flush(60) or store.dropped:
            raise SystemExit(f"worker {worker}: dropped {store.dropped}")


def test_worker_processes_write_one_new_file_at_once(tmp_path: Path) -> None:
    """Three spawned processes create the schema and write concurrently: nothing lost or split."""
    path = tmp_path / "shared.db"
    ctx = multiprocessing.get_context("spawn")
    start = ctx.Event()
    workers = [ctx.Process(target=write_share, args=(str(path), w, start)) for w in range(WORKERS)]
    for p in workers:
        p.start()
    start.set()
    for p in workers:
        p.join(90)
    assert [p.exitcode for p in workers] == [0] * WORKERS
    assert rows(path, "SELECT count(*) FROM spans") == [(WORKERS * TRACES,)]
    with Query(path) as q:
        assert q.stats().spans == WORKERS * TRACES
        assert {t.span_count for t in q.traces(limit=TRACES + 1)} == {WORKERS}
        group = q.error_group("shared")
        assert group is not None
        assert (group.count, group.trace_count) == (WORKERS * TRACES, TRACES)
        detail = q.trace(tid(TRACES))
        assert detail is not None
        assert len(detail.spans) == WORKERS


def write_after_fork(store: TraceStore) -> None:
    """A forked child writing through the store object it inherited."""
    store.add_spans([make_span(2, 2, attrs={sc.SITE: "child"})])
    if not store.flush(30) or store.dropped:
        raise SystemExit("child dropped")
    store.close()


def test_a_store_inherited_across_fork_writes_from_the_child(tmp_path: Path) -> None:
    """After fork the child gets its own connection and writer; parent and child both write."""
    path = tmp_path / "forked.db"
    with TraceStore(path) as store:
        store.add_spans([make_span(1, 1)])
        assert store.flush()
        child = multiprocessing.get_context("fork").Process(target=write_after_fork, args=(store,))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # 3.12+: fork with threads
            child.start()
        child.join(60)
        store.add_spans([make_span(3, 3)])
        assert store.flush()
    assert child.exitcode == 0
    assert rows(path, "SELECT trace_id FROM spans ORDER BY trace_id") == [
        (tid(1),), (tid(2),), (tid(3),)]
