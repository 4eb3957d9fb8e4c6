"""Process mechanics of the demo stack: start children, wait until healthy, stop them all.

Each child runs in its own session (so its own process group, which holds gunicorn's
workers too). Stopping sends SIGTERM to every group, waits, then SIGKILLs whatever
is left in each group, so no process outlives the stack. On Linux each child also
gets SIGTERM should the runner itself die without cleaning up (``PR_SET_PDEATHSIG``).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import requests

_PR_SET_PDEATHSIG = 1


class StackError(RuntimeError):
    """A child failed to start or exited on its own."""


class Interrupted(StackError):
    """Stop was requested (Ctrl-C or SIGTERM) while starting."""


@dataclass(slots=True)
class Child:
    name: str
    url: str
    process: subprocess.Popen[bytes]


def _die_with_parent() -> None:  # pragma: no cover - runs in the forked child
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


class Stack:
    """The processes of one demo run, stopped together."""

    def __init__(self, start_timeout: float = 60.0) -> None:
        self.children: list[Child] = []
        self.stopping = threading.Event()
        self.start_timeout = start_timeout

    def start(self, name: str, argv: Sequence[str], url: str, *, health: str = "/healthz",
              env: Mapping[str, str] | None = None) -> Child:
        """Start ``argv`` and wait until ``url + health`` answers 200."""
        process = subprocess.Popen(list(argv), start_new_session=True,
                                   env=None if env is None else dict(env),
                                   preexec_fn=_die_with_parent)
        child = Child(name, url, process)
        self.children.append(child)
        try:
            self._wait_healthy(child, url + health)
        except StackError:
            if not self.stopping.is_set():  # a failed start leaves nothing behind
                self.children.remove(child)
                _stop_children([child], grace=5.0)
            raise
        return child

    def _wait_healthy(self, child: Child, url: str) -> None:
        give_up = time.monotonic() + self.start_timeout
        while time.monotonic() < give_up:
            if self.stopping.is_set():
                raise Interrupted(f"stopped while {child.name} was starting")
            code = child.process.poll()
            if code is not None:
                raise StackError(f"{child.name} exited with status {code} while starting")
            with contextlib.suppress(requests.RequestException):
                if requests.get(url, timeout=0.5).status_code == 200:
                    return
            self.stopping.wait(0.1)
        raise StackError(f"{child.name} did not answer {url} within {self.start_timeout:.0f}s")

    def watch(self, interval: float = 0.5) -> Child | None:
        """Block until stop is requested (None) or a child exits on its own (that child)."""
        while not self.stopping.wait(interval):
            for child in self.children:
                if child.process.poll() is not None:
                    return child
        return None

    def stop(self, grace: float = 10.0) -> None:
        """SIGTERM every child's process group, wait up to ``grace`` s, then SIGKILL the rest."""
        _stop_children(list(reversed(self.children)), grace)


def _stop_children(children: list[Child], grace: float) -> None:
    for child in children:
        _signal_group(child.process.pid, signal.SIGTERM)
    give_up = time.monotonic() + grace
    for child in children:
        try:
            child.process.wait(timeout=max(0.0, give_up - time.monotonic()))
        except subprocess.TimeoutExpired:
            _signal_group(child.process.pid, signal.SIGKILL)
            child.process.wait()
        _signal_group(child.process.pid, signal.SIGKILL)  # stragglers left in the group


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)
