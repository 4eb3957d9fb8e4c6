"""``python -m demo_app`` / ``shockproof-demo`` / ``make demo``: run the whole demo stack.

Starts, in order, each as a child process on 127.0.0.1:

1. the upstream catalog service (``--upstream-port``, 8002);
2. the chaos proxy between the app and the upstream (``--proxy-port``, 8012; its control
   endpoint on ``--proxy-control-port``, 8474), so network faults come from real sockets;
3. the demo app (``--port``, 8000): waitress, or gunicorn with ``--workers N``, with
   fault injection enabled (``--no-faults`` to leave it off) and its control API at
   ``/_shockproof/faults``;
4. the trace viewer (``--viewer-port``, 8001) when ``telemetry.viewer`` is installed.

One control token serves the app's fault API, the proxy and the viewer: taken from
``$SHOCKPROOF_FAULTS_TOKEN`` or ``<data dir>/faults.token`` (created with mode 0600).

It seeds the titles' media into the data directory first, prints the URLs, and on
Ctrl-C or SIGTERM stops every process it started (exit status 0). If a child dies
on its own, the others are stopped too (exit status 1).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import signal
import sys
from pathlib import Path

from . import media
from .stack import Interrupted, Stack, StackError


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="shockproof-demo", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--port", type=int, default=8000, help="the demo app")
    p.add_argument("--upstream-port", type=int, default=8002, help="the upstream catalog service")
    p.add_argument("--viewer-port", type=int, default=8001, help="the trace viewer")
    p.add_argument("--proxy-port", type=int, default=8012,
                   help="the chaos proxy in front of the upstream (0: no proxy)")
    p.add_argument("--proxy-control-port", type=int, default=8474,
                   help="the chaos proxy's control endpoint")
    p.add_argument("--no-faults", action="store_true",
                   help="leave fault injection off in the app (its control API answers 409)")
    p.add_argument("--upstream-url", default=None,
                   help="where the app reaches the catalog (default: the upstream started here; "
                        "point it at a proxy to put faults in between)")
    p.add_argument("--data-dir", type=Path, default=Path(".shockproof"),
                   help="users, progress, uploads, media, cache and telemetry")
    p.add_argument("--workers", type=int, default=1, help="N > 1: gunicorn with N workers")
    p.add_argument("--redis-url", default=os.environ.get("SHOCKPROOF_REDIS_URL"),
                   help="share circuit state between workers (env SHOCKPROOF_REDIS_URL)")
    p.add_argument("--titles", type=int, default=3, help="seed titles 1..N")
    p.add_argument("--max-upload-mb", type=int, default=64)
    return p


def _python(module: str, *args: object) -> list[str]:
    return [sys.executable, "-m", module, *(str(a) for a in args)]


def _url(port: int) -> str:
    return f"http://127.0.0.1:{port}"


def _share_control_token(data_dir: Path, faults: bool) -> None:
    """One fault-control token (and the fault switch) for every child, set in our environment."""
    from fault_injection import control

    data_dir.mkdir(parents=True, exist_ok=True)
    os.environ[control.ENV_TOKEN] = control.resolve_token(None, data_dir)
    if faults:
        os.environ["SHOCKPROOF_FAULTS"] = "1"


def run(args: argparse.Namespace, stack: Stack) -> None:
    """Start the stack's processes in order (raises StackError if one fails)."""
    data_dir: Path = args.data_dir.absolute()
    _share_control_token(data_dir, faults=not args.no_faults)
    seeded = media.seed(data_dir / "media", args.titles)
    print(f"seeded {len(seeded)} titles' media in {data_dir / 'media'}", flush=True)

    upstream = _url(args.upstream_port)
    stack.start("upstream", _python("demo_app.upstream", "--port", args.upstream_port,
                                    "--titles", args.titles), upstream)
    app_upstream = args.upstream_url or upstream

    if args.proxy_port and not args.upstream_url:
        # The chaos proxy between the app and the upstream; its health check goes through
        # it to the upstream's /healthz.
        proxy = _url(args.proxy_port)
        stack.start("proxy", _python("fault_injection", "proxy", "start",
                                     "--listen", f"127.0.0.1:{args.proxy_port}",
                                     "--upstream", f"127.0.0.1:{args.upstream_port}",
                                     "--control", f"127.0.0.1:{args.proxy_control_port}",
                                     "--data-dir", data_dir), proxy)
        app_upstream = proxy

    stack.start("app", _python("demo_app.serve", "--port", args.port, "--data-dir", data_dir,
                               "--upstream-url", app_upstream, "--workers", args.workers,
                               "--titles", args.titles, "--max-upload-mb", args.max_upload_mb,
                               *(("--redis-url", args.redis_url) if args.redis_url else ())),
                _url(args.port))

    _banner(args, data_dir, app_upstream, _start_viewer(args, data_dir, stack))


def _start_viewer(args: argparse.Namespace, data_dir: Path, stack: Stack) -> str | None:
    """The trace viewer, when ``telemetry.viewer`` exists; the demo runs on without it."""
    if importlib.util.find_spec("telemetry.viewer") is None:
        return None
    viewer = _url(args.viewer_port)
    faults: list[object] = ["--faults-url", _url(args.port) + "/_shockproof/faults"]
    token = data_dir / "faults.token"  # written by the app when it mounted the fault control API
    if os.environ.get("SHOCKPROOF_FAULTS_TOKEN"):
        pass  # the viewer reads the same variable
    elif token.is_file():
        faults += ["--faults-token-file", token]
    else:
        faults = []  # no fault control API in this app
    try:
        stack.start("viewer", _python("telemetry.viewer", "serve", "--port", args.viewer_port,
                                      "--store", data_dir / "telemetry.db", *faults), viewer, health="/")
    except Interrupted:
        raise
    except StackError as exc:
        print(f"trace viewer not started ({exc}); the demo runs without it", file=sys.stderr, flush=True)
        return None
    return viewer


def _banner(args: argparse.Namespace, data_dir: Path, app_upstream: str, viewer: str | None) -> None:
    workers = f"{args.workers} gunicorn workers" if args.workers > 1 else "waitress"
    lines = [
        "",
        "Shockproof demo is ready:",
        f"  app       {_url(args.port)}   ({workers})",
        f"  upstream  {_url(args.upstream_port)}   (catalog service; the app calls {app_upstream})",
        *([f"  proxy     {app_upstream}   (chaos proxy; control on 127.0.0.1:{args.proxy_control_port})"]
          if args.proxy_port and not args.upstream_url else []),
        f"  faults    {_url(args.port)}/_shockproof/faults   "
        f"({'off' if args.no_faults else 'enabled'}; token in {data_dir / 'faults.token'} "
        "unless $SHOCKPROOF_FAULTS_TOKEN is set)",
        f"  viewer    {viewer}" if viewer else
        "  viewer    not running (telemetry.viewer is not installed, or it failed to start)",
        f"  data      {data_dir}",
        "Press Ctrl-C to stop.",
    ]
    print("\n".join(lines), flush=True)


def main(argv: list[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    stack = Stack()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stack.stopping.set())
    status = 0
    try:
        run(args, stack)
        died = stack.watch()
        if died is not None:
            print(f"{died.name} exited with status {died.process.returncode}; stopping",
                  file=sys.stderr, flush=True)
            status = 1
    except Interrupted:
        pass
    except StackError as exc:
        print(f"shockproof-demo: {exc}", file=sys.stderr, flush=True)
        status = 1
    finally:
        stack.stop()
        print("stopped every process of the demo", flush=True)
    sys.exit(status)


if __name__ == "__main__":
    main()
