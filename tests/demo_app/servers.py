"""Real server processes for the demo tests: the upstream catalog, the app, the whole stack.

Servers started with ``--port 0`` print ``<label> listening on http://127.0.0.1:<port>``
once their socket listens; :func:`start_server` reads that line (bounded by a
timeout), so no test guesses a port or polls blindly.
"""

from __future__ import annotations

import contextlib
import os
import selectors
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import requests

START_TIMEOUT = 30.0
POLL = 0.05
ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Server:
    """A child server process and the URL it listens on."""

    process: subprocess.Popen[bytes]
    url: str
    argv: list[str] = field(default_factory=list)

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    def stop(self) -> None:
        """Terminate and wait (kill after 10 s)."""
        stop(self.process)


def python(module: str, *args: object) -> list[str]:
    return [sys.executable, "-m", module, *(str(a) for a in args)]


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env.pop("SHOCKPROOF_FAULTS", None)
    return env


def start_server(argv: Sequence[str], timeout: float = START_TIMEOUT) -> Server:
    """Start ``argv`` and wait for its "listening on URL" line."""
    process = subprocess.Popen(list(argv), stdout=subprocess.PIPE, stdin=subprocess.DEVNULL,
                               env=child_env(), cwd=ROOT, start_new_session=True)
    assert process.stdout is not None
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        if not selector.select(timeout):
            stop(process)
            raise AssertionError(f"{argv} printed nothing within {timeout}s")
    line = process.stdout.readline().decode().strip()
    if " listening on " not in line:
        stop(process)
        raise AssertionError(f"{argv} did not start: {line!r} (exit {process.poll()})")
    return Server(process, line.rsplit(" ", 1)[1], list(argv))


def start_upstream(port: int = 0, titles: int = 3) -> Server:
    return start_server(python("demo_app.upstream", "--port", port, "--titles", titles))


def stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM the process (by pid), wait, SIGKILL if it has not exited within 10 s."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
    if process.stdout is not None:
        process.stdout.close()


def wait_http(url: str, process: subprocess.Popen[bytes], timeout: float = START_TIMEOUT) -> None:
    """Poll ``url`` until it answers 200; fail early if ``process`` exits."""
    give_up = time.monotonic() + timeout
    while time.monotonic() < give_up:
        with contextlib.suppress(requests.RequestException):
            if requests.get(url, timeout=1).status_code == 200:
                return
        with contextlib.suppress(subprocess.TimeoutExpired):
            code = process.wait(timeout=POLL)  # doubles as the poll interval
            raise AssertionError(f"process exited with {code} before {url} answered")
    raise AssertionError(f"{url} did not answer within {timeout}s")


# -- /proc: who descends from whom ---------------------------------------------------------------


def _parents() -> dict[int, int]:
    out = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, ValueError, IndexError):
                stat = (entry / "stat").read_text()
                out[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    return out


def descendants(pid: int) -> set[int]:
    """Every live process below ``pid``."""
    parents, found, todo = _parents(), set(), [pid]
    while todo:
        current = todo.pop()
        for child, parent in parents.items():
            if parent == current and child not in found:
                found.add(child)
                todo.append(child)
    return found


def alive(pid: int) -> bool:
    """True when ``pid`` exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def commands_running(*parts: str) -> list[str]:
    """Command lines of live processes that contain every one of ``parts``."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and alive(int(entry.name)):
            with contextlib.suppress(OSError):
                command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                if all(part in command for part in parts):
                    found.append(command)
    return found


class LineReader:
    """Drains a process's stdout in a thread, so it never blocks on a full pipe."""

    def __init__(self, process: subprocess.Popen[bytes]) -> None:
        self.lines: list[str] = []
        self._changed = threading.Condition()
        self._thread = threading.Thread(target=self._drain, args=(process,), daemon=True)
        self._thread.start()

    def _drain(self, process: subprocess.Popen[bytes]) -> None:
        assert process.stdout is not None
        for raw in process.stdout:
            with self._changed:
                self.lines.append(raw.decode(errors="replace").rstrip("\n"))
                self._changed.notify_all()
        with self._changed:
            self.lines.append("<EOF>")
            self._changed.notify_all()

    def wait_for(self, text: str, timeout: float = START_TIMEOUT) -> bool:
        with self._changed:
            return self._changed.wait_for(
                lambda: any(text in line or line == "<EOF>" for line in self.lines), timeout
            ) and any(text in line for line in self.lines)

    def lines_iter(self) -> Iterator[str]:
        with self._changed:
            return iter(list(self.lines))
