"""``shockproof-traces``: serve the web viewer, or look at the store from a terminal.

::

    shockproof-traces serve [--store PATH] [--host 127.0.0.1] [--port 8001] [--token T]
    shockproof-traces errors [--kind K] [--route R] [--since 1h] [--limit N] [--json]
    shockproof-traces show TRACE_ID [--stack] [--json | --otlp]
    shockproof-traces tail [--kind K] [--once] [--max-seconds S] [--json]

The store defaults to ``$SHOCKPROOF_STORE``, else ``./.shockproof/telemetry.db``.
Exit status: 0 done, 1 nothing found (``show`` of an unknown trace), 2 usage
errors (including a refused ``serve`` binding).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import signal
import socket
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any, Final

from telemetry.query import KINDS, Query

from . import _format as fmt
from ._otlp import export_spans
from ._queries import ErrorFeed, Occurrence
from ._security import BindRefused, check_bind, is_loopback, loopback_hosts
from ._terminal import console, errors_table, occurrence_line, trace_tree

DEFAULT_STORE: Final = str(Path(".shockproof") / "telemetry.db")
ENV_STORE: Final = "SHOCKPROOF_STORE"
ENV_TOKEN: Final = "SHOCKPROOF_VIEWER_TOKEN"
ENV_FAULTS_TOKEN: Final = "SHOCKPROOF_FAULTS_TOKEN"
_TAIL_OVERLAP_NS: Final = 30 * 10**9


def default_store() -> str:
    return os.environ.get(ENV_STORE, "").strip() or DEFAULT_STORE


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="shockproof-traces", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--store", default=None, metavar="PATH",
                        help=f"the trace store (default: ${ENV_STORE} or {DEFAULT_STORE})")

    serve = commands.add_parser("serve", parents=[common], help="the web viewer (waitress)")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8001, help="port (default 8001; 0: any free port)")
    serve.add_argument("--token", default=None,
                       help=f"require this token on every request (or ${ENV_TOKEN})")
    serve.add_argument("--token-file", type=Path, default=None, help="read the token from a file")
    serve.add_argument("--allow-remote", action="store_true",
                       help="allow a non-loopback --host (a token is then required)")
    serve.add_argument("--allowed-host", action="append", default=[], metavar="NAME[:PORT]",
                       help="another Host header value to answer (repeatable)")
    serve.add_argument("--faults-url", default=None, metavar="URL",
                       help="a fault control API to show the armed rules of, "
                            "e.g. http://127.0.0.1:8000/_shockproof/faults")
    serve.add_argument("--faults-token-file", type=Path, default=None,
                       help=f"the control API's token (or ${ENV_FAULTS_TOKEN})")
    serve.add_argument("--refresh", type=float, default=3.0, metavar="SECONDS",
                       help="live refresh interval of the pages (default 3)")
    serve.add_argument("--threads", type=int, default=4, help="waitress worker threads (default 4)")

    errors = commands.add_parser("errors", parents=[common], help="error groups ranked by impact")
    errors.add_argument("--kind", choices=KINDS)
    errors.add_argument("--route")
    errors.add_argument("--since", default=None, help="only the last 90s, 15m, 2h, 7d...")
    errors.add_argument("--limit", type=int, default=20)
    errors.add_argument("--json", action="store_true", help="JSON for scripts")

    show = commands.add_parser("show", parents=[common], help="one trace as a span tree")
    show.add_argument("trace_id")
    show.add_argument("--stack", action="store_true", help="print stack traces")
    out = show.add_mutually_exclusive_group()
    out.add_argument("--json", action="store_true", help="spans, events and logs as JSON")
    out.add_argument("--otlp", action="store_true", help="the spans as OTLP/JSON")

    tail = commands.add_parser("tail", parents=[common], help="follow new errors as they happen")
    tail.add_argument("--kind", choices=KINDS)
    tail.add_argument("--backlog", type=int, default=10, help="recent errors shown first (default 10)")
    tail.add_argument("--interval", type=float, default=1.0, help="seconds between polls")
    tail.add_argument("--once", action="store_true", help="print the backlog and exit")
    tail.add_argument("--max-seconds", type=float, default=None, help="stop following after this")
    tail.add_argument("--json", action="store_true", help="one JSON object per line")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """The ``shockproof-traces`` command (returns the exit status)."""
    args = _parser().parse_args(argv)
    store = Path(args.store or default_store())
    out = sys.stdout
    try:
        if args.command == "serve":
            return serve(args, store)
        if args.command == "errors":
            return show_errors(args, store, out)
        if args.command == "show":
            return show_trace(args, store, out)
        return tail(args, store, out)
    except (BindRefused, ValueError, OSError) as exc:
        print(f"shockproof-traces: error: {exc}", file=sys.stderr)
        return 2


# -- serve ---------------------------------------------------------------------------------------


def _read_secret(value: str | None, path: Path | None, env: str) -> str | None:
    if value:
        return value.strip()
    if path is not None:
        return path.read_text(encoding="utf-8").strip() or None
    return os.environ.get(env, "").strip() or None


def _free_port(host: str) -> int:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port


def serve(args: argparse.Namespace, store: Path) -> int:
    """Run the web viewer under waitress until interrupted."""
    import waitress  # type: ignore[import-untyped]

    from ._app import EXTENSION, create_app

    token = _read_secret(args.token, args.token_file, ENV_TOKEN)
    check_bind(args.host, allow_remote=args.allow_remote, token=token)
    port = args.port or _free_port(args.host)
    hosts = [*loopback_hosts(port), *args.allowed_host]
    if not is_loopback(args.host) and args.host not in ("0.0.0.0", "::"):
        hosts.append(f"[{args.host}]:{port}" if ":" in args.host else f"{args.host}:{port}")
    faults_token = _read_secret(None, args.faults_token_file, ENV_FAULTS_TOKEN)
    app = create_app(store, token=token, allowed_hosts=hosts, faults_url=args.faults_url,
                     faults_token=faults_token, refresh_seconds=args.refresh)
    server = waitress.create_server(app, host=args.host, port=port, threads=args.threads,
                                    ident="shockproof-traces")
    shown = "127.0.0.1" if args.host in ("0.0.0.0", "::") else args.host
    url = f"http://{f'[{shown}]' if ':' in shown else shown}:{port}/"
    print(f"shockproof-traces: serving {store} on {url}", file=sys.stderr, flush=True)
    if token:
        print(f"shockproof-traces: log in by opening {url}?token=<your token>", file=sys.stderr,
              flush=True)
    signal.signal(signal.SIGTERM, _stop)
    try:
        server.run()
    except KeyboardInterrupt:
        pass
    finally:
        server.close()
        app.extensions[EXTENSION].close()
    return 0


def _stop(*_: object) -> None:
    raise SystemExit(0)


# -- errors and show --------------------------------------------------------------------------------


def show_errors(args: argparse.Namespace, store: Path, out: IO[str]) -> int:
    now = time.time_ns()
    since = now - fmt.parse_since(args.since) * 10**9 if args.since else None
    with Query(store) as q:
        groups = q.error_groups(kind=args.kind, route=args.route, since_ns=since,
                                until_ns=now if since is not None else None, limit=args.limit)
    if args.json:
        json.dump([{**dataclasses.asdict(g), "real_count": g.real_count} for g in groups], out,
                  indent=2)
        out.write("\n")
        return 0
    con = console(out)
    if not groups:
        con.print(f"no errors in {store}" + (" for these filters" if args.kind or args.route
                                               or args.since else ""))
        return 0
    con.print(errors_table(groups, now))
    return 0


def show_trace(args: argparse.Namespace, store: Path, out: IO[str]) -> int:
    with Query(store) as q:
        detail = q.trace(args.trace_id)
    if detail is None:
        print(f"shockproof-traces: no trace {args.trace_id} in {store}", file=sys.stderr)
        return 1
    if args.otlp:
        json.dump(export_spans(detail), out, indent=1)
        out.write("\n")
        return 0
    if args.json:
        json.dump(_trace_json(detail), out, indent=1, default=str)
        out.write("\n")
        return 0
    tree, _ = trace_tree(detail, stacks=args.stack)
    console(out).print(tree)
    return 0


def _trace_json(detail: Any) -> dict[str, Any]:
    summary = detail.summary
    return {"trace_id": detail.trace_id,
            "summary": dataclasses.asdict(summary) if summary is not None else None,
            "spans": [dataclasses.asdict(s) for s in detail.spans],
            "logs": [dataclasses.asdict(log) for log in detail.logs]}


# -- tail ------------------------------------------------------------------------------------------


def tail(args: argparse.Namespace, store: Path, out: IO[str]) -> int:
    """Print recent error occurrences, then follow new ones (until --max-seconds, or Ctrl-C)."""
    tty = out.isatty() and not args.json
    con = console(out, tty=tty)
    seen: dict[tuple[str, str], int] = {}

    def emit(batch: Sequence[Occurrence]) -> int:
        newest = 0
        for occ in batch:
            newest = max(newest, occ.first_ns)
            key = (occ.fingerprint, occ.trace_id)
            if key in seen or (args.kind and occ.kind != args.kind):
                seen.setdefault(key, occ.first_ns)
                continue
            seen[key] = occ.first_ns
            if args.json:
                out.write(json.dumps(dataclasses.asdict(occ)) + "\n")
            elif tty:
                con.print(occurrence_line(occ, color=True), soft_wrap=True)
            else:
                out.write(occurrence_line(occ, color=False).plain + "\n")
        out.flush()
        return newest

    with ErrorFeed(store) as feed:
        started = time.time_ns()
        backlog = feed.latest(max(0, args.backlog))
        # Everything stored by now is old news (read before the backlog is shown, so a
        # reader who saw the backlog knows that anything stored later will be printed).
        known = () if args.once else feed.since(started - _TAIL_OVERLAP_NS, limit=100_000)
        emit(backlog)
        if args.once:
            return 0
        for occ in known:
            seen.setdefault((occ.fingerprint, occ.trace_id), occ.first_ns)
        cursor = started
        stop_at = None if args.max_seconds is None else time.monotonic() + args.max_seconds
        try:
            while stop_at is None or time.monotonic() < stop_at:
                pause = args.interval if stop_at is None else min(
                    args.interval, max(0.0, stop_at - time.monotonic()))
                time.sleep(pause)
                cursor = max(cursor, emit(feed.since(cursor - _TAIL_OVERLAP_NS)))
                _forget(seen, cursor - 2 * _TAIL_OVERLAP_NS)
        except KeyboardInterrupt:
            pass
    return 0


def _forget(seen: dict[tuple[str, str], int], before_ns: int) -> None:
    """Drop remembered occurrences too old to come back in a poll (keeps memory bounded)."""
    if len(seen) > 10_000:
        for key in [k for k, at in seen.items() if at < before_ns]:
            del seen[key]
