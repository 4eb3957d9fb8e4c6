"""``shockproof-faults run EXPERIMENT``: run an experiment file, report, exit 0/1 for CI."""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import Any

from ._experiment import ExperimentError, load_experiment, progress_for, run_experiment
from ._experiment_progress import NullProgress, Progress

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2

_EPILOG = """\
The file is a Chaos Toolkit-compatible subset (JSON or YAML): title, description,
configuration, steady-state-hypothesis (probes with tolerances), method (actions
and probes; Shockproof's own: add_fault, remove_fault, halt_faults, add_toxic,
remove_toxic, clear_toxics, load), rollbacks (always run, even after Ctrl-C).
See fault_injection/experiments/README.md.

Writes journal.json (Chaos Toolkit's journal shape, Shockproof's data under
"extensions"), report.md and report.html (charts) into --report-dir (default
DATA_DIR/experiments/<time>-<title>/).

examples:
  shockproof-faults run fault_injection/experiments/network.yaml
  shockproof-faults run experiment.yaml --url http://127.0.0.1:9000 --token-file .shockproof/faults.token
  shockproof-faults run experiment.yaml --var load_rate=5 --report-dir reports/ --dry-run

exit codes:
  0  completed: the steady state held before and after
  1  failed (the hypothesis did not hold, an action failed, a rollback failed) or aborted (Ctrl-C)
  2  invalid experiment file or options (each invalid field and why is printed)
  3  the app or the proxy control endpoint is unreachable
  4  the control token was refused (or none was found)
"""


def add_run_command(subparsers: Any) -> None:
    """Register ``run EXPERIMENT``."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "run", help="run an experiment file (steady state, method, rollbacks) and write its report",
        description="Run an experiment file and write its journal and report.",
        epilog=_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("experiment", type=Path, help="the experiment file (.yaml, .yml or .json)")
    parser.add_argument("--url", help="the app's base URL (configuration.app_url)")
    parser.add_argument("--proxy-url", help="the chaos proxy's control endpoint (configuration.proxy_url)")
    parser.add_argument("--token", help="the control token (configuration.token)")
    parser.add_argument("--token-file", help="a file holding the token (configuration.token_file)")
    parser.add_argument("--var", action="append", default=[], metavar="KEY=VALUE",
                        help="override a configuration value, repeatable (VALUE parsed as JSON when it can be)")
    parser.add_argument("--report-dir", type=Path, help="where journal.json, report.md and report.html go")
    parser.add_argument("--quiet", "-q", action="store_true", help="no progress display")
    parser.add_argument("--dry-run", action="store_true", help="only check the file and print the plan")
    parser.set_defaults(func=cmd_run)


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for pair in args.var:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ExperimentError([{"field": "--var", "message": f"takes KEY=VALUE, not {pair!r}"}])
        try:
            out[key] = json.loads(value)
        except ValueError:
            out[key] = value
    for key, option in (("app_url", "url"), ("proxy_url", "proxy_url"), ("token", "token"),
                        ("token_file", "token_file")):
        if getattr(args, option):
            out[key] = getattr(args, option)
    return out


def cmd_run(args: argparse.Namespace) -> int:
    try:
        experiment = load_experiment(args.experiment, _overrides(args))
    except ExperimentError as exc:
        print(f"invalid experiment {args.experiment}:", file=sys.stderr)
        for error in exc.errors:
            print(f"  {error['field']}: {error['message']}", file=sys.stderr)
        return EXIT_USAGE
    if args.dry_run:
        _print_plan(experiment)
        return EXIT_OK
    progress: Progress = NullProgress() if args.quiet else progress_for(sys.stdout, experiment.title)
    try:
        with _sigterm_interrupts():
            result = run_experiment(experiment, report_dir=args.report_dir, progress=progress)
    finally:
        progress.close()
    ext = next(e for e in result.journal["extensions"] if e.get("name") == "shockproof")
    verdict = f"{result.status}" + (" (deviated)" if result.deviated else "") + f", outcome {ext['outcome']}"
    print(f"experiment {experiment.title!r}: {verdict}")
    if ext.get("reason"):
        print(f"  reason: {ext['reason']}")
    if ext.get("rollbacks_failed"):
        print(f"  WARNING: {ext['rollbacks_failed']} rollback(s) failed: faults may still be active", file=sys.stderr)
    for name in ("journal", "markdown", "html"):
        print(f"  {name}: {result.paths[name]}")
    return result.exit_code


def _print_plan(experiment: Any) -> None:
    print(f"experiment {experiment.title!r} is valid")
    for section, activities in (("steady-state-hypothesis", experiment.probes), ("method", experiment.method),
                                ("rollbacks", experiment.rollbacks)):
        print(f"{section}:")
        for activity in activities:
            provider = activity.provider
            what = provider.func if provider.type == "shockproof" else f"{provider.method} {provider.url}"
            extra = " (background)" if activity.background else ""
            print(f"  - {activity.type} {activity.name}: {what}{extra}")


@contextmanager
def _sigterm_interrupts() -> Iterator[None]:
    """SIGTERM interrupts like Ctrl-C, so the rollbacks run when the job is killed politely."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(_signum: int, _frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
