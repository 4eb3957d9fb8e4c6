"""shockproof-traces errors / show / tail, run in-process (plain text when not a TTY, and --json)."""

from __future__ import annotations

import io
import json
import sys
import threading
import time
from pathlib import Path

import pytest

from telemetry import _semconv as sc
from telemetry.viewer import main
from telemetry.viewer._cli import default_store

from .conftest import span, write
from .scenario import Scenario

ANSI = "\x1b["


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    status = main(list(args))
    return status, capsys.readouterr().out


def test_errors_lists_every_kind_as_plain_text(capsys: pytest.CaptureFixture[str],
                                               scenario: Scenario) -> None:
    """The ranked table names each kind and error type, without escape codes off a TTY."""
    status, out = run(capsys, "errors", "--store", str(scenario.store))
    assert status == 0
    for word in ("LOGIC", "VALIDATION", "NETWORK", "IO", "ZeroDivisionError", "PermissionError"):
        assert word in out
    assert ANSI not in out


def test_errors_json_is_the_ranked_groups(capsys: pytest.CaptureFixture[str],
                                          scenario: Scenario) -> None:
    """--json gives the groups, highest impact first, with the injected split."""
    status, out = run(capsys, "errors", "--store", str(scenario.store), "--json", "--kind", "network")
    groups = json.loads(out)
    assert status == 0
    assert {g["kind"] for g in groups} == {"network"}
    assert [g["impact"] for g in groups] == sorted((g["impact"] for g in groups), reverse=True)
    catalog = next(g for g in groups if g["route"] == "/catalog")
    assert (catalog["injected_count"], catalog["real_count"]) == (1, 1)
    assert catalog["sample_trace_id"] == scenario.traces["network"]


def test_errors_since_leaves_out_older_errors(capsys: pytest.CaptureFixture[str],
                                              tmp_path: Path) -> None:
    """--since 1h keeps only the last hour's groups."""
    now = time.time_ns()
    old = span(1, 1, start=now - 3 * 3600 * 10**9, status="error",
               attrs={sc.KIND: "io", sc.FINGERPRINT: "old", sc.ERROR_TYPE: "OldError"})
    new = span(2, 2, start=now - 60 * 10**9, status="error",
               attrs={sc.KIND: "logic", sc.FINGERPRINT: "new", sc.ERROR_TYPE: "NewError"})
    write(tmp_path / "t.db", [old, new])
    _, out = run(capsys, "errors", "--store", str(tmp_path / "t.db"), "--since", "1h", "--json")
    assert [g["error_type"] for g in json.loads(out)] == ["NewError"]


def test_show_draws_the_span_tree_with_retries_faults_and_logs(
        capsys: pytest.CaptureFixture[str], scenario: Scenario) -> None:
    """show TRACE_ID prints the spans nested, the attempt chain, the fault and the log lines."""
    status, out = run(capsys, "show", scenario.traces["network"], "--store", str(scenario.store))
    assert status == 0
    assert out.index("GET /catalog") < out.index("catalog.fetch")
    assert "attempt 1 ✗ → wait" in out
    assert "attempt 3 ✗" in out
    assert "⚡ injected" in out
    assert "fault.injected: network(refused) at catalog.fetch (rule catalog-refused)" in out
    assert "log warning catalog.requested" in out
    assert "ConnectionRefusedError" in out
    assert ANSI not in out


def test_show_stack_prints_the_stack_trace(capsys: pytest.CaptureFixture[str],
                                           scenario: Scenario) -> None:
    """--stack adds each exception's stack trace."""
    _, out = run(capsys, "show", scenario.traces["logic"], "--stack", "--store", str(scenario.store))
    assert "Traceback (most recent call last)" in out
    assert "return 100 / size" in out


def test_show_json_has_spans_events_and_logs(capsys: pytest.CaptureFixture[str],
                                             scenario: Scenario) -> None:
    """--json is the trace as data."""
    _, out = run(capsys, "show", scenario.traces["network"], "--json", "--store",
                 str(scenario.store))
    data = json.loads(out)
    assert data["summary"]["status_code"] == 502
    fetch = next(s for s in data["spans"] if s["name"] == "catalog.fetch")
    assert [e["name"] for e in fetch["events"]].count(sc.EVENT_RETRY) == 2
    assert any(log["event"] == "catalog.requested" for log in data["logs"])


def test_show_otlp_is_an_export_request(capsys: pytest.CaptureFixture[str],
                                        scenario: Scenario) -> None:
    """--otlp prints the spans as OTLP/JSON."""
    _, out = run(capsys, "show", scenario.traces["io"], "--otlp", "--store", str(scenario.store))
    spans = json.loads(out)["resourceSpans"][0]["scopeSpans"][0]["spans"]
    assert {s["traceId"] for s in spans} == {scenario.traces["io"]}


def test_show_unknown_trace_exits_1(capsys: pytest.CaptureFixture[str], scenario: Scenario) -> None:
    """An unknown trace id is reported on stderr with status 1."""
    status = main(["show", "ab" * 16, "--store", str(scenario.store)])
    assert status == 1
    assert "no trace" in capsys.readouterr().err


def test_planted_escape_sequences_are_not_passed_to_the_terminal(
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """Control characters in stored text are neutralised before printing, even on a TTY."""
    evil = span(1, 1, start=time.time_ns(), status="error", name="\x1b]0;pwned\x07job",
                attrs={sc.KIND: "logic", sc.FINGERPRINT: "x", sc.ERROR_TYPE: "E\x1b[2J",
                       sc.EXCEPTION_MESSAGE: "clear\x1b[2Jscreen"})
    write(tmp_path / "t.db", [evil])
    _, out = run(capsys, "show", f"{1:032x}", "--store", str(tmp_path / "t.db"))
    _, errors = run(capsys, "errors", "--store", str(tmp_path / "t.db"))
    assert "\x1b" not in out + errors


def test_tail_once_prints_recent_errors_in_plain_text(capsys: pytest.CaptureFixture[str],
                                                      scenario: Scenario) -> None:
    """Off a TTY, tail prints one plain line per recent error occurrence, oldest first."""
    status, out = run(capsys, "tail", "--once", "--store", str(scenario.store))
    lines = out.splitlines()
    assert status == 0
    assert len(lines) == 5
    assert ANSI not in out
    assert lines[0].split()[1] == "NETWORK"
    assert "[injected 1]" in lines[0]
    assert any(" LOGIC " in line and "ZeroDivisionError" in line for line in lines)


def test_tail_json_prints_one_object_per_line(capsys: pytest.CaptureFixture[str],
                                              scenario: Scenario) -> None:
    """--json: a JSON object per occurrence; --kind filters."""
    _, out = run(capsys, "tail", "--once", "--json", "--kind", "io", "--store", str(scenario.store))
    (line,) = out.splitlines()
    assert json.loads(line)["trace_id"] == scenario.traces["io"]


class _Lines(io.StringIO):
    """A non-TTY stream that can be waited on for a number of lines."""

    def __init__(self) -> None:
        super().__init__()
        self.changed = threading.Condition()

    def write(self, text: str) -> int:
        with self.changed:
            n = super().write(text)
            self.changed.notify_all()
        return n

    def wait_lines(self, count: int) -> list[str]:
        with self.changed:
            self.changed.wait_for(lambda: self.getvalue().count("\n") >= count, timeout=10)
            return self.getvalue().splitlines()


def test_tail_follows_new_errors(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """After the backlog, errors stored while tail runs are printed as they arrive, once."""
    path = tmp_path / "t.db"
    write(path, [span(1, 1, start=time.time_ns() - 10**9, status="error",
                      attrs={sc.KIND: "io", sc.FINGERPRINT: "before", sc.ERROR_TYPE: "Before"})])
    out = _Lines()
    monkeypatch.setattr(sys, "stdout", out)
    status: list[int] = []
    follower = threading.Thread(target=lambda: status.append(main(
        ["tail", "--store", str(path), "--backlog", "1", "--interval", "0.05",
         "--max-seconds", "1.5"])))
    follower.start()
    assert "IO  Before" in out.wait_lines(1)[0]
    write(path, [span(2, 2, start=time.time_ns(), status="error",
                      attrs={sc.KIND: "network", sc.FINGERPRINT: "after", sc.ERROR_TYPE: "After"})])
    assert "NETWORK  After" in out.wait_lines(2)[1]
    follower.join(10)
    assert status == [0]
    assert len(out.getvalue().splitlines()) == 2


def test_tail_of_a_missing_store_prints_nothing(capsys: pytest.CaptureFixture[str],
                                                tmp_path: Path) -> None:
    """A store that does not exist yet is empty, not an error."""
    assert run(capsys, "tail", "--once", "--store", str(tmp_path / "none.db")) == (0, "")


def test_store_defaults_to_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """SHOCKPROOF_STORE, else ./.shockproof/telemetry.db."""
    monkeypatch.setenv("SHOCKPROOF_STORE", "/data/t.db")
    assert default_store() == "/data/t.db"
    monkeypatch.delenv("SHOCKPROOF_STORE")
    assert default_store() == str(Path(".shockproof") / "telemetry.db")
