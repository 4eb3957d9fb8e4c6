"""The experiment report, from the journal alone: Markdown, and self-contained HTML
with inline SVG charts (success rate; p50/p99 latency) over time, faults shaded.

No JavaScript, no external CSS or fonts: the HTML file is safe to attach to a CI run.
"""

from __future__ import annotations

import html
import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Final

_W: Final = 760
_H: Final = 230
_M: Final = {"left": 56, "right": 16, "top": 26, "bottom": 34}
_COLOURS: Final = {"success_rate": "#2e7d32", "p50_ms": "#1565c0", "p99_ms": "#c62828"}


def shockproof_extension(journal: Mapping[str, Any]) -> dict[str, Any]:
    """Shockproof's block of ``extensions`` (empty if absent)."""
    for ext in journal.get("extensions", []):
        if isinstance(ext, dict) and ext.get("name") == "shockproof":
            return ext
    return {}


def write_reports(journal: Mapping[str, Any], directory: str | Path) -> dict[str, Path]:
    """Write ``journal.json``, ``report.md`` and ``report.html`` into ``directory``."""
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"journal": out / "journal.json", "markdown": out / "report.md", "html": out / "report.html"}
    ext = shockproof_extension(journal)
    ext["reports"] = {name: str(path) for name, path in paths.items()}
    paths["journal"].write_text(json.dumps(journal, indent=2, default=str) + "\n", encoding="utf-8")
    paths["markdown"].write_text(render_markdown(journal), encoding="utf-8")
    paths["html"].write_text(render_html(journal), encoding="utf-8")
    return paths


# -- shared summaries -------------------------------------------------------------------


def _summary(journal: Mapping[str, Any]) -> list[tuple[str, str]]:
    ext = shockproof_extension(journal)
    status = str(journal.get("status", "?"))
    rows = [
        ("Status", status),
        ("Deviated", "yes" if journal.get("deviated") else "no"),
        ("Outcome", str(ext.get("outcome", ""))),
        ("Exit code", str(ext.get("exit_code", ""))),
        ("Started", str(journal.get("start", ""))),
        ("Duration", f"{float(journal.get('duration') or 0):.1f} s"),
    ]
    if ext.get("reason"):
        rows.append(("Reason", str(ext["reason"])))
    if ext.get("rollbacks_failed"):
        rows.append(("Rollbacks failed", str(ext["rollbacks_failed"])))
    return rows


def _activity_rows(records: Iterable[Mapping[str, Any]]) -> list[list[str]]:
    rows = []
    for index, record in enumerate(records, 1):
        activity = record.get("activity", {})
        detail = (record.get("exception") or [""])[-1]
        if "tolerance_met" in record:
            detail = detail or ("tolerance met" if record["tolerance_met"] else "tolerance not met")
        rows.append([str(index), str(activity.get("type", "")), str(activity.get("name", "")),
                     str(record.get("status", "")), f"{float(record.get('duration') or 0):.3f} s", detail])
    return rows


def _hypothesis_rows(journal: Mapping[str, Any]) -> list[list[str]]:
    rows = []
    for when in ("before", "after"):
        state = (journal.get("steady_states") or {}).get(when)
        if not state:
            rows.append([when, "(not run)", "", ""])
            continue
        for probe in state.get("probes", []):
            met = "yes" if probe.get("tolerance_met") else "no"
            rows.append([when, str(probe.get("activity", {}).get("name", "")), str(probe.get("status", "")), met])
    return rows


def _fault_rows(ext: Mapping[str, Any]) -> list[list[str]]:
    return [[str(f.get("kind")), str(f.get("label")), str(f.get("target")), f"{f.get('start', 0):.2f} s",
             f"{f.get('end', 0):.2f} s" + (" (never removed)" if f.get("left_open") else "")]
            for f in ext.get("faults", [])]


def _load_rows(ext: Mapping[str, Any]) -> list[list[str]]:
    load = ext.get("load") or {}
    if not load.get("requests"):
        return []
    rate = load.get("success_rate")
    return [[str(load["requests"]), "-" if rate is None else f"{rate:.1%}", f"{load.get('p50_ms')} ms",
             f"{load.get('p99_ms')} ms", _counts(load.get("statuses")), _counts(load.get("errors"))]]


def _counts(counts: Mapping[str, int] | None) -> str:
    return ", ".join(f"{k}: {v}" for k, v in (counts or {}).items()) or "-"


# -- Markdown ---------------------------------------------------------------------------


def _md_table(head: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    def cell(text: str) -> str:
        return text.replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def render_markdown(journal: Mapping[str, Any]) -> str:
    """The report as Markdown (tables; the charts are in the HTML report)."""
    experiment = journal.get("experiment", {})
    ext = shockproof_extension(journal)
    hypothesis = experiment.get("steady-state-hypothesis", {}).get("title", "")
    parts = [f"# Experiment: {experiment.get('title', '')}", ""]
    if experiment.get("description"):
        parts += [str(experiment["description"]).strip(), ""]
    parts += [_md_table(["", ""], [[f"**{k}**", v] for k, v in _summary(journal)]), ""]
    parts += [f"## Steady-state hypothesis: {hypothesis}", "",
              _md_table(["when", "probe", "status", "tolerance met"], _hypothesis_rows(journal)), ""]
    parts += ["## Method", "", _md_table(["#", "type", "name", "status", "duration", "detail"],
                                         _activity_rows(journal.get("run", []))), ""]
    parts += ["## Rollbacks", "", _md_table(["#", "type", "name", "status", "duration", "detail"],
                                            _activity_rows(journal.get("rollbacks", []))) if journal.get("rollbacks")
              else "(none)", ""]
    parts += ["## Faults injected", "", _md_table(["kind", "fault", "target", "from", "to"], _fault_rows(ext))
              if ext.get("faults") else "(none)", ""]
    load = _load_rows(ext)
    parts += ["## Load", "", _md_table(["requests", "success", "p50", "p99", "statuses", "errors"], load)
              if load else "(no load was sent)", ""]
    parts += ["## Timeline", ""] + [f"- `{e['t']:8.2f}s` {e['event']}: {e['name']}" for e in ext.get("timeline", [])]
    return "\n".join(parts) + "\n"


# -- HTML -------------------------------------------------------------------------------

_CSS: Final = """
body{font:15px/1.45 system-ui,-apple-system,Segoe UI,sans-serif;margin:2rem auto;max-width:860px;color:#222;padding:0 1rem}
h1{font-size:1.5rem}h2{font-size:1.15rem;margin-top:2rem;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:.5rem 0;width:100%}td,th{border:1px solid #ddd;padding:.25rem .5rem;text-align:left;vertical-align:top}
th{background:#f5f5f5}.completed{color:#2e7d32}.failed{color:#c62828}.aborted{color:#ef6c00}
svg{background:#fff;border:1px solid #ddd;margin:.5rem 0}svg text{font:11px system-ui,sans-serif;fill:#444}
.muted{color:#777}code{background:#f5f5f5;padding:0 .2rem}
"""


def _h(text: object) -> str:
    return html.escape(str(text), quote=True)


def _html_table(head: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    if not rows:
        return '<p class="muted">(none)</p>'
    top = "".join(f"<th>{_h(c)}</th>" for c in head)
    body = "".join("<tr>" + "".join(f"<td>{_h(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{top}</tr></thead><tbody>{body}</tbody></table>"


def render_html(journal: Mapping[str, Any]) -> str:
    """The report as one self-contained HTML page with inline SVG charts."""
    experiment = journal.get("experiment", {})
    ext = shockproof_extension(journal)
    status = str(journal.get("status", ""))
    series, faults = ext.get("series", []), ext.get("faults", [])
    duration = float(journal.get("duration") or 0)
    summary = "".join(f"<tr><th>{_h(k)}</th><td>{_h(v)}</td></tr>" for k, v in _summary(journal))
    charts = (
        chart(series, faults, duration, ["success_rate"], "success rate (%)", scale=100.0, fixed_max=100.0)
        + chart(series, faults, duration, ["p50_ms", "p99_ms"], "latency (ms)")
    ) if any(b.get("requests") for b in series) else '<p class="muted">(no load was sent: no charts)</p>'
    timeline = "".join(f"<li><code>{e['t']:.2f}s</code> {_h(e['event'])}: {_h(e['name'])}</li>"
                       for e in ext.get("timeline", []))
    hypothesis = experiment.get("steady-state-hypothesis", {}).get("title", "")
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>Experiment: {_h(experiment.get('title', ''))}</title><style>{_CSS}</style></head>
<body>
<h1>Experiment: {_h(experiment.get('title', ''))} <span class="{_h(status)}">{_h(status)}</span></h1>
<p>{_h(experiment.get('description', ''))}</p>
<table>{summary}</table>
<h2>Over time</h2>
<p class="muted">Shaded bands are injected faults (from when they were added to when they were removed).</p>
{charts}
<h2>Steady-state hypothesis: {_h(hypothesis)}</h2>
{_html_table(["when", "probe", "status", "tolerance met"], _hypothesis_rows(journal))}
<h2>Method</h2>
{_html_table(["#", "type", "name", "status", "duration", "detail"], _activity_rows(journal.get("run", [])))}
<h2>Rollbacks</h2>
{_html_table(["#", "type", "name", "status", "duration", "detail"], _activity_rows(journal.get("rollbacks", [])))}
<h2>Faults injected</h2>
{_html_table(["kind", "fault", "target", "from", "to"], _fault_rows(ext))}
<h2>Load</h2>
{_html_table(["requests", "success", "p50", "p99", "statuses", "errors"], _load_rows(ext))}
<h2>Timeline</h2>
<ul>{timeline}</ul>
</body></html>
"""


# -- SVG charts -------------------------------------------------------------------------


def chart(
    series: Sequence[Mapping[str, Any]],
    faults: Sequence[Mapping[str, Any]],
    duration: float,
    keys: Sequence[str],
    label: str,
    *,
    scale: float = 1.0,
    fixed_max: float | None = None,
) -> str:
    """One inline SVG line chart of ``keys`` over time, fault windows shaded."""
    x_max = max(duration, max((float(b["t"]) + float(b.get("width", 0)) for b in series), default=0), 0.001)
    values = [float(b[k]) * scale for b in series for k in keys if b.get(k) is not None]
    y_max = fixed_max if fixed_max is not None else _nice(max(values, default=1.0) * 1.1)
    plot_w, plot_h = _W - _M["left"] - _M["right"], _H - _M["top"] - _M["bottom"]

    def x(t: float) -> float:
        return _M["left"] + plot_w * t / x_max

    def y(v: float) -> float:
        return _M["top"] + plot_h * (1 - v / y_max)

    body = [_fault_band(f, i, x, plot_h) for i, f in enumerate(faults)]
    body += _axes(x, y, x_max, y_max, plot_w)
    for key in keys:
        body += _polylines(series, key, scale, x, y)
    legend = "".join(
        f'<rect x="{_M["left"] + 150 * i}" y="6" width="12" height="3" fill="{_COLOURS[k]}"/>'
        f'<text x="{_M["left"] + 150 * i + 16}" y="11">{_h(k.replace("_ms", "").replace("_", " "))}</text>'
        for i, k in enumerate(keys)
    )
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{_W}" height="{_H}" viewBox="0 0 {_W} {_H}" '
            f'role="img" aria-label="{_h(label)} over time"><title>{_h(label)} over time</title>'
            f'{legend}{"".join(body)}'
            f'<text x="12" y="{_M["top"] + plot_h / 2}" transform="rotate(-90 12 {_M["top"] + plot_h / 2})" '
            f'text-anchor="middle">{_h(label)}</text></svg>')


def _fault_band(fault: Mapping[str, Any], index: int, x: Any, plot_h: float) -> str:
    left, right = x(float(fault.get("start", 0))), x(float(fault.get("end", 0)))
    label, short = _h(fault.get("label", "")), str(fault.get("label", ""))[:40]
    return (f'<g class="fault"><rect x="{left:.1f}" y="{_M["top"]}" width="{max(right - left, 1.5):.1f}" '
            f'height="{plot_h}" fill="#f9a825" fill-opacity="0.18"><title>{label}</title></rect>'
            f'<text x="{left + 3:.1f}" y="{_M["top"] + 12 + 13 * (index % 4)}">{_h(short)}</text></g>')


def _axes(x: Any, y: Any, x_max: float, y_max: float, plot_w: float) -> list[str]:
    out = []
    for i in range(5):
        v = y_max * i / 4
        out.append(f'<line x1="{_M["left"]}" x2="{_M["left"] + plot_w}" y1="{y(v):.1f}" y2="{y(v):.1f}" '
                   f'stroke="#eee"/><text x="{_M["left"] - 6}" y="{y(v) + 4:.1f}" text-anchor="end">{v:g}</text>')
    for i in range(7):
        t = x_max * i / 6
        out.append(f'<text x="{x(t):.1f}" y="{_H - _M["bottom"] + 16}" text-anchor="middle">{t:.1f}s</text>')
    out.append(f'<line x1="{_M["left"]}" x2="{_M["left"]}" y1="{_M["top"]}" y2="{_H - _M["bottom"]}" stroke="#999"/>')
    return out


def _polylines(series: Sequence[Mapping[str, Any]], key: str, scale: float, x: Any, y: Any) -> list[str]:
    """One polyline per run of buckets that have a value (gaps where nothing was measured)."""
    runs: list[list[str]] = [[]]
    for bucket in series:
        value = bucket.get(key)
        if value is None:
            runs.append([])
            continue
        middle = float(bucket["t"]) + float(bucket.get("width", 0)) / 2
        runs[-1].append(f"{x(middle):.1f},{y(float(value) * scale):.1f}")
    colour = _COLOURS.get(key, "#333")
    out = []
    for points in (r for r in runs if r):
        if len(points) == 1:
            cx, cy = points[0].split(",")
            out.append(f'<circle class="series {key}" cx="{cx}" cy="{cy}" r="2.5" fill="{colour}"/>')
        else:
            out.append(f'<polyline class="series {key}" fill="none" stroke="{colour}" stroke-width="2" '
                       f'points="{" ".join(points)}"/>')
    return out


def _nice(value: float) -> float:
    """A round axis maximum at or above ``value``."""
    step = 1.0
    while step * 10 < value:
        step *= 10
    for factor in (1, 2, 5, 10):
        if step * factor >= value:
            return step * factor
    return step * 10
