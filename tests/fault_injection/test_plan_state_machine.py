"""The live fault plan against a model: arm, disarm, halt, call sites and move the clock."""

from __future__ import annotations

from dataclasses import dataclass, field

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

import fault_injection as fi
from fault_injection import FaultPlan
from fault_injection import Rule as FaultRule
from fault_injection.strategies import rules as fault_rules
from resilience import _config
from resilience.testing import FakeClock

SITES = ["catalog.fetch", "storage.write", "upload.analyse"]
SEED = 2024


@dataclass
class Armed:
    """The model of one armed rule: when it was armed and how many calls it saw per site."""

    rule: FaultRule
    at: float
    calls: dict[str, int] = field(default_factory=dict)


class LivePlan(RuleBasedStateMachine):
    """Every call's outcome must be what single-rule previews predict from the model."""

    def __init__(self) -> None:
        super().__init__()
        self.clock = FakeClock()
        self.old_settings = _config.configure(clock=self.clock)
        self.armed: list[Armed] = []

    @initialize()
    def start(self) -> None:
        fi.install(FaultPlan(SEED, ()))

    def teardown(self) -> None:
        fi.disable()
        _config.restore(self.old_settings)

    @rule(new=fault_rules(SITES, kinds=["network", "io", "logic"]),
          ttl=st.none() | st.integers(1, 30), window=st.none() | st.integers(1, 30))
    def arm(self, new: FaultRule, ttl: int | None, window: int | None) -> None:
        timed = FaultRule(new.site, new.fault, rate=new.rate, first=new.first, every=new.every,
                          after=new.after, max_hits=new.max_hits, ttl=ttl, for_seconds=window)
        if any(a.rule.id == timed.id for a in self.armed):
            return
        fi.add_rule(timed, seed=SEED)
        self.armed.append(Armed(timed, self.clock.monotonic()))

    @precondition(lambda self: bool(self.armed))
    @rule(data=st.data())
    def disarm(self, data: st.DataObject) -> None:
        victim = data.draw(st.sampled_from(self.armed))
        assert fi.remove_rule(victim.rule.id)
        self.armed.remove(victim)

    @rule()
    def halt(self) -> None:
        assert fi.halt() == len(self._live())
        self.armed.clear()

    @rule(seconds=st.integers(1, 20))
    def advance(self, seconds: int) -> None:
        self.clock.advance(seconds)

    @rule(site=st.sampled_from(SITES))
    def call(self, site: str) -> None:
        expected = self._predict(site)
        try:
            fi.point(site)
            got = None
        except Exception as exc:
            got = fi.injected_rule(exc)
        assert got == expected

    def _live(self) -> list[Armed]:
        now = self.clock.monotonic()
        self.armed = [a for a in self.armed if a.rule.ttl is None or now < a.at + a.rule.ttl]
        return self.armed

    def _predict(self, site: str) -> str | None:
        raised = None
        now = self.clock.monotonic()
        for armed in self._live():
            rule_ = armed.rule
            if not _matches(site, rule_.site):
                continue
            if rule_.for_seconds is not None and now >= armed.at + rule_.for_seconds:
                continue
            ordinal = armed.calls[site] = armed.calls.get(site, 0) + 1
            decision = FaultPlan(SEED, (rule_,)).decisions(site, ordinal)[-1]
            if raised is None and decision.raised is not None:
                raised = decision.raised
        return raised

    @invariant()
    def armed_rules_match_the_model(self) -> None:
        assert [r.id for r in fi.active_plan().rules] == [a.rule.id for a in self._live()]


def _matches(site: str, pattern: str) -> bool:
    from fnmatch import fnmatchcase

    return fnmatchcase(site, pattern)


LivePlan.TestCase.settings = settings(max_examples=100, stateful_step_count=40, deadline=None)
TestLivePlan = LivePlan.TestCase
