"""The pytest plugin: the ``faults`` fixture always cleans up and saves failing plans."""

from __future__ import annotations

import json

import pytest

import fault_injection as fi
from fault_injection import FaultPlan, Rule, io, network
from fault_injection.pytest_plugin import Faults

pytest_plugins = ["pytester"]

INNER = """
import fault_injection as fi
from fault_injection import network

def test_fails_with_a_fault(faults):
    faults.add("catalog.*", network(), rate=1.0, id="down")
    for _ in range(3):
        try:
            fi.point("catalog.fetch")
        except ConnectionError:
            pass
    assert False, "provoked"

def test_after_the_failure_nothing_is_armed():
    assert fi.active_plan().rules == ()
    assert not fi.is_enabled()
    fi.point("catalog.fetch")
"""


def test_fixture_removes_rules_even_when_the_test_fails(pytester: pytest.Pytester) -> None:
    """A failing test's rules are gone for the next test, and the switch is back off."""
    pytester.makepyfile(INNER)
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider", "-p", "no:randomly")
    result.assert_outcomes(passed=1, failed=1)


def test_a_failing_test_saves_its_plan_for_replay(pytester: pytest.Pytester) -> None:
    """The failing plan is written with the calls each site saw, and the report says how to replay it."""
    pytester.makepyfile(INNER)
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider")
    result.stdout.fnmatch_lines(["*failing fault plan saved to*", "*shockproof-faults replay*--run*"])
    saved = list((pytester.path / ".shockproof" / "failing-plans").glob("*.json"))
    doc = json.loads(saved[0].read_text())
    assert doc["rules"][0]["id"] == "down"
    assert doc["calls"] == {"catalog.fetch": 3}
    assert doc["test"].endswith("::test_fails_with_a_fault")


def test_fixture_add_enables_and_arms_a_rule(faults: Faults) -> None:
    """faults.add arms a rule with the fixture's seed."""
    faults.seed = 12
    faults.add("storage.write", io("EIO"), first=1)
    with pytest.raises(OSError):
        fi.point("storage.write")
    assert fi.active_plan().seed == 12


def test_fixture_use_scopes_a_plan_to_a_block(faults: Faults) -> None:
    """faults.use(plan) installs for the block only and remembers the plan."""
    plan = FaultPlan(1, (Rule("s", network()),))
    with faults.use(plan), pytest.raises(ConnectionError):
        fi.point("s")
    fi.point("s")
    assert faults.last_plan == plan
    assert faults.calls == {"s": 1}
