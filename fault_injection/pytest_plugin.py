"""pytest plugin (entry point ``shockproof_faults``): the ``faults`` fixture.

::

    from fault_injection import network, io

    def test_catalog_degrades(faults, client):
        faults.add("catalog.*", network(), rate=1.0)
        assert client.get("/api/catalog").json["degraded"]

The fixture enables fault injection for the one test and *always* removes every
rule afterwards, and switches fault injection back off if it was off, whether the
test passed or failed. When a test that installed faults fails, the last plan it
installed is saved to ``.shockproof/failing-plans/<test>.json`` (with the calls
each site saw and the test id) and the report says how to replay it.

With Hypothesis, use ``faults.use(plan)`` (a context manager) inside the test body,
one plan per example; Hypothesis's ``function_scoped_fixture`` health check must be
suppressed for that (the fixture is reset by ``use`` for each example).
"""

from __future__ import annotations

import re
from collections.abc import Generator, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from ._io import PlanFile, save_plan
from ._plan import Fault, FaultPlan, Rule
from ._sites import (
    RuleStats,
    active_plan,
    add_rule,
    disable,
    enable,
    halt,
    install,
    installed,
    is_enabled,
    stats,
)

__all__ = ["Faults", "faults"]

FAILING_DIR = Path(".shockproof") / "failing-plans"


class Faults:
    """What the ``faults`` fixture gives a test: add rules or install plans, for this test only."""

    def __init__(self, nodeid: str = "") -> None:
        self.nodeid = nodeid
        self.seed = 0
        self.last_plan: FaultPlan | None = None
        self.calls: dict[str, int] = {}

    def add(self, site: str, fault: Fault, **triggers: Any) -> Rule:
        """Arm ``Rule(site, fault, **triggers)`` (with ``self.seed``) next to the active rules."""
        enable()
        rule = add_rule(Rule(site, fault, **triggers), seed=self.seed)
        self.last_plan = active_plan()
        return rule

    def install(self, plan: FaultPlan) -> FaultPlan:
        """Replace the active rules with ``plan``."""
        self._remember_calls()
        self.last_plan = install(plan)
        return plan

    @contextmanager
    def use(self, plan: FaultPlan) -> Iterator[FaultPlan]:
        """``plan`` for the block only (one Hypothesis example); remembered if the test fails."""
        self._remember_calls()
        self.last_plan = plan
        self.calls = {}
        with installed(plan):
            try:
                yield plan
            finally:
                self._remember_calls()

    def halt(self) -> int:
        """Remove every rule now."""
        self._remember_calls()
        return halt()

    @property
    def plan(self) -> FaultPlan:
        """The rules armed now."""
        return active_plan()

    def stats(self) -> list[RuleStats]:
        """Counters of the armed rules."""
        return stats()

    def _remember_calls(self) -> None:
        for s in stats():
            for site in s.sites:
                self.calls[site] = max(self.calls.get(site, 0), s.calls)

    def save(self, directory: Path = FAILING_DIR) -> Path | None:
        """Write the last plan (with calls per site and the test id) for ``replay``."""
        if self.last_plan is None:
            return None
        self._remember_calls()
        name = re.sub(r"[^A-Za-z0-9_.-]+", "_", self.nodeid).strip("_")[-120:] or "plan"
        return save_plan(PlanFile(self.last_plan, dict(self.calls), self.nodeid or None),
                         directory / f"{name}.json")


@pytest.fixture
def faults(request: pytest.FixtureRequest) -> Iterator[Faults]:
    """Fault injection for one test; every rule is removed afterwards, pass or fail."""
    was_enabled = is_enabled()
    handle = Faults(request.node.nodeid)
    request.node.stash[_HANDLE] = handle
    try:
        yield handle
    finally:
        halt()
        if not was_enabled:
            disable()


_HANDLE = pytest.StashKey[Faults]()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None],
                              ) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """On a failure in a test that installed faults, save the plan and say how to replay it."""
    report = yield
    handle = item.stash.get(_HANDLE, None)
    if report.when != "call" or not report.failed or handle is None:
        return report
    try:
        path = handle.save(Path(str(item.config.rootpath)) / FAILING_DIR)
    except OSError as exc:
        report.sections.append(("shockproof faults", f"could not save the failing plan: {exc}"))
        return report
    if path is not None:
        report.sections.append(("shockproof faults",
                                f"failing fault plan saved to {path}\n"
                                f"  preview:  shockproof-faults replay {path}\n"
                                f"  re-run:   shockproof-faults replay {path} --run"))
    return report
