"""Terminal views with rich: the ranked error groups, one trace as a tree, and error lines for tail.

Everything the store holds is shown through :class:`rich.text.Text` objects
built piece by piece, never through rich's markup, so a ``[bold]`` or an ANSI
escape in an exception message is printed as the characters it is.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import IO, Final

from rich.console import Console
from rich.table import Table
from rich.text import Text
from rich.tree import Tree

from telemetry.query import ErrorGroup, TraceDetail

from . import _format as fmt
from ._queries import Occurrence
from ._waterfall import CHAIN_EVENTS, Row, Waterfall, event_summary, layout

KIND_STYLES: Final = {"logic": "magenta", "validation": "yellow", "network": "blue", "io": "cyan"}
_CONTROL: Final = dict.fromkeys(range(32), "�") | {9: " ", 10: " "}


def console(out: IO[str], *, tty: bool | None = None) -> Console:
    """A console writing to ``out``: colours on a terminal, plain text (and wide) otherwise."""
    is_tty = out.isatty() if tty is None else tty
    return Console(file=out, force_terminal=is_tty, no_color=not is_tty, highlight=False,
                   emoji=False, markup=False, width=None if is_tty else 160, soft_wrap=False)


def clean(text: object) -> str:
    """Text with control characters (escape sequences, carriage returns) made harmless."""
    return str(text).translate(_CONTROL)


def clean_block(text: str) -> str:
    """Like :func:`clean`, keeping the line breaks (stack traces)."""
    return "\n".join(clean(line) for line in text.splitlines())


def kind_text(kind: str | None) -> Text:
    name = kind or "error"
    return Text(name.upper(), style=f"bold {KIND_STYLES.get(name, 'red')}")


def errors_table(groups: Sequence[ErrorGroup], now_ns: int) -> Table:
    """The error groups, ranked by impact, as a table."""
    table = Table(title="Errors by impact", title_justify="left", expand=False, show_lines=False)
    for name, justify in (("#", "right"), ("kind", "left"), ("error", "left"), ("route", "left"),
                          ("count", "right"), ("requests", "right"), ("users", "right"),
                          ("injected", "right"),
                          ("first seen", "left"), ("last seen", "left"), ("sample trace", "left")):
        table.add_column(name, justify=justify, overflow="fold")  # type: ignore[arg-type]
    for rank, g in enumerate(groups, 1):
        error = Text(clean(g.error_type or "error"), style="bold")
        if g.message:
            error.append(": " + clean(fmt.truncate(g.message, 120)))
        table.add_row(str(rank), kind_text(g.kind), error, clean(g.route or "-"), str(g.count),
                      str(g.trace_count), str(g.users), str(g.injected_count),
                      fmt.ago(g.first_seen_ns, now_ns),
                      fmt.ago(g.last_seen_ns, now_ns), g.sample_trace_id)
    return table


def trace_tree(detail: TraceDetail, *, stacks: bool = False) -> tuple[Tree, Waterfall]:
    """One trace as a tree of spans, each with its retry chain, events and log lines."""
    wf = layout(detail)
    summary = detail.summary
    head = Text(f"trace {detail.trace_id}", style="bold")
    if summary is not None:
        head.append(f"  {clean(summary.root_name)}  {fmt.duration(summary.duration_ns)}  "
                    f"{fmt.timestamp(summary.start_ns)}")
        if summary.status == "error":
            head.append("  error", style="bold red")
    tree = Tree(head)
    parents: list[Tree] = [tree]
    for row in wf.rows:
        del parents[row.depth + 1:]
        node = parents[-1].add(_span_label(row))
        for line in _span_lines(row):
            node.add(line)
        parents.append(node)
    if wf.exceptions:
        errors = tree.add(Text("exceptions", style="bold red"))
        for exc in wf.exceptions:
            label = Text.assemble(kind_text(exc.kind), " ", (clean(exc.type), "bold"), ": ",
                                  clean(fmt.truncate(exc.message, 300)), f"  (in {clean(exc.span_name)})")
            item = errors.add(label)
            if stacks and exc.stacktrace:
                item.add(Text(clean_block(exc.stacktrace.rstrip())))
    return tree, wf


def _span_label(row: Row) -> Text:
    span = row.span
    text = Text(clean(span.name), style="bold red" if row.error else "bold")
    text.append(f"  {row.duration}  {row.offset}", style="dim")
    if row.kind:
        text.append("  ")
        text.append_text(kind_text(row.kind))
    if row.fault:
        text.append("  ⚡ injected", style="bold magenta")
    if row.degraded:
        text.append("  fallback", style="yellow")
    return text


def _span_lines(row: Row) -> list[Text]:
    lines = []
    if row.chain:
        chain = Text("attempts: ", style="dim")
        for i, step in enumerate(row.chain):
            if i:
                chain.append(" → ", style="dim")
            style = "red" if step.kind.startswith(("failed", "end-error")) else \
                "green" if step.kind in ("ok", "fallback") else "yellow"
            chain.append(clean(step.text), style=style)
        lines.append(chain)
    lines += [Text(f"{event.name.removeprefix('shockproof.')}: {clean(event_summary(event))}",
                   style="magenta" if "fault" in event.name else "cyan")
              for event in row.span.events
              if event.name.startswith("shockproof.") and event.name not in CHAIN_EVENTS]
    for log in row.logs:
        record = log.record
        style = "red" if record.level in ("error", "critical") else \
            "yellow" if record.level.startswith("warn") else "dim"
        fields = " ".join(f"{k}={clean(v)}" for k, v in log.fields[:8])
        lines.append(Text(f"log {record.level} {clean(record.event)} {fields}".rstrip(), style=style))
    return lines


def occurrence_line(occ: Occurrence, *, color: bool) -> Text:
    """One line of ``tail``: when, kind, error, route, trace, how often, injected."""
    text = Text(fmt.clock(occ.first_ns) + "  ", style="dim" if color else "")
    text.append_text(kind_text(occ.kind) if color else Text((occ.kind or "error").upper()))
    text.append(f"  {clean(occ.error_type or 'error')}", style="bold" if color else "")
    if occ.message:
        text.append(": " + clean(fmt.truncate(occ.message, 160)))
    text.append(f"  {clean(occ.route or '-')}  trace {occ.trace_id}")
    if occ.count > 1:
        text.append(f"  x{occ.count}")
    if occ.injected:
        text.append(f"  [injected {occ.injected}]", style="magenta" if color else "")
    return text
