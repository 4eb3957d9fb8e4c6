"""The served Flask benchmark's machinery: servers start, answer, are measured and go away."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench._served import Server, ServerError, cpu_ns, measure, servers

#: Two threads each burn CPU until their own CPU clock shows BURN_NS, print it, then wait
#: (alive, so their /proc task entries stay) until stdin closes.
BURNER = r"""
import sys, threading, time
done, out = threading.Event(), threading.Lock()
def burn():
    while time.thread_time_ns() < {burn}:
        pass
    with out:
        sys.stdout.write(f"{{time.thread_time_ns()}}\n")
        sys.stdout.flush()
    done.wait()
workers = [threading.Thread(target=burn) for _ in range(2)]
for w in workers:
    w.start()
sys.stdin.read()
done.set()
for w in workers:
    w.join()
"""
BURN_NS = 150_000_000


@pytest.fixture(scope="module")
def bare(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    server = Server("bare", tmp_path_factory.mktemp("served") / "bare", settle=0.0)
    try:
        yield server.start()
    finally:
        server.stop()


def test_a_served_variant_answers_the_items_route(bare: Server) -> None:
    """The bare server answers GET /items/7 with the item as JSON."""
    assert json.loads(bare.get("/items/7")) == {"id": 7}


def test_a_round_reports_its_requests_and_positive_server_cpu_and_wall_time(bare: Server) -> None:
    """A round of 5 requests records 5 requests, and server CPU and wall time above zero."""
    sample = bare.round(5)
    assert (sample.requests, sample.cpu_ns > 0, sample.wall_ns > 0) == (5, True, True)


def test_leaving_servers_stops_every_server_process(tmp_path: Path) -> None:
    """Once the servers() block is left, each server process has exited and been waited for."""
    with servers(["bare", "shockproof"], tmp_path, settle=0.0) as running:
        processes = [s.process for s in running.values()]
        running["shockproof"].round(2)
    assert [p is not None and p.returncode is not None for p in processes] == [True, True]


def request_a_missing_page(workdir: Path, seen: list[subprocess.Popen[str] | None]) -> None:
    with servers(["bare"], workdir, settle=0.0) as running:
        seen.append(running["bare"].process)
        running["bare"].get("/nowhere")


def test_servers_are_stopped_when_a_request_fails(tmp_path: Path) -> None:
    """A request answered with an error leaves the servers() block and still stops the server."""
    seen: list[subprocess.Popen[str] | None] = []
    with pytest.raises(ServerError, match="404"):
        request_a_missing_page(tmp_path, seen)
    assert [p is not None and p.returncode is not None for p in seen] == [True]


def test_a_store_round_ends_with_the_writer_flushed(tmp_path: Path) -> None:
    """When a store round returns, its requests' spans are already in the SQLite store."""
    with servers(["store"], tmp_path, settle=0.0) as running:
        running["store"].round(3)
        with sqlite3.connect(tmp_path / "store" / "telemetry.db") as db:
            (spans,) = db.execute("SELECT COUNT(*) FROM spans").fetchone()
    assert spans >= 3


def test_measure_gives_every_variant_one_sample_per_round(tmp_path: Path) -> None:
    """Two rounds of 3 requests against two variants give each variant two samples of 3 requests."""
    samples = measure(["bare", "ours"], tmp_path, rounds=2, requests=3, warmup=1, settle=0.0,
                      say=lambda text: None)
    assert {v: [s.requests for s in got] for v, got in samples.items()} == {"bare": [3, 3], "ours": [3, 3]}


def test_an_unknown_variant_is_refused() -> None:
    """Asking for a variant the benchmark does not know is a usage error, before any process starts."""
    with pytest.raises(ValueError, match="unknown variant"):
        Server("nginx", Path("unused"))


def test_cpu_time_sums_every_thread_of_the_process() -> None:
    """A process whose two worker threads burned CPU reports at least their two CPU clocks together."""
    child = subprocess.Popen([sys.executable, "-c", BURNER.format(burn=BURN_NS)],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None
        burned = [int(child.stdout.readline()) for _ in range(2)]
        total = cpu_ns(child.pid)
    finally:
        if child.stdin is not None:
            child.stdin.close()
        child.wait(30)
        if child.stdout is not None:
            child.stdout.close()
    assert min(burned) >= BURN_NS
    assert total >= sum(burned)


def test_cpu_time_falls_back_to_stat_without_schedstat(tmp_path: Path) -> None:
    """Without schedstat, CPU time is utime + stime from stat, in clock ticks turned to ns."""
    (tmp_path / "42").mkdir()
    fields = ["S", *["0"] * 10, "150", "50", *["0"] * 30]
    (tmp_path / "42" / "stat").write_text(f"42 (python (x)) {' '.join(fields)}\n")
    assert cpu_ns(42, proc=tmp_path) == 200 * 1_000_000_000 // os.sysconf("SC_CLK_TCK")
