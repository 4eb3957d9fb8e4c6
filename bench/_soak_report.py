"""The soak's results as Markdown: the README table, the phases, and how to read them."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

SUCCESS_TARGET = 0.999
FAIL_FAST_TARGET_MS = 20.0
MIN_REQUESTS = 20_000
MAX_SECONDS = 300.0


def _n(value: float | None) -> str:
    return "n/a" if value is None else f"{value:,.0f}"


def _ms(value: float | None) -> str:
    return "n/a" if value is None else (f"{value:.1f}" if value < 100 else f"{value:,.0f}")


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value * 100:.3f} %"


def _verdict(ok: bool | None) -> str:
    return "" if ok is None else ("PASS" if ok else "MISS")


def _phase(results: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    return next(p for p in results["phases"] if p["phase"] == name)


def _lost(checks: Mapping[str, Any]) -> tuple[int, int]:
    lost = (len(checks["progress_lost"]) + len(checks["signups_lost"]) + len(checks["uploads_lost"])
            + checks["stale_reads"])
    acked = checks["progress_acknowledged"] + checks["signups_acknowledged"] + checks["uploads_acknowledged"]
    return lost, acked


def _telemetry_cell(telemetry: Mapping[str, Any]) -> str:
    dropped = sum(int(v) for v in telemetry["dropped_by_source"].values())
    store = telemetry["store"]
    sources = ", ".join(f"{k} {v}" for k, v in sorted(telemetry["dropped_by_source"].items())) or "none"
    return (f"{dropped:,} records (`telemetry.dropped()` by source: {sources}); trace store: "
            f"{store['dropped']:,} dropped, {store['write_errors']:,} failed writes; "
            f"{store['api_traces']:,} `/api` traces stored for {telemetry['api_requests_sent']:,} "
            "`/api` requests sent")


def _latency_pair(figures: Mapping[str, Any]) -> str:
    return f"{_ms(figures['p50_ms'])} / {_ms(figures['p99_ms'])} ms"


def rows(results: Mapping[str, Any], quick: bool = False) -> list[tuple[str, str, str, str]]:
    """(figure, measured, target, verdict) for the README table."""
    faults, base, outage = _phase(results, "faults"), _phase(results, "baseline"), _phase(results, "outage")
    settings, checks = results["settings"], results["checks"]
    alone, loaded = _phase(results, "fail-fast")["while_open"], outage["fail_fast"]
    events, injected = outage["circuit_events"], results["injected"]
    lost, acked = _lost(checks)
    counted = faults["requests"] - faults["logic_faults_excluded"]
    enough = faults["requests"] >= MIN_REQUESTS and faults["seconds"] < MAX_SECONDS
    rate = faults["success_rate"]
    return [
        ("Requests under the fault plan",
         f"{faults['requests']:,} in {faults['seconds']:.0f} s ({faults['throughput_rps']:.0f} req/s, "
         f"{settings['threads']} clients)", f">= {MIN_REQUESTS:,} in < 5 min",
         "smoke run" if quick else _verdict(enough)),
        ("Success rate, non-logic-fault requests",
         f"{_pct(rate)} ({counted - faults['failed']:,} of {counted:,}; "
         f"{faults['logic_faults_excluded']} injected logic 500s left out)",
         f">= {SUCCESS_TARGET * 100:.1f} %", _verdict(None if rate is None else rate >= SUCCESS_TARGET)),
        ("Served degraded from the cache, under faults",
         f"{faults['degraded']:,} of {injected['catalog_requests']:,} catalog and title requests "
         f"(the circuit opened {injected['circuit_opened']} times)", "", ""),
        ("Latency p50 / p99, no faults", _latency_pair(base), "", ""),
        ("Latency p50 / p99, under faults", _latency_pair(faults), "", ""),
        ("Breaker fail-fast latency, upstream down, p50 / p99",
         f"{_latency_pair(alone)} ({alone['requests']:,} catalog and title requests, one client, "
         "circuit open)", f"p99 <= {FAIL_FAST_TARGET_MS:.0f} ms",
         _verdict(None if alone["p99_ms"] is None else alone["p99_ms"] <= FAIL_FAST_TARGET_MS)),
        ("... the same under the full load (outage phase)",
         f"{_latency_pair(loaded)} ({loaded['requests']:,} requests, {settings['threads']} clients)", "", ""),
        ("Acknowledged writes lost",
         f"{lost} of {acked:,} (progress {checks['progress_acknowledged']:,}, signups "
         f"{checks['signups_acknowledged']:,}, uploads {checks['uploads_acknowledged']:,}; "
         f"{checks['stale_reads']} progress reads during the load missed an acknowledged write)", "0",
         _verdict(lost == 0)),
        ("Telemetry lost", _telemetry_cell(results["telemetry"]), "counted", ""),
        (f"Upstream killed for {outage['upstream_down_s']:.0f} s: circuit open after",
         _after(events["open_after_kill_ms"], outage["circuit_open_after_s"]), "", ""),
        ("... circuit closed after the upstream was back",
         f"{_after(events['closed_after_restore_ms'], outage['circuit_closed_after_restore_s'])} "
         f"(open period {settings['open_for']:g} s, {settings['failures']} failures in a row open it)", "", ""),
        ("... catalog requests served degraded from the cache while down",
         f"{outage['served_degraded_while_down']:,} of {outage['catalog_requests_while_down']:,} "
         f"({outage['failed_while_down']:,} failed)", "", ""),
    ]


def _after(store_ms: float | None, polled_s: float | None) -> str:
    """The store's exact figure, and what the 50 ms ``/readyz`` polling saw."""
    exact = "not recorded" if store_ms is None else f"{store_ms:,.0f} ms"
    polled = "never" if polled_s is None else f"{polled_s:.2f} s"
    return f"{exact} (circuit events in the trace store; `/readyz` polling saw it after {polled})"


def _table(header: tuple[str, ...], body: Sequence[tuple[str, ...]], align: str) -> list[str]:
    lines = ["| " + " | ".join(header) + " |",
             "| " + " | ".join("---:" if a == "r" else "---" for a in align) + " |"]
    return lines + ["| " + " | ".join(row) + " |" for row in body]


def _phases(results: Mapping[str, Any]) -> list[str]:
    body = [(p["phase"], _n(p["requests"]), f"{p['seconds']:.1f}", _n(p["throughput_rps"]),
             _pct(p["success_rate"]), _n(p["degraded"]), _n(p["logic_faults_excluded"]), _n(p["failed"]),
             _ms(p["p50_ms"]), _ms(p["p99_ms"]), _ms(p["max_ms"]))
            for p in results["phases"] if p["phase"] != "warm-up"]
    return _table(("phase", "requests", "s", "req/s", "success", "degraded", "logic 500s (excluded)",
                   "failed", "p50 ms", "p99 ms", "max ms"), body, "lrrrrrrrrrr")


def _failures(results: Mapping[str, Any]) -> list[str]:
    out = []
    for phase in results["phases"]:
        for reason, count in phase["failures"].items():
            out.append(f"- {phase['phase']}: {reason}: {count}")
    return out or ["- none"]


def render(results: Mapping[str, Any], *, quick: bool = False) -> str:
    """The whole Markdown report."""
    m = results["machine"]
    load = ", ".join(str(x) for x in m["load_average"] or [])
    plan = results["plan"]
    rules = "; ".join(f"`{r['site']}` {r['fault']['kind']} "
                      f"{r['fault'].get('variant') or r['fault'].get('errno') or r['fault'].get('exception', '')} "
                      f"at rate {r['rate']:g}" for r in plan["in_process"]["rules"])
    hits = ", ".join(f"{rule} {stats['hits']:,}/{stats['calls']:,}"
                     for rule, stats in sorted(results["injected"]["rules"].items()))
    toxic = plan["fail_fast_proxy_toxic"]
    lines = [
        "<!-- bench/soak: `python -m bench.soak`" + (" --quick (smoke run)" if quick else "") + " -->",
        f"Python {m['python']} on {m['cpu_count']} CPUs ({m['platform']}, load average {load}), "
        f"{m['date']}; the whole run took {results['wall_s']:.0f} s.",
        "",
        "**Reliability under faults** (the demo over loopback: upstream process, chaos proxy, app under "
        "waitress with telemetry on)",
        "",
        *_table(("figure", "measured", "target", ""), rows(results, quick), "lllr"),
        "",
        "**Phases**",
        "",
        *_phases(results),
        "",
        "How to read it:",
        "",
        f"- Fault plan (armed through the app's fault control API, seed {plan['in_process']['seed']}): "
        f"{rules}. Rates are per attempt at the site (a retried call draws again). "
        f"Hits/calls: {hits}.",
        f"- Real socket faults: the fail-fast phase puts the chaos proxy's `{toxic['type']}` "
        f"(`{toxic['attributes']['mode']}`) toxic between the app and the upstream; the outage phase "
        "SIGKILLs the upstream process and starts it again on its port.",
        "- Success: a 2xx, including a catalog answer served degraded from the cache (counted apart). "
        "A 5xx, a 4xx (the load sends only valid requests), a transport error or an incomplete body is a "
        "failure. A 500 whose problem body says `kind: logic` is an injected logic fault and is left out, "
        "but never more of them than the logic rules' hit count.",
        "- Acknowledged writes: every progress write answered 200 is in a ledger; every progress read of "
        "the load, and at the end every key, must return its last acknowledged value (or a later one "
        "whose answer never came); every signup and upload answered 201 is looked up on disk (the user "
        "record and its email index; the media's SHA-256).",
        "- Under the plan 30 % of upstream attempts fail independently, so a run of 5 failed attempts in a "
        "row (what opens the circuit) comes about every 600 attempts, every few seconds at this load: "
        "catalog answers then come from the cache until a probe succeeds. That is also why the faults "
        "phase can be faster than the baseline: a cached answer skips the upstream round trip.",
        "- Fail-fast latency: catalog and title requests that ran wholly while `/readyz` (polled every "
        "50 ms) showed the catalog circuit open (half-open probes excluded), upstream refused by the proxy "
        "(one client, back to back) or killed (outage phase, the full mix). Latencies are the client's, "
        "request sent to body read, over loopback.",
        "- Telemetry lost: `telemetry.dropped()` inside the app after a flush (spans, logs, events, by "
        "source), and the trace store's own counters once the app stopped.",
        "",
        "Failures by route:",
        "",
        *_failures(results),
        "",
    ]
    return "\n".join(lines)
