"""Serve the demo app alone: waitress in one process, or gunicorn with ``--workers N`` (N > 1).

``python -m demo_app.serve --port 8000 --data-dir .shockproof --upstream-url http://127.0.0.1:8002``

With several workers, pass ``--redis-url`` (or set ``SHOCKPROOF_REDIS_URL``) so that
the catalog circuit is shared: a circuit opened by one worker is open in all of them.
"""

from __future__ import annotations

import argparse
import importlib
import os
import signal
import sys
from pathlib import Path
from typing import Any

from .config import DEFAULT_DATA_DIR, DEFAULT_UPSTREAM_URL, DemoConfig


def run_waitress(app: Any, port: int, label: str, *, threads: int = 8) -> None:
    """Serve ``app`` on 127.0.0.1:``port`` until SIGTERM/SIGINT; ``port=0`` picks a free one.

    Prints ``<label> listening on http://127.0.0.1:<port>`` once the socket listens.
    """
    waitress: Any = importlib.import_module("waitress")
    server = waitress.create_server(app, host="127.0.0.1", port=port, threads=threads,
                                    channel_timeout=30, ident="shockproof")
    print(f"{label} listening on http://127.0.0.1:{server.effective_port}", flush=True)
    signal.signal(signal.SIGTERM, _exit_cleanly)  # run atexit hooks (telemetry flushes)
    try:
        server.run()
    except KeyboardInterrupt:
        pass
    finally:
        server.close()


def _exit_cleanly(signum: int, frame: object) -> None:
    sys.exit(0)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m demo_app.serve", description=__doc__.split("\n\n")[0])
    p.add_argument("--port", type=int, default=8000, help="0 picks a free port (waitress only)")
    p.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)
    p.add_argument("--upstream-url", default=DEFAULT_UPSTREAM_URL)
    p.add_argument("--redis-url", default=os.environ.get("SHOCKPROOF_REDIS_URL"))
    p.add_argument("--workers", type=int, default=1, help="N > 1 runs gunicorn with N workers")
    p.add_argument("--titles", type=int, default=3)
    p.add_argument("--max-upload-mb", type=int, default=64)
    p.add_argument("--upstream-attempts", type=int, default=3)
    p.add_argument("--circuit-failures", type=int, default=5)
    p.add_argument("--circuit-open-for", type=float, default=30.0)
    return p


def config_from(args: argparse.Namespace) -> DemoConfig:
    return DemoConfig(data_dir=args.data_dir.absolute(), upstream_url=args.upstream_url,
                      redis_url=args.redis_url or None, titles=args.titles,
                      max_upload_bytes=args.max_upload_mb * 1024 * 1024,
                      upstream_attempts=args.upstream_attempts,
                      circuit_failures=args.circuit_failures, circuit_open_for=args.circuit_open_for)


def gunicorn_argv(port: int, workers: int) -> list[str]:
    """Sync workers: one request at a time each, the classic pre-fork model."""
    return [sys.executable, "-m", "gunicorn", "--workers", str(workers),
            "--bind", f"127.0.0.1:{port}", "--worker-class", "sync", "--timeout", "60",
            "--graceful-timeout", "5", "--log-level", "warning",
            "demo_app.app:create_app_from_env()"]


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    config = config_from(args)
    from .app import configure_telemetry, create_app, fault_token_env

    if args.workers > 1:
        # Replace this process, so that whoever started it stops gunicorn by its pid.
        os.execve(sys.executable, gunicorn_argv(args.port, args.workers),
                  {**os.environ, **config.to_env(), **fault_token_env(config)})

    configure_telemetry(config)
    run_waitress(create_app(config), args.port, "app")


if __name__ == "__main__":
    main()
