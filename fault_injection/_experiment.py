"""Experiments, end to end: load the file, run it, write the journal and the reports.

::

    result = run_experiment("fault_injection/experiments/network.yaml")
    result.exit_code            # 0 completed, 1 failed/aborted, 3 unreachable, 4 token refused
    result.paths["html"]        # the report with its charts

The pieces: :mod:`._experiment_model` (the file format and its checks),
:mod:`._experiment_tolerance` (probe tolerances, JSON paths),
:mod:`._experiment_actions` (what activities do), :mod:`._experiment_load`
(traffic and figures), :mod:`._experiment_run` (the runner and the journal),
:mod:`._experiment_progress` (the live display), :mod:`._report` (Markdown/HTML).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ._experiment_model import Experiment, ExperimentError, load_experiment, parse_experiment
from ._experiment_progress import NullProgress, PlainProgress, Progress, RichProgress, progress_for
from ._experiment_run import Hook, Runner
from ._report import render_html, render_markdown, shockproof_extension, write_reports

__all__ = [
    "Experiment",
    "ExperimentError",
    "ExperimentResult",
    "NullProgress",
    "PlainProgress",
    "Progress",
    "RichProgress",
    "default_report_dir",
    "load_experiment",
    "parse_experiment",
    "progress_for",
    "render_html",
    "render_markdown",
    "run_experiment",
    "write_reports",
]


@dataclass(frozen=True, slots=True)
class ExperimentResult:
    """A finished run: its journal, the CLI exit code, and where the files went."""

    journal: Mapping[str, Any]
    exit_code: int
    paths: Mapping[str, Path] = field(default_factory=dict)

    @property
    def status(self) -> str:
        return str(self.journal["status"])

    @property
    def deviated(self) -> bool:
        return bool(self.journal["deviated"])


def default_report_dir(experiment: Experiment, now: datetime | None = None) -> Path:
    """``<data_dir>/experiments/<UTC time>-<title slug>/``."""
    moment = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%SZ")
    slug = re.sub(r"[^a-z0-9]+", "-", experiment.title.lower()).strip("-")[:48] or "experiment"
    return Path(str(experiment.configuration["data_dir"])) / "experiments" / f"{moment}-{slug}"


def run_experiment(
    source: str | os.PathLike[str] | Experiment,
    *,
    overrides: Mapping[str, Any] | None = None,
    report_dir: str | os.PathLike[str] | None = None,
    progress: Progress | None = None,
    hook: Hook | None = None,
) -> ExperimentResult:
    """Run an experiment (a file path or a parsed one), then write journal.json,
    report.md and report.html (into ``report_dir`` or :func:`default_report_dir`).

    Raises :class:`ExperimentError` for an invalid file; nothing runs then.
    """
    experiment = source if isinstance(source, Experiment) else load_experiment(source, overrides)
    journal = Runner(experiment, progress=progress, hook=hook).run()
    target = Path(report_dir) if report_dir is not None else default_report_dir(experiment)
    paths = write_reports(journal, target)
    return ExperimentResult(journal, int(shockproof_extension(journal)["exit_code"]), paths)
