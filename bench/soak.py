"""``python -m bench.soak [--quick]``: the demo's reliability figures under faults and an outage.

Not a ``bench_*`` module, so ``python -m bench`` does not run it (``make soak`` does).
It starts its own stack over loopback (the upstream catalog service, the chaos proxy
in front of it, and the demo app under waitress with telemetry on and fault injection
enabled; see :mod:`bench._soak_stack`) on a fresh data directory, then runs
``--threads`` closed-loop clients (one ``requests.Session`` each) over a fixed mix of
routes (:data:`bench._soak_load.MIX`) through these phases:

1. **warm-up**: every client saves progress for each title; the catalog gets cached;
2. **baseline**: ``--baseline`` requests, no faults;
3. **faults**: ``--requests`` requests under :data:`PLAN`, armed through the app's fault
   control API (30 % of upstream attempts fail with a connection reset, 5 % of storage
   calls with EIO/EAGAIN, 1 % of analyses and stream openings with a logic error);
4. **fail-fast**: the chaos proxy's ``down`` toxic refuses every upstream connection (real
   sockets); once the circuit is open, one client sends catalog and title requests back
   to back: what the breaker costs a request when the upstream is fully down;
5. **outage**: the same mix as before, without the plan; after a few seconds the upstream
   process is SIGKILLed, ``--outage`` seconds later it is started again on its port; the
   load goes on until the circuit is closed again;
6. **checks**: every progress key is read back against the ledger, every acknowledged
   signup and upload is looked up on disk; the app reports ``telemetry.dropped()``, and
   once it is stopped the trace store's own counters and traces per route are read.

During phases 4 and 5 ``/readyz`` is polled every 50 ms for the catalog circuit's state.

What counts as success, and the ledger's rule, are in :mod:`bench._soak_logic`.
Results go to ``bench/results/soak.md`` (a table for the README) and ``soak.json``
(``--quick`` only prints them).
Figures are measured, never assumed; targets say PASS or MISS and never fail the run.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import shutil
import sqlite3
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Final

import requests

from bench._harness import RESULTS_DIR, machine_info
from bench._soak_app import ROUTE as TELEMETRY_ROUTE
from bench._soak_load import MIX, Load, Monitor, Shared
from bench._soak_logic import Sample, figures, first_at, ms, percentile, within
from bench._soak_report import render
from bench._soak_stack import Stack
from fault_injection import FaultPlan, Rule, io, logic, network
from fault_injection.proxy import down
from telemetry.query import Query

SEED: Final = 20_240_607
CIRCUIT: Final = "catalog"
#: The in-process part of the fault plan: where, what, how often (per attempt at the site).
PLAN: Final = FaultPlan(seed=SEED, rules=(
    Rule("catalog.fetch", network("reset"), rate=0.3, id="network-30pc"),
    Rule("progress.*", io("EIO"), rate=0.05, id="io-progress-5pc"),
    Rule("users.save", io("EAGAIN"), rate=0.05, id="io-users-5pc"),
    Rule("upload.analyse", logic(), rate=0.01, id="logic-upload-1pc"),
    Rule("stream.read", logic(), rate=0.01, id="logic-stream-1pc"),
))
LOGIC_RULES: Final = ("logic-upload-1pc", "logic-stream-1pc")
UPSTREAM_DOWN: Final = down("refuse", name="soak-upstream-down")


@dataclass(frozen=True, slots=True)
class Settings:
    """How big a run is."""

    baseline: int = 5_000
    requests: int = 20_000
    fail_fast: int = 2_000  # requests while the upstream is down and the circuit open
    outage: float = 30.0
    lead_in: float = 3.0  # load before the upstream is killed
    threads: int = 12
    open_for: float = 5.0  # the circuit's open period (the app's --circuit-open-for)
    failures: int = 5  # consecutive failures that open it (--circuit-failures)


QUICK: Final = Settings(baseline=300, requests=1_500, fail_fast=200, outage=5.0, lead_in=1.0, threads=8,
                        open_for=2.0)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true",
                   help="a scaled-down smoke run (~2,000 requests, 5 s outage); prints, writes no files")
    p.add_argument("--requests", type=int, help="requests under the fault plan")
    p.add_argument("--baseline", type=int, help="requests without faults, first")
    p.add_argument("--outage", type=float, help="seconds the upstream stays down")
    p.add_argument("--threads", type=int, help="concurrent clients")
    p.add_argument("--keep", action="store_true", help="keep the data directory (logs, trace store)")
    p.add_argument("--results", type=Path, default=RESULTS_DIR, help="where soak.md and soak.json go")
    return p


def _settings(args: argparse.Namespace) -> Settings:
    base = QUICK if args.quick else Settings()
    given = {k: v for k in ("requests", "baseline", "outage", "threads") if (v := getattr(args, k)) is not None}
    return replace(base, **given)


# -- phases ---------------------------------------------------------------------------------


def _timed(run: Callable[[], list[Sample]]) -> tuple[list[Sample], float]:
    start = time.monotonic()
    samples = run()
    return samples, time.monotonic() - start


def _phase(name: str, samples: Sequence[Sample], seconds: float, logic_hits: int = 0) -> dict[str, Any]:
    found = figures(samples, logic_hits)
    return {"phase": name, "seconds": round(seconds, 1),
            "throughput_rps": round(len(samples) / seconds, 1) if seconds else None, **found.as_dict()}


def _fault_phase(stack: Stack, load: Load, settings: Settings) -> tuple[list[Sample], float, dict[str, Any]]:
    faults = stack.faults()
    faults.add_plan(PLAN)
    started_ns = time.time_ns()
    try:
        samples, seconds = _timed(lambda: load.run("faults", requests_total=settings.requests))
        rules = {r["id"]: r["stats"] for r in faults.rules()}
    finally:
        faults.halt()
    upstream = sum(_is_catalog(s) for s in samples)
    return samples, seconds, {"rules": rules, "window_ns": [started_ns, time.time_ns()],
                              "catalog_requests": upstream}


def _is_catalog(sample: Sample) -> bool:
    """A request answered from the upstream catalog (or from its cache)."""
    return sample.route.startswith(("GET /api/catalog", "GET /api/titles"))


def _fail_fast_phase(stack: Stack, load: Load, settings: Settings) -> dict[str, Any]:
    """The upstream refused by the proxy; one client, back to back, once the circuit is open."""
    client, proxy = load.clients[0], stack.proxy()
    proxy.add_toxic(UPSTREAM_DOWN)
    try:
        with Monitor(stack.app_url, CIRCUIT) as monitor:
            downed = time.monotonic()
            while first_at(monitor.timeline, "open", downed) is None and time.monotonic() - downed < 30:
                client.send("fail-fast", "catalog")
            routes = ("catalog", "title")
            samples = [client.send("fail-fast", routes[i % 2]) for i in range(settings.fail_fast)]
            client.send("fail-fast", "catalog")  # the monitor sees the state after the last one
            timeline = list(monitor.timeline)
    finally:
        proxy.remove_toxic(UPSTREAM_DOWN.name)
    opened = first_at(timeline, "open", downed)
    fast = sorted(s.latency for s in within(samples, timeline, "open"))
    every = sorted(s.latency for s in samples)
    return {**_phase("fail-fast", samples, sum(s.latency for s in samples)),
            "circuit_open_after_s": None if opened is None else round(opened - downed, 3),
            "while_open": {"requests": len(fast), "p50_ms": ms(percentile(fast, 50)),
                           "p99_ms": ms(percentile(fast, 99)), "max_ms": ms(fast[-1] if fast else None)},
            "all_while_down": {"p50_ms": ms(percentile(every, 50)), "p99_ms": ms(percentile(every, 99))},
            "readyz_polls": monitor.polls}


def _settle(base: str, load: Load, limit: float) -> float:
    """Send catalog requests until ``/readyz`` shows the circuit closed (at most ``limit`` s).

    An open circuit closes only when a probe (a call after its open period) succeeds:
    traffic closes it, so the wait sends some.
    """
    start = time.monotonic()
    with requests.Session() as session:
        while time.monotonic() - start < limit:
            try:
                state = session.get(base + "/readyz", timeout=5).json()["checks"]["circuits"][CIRCUIT]
            except (requests.RequestException, ValueError, KeyError):
                state = None
            if state == "closed":
                break
            load.clients[0].send("settle", "catalog")
            time.sleep(0.1)
    return time.monotonic() - start


@dataclass
class _Outage:
    killed: float = 0.0
    killed_ns: int = 0  # wall clock, to match the trace store's circuit events
    restored: float = 0.0
    restored_ns: int = 0
    recovered: float | None = None


def _outage_phase(stack: Stack, load: Load, settings: Settings) -> dict[str, Any]:
    """Kill the upstream under load, start it again, and time the circuit."""
    done, marks = threading.Event(), _Outage()
    out: list[list[Sample]] = []
    with Monitor(stack.app_url, CIRCUIT) as monitor:
        runner = threading.Thread(target=lambda: out.append(load.run("outage", until=done.is_set)))
        started = time.monotonic()
        runner.start()
        try:
            done.wait(settings.lead_in)
            marks.killed, marks.killed_ns = stack.kill_upstream()
            done.wait(settings.outage)
            marks.restored, marks.restored_ns = stack.start_upstream(), time.time_ns()
            give_up = marks.restored + settings.open_for + 30.0
            while marks.recovered is None and time.monotonic() < give_up:
                marks.recovered = first_at(monitor.timeline, "closed", marks.restored)
                done.wait(0.1)
            done.wait(2.0)  # a little steady state after recovery
        finally:
            done.set()
            runner.join()
    samples = out[0] if out else []
    return _outage_figures(samples, list(monitor.timeline), marks, time.monotonic() - started,
                           monitor.polls)


def _outage_figures(samples: list[Sample], timeline: list[tuple[float, str]], marks: _Outage,
                    seconds: float, polls: int) -> dict[str, Any]:
    opened = first_at(timeline, "open", marks.killed)
    catalog = [s for s in samples if _is_catalog(s)]
    fast = sorted(s.latency for s in within(catalog, timeline, "open"))
    down = [s for s in catalog if marks.killed <= s.start and (marks.recovered is None or s.end <= marks.recovered)]
    return {
        **_phase("outage", samples, seconds),
        "circuit_open_after_s": None if opened is None else round(opened - marks.killed, 3),
        "circuit_closed_after_restore_s": (None if marks.recovered is None
                                           else round(marks.recovered - marks.restored, 3)),
        "upstream_down_s": round(marks.restored - marks.killed, 1),
        "catalog_requests_while_down": len(down),
        "served_degraded_while_down": sum(s.degraded and s.status == 200 for s in down),
        "failed_while_down": figures(down).failed,
        "fail_fast": {"requests": len(fast), "p50_ms": ms(percentile(fast, 50)),
                      "p99_ms": ms(percentile(fast, 99)), "max_ms": ms(fast[-1] if fast else None)},
        "readyz_polls": polls,
        "readyz_states": _transitions(timeline, marks.killed),
        "killed_ns": marks.killed_ns, "restored_ns": marks.restored_ns,
    }


def _transitions(timeline: list[tuple[float, str]], origin: float) -> list[list[Any]]:
    """[seconds from ``origin``, state] at each change of state."""
    out: list[list[Any]] = []
    for at, state in timeline:
        if not out or out[-1][1] != state:
            out.append([round(at - origin, 3), state])
    return out


# -- checks ---------------------------------------------------------------------------------


def _read_back(base: str, shared: Shared) -> dict[str, Any]:
    """Every progress key over HTTP against the ledger; signups and uploads on disk."""
    observed: dict[str, float | None] = {}
    with requests.Session() as session:
        for key in shared.ledger.written():
            user, title = key.split("/")
            response = session.get(f"{base}/api/progress/{title}", headers={"X-User": user}, timeout=15)
            observed[key] = response.json()["position_s"] if response.status_code == 200 else None
    lost = shared.ledger.check_all(observed)
    return {"progress_acknowledged": shared.ledger.acknowledged(), "progress_keys": len(observed),
            "progress_lost": [f"{x.key}: read {x.observed}, allowed {x.allowed}" for x in lost],
            "stale_reads_during_load": shared.stale_reads[:20], "stale_reads": len(shared.stale_reads)}


def _on_disk(data_dir: Path, shared: Shared) -> dict[str, Any]:
    users = data_dir / "users"
    missing_signups = [u for u, email in shared.signups.items()
                       if not (users / f"{u}.json").is_file()
                       or _text(users / "by-email" / hashlib.sha256(email.encode()).hexdigest()) != u]
    missing_uploads = [i for i, sha in shared.uploads.items()
                       if _sha_of(data_dir / "uploads" / i / "media.wav") != sha]
    return {"signups_acknowledged": len(shared.signups), "signups_lost": missing_signups,
            "uploads_acknowledged": len(shared.uploads), "uploads_lost": missing_uploads}


def _text(path: Path) -> str | None:
    try:
        return path.read_text()
    except OSError:
        return None


def _sha_of(path: Path) -> str | None:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None


def _telemetry(base: str) -> dict[str, Any]:
    """The app's own count of lost telemetry (``telemetry.dropped()``), after a flush."""
    body: dict[str, Any] = requests.get(base + TELEMETRY_ROUTE, timeout=30).json()
    return body


def _circuit_opened(data_dir: Path, window_ns: Sequence[int]) -> int:
    """How often the circuit opened within ``window_ns`` (the trace store's circuit events)."""
    query = Query(data_dir / "telemetry.db")
    try:
        events = query.circuit_history(CIRCUIT, since_ns=window_ns[0], limit=100_000)
    finally:
        query.close()
    return sum(e.new_state == "open" and e.time_ns <= window_ns[1] for e in events)


def _circuit_times(data_dir: Path, outage: dict[str, Any]) -> dict[str, Any]:
    """When the circuit opened after the kill and closed after the restore, from the trace
    store's circuit events (recorded by the app at the transition, to the nanosecond)."""
    query = Query(data_dir / "telemetry.db")
    try:
        events = query.circuit_history(CIRCUIT, since_ns=outage["killed_ns"])
    finally:
        query.close()
    opened = next((e.time_ns for e in events if e.new_state == "open"), None)
    closed = next((e.time_ns for e in events if e.new_state == "closed" and e.time_ns >= outage["restored_ns"]), None)
    return {"open_after_kill_ms": None if opened is None else round((opened - outage["killed_ns"]) / 1e6, 1),
            "closed_after_restore_ms": None if closed is None else round((closed - outage["restored_ns"]) / 1e6, 1),
            "transitions": [[round((e.time_ns - outage["killed_ns"]) / 1e9, 3), e.new_state]
                            for e in events if closed is None or e.time_ns <= closed]}


def _store(data_dir: Path) -> dict[str, Any]:
    """The trace store's counters and its traces of ``/api`` requests, once the app has stopped."""
    path = data_dir / "telemetry.db"
    query = Query(path)
    try:
        stats = query.stats()
    finally:
        query.close()
    with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as conn:
        api = int(conn.execute("SELECT count(*) FROM traces WHERE route LIKE '/api/%'").fetchone()[0])
    return {"traces": stats.traces, "api_traces": api, "spans": stats.spans, "logs": stats.logs,
            "faults": stats.faults, "circuit_events": stats.circuit_events, "dropped": stats.dropped,
            "write_errors": stats.write_errors, "size_bytes": stats.size_bytes}


# -- the run --------------------------------------------------------------------------------


def _phases(stack: Stack, load: Load, settings: Settings) -> dict[str, Any]:
    warm = load.warm_up()
    baseline, base_s = _timed(lambda: load.run("baseline", requests_total=settings.baseline))
    faulted, fault_s, injected = _fault_phase(stack, load, settings)
    reclosed = [_settle(stack.app_url, load, settings.open_for + 30)]
    fail_fast = _fail_fast_phase(stack, load, settings)
    reclosed.append(_settle(stack.app_url, load, settings.open_for + 30))
    outage = _outage_phase(stack, load, settings)
    logic_hits = sum(int(injected["rules"].get(r, {}).get("hits", 0)) for r in LOGIC_RULES)
    return {"phases": [_phase("warm-up", warm, 0.0), _phase("baseline", baseline, base_s),
                       _phase("faults", faulted, fault_s, logic_hits), fail_fast, outage],
            "injected": injected, "logic_hits": logic_hits,
            "waited_for_closed_circuit_s": [round(w, 1) for w in reclosed]}


def run(settings: Settings, data_dir: Path) -> dict[str, Any]:
    """Start the stack on ``data_dir``, run every phase, stop the stack; the results."""
    stack = Stack(data_dir, titles=3, open_for=settings.open_for, failures=settings.failures)
    shared = Shared(run_id=str(SEED))
    started = time.monotonic()
    try:
        stack.start()
        load = Load(stack.app_url, settings.threads, shared, SEED)
        try:
            phases = _phases(stack, load, settings)
        finally:
            load.close()
        checks = {**_read_back(stack.app_url, shared), **_on_disk(data_dir, shared)}
        dropped = _telemetry(stack.app_url)
    finally:
        stack.stop()
    store = _store(data_dir)
    outage = phases["phases"][-1]
    outage["circuit_events"] = _circuit_times(data_dir, outage)
    phases["injected"]["circuit_opened"] = _circuit_opened(data_dir, phases["injected"]["window_ns"])
    return {
        "settings": asdict(settings),
        "mix_per_1000": dict(MIX),
        "plan": {"in_process": PLAN.to_dict(), "fail_fast_proxy_toxic": UPSTREAM_DOWN.to_dict()},
        **phases,
        "checks": checks,
        "telemetry": {"dropped_by_source": dropped.get("dropped", {}), "flushed": dropped.get("flushed"),
                      "store": store, "api_requests_sent": shared.sent + checks["progress_keys"]},
        "wall_s": round(time.monotonic() - started, 1),
        "machine": machine_info(),
    }


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    settings = _settings(args)
    data_dir = Path(tempfile.mkdtemp(prefix="shockproof-soak-"))
    try:
        results = run(settings, data_dir)
        (data_dir / "soak.json").write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    finally:
        if args.keep:
            print(f"data directory kept: {data_dir}")
        else:
            shutil.rmtree(data_dir, ignore_errors=True)
    markdown = render(results, quick=args.quick)
    print(markdown)
    if not args.quick:  # a smoke run's figures do not replace the real ones
        args.results.mkdir(parents=True, exist_ok=True)
        (args.results / "soak.json").write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
        (args.results / "soak.md").write_text(markdown)
        print(f"written: {args.results / 'soak.md'}, {args.results / 'soak.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
