"""Traffic for experiments: a small HTTP client, the ``load`` generator and its numbers.

Only the standard library (``http.client``): experiments must run where the dev
extras are not installed. Every request is recorded as a :class:`Sample`; the
progress display reads live figures, the report reads the time series.
"""

from __future__ import annotations

import http.client
import json
import math
import threading
import time
import urllib.parse
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Final

MAX_BODY: Final = 1 << 20
#: Response headers worth keeping in a journal (never cookies or auth).
SAFE_HEADERS: Final = ("content-type", "retry-after", "warning", "x-trace-id", "x-shockproof-degraded")


@dataclass(frozen=True, slots=True)
class HttpResult:
    """One HTTP exchange: status, the safe headers, the body (at most 1 MiB) and latency (s)."""

    status: int
    headers: Mapping[str, str]
    body: bytes
    latency: float

    def text(self) -> str:
        return self.body.decode("utf-8", "replace")

    def json(self) -> Any:
        """The body parsed as JSON, or its text when it is not JSON."""
        try:
            return json.loads(self.body)
        except ValueError:
            return self.text()


def http_request(
    url: str,
    method: str = "GET",
    *,
    body: object = None,
    headers: Mapping[str, str] | None = None,
    timeout: float = 5.0,
) -> HttpResult:
    """Send one request; transport failures raise ``OSError`` (``ConnectionError``, ``TimeoutError``)."""
    parts = urllib.parse.urlsplit(url)
    cls = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    conn = cls(parts.hostname or "127.0.0.1", parts.port, timeout=timeout)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    sent = {"Accept": "application/json", "User-Agent": "shockproof-experiment", **(headers or {})}
    payload = None if body is None else json.dumps(body).encode()
    if payload is not None:
        sent.setdefault("Content-Type", "application/json")
    started = time.perf_counter()
    try:
        conn.request(method, target, payload, sent)
        response = conn.getresponse()
        data = response.read(MAX_BODY)
        kept = {k.lower(): v for k, v in response.getheaders() if k.lower() in SAFE_HEADERS}
        return HttpResult(response.status, kept, data, time.perf_counter() - started)
    except http.client.HTTPException as exc:  # a malformed or cut response: a network failure
        raise ConnectionError(f"bad HTTP response from {parts.netloc}: {exc!r}") from exc
    finally:
        conn.close()


# -- samples ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Sample:
    """One request of the load: when (s since the run started), how long, and the result."""

    at: float
    latency: float
    ok: bool
    status: int | None
    route: str
    error: str = ""


@dataclass(frozen=True, slots=True)
class LiveStats:
    """What the progress display shows: totals, and latency over the last few seconds."""

    sent: int
    ok: int
    p50: float | None
    p99: float | None

    @property
    def success_rate(self) -> float | None:
        return self.ok / self.sent if self.sent else None


class Recorder:
    """Thread-safe collection of samples, timed from the run's start."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self.started = clock()
        self._lock = threading.Lock()
        self._samples: list[Sample] = []

    def now(self) -> float:
        """Seconds since the run started."""
        return self._clock() - self.started

    def add(self, sample: Sample) -> None:
        with self._lock:
            self._samples.append(sample)

    def samples(self) -> list[Sample]:
        with self._lock:
            return list(self._samples)

    def live(self, window: float = 5.0) -> LiveStats:
        samples, since = self.samples(), self.now() - window
        recent = sorted(s.latency for s in samples if s.at >= since)
        return LiveStats(len(samples), sum(s.ok for s in samples), percentile(recent, 50), percentile(recent, 99))


def percentile(ordered: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile of an already sorted sequence (None when empty)."""
    if not ordered:
        return None
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def summarize(samples: Sequence[Sample]) -> dict[str, Any]:
    """Totals for a set of samples: counts, success rate, p50/p99 in ms, statuses and errors."""
    ordered = sorted(s.latency for s in samples)
    ok = sum(s.ok for s in samples)
    return {
        "requests": len(samples),
        "ok": ok,
        "failed": len(samples) - ok,
        "success_rate": round(ok / len(samples), 4) if samples else None,
        "p50_ms": _ms(percentile(ordered, 50)),
        "p99_ms": _ms(percentile(ordered, 99)),
        "statuses": dict(sorted(Counter(str(s.status) for s in samples if s.status is not None).items())),
        "errors": dict(sorted(Counter(s.error for s in samples if s.error).items())),
    }


def series(samples: Sequence[Sample], until: float) -> list[dict[str, Any]]:
    """Buckets over [0, until]: ``t`` (bucket start), requests, success rate, p50/p99 (ms)."""
    width = bucket_width(until)
    buckets: dict[int, list[Sample]] = {}
    for sample in samples:
        buckets.setdefault(int(sample.at // width), []).append(sample)
    return [
        {"t": round(index * width, 3), "width": width, **_bucket(buckets.get(index, []))}
        for index in range(int(until // width) + 1)
    ]


def bucket_width(duration: float) -> float:
    """A round bucket width giving at most ~120 buckets."""
    for width in (0.1, 0.25, 0.5, 1, 2, 5, 10, 15, 30, 60):
        if duration / width <= 120:
            return float(width)
    return 120.0


def _bucket(samples: Sequence[Sample]) -> dict[str, Any]:
    total = summarize(samples)
    return {k: total[k] for k in ("requests", "ok", "success_rate", "p50_ms", "p99_ms")}


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 2)


# -- the load generator ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Route:
    """One route of a load: method, path, JSON body, headers, statuses counted as success."""

    path: str
    method: str = "GET"
    json: Any = None
    headers: Mapping[str, str] | None = None
    expect: tuple[int, ...] = ()

    @classmethod
    def of(cls, spec: str | Mapping[str, Any]) -> Route:
        if isinstance(spec, str):
            return cls(spec)
        return cls(spec["path"], spec.get("method", "GET"), spec.get("json"), spec.get("headers"),
                   tuple(spec.get("expect", ())))

    def ok(self, status: int) -> bool:
        """Success: one of ``expect`` if given, else any status below 500."""
        return status in self.expect if self.expect else status < 500

    @property
    def label(self) -> str:
        return f"{self.method} {self.path}"


def run_load(
    arguments: Mapping[str, Any], base_url: str, recorder: Recorder, stop: threading.Event
) -> dict[str, Any]:
    """Send ``rate`` requests/s over ``routes`` for ``duration`` s (or ``requests`` in all); bounded.

    Requests are spread over ``concurrency`` threads; when all are busy the
    schedule slips rather than queueing without bound. ``stop`` ends it early.
    """
    routes = [Route.of(r) for r in arguments["routes"]]
    rate, duration = float(arguments["rate"]), float(arguments["duration"])
    planned = max(1, math.floor(rate * duration))
    if "requests" in arguments:
        planned = min(planned, int(arguments["requests"]))
    concurrency, timeout = int(arguments.get("concurrency", 4)), float(arguments.get("timeout", 5))
    mine: list[Sample] = []
    slots = threading.BoundedSemaphore(concurrency)

    def one(route: Route) -> None:
        try:
            sample = _timed(route, base_url, timeout, recorder)
            recorder.add(sample)
            mine.append(sample)
        finally:
            slots.release()

    started = time.monotonic()
    with ThreadPoolExecutor(concurrency, thread_name_prefix="shockproof-load") as pool:
        for index in range(planned):
            if stop.wait(max(0.0, started + index / rate - time.monotonic())):
                break
            slots.acquire()
            pool.submit(one, routes[index % len(routes)])
    return {"planned": planned, **summarize(mine)}


def _timed(route: Route, base_url: str, timeout: float, recorder: Recorder) -> Sample:
    at = recorder.now()
    started = time.perf_counter()
    try:
        result = http_request(base_url.rstrip("/") + route.path, route.method, body=route.json,
                              headers=route.headers, timeout=timeout)
    except OSError as exc:
        return Sample(at, time.perf_counter() - started, False, None, route.label, type(exc).__name__)
    return Sample(at, result.latency, route.ok(result.status), result.status, route.label)
