"""``shockproof-faults proxy ...``: run the chaos proxy, and add/remove/list its toxics."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import Any

from .proxy import (
    ChaosProxy,
    ControlAuthFailed,
    ControlServer,
    ControlUnreachable,
    InvalidToxic,
    ProxyClient,
    ProxyError,
    Toxic,
    format_address,
    parse_address,
)
from .proxy._control import DEFAULT_CONTROL, TOKEN_FILE, ensure_token, read_token
from .proxy._toxics import SCHEMAS, TOXIC_TYPES

EXIT_OK, EXIT_USAGE, EXIT_UNREACHABLE, EXIT_AUTH = 0, 2, 3, 4
ENV_TOKEN = "SHOCKPROOF_FAULTS_TOKEN"
DEFAULT_DATA_DIR = ".shockproof"
_FORMATTER = argparse.RawDescriptionHelpFormatter

_EXIT_CODES = """\
exit codes:
  0  ok
  2  usage error or invalid input (bad address, invalid toxic: the field and why are printed)
  3  the proxy's control endpoint is unreachable (nothing answers at --url)
  4  authentication failed (bad or missing token)
"""

_PROXY_EPILOG = f"""\
The proxy sits between an app and its upstream, so network faults come from real
sockets. Toxics (Toxiproxy's model; times in seconds, sizes in bytes):
{chr(10).join(f"  {t:<11} {', '.join(SCHEMAS[t]) or '-'}" for t in TOXIC_TYPES)}

examples:
  shockproof-faults proxy start --listen 127.0.0.1:8012 --upstream 127.0.0.1:8002
  shockproof-faults proxy toxic add --type latency -a latency=0.5 -a jitter=0.1
  shockproof-faults proxy toxic add --type reset_peer --stream downstream --toxicity 0.3
  shockproof-faults proxy toxic add --type down -a mode=refuse --name outage
  shockproof-faults proxy toxic list
  shockproof-faults proxy toxic remove latency_downstream
  shockproof-faults proxy halt

Control endpoint: HTTP on loopback (default {DEFAULT_CONTROL}), bearer token. The token:
--token, else --token-file, else ${ENV_TOKEN}, else {DEFAULT_DATA_DIR}/{TOKEN_FILE}
(`proxy start` creates it there, mode 0600, when there is none).

{_EXIT_CODES}"""


def add_proxy_commands(subparsers: Any) -> None:
    """Register ``proxy start | status | halt | toxic add | toxic remove | toxic list``."""
    proxy = _parser(subparsers, "proxy", "run the TCP chaos proxy and manage its toxics", _PROXY_EPILOG)
    commands = proxy.add_subparsers(dest="proxy_command", required=True, metavar="COMMAND")
    _start_parser(commands)
    _client_parser(commands, "status", "show the proxy's addresses, connections and toxics", _cmd_status)
    _client_parser(commands, "halt", "remove every toxic at once", _cmd_halt)
    toxic = _parser(commands, "toxic", "add, remove or list toxics", _PROXY_EPILOG)
    toxics = toxic.add_subparsers(dest="toxic_command", required=True, metavar="COMMAND")
    add = _client_parser(toxics, "add", "install a toxic on a running proxy", _cmd_add)
    add.add_argument("--type", "-t", required=True, choices=TOXIC_TYPES, help="the toxic's type")
    add.add_argument("--name", "-n", default="", help="unique name (default: TYPE_STREAM)")
    add.add_argument("--stream", "-s", choices=("downstream", "upstream"), default="downstream",
                     help="downstream = upstream->client (default), upstream = client->upstream")
    add.add_argument("--toxicity", type=float, default=1.0,
                     help="probability it applies to a connection, 0..1 (default 1)")
    add.add_argument("--attribute", "-a", action="append", default=[], metavar="KEY=VALUE",
                     help="a type attribute, repeatable (e.g. -a latency=0.5)")
    remove = _client_parser(toxics, "remove", "remove a toxic by name", _cmd_remove)
    remove.add_argument("name", help="the toxic's name (see: toxic list)")
    listing = _client_parser(toxics, "list", "list the installed toxics", _cmd_list)
    listing.add_argument("--json", action="store_true", help="print JSON")


def _parser(subparsers: Any, name: str, text: str, epilog: str = _EXIT_CODES) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        name, help=text, description=text, epilog=epilog, formatter_class=_FORMATTER
    )
    return parser


def _token_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--token", help=f"the control token (default: ${ENV_TOKEN})")
    parser.add_argument("--token-file", type=Path, help=f"a file holding the token (default: DATA_DIR/{TOKEN_FILE})")
    parser.add_argument("--data-dir", type=Path, default=Path(DEFAULT_DATA_DIR),
                        help=f"where {TOKEN_FILE} lives (default: {DEFAULT_DATA_DIR})")


def _client_parser(subparsers: Any, name: str, text: str, func: Any) -> argparse.ArgumentParser:
    parser = _parser(subparsers, name, text)
    parser.add_argument("--url", default=f"http://{DEFAULT_CONTROL}",
                        help=f"the proxy's control endpoint (default: http://{DEFAULT_CONTROL})")
    parser.add_argument("--timeout", type=float, default=5.0, help="seconds to wait (default: 5)")
    _token_options(parser)
    parser.set_defaults(func=_guarded(func))
    return parser


def _start_parser(subparsers: Any) -> None:
    parser = _parser(subparsers, "start", "run a chaos proxy until Ctrl-C or SIGTERM", _PROXY_EPILOG)
    parser.add_argument("--listen", default="127.0.0.1:8012", help="HOST:PORT to accept on (default 127.0.0.1:8012)")
    parser.add_argument("--upstream", default="127.0.0.1:8002", help="HOST:PORT to forward to (default 127.0.0.1:8002)")
    parser.add_argument("--control", default=DEFAULT_CONTROL,
                        help=f"loopback HOST:PORT of the control endpoint (default {DEFAULT_CONTROL})")
    parser.add_argument("--no-control", action="store_true", help="no control endpoint (toxics from --toxic only)")
    parser.add_argument("--toxic", action="append", default=[], metavar="JSON",
                        help='a toxic to start with, as JSON, repeatable: \'{"type": "latency", '
                             '"attributes": {"latency": 0.2}}\'')
    parser.add_argument("--seed", type=int, default=0, help="seed of the per-connection toxicity draws (default 0)")
    parser.add_argument("--name", default="proxy", help="a name shown in status (default: proxy)")
    _token_options(parser)
    parser.set_defaults(func=_guarded(_cmd_start))


# -- helpers ------------------------------------------------------------------------------


class _Usage(Exception):
    pass


def _fail(code: int, message: str) -> int:
    print(f"shockproof-faults proxy: error: {message}", file=sys.stderr)
    return code


def _guarded(func: Any) -> Any:
    def run(args: argparse.Namespace) -> int:
        try:
            return int(func(args))
        except ControlUnreachable as exc:
            return _fail(EXIT_UNREACHABLE, f"{exc.detail} (is `proxy start` running? check --url)")
        except ControlAuthFailed as exc:
            return _fail(EXIT_AUTH, f"the proxy refused the token ({exc.status}): check --token/--token-file")
        except InvalidToxic as exc:
            return _fail(EXIT_USAGE, f"invalid toxic: {exc.field}: {exc.reason}")
        except (_Usage, ProxyError, ValueError) as exc:
            return _fail(EXIT_USAGE, str(exc))

    return run


def _client_token(args: argparse.Namespace) -> str:
    if args.token:
        return str(args.token)
    env = os.environ.get(ENV_TOKEN, "").strip()
    path = args.token_file or (None if env else args.data_dir / TOKEN_FILE)
    if path is None:
        return env
    return _read(path)


def _read(path: Path) -> str:
    try:
        return read_token(path)
    except (OSError, ValueError) as exc:
        raise _Usage(f"no token: {exc} (give --token or --token-file)") from None


def _client(args: argparse.Namespace) -> ProxyClient:
    return ProxyClient(args.url, _client_token(args), timeout=args.timeout)


def _attributes(pairs: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise _Usage(f"--attribute takes KEY=VALUE, not {pair!r}")
        try:
            out[key] = float(value)
        except ValueError:
            out[key] = value
    return out


# -- commands -----------------------------------------------------------------------------


def _cmd_add(args: argparse.Namespace) -> int:
    toxic = Toxic(args.type, args.name, args.stream, args.toxicity, _attributes(args.attribute))
    added = _client(args).add_toxic(toxic)
    print(f"added {added.name}: {_describe(added.to_dict())}")
    return EXIT_OK


def _cmd_remove(args: argparse.Namespace) -> int:
    removed = _client(args).remove_toxic(args.name)
    print(f"removed {removed.name}")
    return EXIT_OK


def _cmd_list(args: argparse.Namespace) -> int:
    toxics = _client(args).status()["toxics"]
    if args.json:
        print(json.dumps(toxics, indent=2))
    elif not toxics:
        print("no toxics")
    for toxic in [] if args.json else toxics:
        print(f"{toxic['name']:<24} {_describe(toxic)}  hits={toxic.get('hits', 0)}")
    return EXIT_OK


def _cmd_status(args: argparse.Namespace) -> int:
    print(json.dumps(_client(args).status(), indent=2))
    return EXIT_OK


def _cmd_halt(args: argparse.Namespace) -> int:
    removed = _client(args).halt()
    print(f"removed {len(removed)} toxic(s)" + (f": {', '.join(removed)}" if removed else ""))
    return EXIT_OK


def _describe(toxic: dict[str, Any]) -> str:
    attrs = " ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in toxic["attributes"].items())
    return f"{toxic['type']} {toxic['stream']} toxicity={toxic['toxicity']:g} {attrs}".rstrip()


def _cmd_start(args: argparse.Namespace) -> int:
    with _stop_on_signal() as stop:
        return _serve(args, stop)


def _serve(args: argparse.Namespace, stop: threading.Event) -> int:
    toxics = [Toxic.from_dict(_json(text)) for text in args.toxic]
    proxy = ChaosProxy(args.upstream, listen=args.listen, seed=args.seed, name=args.name, toxics=toxics)
    control = None if args.no_control else _control_server(args, proxy)
    try:
        proxy.start()
    except OSError as exc:
        if control is not None:
            control.stop()
        raise _Usage(f"cannot listen on {args.listen}: {exc.strerror or exc}") from None
    print(f"shockproof proxy: {format_address(proxy.listen)} -> {format_address(proxy.upstream)}", flush=True)
    if control is not None:
        control.start()
        print(f"control endpoint: {control.url}/_shockproof/proxy", flush=True)
    try:
        while not stop.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        if control is not None:
            control.stop()
        proxy.stop()
    print("shockproof proxy: stopped", flush=True)
    return EXIT_OK


def _json(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError as exc:
        raise _Usage(f"--toxic is not JSON: {exc}") from None


def _control_server(args: argparse.Namespace, proxy: ChaosProxy) -> ControlServer:
    host, port = parse_address(args.control, what="--control")
    token = args.token or (_read(args.token_file) if args.token_file else os.environ.get(ENV_TOKEN, "").strip())
    if not token:
        token, path, created = ensure_token(args.data_dir)
        if created:
            print(f"control token {token} (written to {path}, mode 0600)", flush=True)
        else:
            print(f"control token: read from {path}", flush=True)
    try:
        return ControlServer(proxy, token, host=host, port=port)
    except OSError as exc:
        raise _Usage(f"cannot listen on {args.control} for the control endpoint: {exc.strerror or exc}") from None


@contextmanager
def _stop_on_signal() -> Iterator[threading.Event]:
    """An event set by SIGTERM (installed before anything is announced, so no TERM is missed)."""
    stop = threading.Event()

    def on_term(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, on_term) if main else None
    try:
        yield stop
    finally:
        if main:
            signal.signal(signal.SIGTERM, previous)
