"""``shockproof-faults``: drive fault injection in a running app, replay and check plans.

Commands that talk to an app use :class:`~fault_injection.control.ControlClient`;
``run`` and ``proxy`` come from the experiment runner and the chaos proxy
(``_experiment_cli.add_run_command`` / ``_proxy_cli.add_proxy_commands``), added
when those modules are importable.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TextIO

from ._context import FAULT_HEADER, sign
from ._io import load_document, load_plan_file, parse_plan_file, parse_rule, plan_schema
from ._plan import FAULT_KINDS, NETWORK_VARIANTS, Decision, PlanError, PlanFieldError
from .control import (
    DEFAULT_DATA_DIR,
    DEFAULT_PREFIX,
    ENV_TOKEN,
    TOKEN_FILE,
    ApiError,
    AppUnreachable,
    AuthFailed,
    ControlClient,
    read_token_file,
)

PROG = "shockproof-faults"
EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_UNREACHABLE, EXIT_AUTH = 0, 1, 2, 3, 4
ENV_URL = "SHOCKPROOF_FAULTS_URL"
ENV_PLAN = "SHOCKPROOF_FAULT_PLAN"
DEFAULT_URL = "http://127.0.0.1:8000"
DEFAULT_CALLS = 10

DESCRIPTION = ("Drive fault injection in a running app (add, list, remove, halt, status), "
               "preview and replay fault plans, check plan files.")

EXIT_CODES = """\
exit codes:
  0  ok
  1  an experiment or its steady-state hypothesis failed (run); a replayed test failed
  2  usage error or invalid input (bad option, invalid plan: the field and why are printed)
  3  the app is unreachable (nothing answers at --url)
  4  authentication failed (bad or missing token: 401; client not on loopback: 403)
"""

MAIN_EPILOG = f"""\
examples:
  {PROG} add --url http://127.0.0.1:8000 --token T --site 'catalog.*' --kind network --rate 1
  {PROG} add --token-file .shockproof/faults.token --site storage.write --kind io --errno ENOSPC --first 3
  {PROG} list --token-file .shockproof/faults.token
  {PROG} remove r-1a2b3c4d --token T
  {PROG} halt --token T
  {PROG} replay plan.yaml --site catalog.fetch=20
  {PROG} plan validate plan.yaml

The token: --token, else --token-file, else ${ENV_TOKEN}, else {DEFAULT_DATA_DIR}/{TOKEN_FILE}
(the app writes it there when it generates one). The URL: --url, else ${ENV_URL},
else {DEFAULT_URL}.

{EXIT_CODES}"""

ADD_EPILOG = f"""\
fault options by --kind:
  logic        --exception NAME (default ZeroDivisionError) --message TEXT
  validation   --field NAME (default input) --message TEXT
  network      --variant {{{','.join(NETWORK_VARIANTS)}}} (default refused)
  io           --errno NAME (ENOENT, EACCES, ENOSPC, EIO, EROFS, ...)
  latency      --seconds S --jitter S
  http_status  --status CODE --retry-after S

examples:
  {PROG} add --token T --site 'catalog.*' --kind network --variant reset --rate 0.3 --ttl 300
  {PROG} add --token T --site upload.analyse --kind logic --first 1
  {PROG} add --token T --site 'upstream.*' --kind latency --seconds 0.5 --jitter 0.1
  {PROG} add --token T --site catalog.fetch --kind http_status --status 503 --only-flagged
  {PROG} add --token T --file rules.yaml        # a rule or a whole plan, in the plan format

{EXIT_CODES}"""

REPLAY_EPILOG = f"""\
Prints, call by call, the faults a plan makes at each site: decisions depend only on
the seed, the rule, the site and the call's ordinal there, so this is exactly what a
run with the same calls gets.

Sites come from --site (NAME or NAME=CALLS), else the plan file's "calls", else every
rule site that is not a glob. With --run, the plan's recorded test is run again with
${ENV_PLAN} pointing at the plan, so fault_injection.strategies generates exactly it.

examples:
  {PROG} replay plan.yaml --site catalog.fetch=20 --site storage.write
  {PROG} replay failing-plan.json --run

{EXIT_CODES}"""

# Fields of the plan format and the options that set them, for error messages.
_FLAG_OF = {"site": "--site", "rate": "--rate", "first": "--first", "every": "--every",
            "after": "--after", "max_hits": "--max-hits", "for_seconds": "--for", "ttl": "--ttl",
            "only_flagged": "--only-flagged", "id": "--id", "fault.kind": "--kind",
            "fault.exception": "--exception", "fault.message": "--message", "fault.field": "--field",
            "fault.variant": "--variant", "fault.errno": "--errno", "fault.seconds": "--seconds",
            "fault.jitter": "--jitter", "fault.status": "--status", "fault.retry_after": "--retry-after"}
_FAULT_OPTIONS = ("exception", "message", "field", "variant", "errno", "seconds", "jitter",
                  "status", "retry_after")
_FAULT_HELP = {
    "exception": ("NAME", "logic: exception class (default ZeroDivisionError)"),
    "message": ("TEXT", "the injected exception's message"),
    "field": ("NAME", "validation: the invalid field (default input)"),
    "variant": ("VARIANT", f"network: {', '.join(NETWORK_VARIANTS)} (default refused)"),
    "errno": ("NAME", "io: ENOENT, EACCES, ENOSPC, EIO, EROFS, ..."),
    "seconds": ("S", "latency: seconds to wait"),
    "jitter": ("S", "latency: +/- seconds of deterministic jitter"),
    "status": ("CODE", "http_status: 400..599"),
    "retry_after": ("S", "http_status: Retry-After seconds (default 1 for 429/503)"),
}
_TRIGGERS = ("rate", "first", "every", "after", "max_hits", "for_seconds", "ttl")


class UsageError(Exception):
    """Bad input on the command line (exit code 2)."""


# -- the parser ------------------------------------------------------------------------------------


def _formatter(prog: str) -> argparse.HelpFormatter:
    return argparse.RawDescriptionHelpFormatter(prog, max_help_position=32)


def _connection(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("connection")
    group.add_argument("--url", default=os.environ.get(ENV_URL, DEFAULT_URL),
                       help=f"the app's base URL (default: ${ENV_URL} or {DEFAULT_URL})")
    group.add_argument("--token", help=f"the control token (default: ${ENV_TOKEN})")
    group.add_argument("--token-file", type=Path,
                       help=f"a file holding the token (default: {DEFAULT_DATA_DIR}/{TOKEN_FILE})")
    group.add_argument("--prefix", default=DEFAULT_PREFIX, help=f"the API's path (default: {DEFAULT_PREFIX})")
    group.add_argument("--timeout", type=float, default=5.0, help="seconds to wait for the app (default: 5)")


def _sub(subparsers: Any, name: str, help_text: str, epilog: str = EXIT_CODES,
         func: Callable[[argparse.Namespace], int] | None = None) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        name, help=help_text, description=help_text, epilog=epilog, formatter_class=_formatter)
    if func is not None:
        parser.set_defaults(func=func)
    return parser


def _add_parser(subparsers: Any) -> None:
    p = _sub(subparsers, "add", "arm a fault rule in a running app", ADD_EPILOG, cmd_add)
    _connection(p)
    what = p.add_argument_group("rule")
    what.add_argument("--file", type=Path, help="a rule or plan file (JSON/YAML) instead of the options")
    what.add_argument("--site", help="site name or glob, e.g. 'catalog.*'")
    what.add_argument("--kind", choices=FAULT_KINDS, help="what to inject")
    what.add_argument("--id", help="the rule id (default: a hash of the rule)")
    for name in _FAULT_OPTIONS:
        kind = float if name in ("seconds", "jitter", "retry_after") else int if name == "status" else str
        metavar, text = _FAULT_HELP[name]
        what.add_argument("--" + name.replace("_", "-"), dest=name, type=kind, metavar=metavar, help=text)
    how = p.add_argument_group("triggers (all optional; all given must agree)")
    how.add_argument("--rate", type=float, help="probability per call, 0..1 (default 1)")
    how.add_argument("--first", type=int, metavar="N", help="only the first N calls")
    how.add_argument("--every", type=int, metavar="N", help="every Nth call")
    how.add_argument("--after", type=int, metavar="N", help="only after N calls")
    how.add_argument("--max-hits", type=int, metavar="N", help="at most N faults per site")
    how.add_argument("--for", dest="for_seconds", type=float, metavar="S", help="fire for S seconds")
    how.add_argument("--ttl", type=float, metavar="S", help="remove the rule after S seconds")
    how.add_argument("--only-flagged", action="store_true",
                     help=f"only requests with an authorised {FAULT_HEADER} header")
    how.add_argument("--seed", type=int, help="seed for the rule's draws (default: the app's)")


def build_parser() -> argparse.ArgumentParser:
    """The ``shockproof-faults`` argument parser (with ``run``/``proxy`` when available)."""
    parser = argparse.ArgumentParser(prog=PROG, description=DESCRIPTION,
                                     epilog=MAIN_EPILOG, formatter_class=_formatter)
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    _add_parser(subparsers)
    p = _sub(subparsers, "list", "list the armed rules with their counters", func=cmd_list)
    _connection(p)
    p.add_argument("--json", action="store_true", help="print the API's JSON answer")
    p = _sub(subparsers, "remove", "disarm rules by id", func=cmd_remove)
    _connection(p)
    p.add_argument("rule_ids", nargs="+", metavar="RULE_ID")
    p = _sub(subparsers, "halt", "disarm every rule, now", func=cmd_halt)
    _connection(p)
    p = _sub(subparsers, "status", "is fault injection on, how many rules, how many faults", func=cmd_status)
    _connection(p)
    p.add_argument("--json", action="store_true", help="print the API's JSON answer")
    p = _sub(subparsers, "header", f"print an authorised {FAULT_HEADER} header for only-flagged rules",
             func=cmd_header)
    p.add_argument("--token", help=f"the control token (default: ${ENV_TOKEN})")
    p.add_argument("--token-file", type=Path, help=f"default: {DEFAULT_DATA_DIR}/{TOKEN_FILE}")
    p.add_argument("--rules", default="*", help="'*' (default) or comma-separated rule ids")
    _replay_parser(subparsers)
    _plan_parser(subparsers)
    _extensions(subparsers)
    return parser


def _replay_parser(subparsers: Any) -> None:
    p = _sub(subparsers, "replay", "print the faults a plan makes, call by call", REPLAY_EPILOG, cmd_replay)
    p.add_argument("plan", type=Path, metavar="PLAN", help="a plan file (.json, .yaml, .yml)")
    p.add_argument("--site", action="append", default=[], metavar="NAME[=CALLS]",
                   help="a site to preview (repeatable); CALLS defaults to --calls")
    p.add_argument("--calls", type=int, default=DEFAULT_CALLS, help=f"calls per site (default {DEFAULT_CALLS})")
    p.add_argument("--not-flagged", action="store_true", help="calls carry no fault header")
    p.add_argument("--json", action="store_true", help="print the decisions as JSON")
    p.add_argument("--run", action="store_true", help="re-run the plan's recorded test with this plan")


def _plan_parser(subparsers: Any) -> None:
    p = _sub(subparsers, "plan", "check plan files")
    plan_sub = p.add_subparsers(dest="plan_command", metavar="PLAN_COMMAND", required=True)
    v = _sub(plan_sub, "validate", "check plan files; print each invalid field and why", func=cmd_validate)
    v.add_argument("files", nargs="+", type=Path, metavar="FILE")
    _sub(plan_sub, "schema", "print the plan file's JSON Schema", func=cmd_schema)


_EXTENSIONS = (("fault_injection._experiment_cli", "add_run_command", "run"),
               ("fault_injection._proxy_cli", "add_proxy_commands", "proxy"))


def _extensions(subparsers: Any) -> None:
    for module_name, function, command in _EXTENSIONS:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name == module_name:
                continue  # not part of this installation
            _unavailable(subparsers, command, exc)
        except Exception as exc:
            _unavailable(subparsers, command, exc)
        else:
            getattr(module, function)(subparsers)


def _unavailable(subparsers: Any, command: str, exc: BaseException) -> None:
    message = f"'{command}' is unavailable: {type(exc).__name__}: {exc}"

    def fail(_args: argparse.Namespace) -> int:
        raise UsageError(message)

    p = _sub(subparsers, command, f"(unavailable: {type(exc).__name__})", func=fail)
    p.add_argument("rest", nargs=argparse.REMAINDER)


# -- commands ----------------------------------------------------------------------------------------


def _token(args: argparse.Namespace) -> str:
    if getattr(args, "token", None):
        return str(args.token)
    path = getattr(args, "token_file", None)
    if path is None and os.environ.get(ENV_TOKEN, "").strip():
        return os.environ[ENV_TOKEN].strip()
    default = Path(DEFAULT_DATA_DIR) / TOKEN_FILE
    if path is None and default.is_file():
        path = default
    if path is None:
        raise UsageError(f"no token: give --token or --token-file (or set ${ENV_TOKEN})")
    try:
        return read_token_file(path)
    except (OSError, ValueError) as exc:
        raise UsageError(f"cannot read the token file {path}: {exc}") from None


def _client(args: argparse.Namespace) -> ControlClient:
    try:
        return ControlClient(args.url, _token(args), prefix=args.prefix, timeout=args.timeout)
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def _rule_body(args: argparse.Namespace) -> dict[str, Any]:
    if args.file is not None:
        doc = load_document(args.file)
        if isinstance(doc, dict) and "rules" in doc:
            return parse_plan_file(doc).plan.to_dict()
        return parse_rule(doc).to_dict()
    if not args.site or not args.kind:
        raise UsageError("give --site and --kind (or --file)")
    fault = {"kind": args.kind} | {k: getattr(args, k) for k in _FAULT_OPTIONS if getattr(args, k) is not None}
    body: dict[str, Any] = {"site": args.site, "fault": fault}
    body |= {k: getattr(args, k) for k in _TRIGGERS if getattr(args, k) is not None}
    if args.only_flagged:
        body["only_flagged"] = True
    if args.id:
        body["id"] = args.id
    try:
        parse_rule(body)  # check here: the field and why, before any request
    except PlanError as exc:
        raise PlanError([PlanFieldError(field=_FLAG_OF.get(e["field"], e["field"]), message=e["message"])
                         for e in exc.errors]) from None
    return body


def cmd_add(args: argparse.Namespace) -> int:
    body = _rule_body(args)
    if args.seed is not None:
        body = {"seed": args.seed, "rules": body.get("rules", [body])}
    added = _client(args).add_plan(body) if "rules" in body else _client(args).add(body)
    for rule in added:
        _out(f"added {rule['id']}: {rule['site']} -> {_fault_label(rule['fault'])}")
    return EXIT_OK


def _fault_label(fault: dict[str, Any]) -> str:
    args = ", ".join(f"{k}={v}" for k, v in fault.items() if k != "kind")
    return f"{fault.get('kind')}({args})"


def cmd_list(args: argparse.Namespace) -> int:
    overview = _client(args).overview()
    if args.json:
        _out(json.dumps(overview, indent=2))
        return EXIT_OK
    rules = overview.get("rules", [])
    if not rules:
        _out(f"no rules armed (fault injection {'on' if overview.get('enabled') else 'off'})")
        return EXIT_OK
    rows = [["ID", "SITE", "FAULT", "TRIGGERS", "CALLS", "HITS", "EXPIRES IN"]]
    for r in rules:
        s = r.get("stats", {})
        triggers = " ".join(f"{k}={r[k]}" for k in (*_TRIGGERS, "only_flagged") if k in r) or "always"
        expires = "-" if s.get("expires_in") is None else f"{s['expires_in']:.0f}s"
        rows.append([r["id"], r["site"], _fault_label(r["fault"]), triggers, str(s.get("calls", 0)),
                     str(s.get("hits", 0)), expires])
    _out(_table(rows))
    return EXIT_OK


def _table(rows: list[list[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in rows)


def cmd_remove(args: argparse.Namespace) -> int:
    client = _client(args)
    for rule_id in args.rule_ids:
        client.remove(rule_id)
        _out(f"removed {rule_id}")
    return EXIT_OK


def cmd_halt(args: argparse.Namespace) -> int:
    count = _client(args).halt()
    _out(f"halted: {count} rule(s) disarmed")
    return EXIT_OK


def cmd_status(args: argparse.Namespace) -> int:
    status = _client(args).status()
    if args.json:
        _out(json.dumps(status, indent=2))
        return EXIT_OK
    _out(f"fault injection: {'on' if status.get('enabled') else 'off'}\n"
         f"active rules:    {status.get('active_rules')}\n"
         f"faults injected: {status.get('injected')}\n"
         f"seed:            {status.get('seed')}\n"
         f"generation:      {status.get('generation')} (halts: {status.get('halts')}, "
         f"expired: {status.get('expired')})")
    return EXIT_OK


def cmd_header(args: argparse.Namespace) -> int:
    try:
        _out(f"{FAULT_HEADER}: {sign(_token(args), args.rules)}")
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    return EXIT_OK


def _replay_sites(args: argparse.Namespace, calls: dict[str, int], rule_sites: list[str]) -> dict[str, int]:
    if args.calls < 0:
        raise UsageError("--calls must be >= 0")
    if args.site:
        out = {}
        for spec in args.site:
            name, sep, count = spec.partition("=")
            if not name or (sep and not count.isdigit()):
                raise UsageError(f"--site {spec!r}: use NAME or NAME=CALLS")
            out[name] = int(count) if sep else args.calls
        return out
    if calls:
        return dict(calls)
    literal = [s for s in rule_sites if not any(c in s for c in "*?[")]
    if not literal:
        raise UsageError("the plan's sites are all globs: name sites with --site NAME[=CALLS]")
    return dict.fromkeys(literal, args.calls)


def cmd_replay(args: argparse.Namespace) -> int:
    doc = load_plan_file(args.plan)
    if args.run:
        return _rerun(args.plan, doc.test)
    sites = _replay_sites(args, dict(doc.calls), list(dict.fromkeys(r.site for r in doc.plan.rules)))
    decisions = {name: doc.plan.decisions(name, n, flagged=not args.not_flagged) for name, n in sites.items()}
    if args.json:
        _out(json.dumps({"seed": doc.plan.seed, "sites": {name: [_decision_json(d) for d in ds]
                                                           for name, ds in decisions.items()}}, indent=2))
        return EXIT_OK
    _out(f"plan {args.plan} (seed {doc.plan.seed}, {len(doc.plan.rules)} rule(s))")
    for name, ds in decisions.items():
        injected = sum(1 for d in ds if d.injected)
        _out(f"\n{name}: {injected} of {len(ds)} call(s) get a fault")
        for d in ds:
            _out("  " + d.describe())
    return EXIT_OK


def _decision_json(d: Decision) -> dict[str, Any]:
    return {"ordinal": d.ordinal, "fired": list(d.fired), "raised": d.raised, "fault": d.fault,
            "delay": d.delay}


def _rerun(plan: Path, test: str | None) -> int:
    if not test:
        raise UsageError(f"{plan} records no test to re-run (its \"test\" field is empty)")
    env = {**os.environ, ENV_PLAN: str(plan.resolve())}
    _out(f"re-running {test} with {ENV_PLAN}={plan}")
    code = subprocess.call([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", test], env=env)
    return EXIT_OK if code == 0 else EXIT_FAILED


def cmd_validate(args: argparse.Namespace) -> int:
    bad = 0
    for path in args.files:
        try:
            doc = load_plan_file(path)
        except PlanError as exc:
            bad += 1
            _err(f"{path}: invalid plan")
            for e in exc.errors:
                _err(f"  {e['field']}: {e['message']}")
            continue
        _out(f"{path}: ok ({len(doc.plan.rules)} rule(s), seed {doc.plan.seed})")
    return EXIT_USAGE if bad else EXIT_OK


def cmd_schema(_args: argparse.Namespace) -> int:
    _out(json.dumps(plan_schema(), indent=2))
    return EXIT_OK


# -- running ----------------------------------------------------------------------------------------


def _out(text: str, stream: TextIO | None = None) -> None:
    print(text, file=stream or sys.stdout)


def _err(text: str) -> None:
    print(text, file=sys.stderr)


def _fail(code: int, message: str, errors: Sequence[PlanFieldError] = ()) -> int:
    _err(f"{PROG}: error: {message}")
    for e in errors:
        _err(f"  {e['field']}: {e['message']}")
    return code


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit code (see ``--help``)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help (0) and usage errors (2)
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    try:
        result = args.func(args)
    except PlanError as exc:
        return _fail(EXIT_USAGE, "invalid plan", exc.errors)
    except UsageError as exc:
        return _fail(EXIT_USAGE, str(exc))
    except AppUnreachable as exc:
        return _fail(EXIT_UNREACHABLE, f"{exc} (is the app running? check --url)")
    except AuthFailed as exc:
        return _fail(EXIT_AUTH, str(exc))
    except ApiError as exc:
        return _fail(EXIT_USAGE if exc.status < 500 else EXIT_FAILED, str(exc), exc.errors)
    except KeyboardInterrupt:
        return _fail(130, "interrupted")
    return int(result) if isinstance(result, int) else EXIT_OK
