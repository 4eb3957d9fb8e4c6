"""What an experiment shows while it runs: a rich live panel on a terminal, plain
lines otherwise (CI logs, pipes), nothing in tests that ask for silence."""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import Any, Protocol, TextIO

from ._experiment_load import LiveStats


class Progress(Protocol):
    """Receives the run's phases, activity results and live load figures."""

    def phase(self, name: str) -> None: ...

    def activity(self, phase: str, name: str, status: str, detail: str = "") -> None: ...

    def stats(self, live: LiveStats) -> None: ...

    def close(self) -> None: ...


class NullProgress:
    """Shows nothing."""

    def phase(self, name: str) -> None:
        pass

    def activity(self, phase: str, name: str, status: str, detail: str = "") -> None:
        pass

    def stats(self, live: LiveStats) -> None:
        pass

    def close(self) -> None:
        pass


def describe(live: LiveStats) -> str:
    """``40 requests, 97.5% ok, p50 12 ms, p99 80 ms``."""
    rate = "-" if live.success_rate is None else f"{live.success_rate:.1%}"
    return f"{live.sent} requests, {rate} ok, p50 {_ms(live.p50)}, p99 {_ms(live.p99)}"


def _ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000:.0f} ms"


class PlainProgress:
    """One line per phase and activity; a load line at most every ``every`` seconds."""

    def __init__(self, stream: TextIO, *, every: float = 2.0) -> None:
        self._stream, self._every = stream, every
        self._started = time.monotonic()
        self._last_line, self._last_sent = 0.0, 0
        self._lock = threading.Lock()

    def _line(self, text: str) -> None:
        with self._lock:
            print(f"[{time.monotonic() - self._started:7.1f}s] {text}", file=self._stream, flush=True)

    def phase(self, name: str) -> None:
        self._line(f"== {name}")

    def activity(self, phase: str, name: str, status: str, detail: str = "") -> None:
        self._line(f"{phase}: {name} ... {status}" + (f" ({detail})" if detail else ""))

    def stats(self, live: LiveStats) -> None:
        now = time.monotonic()
        if live.sent != self._last_sent and now - self._last_line >= self._every:
            self._last_line, self._last_sent = now, live.sent
            self._line(f"load: {describe(live)}")

    def close(self) -> None:
        pass


class RichProgress:
    """A live panel: phase, recent activities, requests, success rate, p50/p99."""

    def __init__(self, stream: TextIO, title: str) -> None:
        from rich.console import Console
        from rich.live import Live

        self._title = title
        self._phase = "starting"
        self._recent: deque[str] = deque(maxlen=6)
        self._live_stats = LiveStats(0, 0, None, None)
        self._live = Live(self._render(), console=Console(file=stream), refresh_per_second=4, transient=False)
        self._live.start()

    def _render(self) -> Any:
        from rich.panel import Panel
        from rich.table import Table

        table = Table.grid(padding=(0, 2))
        table.add_column(style="bold")
        table.add_column()
        stats = self._live_stats
        rate = "-" if stats.success_rate is None else f"{stats.success_rate:.1%}"
        for key, value in (("phase", self._phase), ("requests", str(stats.sent)), ("success", rate),
                           ("p50 / p99", f"{_ms(stats.p50)} / {_ms(stats.p99)}")):
            table.add_row(key, value)
        for line in self._recent:
            table.add_row("", line)
        return Panel(table, title=self._title)

    def _refresh(self) -> None:
        self._live.update(self._render())

    def phase(self, name: str) -> None:
        self._phase = name
        self._refresh()

    def activity(self, phase: str, name: str, status: str, detail: str = "") -> None:
        from rich.markup import escape

        colour = {"succeeded": "green", "failed": "red"}.get(status, "yellow")
        text = escape(f"{phase}: {name}" + (f" ({detail})" if detail else ""))
        self._recent.append(f"[{colour}]{status:>9}[/] {text}")
        self._refresh()

    def stats(self, live: LiveStats) -> None:
        self._live_stats = live
        self._refresh()

    def close(self) -> None:
        self._live.stop()


def progress_for(stream: TextIO, title: str) -> Progress:
    """Rich on a terminal, plain lines otherwise."""
    isatty = getattr(stream, "isatty", None)
    return RichProgress(stream, title) if isatty is not None and isatty() else PlainProgress(stream)
