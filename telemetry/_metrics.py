"""Metrics through the OpenTelemetry metrics SDK, and the self-metric of dropped telemetry.

Instruments (names in ``_semconv``): errors by kind, route and site; retries,
fallbacks, rejections and injected faults by site; circuit transitions; an
observable gauge of every live circuit's state (read at collection, free on the
hot path); request durations; and ``shockproof.telemetry.dropped``: telemetry
lost to a dead exporter, a full queue or a broken store, by source.

:data:`drops` is where every part of the package reports a loss. It never raises,
and it logs one warning per source at most every :data:`WARN_EVERY` seconds
(stdlib ``logging``, logger ``telemetry``), however many losses follow.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Protocol

from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    HistogramDataPoint,
    InMemoryMetricReader,
    MetricReader,
    NumberDataPoint,
)
from opentelemetry.sdk.resources import Resource

from resilience import circuits

from . import _semconv as sc
from ._lite import current_request

_log = logging.getLogger("telemetry")
WARN_EVERY = 60.0
CIRCUIT_STATES = {"closed": 0, "half-open": 1, "open": 2}



class RequestInfo(Protocol):
    """What errors counted during a request learn from it (``telemetry.flask``'s request span)."""

    @property
    def route(self) -> str | None: ...


def current_route() -> str | None:
    """The route template of the request being served, or None outside any request."""
    req: RequestInfo | None = current_request()
    return req.route if req is not None else None


class DropCounter:
    """Counts lost telemetry by source; one rate-limited warning per source."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._counts: dict[str, int] = {}
        self._warned_at: dict[str, float] = {}
        self._lock = threading.Lock()
        self._clock = clock
        #: Extra sources read at collection (the store's own counters).
        self.readers: dict[str, Callable[[], int]] = {}

    def report(self, source: str, count: int = 1, error: BaseException | None = None) -> None:
        """Record ``count`` items of ``source`` lost; never raises."""
        try:
            with self._lock:
                self._counts[source] = self._counts.get(source, 0) + count
                total = self._counts[source]
                now = self._clock()
                last = self._warned_at.get(source)
                warn = last is None or now - last >= WARN_EVERY
                if warn:
                    self._warned_at[source] = now
            if warn:
                _log.warning("telemetry dropped %d %s item(s) (%d so far): %s; the application is "
                             "unaffected (counted in %s)", count, source, total,
                             _describe(error), sc.METRIC_DROPPED)
        except Exception:  # a broken logging handler must not break the caller either
            pass

    def counts(self) -> dict[str, int]:
        """Lost items by source, including the registered readers (the store)."""
        with self._lock:
            out = dict(self._counts)
        for source, read in list(self.readers.items()):
            try:
                out[source] = out.get(source, 0) + int(read())
            except Exception:
                pass
        return out

    def clear(self) -> None:
        with self._lock:
            self._counts.clear()
            self._warned_at.clear()
        self.readers.clear()


def _describe(error: BaseException | None) -> str:
    if error is None:
        return "export failed"
    return f"{type(error).__name__}: {str(error)[:200]}"


drops = DropCounter()


class RequestStats:
    """Requests and their total duration by (method, route, status), kept in a dict.

    A request costs one dict update under a lock (about a microsecond); the SDK
    sees the totals through observable counters when it collects. (The SDK's
    synchronous histogram costs 7-15 us per request on the benchmark machine;
    ``Telemetry(app, duration_histogram=True)`` records it as well, for those who
    want ``http.server.request.duration`` buckets.)
    """

    def __init__(self) -> None:
        self._totals: dict[tuple[str, str, int], list[float]] = {}
        self._lock = threading.Lock()
        #: Called before the totals are read (completes the requests still being finished).
        self.before_read: Callable[[], object] | None = None

    def record(self, method: str, route: str, status: int, seconds: float) -> None:
        self.merge({(method, route, status): (1.0, seconds)})

    def merge(self, counts: Mapping[tuple[str, str, int], Sequence[float]]) -> None:
        """Add a batch's ``{(method, route, status): [requests, seconds]}`` (one lock for all)."""
        if not counts:
            return
        with self._lock:
            totals = self._totals
            for key, (number, seconds) in counts.items():
                entry = totals.get(key)
                if entry is None:
                    totals[key] = [float(number), seconds]
                else:
                    entry[0] += number
                    entry[1] += seconds

    def observe(self, index: int) -> list[Observation]:
        if self.before_read is not None:
            self.before_read()
        with self._lock:
            items = [(k, v[index]) for k, v in self._totals.items()]
        return [Observation(value, {sc.HTTP_REQUEST_METHOD: m, sc.HTTP_ROUTE: r,
                                    sc.HTTP_RESPONSE_STATUS_CODE: s})
                for (m, r, s), value in items]


class Metrics:
    """The MeterProvider and every instrument the package records on."""

    def __init__(self, resource: Resource, readers: Sequence[MetricReader] = ()) -> None:
        self.reader = InMemoryMetricReader()
        self.provider = MeterProvider(metric_readers=[self.reader, *readers], resource=resource,
                                      shutdown_on_exit=False)
        meter = self.provider.get_meter("shockproof")
        self.errors = meter.create_counter(sc.METRIC_ERRORS, unit="{error}",
                                           description="Errors by kind, route and site")
        self.retries = meter.create_counter(sc.METRIC_RETRIES, unit="{retry}",
                                            description="Retries scheduled by guarded calls")
        self.fallbacks = meter.create_counter(sc.METRIC_FALLBACKS, unit="{call}",
                                              description="Calls answered by their fallback")
        self.rejections = meter.create_counter(sc.METRIC_REJECTIONS, unit="{call}",
                                               description="Calls refused by a circuit or bulkhead")
        self.faults = meter.create_counter(sc.METRIC_FAULTS, unit="{fault}",
                                           description="Faults injected on purpose")
        self.transitions = meter.create_counter(sc.METRIC_CIRCUIT_TRANSITIONS, unit="{change}",
                                                description="Circuit state changes")
        self.http_duration = meter.create_histogram(sc.METRIC_HTTP_DURATION, unit="s",
                                                    description="Duration of HTTP server requests")
        self.requests = RequestStats()
        meter.create_observable_counter(sc.METRIC_HTTP_REQUESTS, [self._request_counts],
                                        unit="{request}", description="HTTP requests served")
        meter.create_observable_counter(sc.METRIC_HTTP_TIME, [self._request_seconds], unit="s",
                                        description="Total time spent serving HTTP requests")
        meter.create_observable_gauge(sc.METRIC_CIRCUIT_STATE, [_circuit_states], unit="1",
                                      description="Circuit state: 0 closed, 1 half-open, 2 open")
        meter.create_observable_counter(sc.METRIC_DROPPED, [_dropped], unit="{item}",
                                        description="Telemetry lost (never the application's requests)")

    def _request_counts(self, options: CallbackOptions) -> Iterable[Observation]:
        return self.requests.observe(0)

    def _request_seconds(self, options: CallbackOptions) -> Iterable[Observation]:
        return self.requests.observe(1)

    def error(self, kind: str, site: str | None = None) -> None:
        """Count one error of ``kind`` on the current route (and ``site``, for guarded calls)."""
        attrs = {sc.KIND: kind, sc.HTTP_ROUTE: current_route() or ""}
        if site is not None:
            attrs[sc.SITE] = site
        self.errors.add(1, attrs)

    def snapshot(self) -> dict[str, list[dict[str, Any]]]:
        """Current values: ``{name: [{"attributes": {...}, "value": v}, ...]}`` (histograms: count, sum)."""
        data = self.reader.get_metrics_data()
        out: dict[str, list[dict[str, Any]]] = {}
        for rm in data.resource_metrics if data else ():
            for sm in rm.scope_metrics:
                for metric in sm.metrics:
                    out.setdefault(metric.name, []).extend(_points(metric.data.data_points))
        return out

    def stop(self) -> None:
        self.provider.shutdown(timeout_millis=2000)


def _points(points: Iterable[Any]) -> list[dict[str, Any]]:
    out = []
    for p in points:
        attrs = dict(p.attributes or {})
        if isinstance(p, HistogramDataPoint):
            out.append({"attributes": attrs, "count": p.count, "sum": p.sum})
        elif isinstance(p, NumberDataPoint):
            out.append({"attributes": attrs, "value": p.value})
    return out


def _circuit_states(options: CallbackOptions) -> Iterable[Observation]:
    try:
        live = circuits()
    except Exception:
        return []
    return [Observation(CIRCUIT_STATES.get(c.state, -1), {sc.CIRCUIT_NAME: name})
            for name, c in live.items()]


def _dropped(options: CallbackOptions) -> Iterable[Observation]:
    return [Observation(n, {sc.DROP_SOURCE: source}) for source, n in drops.counts().items()]


def total(snapshot: Mapping[str, list[dict[str, Any]]], name: str,
          attrs: Mapping[str, Any] | None = None) -> float:
    """Sum of ``name``'s points whose attributes include ``attrs`` (histograms: their counts)."""
    wanted = dict(attrs or {})
    return float(sum(p.get("value", p.get("count", 0)) for p in snapshot.get(name, [])
                     if all(p["attributes"].get(k) == v for k, v in wanted.items())))
