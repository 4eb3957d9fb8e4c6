"""A small benchmark harness: medians of interleaved rounds, ratios measured in one run.

Per-call timings: every case is calibrated once so that a round takes about
``round_time`` seconds, then the cases run round-robin (``rounds`` rounds, the
starting case rotating each round) so that a burst of load from other processes
hits all of them alike. A case's figure is the *median* per-call time over its
rounds. As in :mod:`timeit`, the garbage collector is off during a round and the
loop overhead is included in every figure (it flatters nobody: ratios against
the bare call are conservative).

Throughput: ``threads`` threads released together by a barrier each make a fixed
number of calls; calls per second is the median over rounds.

Results print as a table, and are written as JSON and Markdown to
``bench/results/<name>.json`` / ``.md`` with the machine they ran on. Targets
report PASS or MISS; they never fail the run (benchmarks report, tests assert).
"""

from __future__ import annotations

import gc
import itertools
import json
import os
import platform
import statistics
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

#: Nanoseconds from an arbitrary origin (``time.perf_counter_ns`` by default).
Timer = Callable[[], int]
Case = Callable[[], object]

RESULTS_DIR = Path(__file__).resolve().parent / "results"
NS = 1_000_000_000
NS_PER_CALL = "ns/call"
CALLS_PER_S = "calls/s"


@dataclass(frozen=True, slots=True)
class Load:
    """One throughput case: ``call`` made ``calls_per_thread`` times by each thread."""

    call: Case
    calls_per_thread: int


@dataclass(frozen=True, slots=True)
class Result:
    """One measured case: the median of its rounds, in ``unit``."""

    section: str
    name: str
    value: float
    unit: str
    rounds: tuple[float, ...]
    per_round: int
    baseline: str | None = None


@dataclass(frozen=True, slots=True)
class Target:
    """A ratio of two results (numerator / denominator) and the bound it should meet."""

    label: str
    numerator: str
    denominator: str
    value: float
    limit: float
    at_most: bool

    @property
    def passed(self) -> bool:
        return self.value <= self.limit if self.at_most else self.value >= self.limit

    @property
    def verdict(self) -> str:
        return "PASS" if self.passed else "MISS"

    @property
    def bound(self) -> str:
        return f"{'<=' if self.at_most else '>='} {fmt_ratio(self.limit)}"


# -- pure helpers -----------------------------------------------------------------------


def median(values: Iterable[float]) -> float:
    """The median (mean of the middle two for an even count)."""
    data = list(values)
    if not data:
        raise ValueError("median of no values")
    return float(statistics.median(data))


def ratio(numerator: float, denominator: float) -> float:
    """``numerator / denominator``; infinite when the denominator is zero and the numerator not."""
    if denominator == 0:
        return 0.0 if numerator == 0 else float("inf")
    return numerator / denominator


def fmt_ratio(value: float) -> str:
    """Three significant digits with an ``x``: ``0.0424x``, ``16.1x``, ``379x``."""
    if value == float("inf"):
        return "inf"
    if value >= 1000:
        return f"{value:,.0f}x"
    return f"{value:.3g}x"


def fmt_value(value: float, unit: str) -> str:
    """Per-call times with one decimal below 100 ns, whole numbers above; rates as integers."""
    if unit == NS_PER_CALL and value < 100:
        return f"{value:.1f}"
    return f"{value:,.0f}"


def run_round(fn: Case, number: int, timer: Timer) -> int:
    """Nanoseconds taken by ``number`` calls of ``fn`` (garbage collector off, as in timeit)."""
    loop = itertools.repeat(None, number)
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        start = timer()
        for _ in loop:
            fn()
        return timer() - start
    finally:
        if was_enabled:
            gc.enable()


def calibrate(fn: Case, timer: Timer, round_time: float, max_number: int = 10_000_000) -> int:
    """Calls per round so that a round takes about ``round_time`` seconds (1 <= n <= max_number).

    Tries 1, 10, 100... calls until a try takes a tenth of the round, then scales.
    """
    target = round_time * NS
    number = 1
    while True:
        elapsed = run_round(fn, number, timer)
        if elapsed * 10 >= target or number >= max_number:
            break
        number = min(number * 10, max_number)
    scaled = round(number * target / elapsed) if elapsed > 0 else max_number
    return max(1, min(max_number, scaled))


def run_threads(call: Case, threads: int, calls_per_thread: int, timer: Timer) -> int:
    """Nanoseconds for ``threads`` threads, released together, to make their calls."""
    barrier = threading.Barrier(threads + 1)
    errors: list[BaseException] = []

    def worker() -> None:
        barrier.wait()
        try:
            for _ in range(calls_per_thread):
                call()
        except BaseException as exc:  # reported by the caller, after the join
            errors.append(exc)

    workers = [threading.Thread(target=worker, daemon=True) for _ in range(threads)]
    for w in workers:
        w.start()
    barrier.wait()
    start = timer()
    for w in workers:
        w.join()
    elapsed = timer() - start
    if errors:
        raise RuntimeError(f"{len(errors)} benchmark thread(s) failed") from errors[0]
    return elapsed


def rotated(names: Sequence[str], offset: int) -> list[str]:
    """``names`` starting at ``offset`` (mod len), wrapping around."""
    k = offset % len(names) if names else 0
    return [*names[k:], *names[:k]]


def machine_info(now: datetime | None = None) -> dict[str, Any]:
    """Where and when the figures were taken."""
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    return {
        "python": sys.version.split()[0],
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "load_average": [round(x, 2) for x in load] if load else None,
        "date": (now or datetime.now(UTC)).isoformat(timespec="seconds"),
    }


# -- the bench --------------------------------------------------------------------------


class Bench:
    """Collects results and targets for one benchmark module, then reports them."""

    def __init__(
        self,
        name: str,
        *,
        rounds: int = 7,
        round_time: float = 0.15,
        max_number: int = 10_000_000,
        timer: Timer = time.perf_counter_ns,
        out_dir: Path = RESULTS_DIR,
        stream: TextIO | None = None,
    ) -> None:
        if rounds < 1 or round_time <= 0 or max_number < 1:
            raise ValueError("rounds >= 1, round_time > 0 and max_number >= 1 are required")
        self.name = name
        self.rounds = rounds
        self.round_time = round_time
        self.max_number = max_number
        self.timer = timer
        self.out_dir = out_dir
        self.stream = stream if stream is not None else sys.stdout
        self.results: dict[str, Result] = {}
        self.targets: list[Target] = []
        self.notes: list[str] = []

    def say(self, text: str) -> None:
        print(text, file=self.stream, flush=True)

    # -- measuring ----------------------------------------------------------------------

    def time_calls(self, section: str, cases: Mapping[str, Case], *,
                   baseline: str | None = None) -> dict[str, Result]:
        """Median ns per call of each case, rounds interleaved across the cases."""
        self._check_new(section, cases, baseline)
        names = list(cases)
        self.say(f"-- {section}: {len(names)} cases x {self.rounds} rounds")
        numbers = {n: calibrate(cases[n], self.timer, self.round_time, self.max_number) for n in names}
        per_call: dict[str, list[float]] = {n: [] for n in names}
        for r in range(self.rounds):
            for n in rotated(names, r):
                per_call[n].append(run_round(cases[n], numbers[n], self.timer) / numbers[n])
        return self._store(section, per_call, NS_PER_CALL, numbers, baseline)

    def throughput(self, section: str, cases: Mapping[str, Load], *, threads: int,
                   rounds: int = 5, baseline: str | None = None) -> dict[str, Result]:
        """Median calls per second of each case with ``threads`` threads, rounds interleaved."""
        self._check_new(section, cases, baseline)
        names = list(cases)
        self.say(f"-- {section}: {len(names)} cases x {rounds} rounds, {threads} threads")
        rates: dict[str, list[float]] = {n: [] for n in names}
        for r in range(rounds):
            for n in rotated(names, r):
                load = cases[n]
                elapsed = run_threads(load.call, threads, load.calls_per_thread, self.timer)
                rates[n].append(ratio(threads * load.calls_per_thread * NS, elapsed))
        totals = {n: threads * cases[n].calls_per_thread for n in names}
        return self._store(section, rates, CALLS_PER_S, totals, baseline)

    def record(self, section: str, samples: Mapping[str, list[float]], *, unit: str,
               per_round: int, baseline: str | None = None) -> dict[str, Result]:
        """Results (the median of each case's rounds) for samples measured elsewhere."""
        self._check_new(section, samples, baseline)
        return self._store(section, samples, unit, dict.fromkeys(samples, per_round), baseline)

    def note(self, text: str) -> None:
        """A line printed under the tables and kept in the Markdown and JSON."""
        self.notes.append(text)

    def compare(self, label: str, numerator: str, denominator: str, *,
                at_most: float | None = None, at_least: float | None = None) -> Target:
        """Record ``numerator / denominator`` against a bound (exactly one of the two)."""
        if (at_most is None) == (at_least is None):
            raise ValueError("give exactly one of at_most= or at_least=")
        value = ratio(self.results[numerator].value, self.results[denominator].value)
        limit = at_most if at_most is not None else at_least
        target = Target(label, numerator, denominator, value, float(limit or 0.0), at_most is not None)
        self.targets.append(target)
        return target

    def versus(self, result: Result) -> float | None:
        """``result`` over its section's baseline, if it has one."""
        if result.baseline is None:
            return None
        return ratio(result.value, self.results[result.baseline].value)

    def _check_new(self, section: str, cases: Mapping[str, object], baseline: str | None) -> None:
        taken = [n for n in cases if n in self.results]
        if section in self.sections():
            raise ValueError(f"section {section!r} already measured")
        if taken:
            raise ValueError(f"results already recorded for {taken}")
        if baseline is not None and baseline not in cases:
            raise ValueError(f"baseline {baseline!r} is not one of the cases")

    def _store(self, section: str, samples: Mapping[str, list[float]], unit: str,
               per_round: Mapping[str, int], baseline: str | None) -> dict[str, Result]:
        out = {
            n: Result(section, n, median(v), unit, tuple(v), per_round[n], baseline)
            for n, v in samples.items()
        }
        self.results.update(out)
        return out

    # -- reporting ----------------------------------------------------------------------

    def sections(self) -> dict[str, list[Result]]:
        grouped: dict[str, list[Result]] = {}
        for result in self.results.values():
            grouped.setdefault(result.section, []).append(result)
        return grouped

    def text(self) -> str:
        """The console table: every result, then every target with PASS or MISS."""
        lines: list[str] = []
        width = max((len(n) for n in self.results), default=10) + 2
        for section, results in self.sections().items():
            lines += ["", section]
            for r in results:
                vs = self.versus(r)
                rel = f"{fmt_ratio(vs):>10} vs {r.baseline}" if vs is not None else ""
                lines.append(f"  {r.name:<{width}}{fmt_value(r.value, r.unit):>14} {r.unit:<8}{rel}")
        if self.targets:
            lines += ["", "targets"]
            label_w = max(len(t.label) for t in self.targets) + 2
            for t in self.targets:
                lines.append(f"  {t.label:<{label_w}}{fmt_ratio(t.value):>10}  (target {t.bound})  {t.verdict}")
        lines += [f"  note: {n}" for n in self.notes]
        return "\n".join(lines)

    def markdown(self, machine: Mapping[str, Any]) -> str:
        """The figures as Markdown tables, ready to paste into the README."""
        out = [f"<!-- bench/{self.name}: `python -m bench {self.name}` -->",
               f"Python {machine['python']} on {machine['cpu_count']} CPUs "
               f"({machine['platform']}, load average {_load(machine)}), {machine['date']}; "
               f"medians of {self.rounds} interleaved rounds.", ""]
        for section, results in self.sections().items():
            base = results[0].baseline
            head = ["case", results[0].unit] + ([f"vs {base}"] if base else [])
            rows = [[r.name, fmt_value(r.value, r.unit)]
                    + ([fmt_ratio(v)] if (v := self.versus(r)) is not None else []) for r in results]
            out += [f"**{section}**", "", *_md_table(head, rows, right=range(1, len(head))), ""]
        if self.targets:
            rows = [[t.label, fmt_ratio(t.value), t.bound, t.verdict] for t in self.targets]
            out += ["**targets**", "", *_md_table(["ratio", "measured", "target", ""], rows, right=(1, 2)), ""]
        out += [f"- {n}" for n in self.notes]
        return "\n".join(out).rstrip() + "\n"

    def to_json(self, machine: Mapping[str, Any]) -> dict[str, Any]:
        return {
            "name": self.name,
            "machine": dict(machine),
            "settings": {"rounds": self.rounds, "round_time": self.round_time},
            "results": [asdict(r) | {"vs_baseline": self.versus(r)} for r in self.results.values()],
            "targets": [asdict(t) | {"verdict": t.verdict} for t in self.targets],
            "notes": list(self.notes),
        }

    def report(self, now: datetime | None = None) -> tuple[Path, Path]:
        """Print the tables, write ``<out_dir>/<name>.json`` and ``.md``; returns both paths."""
        machine = machine_info(now)
        md = self.markdown(machine)
        self.say(self.text())
        self.say("\nMarkdown (for the README):\n")
        self.say(md)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        json_path = self.out_dir / f"{self.name}.json"
        md_path = self.out_dir / f"{self.name}.md"
        json_path.write_text(json.dumps(self.to_json(machine), indent=2) + "\n", encoding="utf-8")
        md_path.write_text(md, encoding="utf-8")
        self.say(f"written: {json_path} and {md_path.name}")
        return json_path, md_path


def _load(machine: Mapping[str, Any]) -> str:
    load = machine.get("load_average")
    return " ".join(f"{x:.2f}" for x in load) if load else "unknown"


def _md_table(head: Sequence[str], rows: Sequence[Sequence[str]], right: Iterable[int]) -> list[str]:
    """A Markdown table with padded columns; columns in ``right`` are right-aligned."""
    aligned = set(right)
    widths = [max(len(str(c)) for c in col) for col in zip(head, *rows, strict=False)]
    widths = [max(w, 3) for w in widths]

    def line(cells: Sequence[str]) -> str:
        padded = [c.rjust(w) if i in aligned else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True))]
        return "| " + " | ".join(padded) + " |"

    rule = ["-" * (w - 1) + ":" if i in aligned else "-" * w for i, w in enumerate(widths)]
    return [line(head), line(rule), *(line(r) for r in rows)]
