"""Decisions are a pure function of (seed, rule id, site, ordinal)."""

from __future__ import annotations

import pytest

from fault_injection import FaultPlan, Rule, latency, network
from fault_injection._decide import Draws, uniform


def test_uniform_is_a_pure_function_of_its_inputs() -> None:
    """The same four inputs always give the same draw; changing any one changes it."""
    base = uniform(7, "r", "site", 3)
    assert base == uniform(7, "r", "site", 3)
    assert len({base, uniform(8, "r", "site", 3), uniform(7, "q", "site", 3),
                uniform(7, "r", "other", 3), uniform(7, "r", "site", 4)}) == 5


def test_draws_lie_in_the_unit_interval_and_spread_evenly() -> None:
    """Draws are in [0, 1) and about a tenth of them fall in each tenth."""
    draws = Draws(1, "r", "s")
    values = [draws(n) for n in range(1, 5001)]
    assert all(0.0 <= v < 1.0 for v in values)
    tenths = [sum(1 for v in values if k / 10 <= v < (k + 1) / 10) for k in range(10)]
    assert min(tenths) > 400
    assert max(tenths) < 600


def test_rate_fires_about_that_fraction_of_calls() -> None:
    """rate=0.3 fires on roughly 30% of 2000 calls."""
    plan = FaultPlan(5, (Rule("s", network(), rate=0.3),))
    fired = sum(d.injected for d in plan.decisions("s", 2000))
    assert 520 < fired < 680


@pytest.mark.parametrize(("triggers", "expected"), [
    ({"first": 3}, [1, 2, 3]),
    ({"after": 7}, [8, 9, 10]),
    ({"every": 3}, [3, 6, 9]),
    ({"every": 2, "after": 4}, [6, 8, 10]),
    ({"max_hits": 2}, [1, 2]),
    ({"every": 2, "max_hits": 3}, [2, 4, 6]),
    ({"rate": 0.0}, []),
])
def test_counting_triggers_choose_exactly_these_ordinals(triggers: dict[str, int], expected: list[int]) -> None:
    """first, after, every and max_hits select the ordinals their names say."""
    plan = FaultPlan(0, (Rule("s", network(), **triggers),))  # type: ignore[arg-type]
    assert [d.ordinal for d in plan.decisions("s", 10) if d.injected] == expected


def test_max_hits_with_a_rate_keeps_the_first_firing_ordinals() -> None:
    """max_hits=3 with rate=0.5 injects on the first three ordinals the rate picks."""
    free = FaultPlan(9, (Rule("s", network(), rate=0.5, id="r"),)).decisions("s", 40)
    capped = FaultPlan(9, (Rule("s", network(), rate=0.5, max_hits=3, id="r"),)).decisions("s", 40)
    assert [d.ordinal for d in capped if d.injected] == [d.ordinal for d in free if d.injected][:3]


def test_decisions_differ_between_seeds() -> None:
    """Two seeds pick different calls (the seed matters)."""
    def picked(seed: int) -> list[int]:
        plan = FaultPlan(seed, (Rule("s", network(), rate=0.5, id="r"),))
        return [d.ordinal for d in plan.decisions("s", 64) if d.injected]
    assert picked(1) != picked(2)


def test_preview_skips_rules_whose_glob_does_not_match() -> None:
    """A rule for catalog.* makes no decision at storage.write."""
    plan = FaultPlan(0, (Rule("catalog.*", network()),))
    assert not any(d.injected for d in plan.decisions("storage.write", 5))
    assert all(d.injected for d in plan.decisions("catalog.fetch", 5))


def test_first_raising_rule_wins_and_preempts_latency() -> None:
    """With two raising rules the first listed raises, and no latency is waited on that call."""
    plan = FaultPlan(0, (Rule("s", latency(0.1), id="l1"), Rule("s", network(), id="n1"),
                         Rule("s", network("reset"), id="n2"), Rule("s", latency(0.2), id="l2")))
    decision = plan.decisions("s", 1)[0]
    assert decision.raised == "n1"
    assert decision.fault == "network(refused)"
    assert decision.fired == ("l1", "n1", "n2", "l2")
    assert decision.delay == 0.0


def test_latencies_of_all_firing_rules_add_up() -> None:
    """Without a raising rule, the delays of every firing latency rule are summed."""
    plan = FaultPlan(0, (Rule("s", latency(0.1)), Rule("s", latency(0.2), every=2)))
    assert [d.delay for d in plan.decisions("s", 2)] == [pytest.approx(0.1), pytest.approx(0.3)]


def test_only_flagged_rules_do_not_fire_for_unflagged_calls() -> None:
    """decisions(flagged=False) leaves out only_flagged rules."""
    plan = FaultPlan(0, (Rule("s", network(), only_flagged=True),))
    assert all(d.injected for d in plan.decisions("s", 3))
    assert not any(d.injected for d in plan.decisions("s", 3, flagged=False))


def test_decision_describe_reads_as_one_line() -> None:
    """describe() names the ordinal, the site, the fault and the rule."""
    plan = FaultPlan(0, (Rule("s", network("reset"), id="down"),))
    assert plan.decisions("s", 1)[0].describe() == "#1 s: network(reset) by down"
