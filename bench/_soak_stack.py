"""The soak's processes: the upstream catalog, the chaos proxy in front of it, and the demo app.

Each is a child process on 127.0.0.1 in its own process group (stopped as a whole:
SIGTERM, then SIGKILL), with its output in ``<data dir>/logs/<name>.log``; on Linux
each also dies with the soak. The children announce where they listen
(``... listening on http://127.0.0.1:<port>``; the proxy its address and control
endpoint) and the soak reads that back, so every port is picked by the kernel.

One fault-control token serves the app's fault API and the proxy's control
endpoint, handed over in ``SHOCKPROOF_FAULTS_TOKEN`` (never on a command line), as
``python -m demo_app`` does; ``SHOCKPROOF_FAULTS=1`` lets the app arm faults.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import re
import secrets
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import requests

from fault_injection.control import ControlClient
from fault_injection.proxy import ProxyClient

ROOT: Final = Path(__file__).resolve().parent.parent
START_TIMEOUT: Final = 60.0
_LISTENING: Final = re.compile(r" listening on (http://127\.0\.0\.1:\d+)")
_PROXY: Final = re.compile(r"shockproof proxy: (127\.0\.0\.1:\d+) ->")
_PROXY_CONTROL: Final = re.compile(r"control endpoint: (http://127\.0\.0\.1:\d+)")
_PR_SET_PDEATHSIG: Final = 1


class StackError(RuntimeError):
    """A process did not start, or did not announce itself in time."""


#: Loaded here, not in the forked child: the upstream is restarted while client threads run.
_LIBC: Final = ctypes.CDLL(None, use_errno=True) if sys.platform.startswith("linux") else None


def _die_with_parent() -> None:  # pragma: no cover - runs in the forked child
    if _LIBC is not None:
        _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


@dataclass
class Child:
    """One process of the stack and the file its output goes to."""

    name: str
    process: subprocess.Popen[bytes]
    log: Path

    def wait_for(self, pattern: re.Pattern[str], timeout: float = START_TIMEOUT) -> str:
        """The first group of ``pattern`` once the child printed it (polls its log file)."""
        give_up = time.monotonic() + timeout
        while time.monotonic() < give_up:
            found = pattern.search(self.log.read_text(errors="replace"))
            if found:
                return found.group(1)
            if self.process.poll() is not None:
                raise StackError(f"{self.name} exited with {self.process.returncode}; see {self.log}")
            time.sleep(0.05)
        raise StackError(f"{self.name} did not announce itself within {timeout:.0f}s; see {self.log}")

    def signal(self, sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, sig)

    def stop(self, grace: float = 15.0) -> None:
        """SIGTERM the group, wait up to ``grace`` s, then SIGKILL what is left."""
        self.signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            self.signal(signal.SIGKILL)
            self.process.wait(timeout=30)
        self.signal(signal.SIGKILL)

    def kill(self) -> None:
        self.signal(signal.SIGKILL)
        self.process.wait(timeout=30)


def _python(module: str, *args: object) -> list[str]:
    return [sys.executable, "-m", module, *(str(a) for a in args)]


class Stack:
    """Upstream, proxy and app over ``data_dir``; :meth:`stop` ends every process it started."""

    def __init__(self, data_dir: Path, *, titles: int, open_for: float, failures: int) -> None:
        self.data_dir = data_dir
        self.logs = data_dir / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.titles, self.open_for, self.failures = titles, open_for, failures
        self.token = secrets.token_urlsafe(32)
        self.env = {**os.environ, "SHOCKPROOF_FAULTS_TOKEN": self.token, "SHOCKPROOF_FAULTS": "1",
                    "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
        self.children: list[Child] = []
        self.upstream_port = 0
        self.app_url = self.proxy_url = self.proxy_control = ""

    def _spawn(self, name: str, argv: list[str]) -> Child:
        log = self.logs / f"{name}.log"
        with log.open("ab") as out:
            process = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                       env=self.env, cwd=ROOT, start_new_session=True,
                                       preexec_fn=_die_with_parent)
        child = Child(name, process, log)
        self.children.append(child)
        return child

    def start(self) -> None:
        """Start upstream, proxy and app, in that order, and wait until each answers."""
        self.start_upstream()
        proxy = self._spawn("proxy", _python(
            "fault_injection", "proxy", "start", "--listen", "127.0.0.1:0",
            "--upstream", f"127.0.0.1:{self.upstream_port}", "--control", "127.0.0.1:0",
            "--data-dir", self.data_dir))
        self.proxy_url = "http://" + proxy.wait_for(_PROXY)
        self.proxy_control = proxy.wait_for(_PROXY_CONTROL)
        app = self._spawn("app", _python(
            "bench._soak_app", "--port", 0, "--data-dir", self.data_dir, "--upstream-url", self.proxy_url,
            "--titles", self.titles, "--circuit-open-for", self.open_for,
            "--circuit-failures", self.failures))
        self.app_url = app.wait_for(_LISTENING)
        _wait_ok(self.app_url + "/healthz", app)

    def start_upstream(self) -> float:
        """Start the upstream (on its first port again after a kill); returns when it answered."""
        child = self._spawn("upstream", _python("demo_app.upstream", "--port", self.upstream_port,
                                                "--titles", self.titles))
        url = child.wait_for(_LISTENING) if not self.upstream_port else f"http://127.0.0.1:{self.upstream_port}"
        self.upstream_port = int(url.rsplit(":", 1)[1])
        _wait_ok(url + "/healthz", child)
        return time.monotonic()

    def kill_upstream(self) -> tuple[float, int]:
        """SIGKILL the upstream and reap it; returns when the signal went (monotonic s, wall ns)."""
        at = time.monotonic(), time.time_ns()
        for child in [c for c in self.children if c.name == "upstream" and c.process.poll() is None]:
            child.kill()
        return at

    def faults(self) -> ControlClient:
        """The app's fault-control API."""
        return ControlClient(self.app_url, self.token, timeout=10.0)

    def proxy(self) -> ProxyClient:
        """The chaos proxy's control endpoint."""
        return ProxyClient(self.proxy_control, self.token, timeout=10.0)

    def stop(self) -> None:
        """Stop the app first (it flushes telemetry on SIGTERM), then the others."""
        for child in sorted(self.children, key=lambda c: c.name != "app"):
            child.stop()


def _wait_ok(url: str, child: Child, timeout: float = START_TIMEOUT) -> None:
    give_up = time.monotonic() + timeout
    while time.monotonic() < give_up:
        with contextlib.suppress(requests.RequestException):
            if requests.get(url, timeout=2).status_code == 200:
                return
        if child.process.poll() is not None:
            raise StackError(f"{child.name} exited with {child.process.returncode}; see {child.log}")
        time.sleep(0.02)
    raise StackError(f"{url} did not answer 200 within {timeout:.0f}s; see {child.log}")
