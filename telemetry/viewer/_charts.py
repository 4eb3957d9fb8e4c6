"""Geometry of the small server-rendered SVG charts: trend sparklines, splits, circuit timelines.

Templates draw these as ``<rect>`` elements with classes (colours come from the
stylesheet: the Content-Security-Policy allows no inline styles), so no chart
needs a script. Every number here is a plain float in the SVG's ``viewBox``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from telemetry.query import CircuitEvent, Trend

from . import _format as fmt

SPARK_W: Final = 96.0
SPARK_H: Final = 24.0
TIMELINE_W: Final = 1000.0


@dataclass(frozen=True, slots=True)
class Bar:
    """One bucket of a sparkline: the real part below, the injected part stacked on it."""

    x: float
    width: float
    real_y: float
    real_h: float
    injected_y: float
    injected_h: float
    title: str


@dataclass(frozen=True, slots=True)
class Spark:
    bars: tuple[Bar, ...]
    total: int
    injected: int
    title: str
    width: float = SPARK_W
    height: float = SPARK_H


def bucket_labels(trend: Trend) -> tuple[str, ...]:
    """When each bucket of ``trend`` starts (shared by every trend of the same window)."""
    return tuple(fmt.timestamp(trend.since_ns + i * trend.bucket_ns)
                 for i in range(len(trend.counts)))


def sparkline(trend: Trend, labels: Sequence[str] | None = None) -> Spark:
    """Bars for each bucket of ``trend``, scaled to the busiest bucket (``labels``: each
    bucket's start, from :func:`bucket_labels`)."""
    labels = labels if labels is not None else bucket_labels(trend)
    n = len(trend.counts)
    peak = max(trend.counts, default=0) or 1
    step = SPARK_W / max(1, n)
    bars = []
    for i, (count, injected) in enumerate(zip(trend.counts, trend.injected, strict=True)):
        if not count:
            continue
        total_h = max(1.5, SPARK_H * count / peak)
        injected_h = total_h * injected / count
        real_h = total_h - injected_h
        bars.append(Bar(round(i * step + 0.5, 2), round(max(1.0, step - 1), 2),
                        round(SPARK_H - real_h, 2), round(real_h, 2),
                        round(SPARK_H - total_h, 2), round(injected_h, 2),
                        f"{labels[i]}: {count} ({injected} injected)"))
    total, injected = sum(trend.counts), sum(trend.injected)
    title = (f"{total} occurrence(s), {injected} injected, from {fmt.timestamp(trend.since_ns)} "
             f"to {fmt.timestamp(trend.until_ns)}")
    return Spark(tuple(bars), total, injected, title)


@dataclass(frozen=True, slots=True)
class Split:
    """Real vs injected occurrences as two bar widths out of 100."""

    real: float
    injected: float


def split(real: int, injected: int) -> Split:
    total = real + injected
    if total <= 0:
        return Split(0.0, 0.0)
    return Split(round(100 * real / total, 2), round(100 * injected / total, 2))


@dataclass(frozen=True, slots=True)
class Segment:
    """A stretch of time a circuit spent in one state."""

    x: float
    width: float
    state: str
    title: str


@dataclass(frozen=True, slots=True)
class Timeline:
    segments: tuple[Segment, ...]
    since_ns: int
    until_ns: int
    ticks: tuple[tuple[float, str], ...]


def timeline(history: Sequence[CircuitEvent], since_ns: int, until_ns: int) -> Timeline:
    """A circuit's states over ``[since_ns, until_ns)`` from its state changes (oldest first)."""
    span = max(1, until_ns - since_ns)

    def x(t: int) -> float:
        return round(TIMELINE_W * min(max(t - since_ns, 0), span) / span, 2)

    segments = []
    state = history[0].old_state if history and history[0].old_state else "closed"
    at = since_ns
    for change in history:
        if change.time_ns > at:
            segments.append(_segment(x(at), x(change.time_ns), state, at, change.time_ns))
        state, at = change.new_state, max(at, change.time_ns)
    segments.append(_segment(x(at), TIMELINE_W, state, at, until_ns))
    ticks = tuple((TIMELINE_W * i / 4, fmt.timestamp(since_ns + span * i // 4)) for i in range(5))
    return Timeline(tuple(s for s in segments if s.width > 0), since_ns, until_ns, ticks)


def _segment(start_x: float, end_x: float, state: str, start: int, end: int) -> Segment:
    return Segment(start_x, round(end_x - start_x, 2), state,
                   f"{state} from {fmt.timestamp(start)} for {fmt.duration(max(0, end - start))}")
