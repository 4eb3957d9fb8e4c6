"""The waterfall's rows as HTML, built in Python for speed (a 5,000-span trace is 5,000 rows).

The trace page's template draws everything else; the rows come from here, in
chunks the template streams as it goes. Every value taken from the store passes
through :func:`_e` (``html.escape`` with quotes: ``& < > " '`` become entities,
as with Jinja's autoescape), numbers and fixed class names excepted. Details of a
span, when they are part of the page, still come from ``_span_details.html``.
"""

from __future__ import annotations

import html
from collections.abc import Callable, Iterator
from typing import Final

from markupsafe import Markup

from . import _format as fmt
from ._waterfall import MAX_DEPTH_CLASS, LogLine, Row, Step, Waterfall

#: Rows per streamed chunk.
CHUNK_ROWS: Final = 250
_MORE: Final = '<button type="button" class="more" aria-label="details"></button>'

Details = Callable[[Row], str]


def row_chunks(wf: Waterfall, details: Details, inline: frozenset[str] | None,
               per: int = CHUNK_ROWS) -> Iterator[Markup]:
    """The rows of ``wf`` as HTML, ``per`` rows at a time. ``details(row)`` renders a span's
    details; it is called for the spans in ``inline`` (for all when ``inline`` is None)."""
    rows = wf.rows
    for start in range(0, len(rows), per):
        yield Markup("".join(
            row_html(r, details(r) if inline is None or r.span.span_id in inline else None)
            for r in rows[start:start + per]))


def _e(value: object) -> str:
    """``value`` as text, safe inside an element or a quoted attribute."""
    return html.escape(str(value), quote=True)


def _badge(kind: str, text: str) -> str:
    return f'<span class="badge {kind}">{_e(text)}</span>'


def row_html(row: Row, details: str | None) -> str:
    """One span's row (and its log lines after it)."""
    s = row.span
    classes = (f"span-row s-{_e(s.status)}{' is-error' if row.error else ''}"
               f"{' is-fault' if row.fault else ''}{' is-degraded' if row.degraded else ''}")
    depth = f' title="depth {row.depth}"' if row.depth > row.depth_class else ""
    badges = (f" {_badge('k-' + _e(row.kind), row.kind)}" if row.kind else "") + \
        (" " + _badge("fault", "injected") if row.fault else "") + \
        (" " + _badge("degraded", "fallback") if row.degraded else "")
    markers = "".join(f'<i class="mk m-{_e(m.kind)} l{m.pos}" title="{_e(m.label)}"></i>'
                      for m in row.markers)
    chain = (f'<ol class="chain" aria-label="Attempts">{"".join(_step(st) for st in row.chain)}</ol>'
             if row.chain else "")
    more = _MORE if details is None else \
        f'<details class="span-details"><summary>details</summary>{details}</details>'
    logs = "".join(_log(line, row.depth_class) for line in row.logs)
    return (f'<div class="{classes}" id="span-{_e(s.span_id)}" data-span>'
            f'<div class="wf-name d{row.depth_class}"{depth}>{_e(s.name)}{badges}</div>'
            f'<div class="wf-track"><span class="bar l{row.left} w{row.width}"></span>{markers}</div>'
            f'<div class="wf-dur" title="starts at {_e(row.offset)}">{_e(row.duration)}</div>'
            f'{chain}{more}</div>\n{logs}')


def _step(step: Step) -> str:
    title = f' title="{_e(step.detail)}"' if step.detail else ""
    why = (f' <span class="why">{_e(fmt.truncate(step.detail, 70))}</span>'
           if step.detail and step.kind.startswith("failed") else "")
    return f'<li class="st st-{_e(step.kind)}"{title}>{_e(step.text)}{why}</li>'


def _log(line: LogLine, depth: int) -> str:
    r = line.record
    fields = "".join(f' <span class="kv"><span class="k">{_e(k)}</span>=<span class="v">'
                     f'{_e(v)}</span></span>' for k, v in line.fields)
    return (f'<div class="log-row lvl-{_e(r.level.lower())}">'
            f'<div class="wf-name d{min(depth + 1, MAX_DEPTH_CLASS)}"><span class="lvl">'
            f'{_e(r.level)}</span> <span class="ev">{_e(r.event)}</span></div>'
            f'<div class="log-fields"><span class="muted">{_e(line.offset)} · '
            f'{_e(r.logger)}</span>{fields}</div></div>\n')
