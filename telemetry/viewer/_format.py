"""Small formatting helpers shared by the web pages and the terminal views."""

from __future__ import annotations

import time
from datetime import datetime
from typing import Final

from telemetry.query import KINDS

_NS: Final = 1_000_000_000

#: Time ranges offered by the filters: name -> seconds back from now (None: everything).
RANGES: Final[dict[str, int | None]] = {
    "15m": 15 * 60, "1h": 3600, "6h": 6 * 3600, "24h": 24 * 3600, "7d": 7 * 86400, "all": None,
}
RANGE_LABELS: Final = {"15m": "last 15 minutes", "1h": "last hour", "6h": "last 6 hours",
                       "24h": "last 24 hours", "7d": "last 7 days", "all": "all time"}
#: Units accepted by ``--since`` on the command line: 90s, 15m, 2h, 7d.
_UNITS: Final = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def duration(ns: int | float) -> str:
    """A human duration: ``850 µs``, ``12.3 ms``, ``1.24 s``, ``2 min 3 s``."""
    value = max(0.0, float(ns))
    if value < 1_000_000:
        return f"{value / 1000:.0f} µs"
    if value < 100_000_000:
        return f"{value / 1e6:.3g} ms"
    if value < 60 * _NS:
        return f"{value / 1e9:.3g} s" if value >= _NS else f"{value / 1e6:.0f} ms"
    minutes, seconds = divmod(int(value // _NS), 60)
    if minutes < 60:
        return f"{minutes} min {seconds} s"
    return f"{minutes // 60} h {minutes % 60} min"


def seconds(value: float) -> str:
    """A duration given in seconds (retry waits, deadlines)."""
    return duration(value * 1e9)


def timestamp(ns: int) -> str:
    """Local date and time to the second: ``2026-11-24 16:17:05``."""
    return datetime.fromtimestamp(ns / 1e9).strftime("%Y-%m-%d %H:%M:%S")


def clock(ns: int) -> str:
    """Local time of day to the millisecond: ``16:17:05.123``."""
    moment = datetime.fromtimestamp(ns / 1e9)
    return moment.strftime("%H:%M:%S.") + f"{moment.microsecond // 1000:03d}"


def iso(ns: int) -> str:
    """ISO 8601 with the local offset (for ``<time datetime=...>``)."""
    return datetime.fromtimestamp(ns / 1e9).astimezone().isoformat(timespec="milliseconds")


def ago(ns: int, now_ns: int | None = None) -> str:
    """How long ago: ``just now``, ``42 s ago``, ``5 min ago``, ``3 h ago``, ``2 d ago``."""
    delta = ((now_ns if now_ns is not None else time.time_ns()) - ns) / 1e9
    if delta < 1:
        return "just now"
    for limit, unit, size in ((60, "s", 1), (3600, "min", 60), (86400, "h", 3600)):
        if delta < limit:
            return f"{int(delta // size)} {unit} ago"
    return f"{int(delta // 86400)} d ago"


def short_id(trace_id: str) -> str:
    """The first 12 hex digits of a trace id (enough to tell traces apart on a page)."""
    return trace_id[:12]


def parse_range(name: str | None) -> int | None:
    """Seconds back for a range name from :data:`RANGES` (``None``: all time)."""
    if name is None or name == "":
        return None
    if name not in RANGES:
        raise ValueError(f"range must be one of {', '.join(RANGES)}, not {name!r}")
    return RANGES[name]


def parse_since(text: str) -> int:
    """Seconds in ``90s``, ``15m``, ``2h`` or ``7d`` (a bare number is seconds)."""
    raw = text.strip().lower()
    unit = _UNITS.get(raw[-1:], 0)
    number = raw[:-1] if unit else raw
    if not unit:
        unit = 1
    try:
        amount = float(number)
    except ValueError:
        raise ValueError(f"expected a duration such as 90s, 15m, 2h or 7d, not {text!r}") from None
    if amount <= 0:
        raise ValueError(f"the duration must be positive, not {text!r}")
    return int(amount * unit)


def check_kind(kind: str | None) -> str | None:
    """``kind`` when it is an error kind (or empty: None); ValueError otherwise."""
    if not kind:
        return None
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}, not {kind!r}")
    return kind


def truncate(text: str | None, limit: int = 160) -> str:
    """``text`` cut to ``limit`` characters with an ellipsis (None: empty)."""
    if not text:
        return ""
    return text if len(text) <= limit else text[: limit - 1] + "…"
