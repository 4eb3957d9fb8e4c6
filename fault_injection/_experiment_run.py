"""Running an experiment the Chaos Toolkit way, and the journal it leaves.

Order: steady-state hypothesis (before) -> method -> hypothesis (after) ->
rollbacks. The method runs only when the hypothesis held before. Rollbacks run
**always**: after a failed hypothesis, an :class:`Abort` (the control plane is
unreachable or refuses the token) and a ``KeyboardInterrupt`` alike.

Status (Chaos Toolkit's): ``completed``; ``failed`` (the hypothesis did not hold
before or after — ``deviated`` when after — or an action raised); ``aborted``
(interrupted, or the control plane failed). Shockproof's own data (timeline,
fault windows, load figures and time series, outcome and exit code) is under
``extensions`` as ``{"name": "shockproof", ...}``.
"""

from __future__ import annotations

import platform
import threading
import time
import traceback
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Final

from resilience import __version__

from ._experiment_actions import Abort, RunContext, execute, for_journal
from ._experiment_load import Recorder, series, summarize
from ._experiment_model import Activity, Experiment, redact
from ._experiment_progress import NullProgress, Progress
from ._experiment_tolerance import tolerance_met

#: Called before every activity with the phase and the activity (tests use it to interrupt).
Hook = Callable[[str, Activity], None]

EXIT_OK: Final = 0
EXIT_FAILED: Final = 1
EXIT_UNREACHABLE: Final = 3
_TICK: Final = 0.5
_JOIN: Final = 30.0


def _iso(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class Runner:
    """Runs one experiment once; :meth:`run` returns the journal (a JSON-ready dict)."""

    def __init__(self, experiment: Experiment, *, progress: Progress | None = None, hook: Hook | None = None) -> None:
        self.experiment = experiment
        self.ctx = RunContext(experiment.configuration)
        self.progress: Progress = progress or NullProgress()
        self.hook = hook
        self._records: list[dict[str, Any]] = []
        self._background: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._abort: Abort | None = None
        self._failed_actions = 0

    # -- the run -------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        started = datetime.now(UTC)
        self.ctx.recorder = Recorder()
        ticker = threading.Thread(target=self._tick, name="shockproof-progress", daemon=True)
        ticker.start()
        states: dict[str, Any] = {"before": None, "after": None, "during": []}
        status, deviated, outcome = "completed", False, "ok"
        try:
            status, deviated, outcome = self._main(states)
        except KeyboardInterrupt:
            status, outcome = "aborted", "interrupted"
            self.ctx.note("interrupted", "KeyboardInterrupt")
        except Abort as exc:
            status, outcome, self._abort = "aborted", "control-failed", exc
            self.ctx.note("aborted", str(exc))
        finally:
            self.ctx.stop.set()
            self._join_background()
            rollbacks = self._rollbacks()
            ticker.join(_TICK * 4)
            self.progress.stats(self.ctx.recorder.live())
        ended = datetime.now(UTC)
        return self._journal(started, ended, status, deviated, outcome, states, rollbacks)

    def _main(self, states: dict[str, Any]) -> tuple[str, bool, str]:
        self._phase("steady-state-before")
        states["before"] = self._hypothesis("before")
        if not states["before"]["steady_state_met"]:
            unreachable = any(p.get("unreachable") for p in states["before"]["probes"])
            return "failed", False, "unreachable" if unreachable else "steady-state-not-met"
        self._phase("method")
        self._method()
        self._phase("steady-state-after")
        states["after"] = self._hypothesis("after")
        if not states["after"]["steady_state_met"]:
            return "failed", True, "deviated"
        if self._failed_actions:
            return "failed", False, "action-failed"
        return "completed", False, "ok"

    def _phase(self, name: str) -> None:
        self.ctx.note("phase", name)
        self.progress.phase(name)

    def _tick(self) -> None:
        while not self.ctx.stop.wait(_TICK):
            self.progress.stats(self.ctx.recorder.live())

    # -- hypothesis, method, rollbacks ------------------------------------------------------
    def _hypothesis(self, when: str) -> dict[str, Any]:
        probes = [self._activity(f"steady-state-{when}", probe) for probe in self.experiment.probes]
        met = all(p.get("tolerance_met") for p in probes)
        self.ctx.note("hypothesis", self.experiment.hypothesis_title, when=when, met=met)
        return {"steady_state_met": met, "probes": probes}

    def _method(self) -> None:
        for activity in self.experiment.method:
            self._raise_if_aborted()
            if activity.background:
                self._start_background(activity)
            else:
                self._keep(self._activity("method", activity))
        self._join_background()
        self._raise_if_aborted()

    def _rollbacks(self) -> list[dict[str, Any]]:
        if not self.experiment.rollbacks:
            return []
        self._phase("rollbacks")
        done = []
        for activity in self.experiment.rollbacks:
            try:
                done.append(self._activity("rollbacks", activity, pauses=threading.Event()))
            except KeyboardInterrupt:  # rollbacks always run: record it and carry on
                done.append(self._record(activity, {"start": _iso(datetime.now(UTC))}, None, "interrupted"))
            except Abort as exc:
                done.append(self._record(activity, {"start": _iso(datetime.now(UTC))}, None, str(exc)))
        return done

    # -- one activity -----------------------------------------------------------------------
    def _activity(self, phase: str, activity: Activity, pauses: threading.Event | None = None) -> dict[str, Any]:
        wake = pauses if pauses is not None else self.ctx.stop
        if self.hook is not None:
            self.hook(phase, activity)
        wake.wait(activity.pause_before)
        self.ctx.note("activity", activity.name, phase=phase, type=activity.type)
        head = {"start": _iso(datetime.now(UTC)), "t0": time.perf_counter()}
        try:
            output = execute(self.ctx, activity)
        except Abort as exc:
            self._done(phase, self._record(activity, head, None, str(exc)))
            raise
        except Exception as exc:  # an activity's failure is data, not a crash of the runner
            record = self._record(activity, head, None, "".join(traceback.format_exception_only(exc)).strip())
            record["unreachable"] = isinstance(exc, OSError)
        else:
            record = self._record(activity, head, output, None)
        if activity.type == "action" and record["status"] == "failed" and phase == "method":
            self._failed_actions += 1
        self._done(phase, record)
        wake.wait(activity.pause_after)
        return record

    def _record(self, activity: Activity, head: dict[str, Any], output: Any, error: str | None) -> dict[str, Any]:
        t0 = head.pop("t0", time.perf_counter())
        record: dict[str, Any] = {
            "activity": redact(dict(activity.raw)),
            "status": "failed" if error is not None else "succeeded",
            "output": for_journal(output),
            **head,
            "end": _iso(datetime.now(UTC)),
            "duration": round(time.perf_counter() - t0, 4),
        }
        if error is not None:
            record["exception"] = error.splitlines()
        if activity.tolerance is not None:
            record["tolerance_met"] = tolerance_met(activity.tolerance, output, error is not None)
        return record

    def _done(self, phase: str, record: dict[str, Any]) -> None:
        name = str(record["activity"].get("name", ""))
        detail = record["exception"][-1] if "exception" in record else ""
        if "tolerance_met" in record:
            detail = detail or ("tolerance met" if record["tolerance_met"] else "tolerance NOT met")
        self.progress.activity(phase, name, str(record["status"]), detail)

    def _keep(self, record: dict[str, Any]) -> None:
        with self._lock:
            self._records.append(record)

    # -- background activities ---------------------------------------------------------------
    def _start_background(self, activity: Activity) -> None:
        def body() -> None:
            try:
                self._keep(self._activity("method", activity))
            except Abort as exc:
                self._abort = exc
                self.ctx.stop.set()

        thread = threading.Thread(target=body, name=f"shockproof-bg-{activity.name}", daemon=True)
        self._background.append(thread)
        thread.start()

    def _join_background(self) -> None:
        for thread in self._background:
            thread.join(_JOIN)
        self._background = [t for t in self._background if t.is_alive()]

    def _raise_if_aborted(self) -> None:
        if self._abort is not None:
            raise self._abort

    # -- the journal ------------------------------------------------------------------------
    def _journal(
        self, started: datetime, ended: datetime, status: str, deviated: bool, outcome: str,
        states: dict[str, Any], rollbacks: list[dict[str, Any]],
    ) -> dict[str, Any]:
        duration = (ended - started).total_seconds()
        rollback_failed = sum(r["status"] != "succeeded" for r in rollbacks)
        exit_code = self._exit_code(status, outcome, rollback_failed)
        samples = self.ctx.recorder.samples()
        theirs = [e for e in self.experiment.raw.get("extensions", []) or [] if isinstance(e, dict)]
        return {
            "chaoslib-version": f"shockproof-{__version__}",
            "platform": platform.platform(),
            "node": platform.node(),
            "experiment": dict(self.experiment.raw),
            "start": _iso(started),
            "end": _iso(ended),
            "duration": round(duration, 3),
            "status": status,
            "deviated": deviated,
            "steady_states": states,
            "run": self._records,
            "rollbacks": rollbacks,
            "extensions": [*theirs, {
                "name": "shockproof",
                "version": __version__,
                "outcome": outcome,
                "reason": str(self._abort) if self._abort else "",
                "exit_code": exit_code,
                "rollbacks_failed": rollback_failed,
                "source": self.experiment.source,
                "timeline": self.ctx.timeline,
                "faults": [_window(w.to_dict(), duration) for w in self.ctx.windows],
                "load": summarize(samples),
                "series": series(samples, duration),
            }],
        }

    def _exit_code(self, status: str, outcome: str, rollback_failed: int) -> int:
        if self._abort is not None:
            return self._abort.exit_code
        if outcome == "unreachable":
            return EXIT_UNREACHABLE
        return EXIT_OK if status == "completed" and not rollback_failed else EXIT_FAILED


def _window(window: dict[str, Any], duration: float) -> dict[str, Any]:
    """A fault window; one never closed (no rollback removed it) ends with the run."""
    left_open = window["end"] is None
    return {**window, "end": round(duration, 3) if left_open else window["end"], "left_open": left_open}


def run(experiment: Experiment, *, progress: Progress | None = None, hook: Hook | None = None) -> dict[str, Any]:
    """Run ``experiment`` once and return its journal."""
    return Runner(experiment, progress=progress, hook=hook).run()
