"""The pages: Errors (home), Traces, one trace, Circuits, Faults, and their JSON twins.

Each list page renders its filters and a *live region* from a partial template;
``/api/<page>`` answers the same filters with ``{"html": <the region>, ...data}``
so the page script can refresh the region in place. Bad filter values answer
400 with what was wrong.
"""

from __future__ import annotations

import dataclasses
import json
import re
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Final, NoReturn

from flask import (
    Blueprint,
    Response,
    abort,
    current_app,
    render_template,
    request,
    stream_template,
    url_for,
)
from werkzeug.datastructures import MultiDict

from telemetry.query import KINDS, ErrorGroup, TraceDetail, TraceSummary

from . import _charts as charts
from . import _format as fmt
from ._app import json_response, viewer
from ._otlp import export_logs, export_spans
from ._rows import row_chunks
from ._waterfall import Row, Waterfall, layout, positions_css

blueprint = Blueprint("pages", __name__)

PAGE_SIZE: Final = 50
GROUP_LIMIT: Final = 50
TREND_BUCKETS: Final = 24
#: Traces up to this many spans get every span's details in the page; larger ones get the
#: details of the spans where something happened, the rest on demand.
INLINE_DETAILS: Final = 300
INLINE_LIMIT: Final = 100
STREAM_CHUNK: Final = 64 * 1024
_HOUR: Final = 3600 * 10**9
_TRACE_ID: Final = re.compile(r"^[0-9a-f]{1,32}$")
_SPAN_ID: Final = re.compile(r"^[0-9a-f]{16}$")
_DETAIL_CACHE_S: Final = 30.0


def _bad(message: str) -> NoReturn:
    abort(400, description=message)


def _arg(args: MultiDict[str, str], name: str) -> str | None:
    value = args.get(name, "").strip()
    return value or None


def _since(args: MultiDict[str, str], now: int) -> tuple[str, int | None]:
    name = _arg(args, "range") or "all"
    try:
        back = fmt.parse_range(name)
    except ValueError as exc:
        _bad(str(exc))
    return name, (now - back * 10**9 if back is not None else None)


def _kind(args: MultiDict[str, str]) -> str | None:
    try:
        return fmt.check_kind(_arg(args, "kind"))
    except ValueError as exc:
        _bad(str(exc))


# -- Errors -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class GroupRow:
    rank: int
    group: ErrorGroup
    spark: charts.Spark
    split: charts.Split


@dataclass(frozen=True, slots=True)
class ErrorFilters:
    kind: str | None
    route: str | None
    range: str

    def query_string(self) -> dict[str, Any]:
        return {k: v for k, v in (("kind", self.kind), ("route", self.route),
                                  ("range", self.range)) if v}


def _errors() -> dict[str, Any]:
    v = viewer()
    now = v.now()
    range_name, since = _since(request.args, now)
    filters = ErrorFilters(_kind(request.args), _arg(request.args, "route"), range_name)
    groups = v.query.error_groups(kind=filters.kind, route=filters.route, since_ns=since,
                                  until_ns=now if since is not None else None, limit=GROUP_LIMIT)
    start = since if since is not None else min((g.first_seen_ns for g in groups), default=now)
    start = min(start, now - _HOUR)
    trends = v.feed.trends([g.fingerprint for g in groups], TREND_BUCKETS, start, now + 1,
                           route=filters.route)
    labels = charts.bucket_labels(next(iter(trends.values()))) if trends else ()
    rows = [GroupRow(i + 1, g, charts.sparkline(trends[g.fingerprint], labels),
                     charts.split(g.real_count, g.injected_count))
            for i, g in enumerate(groups)]
    return {"filters": filters, "rows": rows, "trend_since": start, "now": now,
            "api": url_for("pages.api_errors", **filters.query_string())}


@blueprint.get("/")
def errors() -> str:
    return render_template("errors.html", page="errors", kinds=KINDS, routes=viewer().routes(),
                           ranges=fmt.RANGE_LABELS, **_errors())


@blueprint.get("/api/errors")
def api_errors() -> Response:
    ctx = _errors()
    return json_response({"html": render_template("_errors_table.html", **ctx),
                          "groups": [_group_json(r.group) for r in ctx["rows"]]})


def _group_json(group: ErrorGroup) -> dict[str, Any]:
    return {**dataclasses.asdict(group), "real_count": group.real_count}


# -- Traces -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TraceFilters:
    kind: str | None
    status: str | None
    route: str | None
    min_ms: float | None
    range: str
    fault: str | None
    q: str | None
    page: int

    def query_string(self, **change: Any) -> dict[str, Any]:
        values = {**dataclasses.asdict(self), **change}
        out = {k: str(v) for k, v in values.items() if v not in (None, "", "all") and k != "page"}
        if values["page"] != 1:
            out["page"] = str(values["page"])
        if self.min_ms is not None and "min_ms" in out:
            out["min_ms"] = f"{self.min_ms:g}"
        return out


def _trace_filters(args: MultiDict[str, str]) -> TraceFilters:
    status = _arg(args, "status")
    if status not in (None, "error", "ok"):
        _bad(f"status must be error or ok, not {status!r}")
    fault = _arg(args, "fault")
    if fault not in (None, "yes", "no"):
        _bad(f"fault must be yes or no, not {fault!r}")
    q = (_arg(args, "q") or "").lower() or None
    if q is not None and not _TRACE_ID.match(q):
        _bad("the trace id search takes 1 to 32 hex digits")
    return TraceFilters(_kind(args), status, _arg(args, "route"), _number(args, "min_ms"),
                        _arg(args, "range") or "all", fault, q, int(_number(args, "page") or 1))


def _number(args: MultiDict[str, str], name: str) -> float | None:
    raw = _arg(args, name)
    if raw is None:
        return None
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not 0 <= value < 1e12:
        _bad(f"{name} must be a non-negative number, not {raw!r}")
    if name == "page" and (value < 1 or value != int(value)):
        _bad(f"page must be a whole number from 1, not {raw!r}")
    return value


def _traces() -> dict[str, Any]:
    v = viewer()
    now = v.now()
    filters = _trace_filters(request.args)
    _, since = _since(request.args, now)
    found = v.query.traces(
        kind=filters.kind, status=filters.status, route=filters.route,
        min_duration_ms=filters.min_ms, since_ns=since, has_fault={"yes": True, "no": False}.get(
            filters.fault or ""), trace_id_prefix=filters.q, limit=PAGE_SIZE + 1,
        offset=(filters.page - 1) * PAGE_SIZE)
    more = len(found) > PAGE_SIZE
    return {"filters": filters, "traces": found[:PAGE_SIZE], "more": more, "now": now,
            "newer": url_for("pages.traces", **filters.query_string(page=filters.page - 1))
            if filters.page > 1 else None,
            "older": url_for("pages.traces", **filters.query_string(page=filters.page + 1))
            if more else None,
            "api": url_for("pages.api_traces", **filters.query_string())}


@blueprint.get("/traces")
def traces() -> str:
    return render_template("traces.html", page="traces", kinds=KINDS, routes=viewer().routes(),
                           ranges=fmt.RANGE_LABELS, **_traces())


@blueprint.get("/api/traces")
def api_traces() -> Response:
    ctx = _traces()
    return json_response({"html": render_template("_traces_table.html", **ctx),
                          "traces": [_trace_json(t) for t in ctx["traces"]]})


def _trace_json(trace: TraceSummary) -> dict[str, Any]:
    return dataclasses.asdict(trace)


# -- one trace ---------------------------------------------------------------------------------


def _detail(trace_id: str, *, cached: bool = False) -> TraceDetail:
    trace_id = trace_id.lower()
    if not _TRACE_ID.match(trace_id) or len(trace_id) != 32:
        abort(404, description="a trace id is 32 hex digits")
    cache = viewer().details
    hit = cache.get(trace_id) if cached else None
    if hit is not None and time.monotonic() - hit[0] < _DETAIL_CACHE_S:
        found: TraceDetail = hit[1]
        return found
    detail = viewer().query.trace(trace_id)
    if detail is None:
        abort(404, description=f"no trace {trace_id} in the store (yet)")
    if len(cache) > 8:
        cache.clear()
    cache[trace_id] = (time.monotonic(), detail)
    return detail


@blueprint.get("/traces/<trace_id>")
def trace(trace_id: str) -> Response:
    """One trace, streamed: the browser parses the top while the rows are still rendered."""
    detail = _detail(trace_id)
    waterfall = layout(detail)
    template = current_app.jinja_env.get_template("_span_details.html")
    rows = row_chunks(waterfall, lambda row: template.render(row=row), _inline(waterfall))
    parts = stream_template("trace.html", page="traces", detail=detail, summary=detail.summary,
                            wf=waterfall, rows=rows, now=viewer().now())
    return Response(_chunks(parts), mimetype="text/html")


def _chunks(parts: Iterator[str], size: int = STREAM_CHUNK) -> Iterator[str]:
    """Template output regrouped into chunks of about ``size`` characters."""
    buffer: list[str] = []
    held = 0
    for part in parts:
        buffer.append(part)
        held += len(part)
        if held >= size:
            yield "".join(buffer)
            buffer, held = [], 0
    if buffer:
        yield "".join(buffer)


def _inline(waterfall: Waterfall) -> frozenset[str] | None:
    """Spans whose details go in the page: all of a small trace (None); in a big one, the failed
    and injected spans (at most :data:`INLINE_LIMIT`) and the one the page jumps to."""
    if len(waterfall.rows) <= INLINE_DETAILS:
        return None
    chosen = [r.span.span_id for r in waterfall.rows if r.error or r.fault][:INLINE_LIMIT]
    if waterfall.first_error is not None:
        chosen.append(waterfall.first_error)
    return frozenset(chosen)


@blueprint.get("/traces/<trace_id>/spans/<span_id>")
def span_details(trace_id: str, span_id: str) -> str:
    if not _SPAN_ID.match(span_id):
        abort(404, description="a span id is 16 hex digits")
    waterfall = layout(_detail(trace_id, cached=True))
    row: Row | None = next((r for r in waterfall.rows if r.span.span_id == span_id), None)
    if row is None:
        abort(404, description=f"no span {span_id} in trace {trace_id}")
    return render_template("_span_details.html", row=row)


@blueprint.get("/traces/<trace_id>/otlp.json")
def export(trace_id: str) -> Response:
    return _download(trace_id, export_spans(_detail(trace_id)), "")


@blueprint.get("/traces/<trace_id>/otlp-logs.json")
def export_log_lines(trace_id: str) -> Response:
    return _download(trace_id, export_logs(_detail(trace_id)), "-logs")


def _download(trace_id: str, payload: Mapping[str, Any], suffix: str) -> Response:
    body = json.dumps(payload, indent=1, ensure_ascii=False)
    response = Response(body, mimetype="application/json")
    response.headers["Content-Disposition"] = (
        f'attachment; filename="trace-{trace_id.lower()}{suffix}.otlp.json"')
    return response


# -- Circuits -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CircuitRow:
    name: str
    state: str
    since_ns: int
    failure_rate: float | None
    changes: int
    timeline: charts.Timeline
    recent: tuple[Any, ...]


def _circuits() -> dict[str, Any]:
    v = viewer()
    now = v.now()
    rows = []
    for status in v.query.circuits():
        history = v.query.circuit_history(status.circuit, limit=200)
        start = min((c.time_ns for c in history), default=now)
        start = min(start - max(1, (now - start) // 20), now - _HOUR)
        rows.append(CircuitRow(status.circuit, status.state, status.since_ns, status.failure_rate,
                               status.changes, charts.timeline(history, start, now),
                               tuple(reversed(history[-20:]))))
    return {"circuits": rows, "now": now, "api": url_for("pages.api_circuits")}


@blueprint.get("/circuits")
def circuits() -> str:
    return render_template("circuits.html", page="circuits", **_circuits())


@blueprint.get("/api/circuits")
def api_circuits() -> Response:
    ctx = _circuits()
    return json_response({"html": render_template("_circuits_body.html", **ctx), "circuits": [
        {"name": c.name, "state": c.state, "since_ns": c.since_ns,
         "failure_rate": c.failure_rate, "changes": c.changes} for c in ctx["circuits"]]})


# -- Faults -------------------------------------------------------------------------------------


def _faults() -> dict[str, Any]:
    v = viewer()
    site, rule = _arg(request.args, "site"), _arg(request.args, "rule")
    recorded = v.query.injected_faults(limit=200, site=site, rule_id=rule)
    control = v.faults.overview() if v.faults is not None else None
    query: dict[str, Any] = {k: val for k, val in (("site", site), ("rule", rule)) if val}
    return {"recorded": recorded, "control": control, "site": site, "rule": rule,
            "now": v.now(), "api": url_for("pages.api_faults", **query)}


@blueprint.get("/faults")
def faults() -> str:
    return render_template("faults.html", page="faults", **_faults())


@blueprint.get("/api/faults")
def api_faults() -> Response:
    ctx = _faults()
    return json_response({"html": render_template("_faults_body.html", **ctx), "recorded": [
        dataclasses.asdict(f) for f in ctx["recorded"]]})


_POSITIONS: Final = positions_css()


@blueprint.get("/assets/positions.css")
def positions() -> Response:
    response = Response(_POSITIONS, mimetype="text/css")
    response.headers["Cache-Control"] = "max-age=86400"
    return response


@blueprint.get("/healthz")
def health() -> Response:
    return json_response({"status": "ok", "store": str(viewer().store_path.name)})
