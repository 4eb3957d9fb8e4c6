"""Served Flask requests: one waitress server process per variant, CPU per request read from /proc.

Issue 3 states requests/s relative to bare Flask, with reference figures
(opentelemetry-instrumentation-flask at 0.63x bare) that only a real server
reproduces: a direct WSGI call loop leaves out the server's own work (sockets,
HTTP parsing, thread hand-over), which every variant pays alike. So each variant
here runs in its own process (which also keeps sentry-sdk's process-wide patching
of ``Flask`` to its own variant), as ``python -m bench._served serve <variant>
<workdir>``: a waitress server with one worker thread on 127.0.0.1, on a port the
kernel picks (announced as ``port <n>`` on stdout), serving the app of
:func:`bench.bench_telemetry.flask_app` (``GET /items/<int:item_id>``).

The bench process drives every server over one keep-alive
:class:`http.client.HTTPConnection`. A round is ``requests`` requests to one
server; for each round it records the wall time and the CPU time the server
process used, summed over all its threads (``/proc/<pid>/task/*/schedstat``, first
field: nanoseconds on a CPU; ``/proc/<pid>/stat`` utime + stime where schedstat is
missing). The server is left idle for :data:`SETTLE` seconds after each round
before its CPU is read, so work a request leaves to a background thread (the
deferred batches of :mod:`telemetry._deferred`, at most 50 ms late) is counted in
the round that caused it and not in the next; the idle server's own CPU in that
window is next to nothing (waitress wakes once a second). The store variant ends
every round with ``GET /_bench/flush`` (``telemetry.flush(30)``), so the SQLite
writer's work is counted too.

Limit: a thread that exits during a round takes its CPU time with it (its
schedstat entry is gone); the servers' threads live as long as the server.
"""

from __future__ import annotations

import contextlib
import gc
import http.client
import json
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Final, Literal

from ._harness import rotated

ROOT: Final = Path(__file__).resolve().parent.parent
PROC: Final = Path("/proc")
PATH: Final = "/items/7"
FLUSH_PATH: Final = "/_bench/flush"
#: Seconds a server is left idle after a round (and after its warm-up) before its CPU is read:
#: longer than telemetry's deferred-batch interval (50 ms).
SETTLE: Final = 0.1
START_TIMEOUT: Final = 60.0
STOP_TIMEOUT: Final = 10.0

#: Variant key (``python -m bench._served serve <key>``) -> what it serves.
VARIANTS: Final = {
    "bare": "bare Flask",
    "ours": "telemetry.flask (span, log line, metrics)",
    "store": "telemetry.flask + SQLite store",
    "shockproof": "Shockproof (+ resilience.flask)",
    "otel": "opentelemetry-instrumentation-flask",
    "sentry": "sentry-sdk default Flask integration",
    "theirs": "otel-instrumentation-flask + structlog + sentry-sdk",
}
#: Variants whose rounds end by waiting for the trace store's writer.
FLUSHED: Final = frozenset({"store"})


class ServerError(RuntimeError):
    """A server did not start, did not announce its port, or answered a request wrongly."""


# -- CPU time of a process ------------------------------------------------------------------------


def cpu_ns(pid: int, proc: Path = PROC) -> int:
    """Nanoseconds on a CPU used so far by the live threads of process ``pid``.

    The sum over ``<proc>/<pid>/task/*/schedstat`` (first field); where the kernel has
    no schedstat, ``utime + stime`` from ``<proc>/<pid>/stat`` (clock-tick resolution).
    """
    if not (proc / str(pid) / "schedstat").exists():
        return _stat_ns(pid, proc)
    total = 0
    for task in (proc / str(pid) / "task").iterdir():
        try:
            total += int((task / "schedstat").read_text().split()[0])
        except FileNotFoundError:  # the thread ended between the listing and the read
            continue
    return total


def _stat_ns(pid: int, proc: Path) -> int:
    fields = (proc / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()
    ticks = int(fields[11]) + int(fields[12])  # utime, stime: fields 14 and 15 of stat(5)
    return ticks * 1_000_000_000 // os.sysconf("SC_CLK_TCK")


# -- the server process ---------------------------------------------------------------------------


def build_app(variant: str, workdir: Path) -> Any:
    """The WSGI app of ``variant`` (configuring telemetry or the SDKs it needs, for this process)."""
    from bench.bench_telemetry import flask_app, otel_flask_app, theirs_app

    if variant == "bare":
        return flask_app()
    if variant == "theirs":
        return theirs_app()
    if variant == "sentry":
        import sentry_sdk

        app = flask_app()
        sentry_sdk.init(dsn="http://public@127.0.0.1:9/1")  # defaults; nothing is sent on success
        return app
    if variant == "otel":
        return otel_flask_app()
    return _ours(variant, workdir)


def _ours(variant: str, workdir: Path) -> Any:
    import telemetry
    from bench.bench_telemetry import flask_app
    from telemetry.flask import Shockproof, Telemetry

    log = open(os.devnull, "w")  # noqa: SIM115 - lives as long as the server
    if variant == "shockproof":
        return flask_app(lambda app: Shockproof(app, store=False, log_stream=log))
    if variant not in ("ours", "store"):
        raise ValueError(f"unknown variant {variant!r}; one of {', '.join(VARIANTS)}")
    store: str | Literal[False] = str(workdir / "telemetry.db") if variant == "store" else False
    telemetry.configure(service_name="bench", store=store, log_stream=log)
    app = flask_app(Telemetry)
    if variant == "store":
        @app.get(FLUSH_PATH)
        def flush() -> dict[str, bool]:
            return {"flushed": telemetry.flush(30.0)}
    return app


def serve(variant: str, workdir: Path, out: IO[str] = sys.stdout) -> None:
    """Runs in the server process: serve ``variant`` on 127.0.0.1 (one thread) until killed."""
    _die_with_parent()
    import waitress  # type: ignore[import-untyped]

    server = waitress.create_server(build_app(variant, workdir), host="127.0.0.1", port=0, threads=1)
    print(f"port {server.effective_port}", file=out, flush=True)
    server.run()


def _die_with_parent() -> None:
    """On Linux, have the kernel SIGKILL this process if the bench process dies first."""
    if sys.platform.startswith("linux"):
        import ctypes

        ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


# -- the bench side -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Sample:
    """One round against one server: ``requests`` requests, the server's CPU and the wall time."""

    requests: int
    cpu_ns: int
    wall_ns: int


class Server:
    """One variant's server process and a keep-alive connection to it."""

    def __init__(self, variant: str, workdir: Path, *, settle: float = SETTLE) -> None:
        if variant not in VARIANTS:
            raise ValueError(f"unknown variant {variant!r}; one of {', '.join(VARIANTS)}")
        self.variant = variant
        self.workdir = workdir
        self.settle = settle
        self.process: subprocess.Popen[str] | None = None
        self.connection: http.client.HTTPConnection | None = None
        self.port = 0

    @property
    def pid(self) -> int:
        if self.process is None:
            raise ServerError(f"{self.variant}: not started")
        return self.process.pid

    def start(self) -> Server:
        """Launch the process and connect once it announced its port."""
        return self.launch().connect()

    def launch(self) -> Server:
        """Start the process (it announces its port when it is ready: :meth:`connect`)."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        errors = (self.workdir / "server.log").open("w")
        try:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "bench._served", "serve", self.variant, str(self.workdir)],
                cwd=ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=errors, text=True)
        finally:
            errors.close()
        return self

    def connect(self) -> Server:
        """Wait for the port the process announces, and open the keep-alive connection."""
        self.port = self._announced_port()
        self.connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        return self

    def _announced_port(self) -> int:
        if self.process is None or self.process.stdout is None:
            raise ServerError(f"{self.variant}: not launched")
        ready, _, _ = select.select([self.process.stdout], [], [], START_TIMEOUT)
        line = self.process.stdout.readline() if ready else ""
        if not line.startswith("port "):
            log = (self.workdir / "server.log").read_text(errors="replace")[-2000:]
            raise ServerError(f"{self.variant}: no port announced (got {line!r}); its stderr:\n{log}")
        return int(line.split()[1])

    def get(self, path: str = PATH) -> bytes:
        """One GET over the keep-alive connection; the body of a 200 response."""
        if self.connection is None:
            raise ServerError(f"{self.variant}: not started")
        self.connection.request("GET", path)
        response = self.connection.getresponse()
        body = response.read()
        if response.status != 200:
            raise ServerError(f"{self.variant}: GET {path} answered {response.status}: {body[:200]!r}")
        return body

    def warm_up(self, requests: int) -> None:
        for _ in range(requests):
            self.get()
        self._end_round()
        time.sleep(self.settle)

    def round(self, requests: int) -> Sample:
        """``requests`` requests; the server's CPU is read once it has been idle ``settle`` s."""
        was_enabled = gc.isenabled()
        gc.disable()
        try:
            cpu0, start = cpu_ns(self.pid), time.perf_counter_ns()
            for _ in range(requests):
                self.get()
            self._end_round()
            wall = time.perf_counter_ns() - start
        finally:
            if was_enabled:
                gc.enable()
        time.sleep(self.settle)
        return Sample(requests, cpu_ns(self.pid) - cpu0, wall)

    def _end_round(self) -> None:
        if self.variant in FLUSHED and not json.loads(self.get(FLUSH_PATH))["flushed"]:
            raise ServerError(f"{self.variant}: telemetry.flush() timed out")

    def stop(self) -> None:
        """Close the connection, SIGTERM the server, wait (SIGKILL after :data:`STOP_TIMEOUT`)."""
        if self.connection is not None:
            self.connection.close()
            self.connection = None
        process, self.process = self.process, None
        if process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            process.terminate()
        try:
            process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        finally:
            if process.stdout is not None:
                process.stdout.close()


@contextlib.contextmanager
def servers(variants: Sequence[str], workdir: Path, *, settle: float = SETTLE) -> Iterator[dict[str, Server]]:
    """One started :class:`Server` per variant (each in ``workdir/<variant>``), all stopped on exit."""
    with contextlib.ExitStack() as stack:
        started: dict[str, Server] = {}
        for variant in variants:  # launched together: they import in parallel
            server = Server(variant, workdir / variant, settle=settle)
            stack.callback(server.stop)  # registered first: a server that fails to start is stopped too
            started[variant] = server.launch()
        for server in started.values():
            server.connect()
        yield started


def measure(variants: Sequence[str], workdir: Path, *, rounds: int, requests: int, warmup: int,
            settle: float = SETTLE, say: Callable[[str], object] = print) -> dict[str, list[Sample]]:
    """``rounds`` rounds of ``requests`` requests per variant, interleaved (order rotating per round)."""
    samples: dict[str, list[Sample]] = {v: [] for v in variants}
    with servers(variants, workdir, settle=settle) as running:
        for server in running.values():
            server.warm_up(warmup)
        for r in range(rounds):
            for variant in rotated(variants, r):
                samples[variant].append(running[variant].round(requests))
            say(f"   round {r + 1}/{rounds} done")
    return samples


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 3 or args[0] != "serve":
        print("usage: python -m bench._served serve <variant> <workdir>", file=sys.stderr)
        return 2
    serve(args[1], Path(args[2]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
