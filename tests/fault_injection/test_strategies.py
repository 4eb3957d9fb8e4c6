"""Hypothesis strategies: valid plans that round-trip, shrink to the minimal plan, and replay."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import find, given, settings

from fault_injection import (
    FaultPlan,
    Rule,
    dumps_plan,
    injected_rule,
    installed,
    loads_plan_file,
    network,
    point,
    save_plan,
)
from fault_injection.strategies import faults, plans, rules
from resilience.testing import fake_clock

SITES = ["catalog.fetch", "storage.write"]


@settings(max_examples=60, deadline=None)
@given(plan=plans(SITES))
def test_generated_plans_round_trip_through_the_file_format(plan: FaultPlan) -> None:
    """Every generated plan saves and loads as itself (one format for everything)."""
    assert loads_plan_file(dumps_plan(plan)).plan == plan


@settings(max_examples=40, deadline=None)
@given(rule=rules(SITES, kinds=["io", "latency"], with_triggers=False))
def test_rules_use_the_given_sites_and_kinds_only(rule: Rule) -> None:
    """rules() draws sites and kinds from the lists given; without triggers it has none."""
    assert rule.site in SITES
    assert rule.fault.kind in ("io", "latency")
    assert (rule.first, rule.every, rule.after, rule.max_hits) == (None, None, None, None)


def test_failing_plans_shrink_to_the_minimal_one() -> None:
    """The smallest plan that injects a network fault at storage.write is one plain rule."""
    def fails(plan: FaultPlan) -> bool:
        return any((d.fault or "").startswith("network") for d in plan.decisions("storage.write", 3))

    minimal = find(plans(SITES), fails, settings=settings(database=None, max_examples=2000))
    assert minimal == FaultPlan(0, (Rule("storage.write", network("refused")),))


def test_plans_replay_the_plan_named_by_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With $SHOCKPROOF_FAULT_PLAN set, plans() generates exactly that plan."""
    saved = FaultPlan(5, (Rule("catalog.fetch", network("reset"), first=2),))
    monkeypatch.setenv("SHOCKPROOF_FAULT_PLAN", str(save_plan(saved, tmp_path / "p.json")))
    assert find(plans(SITES), lambda _: True) == saved


@settings(max_examples=60, deadline=None)
@given(plan=plans(SITES, min_rules=1))
def test_running_a_generated_plan_injects_what_its_preview_says(plan: FaultPlan) -> None:
    """At run time every site raises and waits exactly as FaultPlan.decisions predicts."""
    with fake_clock() as clock, installed(plan):
        for site in SITES:
            for decision in plan.decisions(site, 8):
                before = len(clock.sleeps)
                try:
                    point(site)
                    raised = None
                except Exception as exc:
                    raised = injected_rule(exc)
                assert raised == decision.raised
                waited = sum(clock.sleeps[before:])
                assert waited == pytest.approx(decision.delay)


def test_faults_rejects_unknown_kinds() -> None:
    """A kind outside the six is a usage error."""
    with pytest.raises(ValueError, match="kinds"):
        faults(["gamma-rays"])
