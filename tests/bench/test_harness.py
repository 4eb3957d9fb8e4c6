"""The benchmark harness's logic, driven by a fake timer (no real timing is asserted)."""

from __future__ import annotations

import io
import json
import threading
from datetime import UTC, datetime
from pathlib import Path

import pytest

from bench import Bench, Load, calibrate, median, ratio
from bench.__main__ import available
from bench.__main__ import main as bench_main
from bench._harness import fmt_ratio, machine_info, rotated, run_round, run_threads


class FakeTimer:
    """Nanoseconds that move only when a case says so (``cost``) or per read (``tick``)."""

    def __init__(self, tick: int = 0, spikes: dict[int, int] | None = None) -> None:
        self.now = 0
        self.tick = tick
        self.reads = 0
        self.spikes = spikes or {}

    def __call__(self) -> int:
        value = self.now + self.spikes.get(self.reads, 0)
        self.reads += 1
        self.now += self.tick
        return value

    def case(self, cost: int) -> Load:
        """A case (and its load) whose every call takes ``cost`` fake nanoseconds."""
        def call() -> None:
            self.now += cost
        return Load(call, 1)


def make_bench(timer: FakeTimer, tmp_path: Path, rounds: int = 7, round_time: float = 0.15) -> Bench:
    return Bench("fake", rounds=rounds, round_time=round_time, timer=timer, out_dir=tmp_path,
                 stream=io.StringIO())


def test_median_of_odd_count_is_the_middle_value() -> None:
    """The median of an odd number of values is the middle one once sorted."""
    assert median([5.0, 1.0, 9.0, 3.0, 7.0]) == 5.0


def test_median_of_even_count_is_the_mean_of_the_middle_two() -> None:
    """The median of an even number of values averages the middle pair."""
    assert median([4.0, 1.0, 3.0, 10.0]) == 3.5


def test_median_of_nothing_is_an_error() -> None:
    """Asking for the median of no rounds is a bug in the caller."""
    with pytest.raises(ValueError, match="no values"):
        median([])


def test_ratio_divides_numerator_by_denominator() -> None:
    """A ratio is numerator over denominator."""
    assert ratio(30.0, 600.0) == pytest.approx(0.05)


def test_ratio_over_a_zero_denominator_is_infinite() -> None:
    """Dividing a positive figure by zero gives infinity, not an exception."""
    assert ratio(1.0, 0.0) == float("inf")


def test_ratio_formats_with_three_significant_digits() -> None:
    """Ratios print as 0.0424x, 16.1x, 1,234x."""
    assert [fmt_ratio(v) for v in (0.04242, 16.14, 1234.4)] == ["0.0424x", "16.1x", "1,234x"]


def test_run_round_measures_all_calls_of_the_round() -> None:
    """A round's time covers exactly ``number`` calls."""
    timer = FakeTimer()
    assert run_round(timer.case(7).call, 30, timer) == 210


def test_calibration_scales_a_round_to_the_round_time() -> None:
    """100 ns calls and a 10 ms round give 100,000 calls per round."""
    timer = FakeTimer()
    assert calibrate(timer.case(100).call, timer, round_time=0.01) == 100_000


def test_calibration_never_goes_below_one_call() -> None:
    """A call slower than a whole round still runs once per round."""
    timer = FakeTimer()
    assert calibrate(timer.case(5_000_000_000).call, timer, round_time=0.1) == 1


def test_calibration_never_goes_above_max_number() -> None:
    """A call that takes no measurable time is capped at ``max_number`` calls."""
    timer = FakeTimer()
    assert calibrate(timer.case(0).call, timer, round_time=0.1, max_number=1000) == 1000


def test_time_calls_reports_exact_per_call_times_and_ratio_to_baseline(tmp_path: Path) -> None:
    """Cases of 100 and 300 fake ns per call report 100 and 300, and 3x the baseline."""
    timer = FakeTimer()
    bench = make_bench(timer, tmp_path, rounds=3, round_time=0.001)
    got = bench.time_calls("s", {"base": timer.case(100).call, "slow": timer.case(300).call},
                           baseline="base")
    assert (got["base"].value, got["slow"].value, bench.versus(got["slow"])) == (100.0, 300.0, 3.0)


def test_time_calls_takes_the_median_so_one_slow_round_does_not_count(tmp_path: Path) -> None:
    """A spike of 10 us in the first round leaves the median per-call time unchanged."""
    # calibration: 1 call of 100 ns reaches a tenth of a 1 us round -> 10 calls per round;
    # reads 0-1 are calibration, reads 2-3 the first round: the spike lands on read 3.
    timer = FakeTimer(spikes={3: 10_000})
    bench = make_bench(timer, tmp_path, rounds=5, round_time=0.000001)
    result = bench.time_calls("s", {"case": timer.case(100).call})["case"]
    assert (result.rounds[0], result.value, result.per_round) == (1100.0, 100.0, 10)


def test_rounds_start_at_the_next_case_each_time() -> None:
    """Round r runs the cases in order starting from case r (mod the number of cases)."""
    assert [rotated(["a", "b", "c"], r) for r in range(4)] == [
        ["a", "b", "c"], ["b", "c", "a"], ["c", "a", "b"], ["a", "b", "c"]]


def test_throughput_counts_every_call_of_every_thread_per_second(tmp_path: Path) -> None:
    """4 threads x 5 calls in one fake second is 20 calls/s, and all 20 calls ran."""
    timer = FakeTimer(tick=1_000_000_000)
    made: list[int] = []
    lock = threading.Lock()

    def call() -> None:
        with lock:
            made.append(1)

    bench = make_bench(timer, tmp_path)
    result = bench.throughput("t", {"c": Load(call, 5)}, threads=4, rounds=1)["c"]
    assert (result.value, len(made)) == (20.0, 20)


def test_a_failing_thread_fails_the_measurement() -> None:
    """An exception in a benchmark thread is raised to the caller, not lost."""
    def call() -> None:
        raise ConnectionError("boom")

    with pytest.raises(RuntimeError, match="thread"):
        run_threads(call, 2, 1, FakeTimer())


def test_compare_at_most_passes_below_and_misses_above(tmp_path: Path) -> None:
    """A ratio under an upper bound passes; over it, it misses."""
    timer = FakeTimer()
    bench = make_bench(timer, tmp_path, rounds=1, round_time=0.001)
    bench.time_calls("s", {"a": timer.case(10).call, "b": timer.case(100).call})
    verdicts = [bench.compare("x", "a", "b", at_most=0.2).verdict,
                bench.compare("y", "a", "b", at_most=0.05).verdict]
    assert verdicts == ["PASS", "MISS"]


def test_compare_at_least_passes_above_and_misses_below(tmp_path: Path) -> None:
    """A ratio over a lower bound passes; under it, it misses."""
    timer = FakeTimer()
    bench = make_bench(timer, tmp_path, rounds=1, round_time=0.001)
    bench.time_calls("s", {"a": timer.case(10).call, "b": timer.case(100).call})
    verdicts = [bench.compare("x", "b", "a", at_least=10).verdict,
                bench.compare("y", "b", "a", at_least=11).verdict]
    assert verdicts == ["PASS", "MISS"]


def test_compare_needs_exactly_one_bound(tmp_path: Path) -> None:
    """Giving both bounds (or neither) is a usage error."""
    bench = make_bench(FakeTimer(), tmp_path)
    with pytest.raises(ValueError, match="exactly one"):
        bench.compare("x", "a", "b", at_most=1, at_least=1)


def test_a_case_name_is_measured_only_once(tmp_path: Path) -> None:
    """Reusing a result name would make ratios ambiguous, so it is refused."""
    timer = FakeTimer()
    bench = make_bench(timer, tmp_path, rounds=1, round_time=0.001)
    bench.time_calls("s", {"a": timer.case(10).call})
    with pytest.raises(ValueError, match="already"):
        bench.time_calls("t", {"a": timer.case(10).call})


def test_samples_measured_elsewhere_are_recorded_as_medians_once(tmp_path: Path) -> None:
    """record() keeps each case's median against its baseline, and refuses a name twice."""
    bench = make_bench(FakeTimer(), tmp_path, rounds=1, round_time=0.001)
    out = bench.record("served", {"a": [3.0, 1.0, 2.0], "b": [8.0, 4.0, 6.0]}, unit="req/s",
                       per_round=10, baseline="b")
    assert (out["a"].value, out["b"].value, bench.versus(out["a"])) == (2.0, 6.0, 1 / 3)
    with pytest.raises(ValueError, match="already"):
        bench.record("again", {"a": [1.0]}, unit="req/s", per_round=1)


def test_report_writes_json_and_markdown_with_machine_info(tmp_path: Path) -> None:
    """report() writes <name>.json and <name>.md holding the figures, verdicts and machine."""
    timer = FakeTimer()
    bench = make_bench(timer, tmp_path, rounds=1, round_time=0.001)
    bench.time_calls("s", {"a": timer.case(10).call, "b": timer.case(100).call}, baseline="b")
    bench.compare("a / b", "a", "b", at_most=0.5)
    json_path, md_path = bench.report(now=datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC))
    data = json.loads(json_path.read_text())
    assert (data["machine"]["date"], [r["value"] for r in data["results"]],
            data["targets"][0]["verdict"]) == ("2030-01-02T03:04:05+00:00", [10.0, 100.0], "PASS")
    assert "| a / b " in md_path.read_text()
    assert md_path.parent == tmp_path


def test_machine_info_names_python_cpus_and_date() -> None:
    """Results say which Python, how many CPUs, and when."""
    info = machine_info(datetime(2030, 1, 2, tzinfo=UTC))
    assert {"python", "cpu_count", "date"} <= info.keys()
    assert info["date"].startswith("2030-01-02")


def test_bench_modules_are_discovered_by_their_file_name() -> None:
    """``bench/bench_resilience.py`` is listed as ``resilience``."""
    assert "resilience" in available()


def test_an_unknown_benchmark_name_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    """``python -m bench nope`` exits with a usage error listing the available ones."""
    with pytest.raises(SystemExit) as exc:
        bench_main(["nope"])
    assert exc.value.code == 2
    assert "resilience" in capsys.readouterr().err
