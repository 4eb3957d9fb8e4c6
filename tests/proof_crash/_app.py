"""The demo app as a real process (waitress) that a test can SIGKILL and start again.

The app prints ``app listening on http://127.0.0.1:<port>`` once its socket
listens, then one JSON log line per request on stdout: a thread drains stdout
(so the app never blocks on a full pipe) and hands over the URL; stderr goes to
a log file. Each app runs in its own process group, killed as a whole.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
from dataclasses import dataclass, field
from pathlib import Path

from tests.demo_app.servers import ROOT, child_env, python

START_TIMEOUT = 30.0
#: The crash test needs no catalog: nothing listens on the discard port.
NO_UPSTREAM = "http://127.0.0.1:9"


@dataclass
class App:
    """One app process on ``data_dir``."""

    process: subprocess.Popen[bytes]
    url: str = ""
    _ready: threading.Event = field(default_factory=threading.Event)

    def _drain(self) -> None:
        assert self.process.stdout is not None
        with self.process.stdout as lines:
            for raw in lines:
                if not self.url and b" listening on " in raw:
                    self.url = raw.decode().strip().rsplit(" ", 1)[1]
                    self._ready.set()
        self._ready.set()  # EOF: the app exited (before listening, if there is no URL)

    def kill(self) -> None:
        """SIGKILL the whole process group and reap it."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=30)

    def stop(self) -> None:
        """SIGTERM (the app flushes telemetry and exits), SIGKILL after 15 s."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.kill()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)  # stragglers in the group


def start_app(data_dir: Path, stderr_log: Path) -> App:
    """Start ``python -m demo_app.serve`` on a free port over ``data_dir`` and wait until it listens."""
    env = child_env()
    env["SHOCKPROOF_FAULTS_TOKEN"] = "crash-test-token"  # no token file written at each start
    argv = python("demo_app.serve", "--port", 0, "--data-dir", data_dir,
                  "--upstream-url", NO_UPSTREAM, "--titles", 1)
    with stderr_log.open("ab") as err:
        process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=err, stdin=subprocess.DEVNULL,
                                   env=env, cwd=ROOT, start_new_session=True)
    app = App(process)
    threading.Thread(target=app._drain, name="crash-app-stdout", daemon=True).start()
    if not app._ready.wait(START_TIMEOUT) or not app.url:
        app.kill()
        raise AssertionError(f"the app did not start within {START_TIMEOUT}s "
                             f"(exit {process.poll()}); see {stderr_log}")
    return app
