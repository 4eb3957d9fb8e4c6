"""Sites at run time: guards, point(), @site, the switch, triggers, TTL, halt, events."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Iterator

import pytest

import fault_injection as fi
import resilience
from fault_injection import FaultPlan, Rule, io, latency, logic, network
from resilience import FaultInjected
from resilience import _events as resilience_events
from resilience.testing import fake_clock, waits_off


def _outcomes(site: str, calls: int) -> list[str]:
    out = []
    for _ in range(calls):
        try:
            fi.point(site)
            out.append("ok")
        except Exception as exc:
            out.append(type(exc).__name__)
    return out


def test_point_does_nothing_while_fault_injection_is_off() -> None:
    """Without enable/install a site never raises and no interceptor is registered."""
    assert not fi.is_enabled()
    assert _outcomes("storage.write", 3) == ["ok", "ok", "ok"]
    assert fi._sites._intercept not in resilience_events.hub.interceptors


def test_adding_a_rule_while_off_is_refused() -> None:
    """add_rule() raises FaultsDisabled until fault injection is enabled."""
    with pytest.raises(fi.FaultsDisabled):
        fi.add_rule(Rule("a", network()))
    fi.enable()
    fi.add_rule(Rule("a", network()))
    assert [r.site for r in fi.active_plan().rules] == ["a"]


def test_install_makes_point_sites_raise_the_planned_fault() -> None:
    """An installed rule for storage.* raises at point("storage.write") on every call."""
    fi.install(FaultPlan(1, (Rule("storage.*", io("ENOSPC")),)))
    assert _outcomes("storage.write", 2) == ["OSError", "OSError"]
    assert _outcomes("catalog.fetch", 1) == ["ok"]


def test_every_guard_name_is_a_site() -> None:
    """A guarded call is intercepted before each attempt; retries see fresh decisions."""
    @resilience.guard("catalog.fetch", retry=resilience.Retry(attempts=3, budget=None))
    def fetch() -> str:
        return "catalog"

    fi.install(FaultPlan(0, (Rule("catalog.*", network("reset"), first=2),)))
    with waits_off():
        assert fetch() == "catalog"
    assert fi.stats()[0].hits == 2
    assert fi.stats()[0].calls == 3


def test_halt_removes_the_interceptor_so_guards_keep_their_fast_path() -> None:
    """The resilience interceptor is registered only while rules are armed."""
    fi.install(FaultPlan(0, (Rule("a", network()),)))
    assert fi._sites._intercept in resilience_events.hub.interceptors
    assert fi.halt() == 1
    assert fi._sites._intercept not in resilience_events.hub.interceptors
    assert _outcomes("a", 1) == ["ok"]


def test_injected_fault_emits_fault_injected_with_its_coordinates(events: list[object]) -> None:
    """Each injection emits FaultInjected(site, fault, kind, rule_id, seed, ordinal, ...)."""
    fi.install(FaultPlan(42, (Rule("s", network("reset"), every=2, id="r1"),)))
    _outcomes("s", 4)
    faults = [e for e in events if isinstance(e, FaultInjected)]
    assert [(e.site, e.fault, e.kind, e.rule_id, e.seed, e.ordinal) for e in faults] == [
        ("s", "network(reset)", resilience.ErrorKind.NETWORK, "r1", 42, 2),
        ("s", "network(reset)", resilience.ErrorKind.NETWORK, "r1", 42, 4),
    ]
    assert "ConnectionResetError" in faults[0].detail


def test_guarded_fault_event_carries_the_call(events: list[object]) -> None:
    """At a guard site the FaultInjected event names the guarded call."""
    fi.install(FaultPlan(0, (Rule("g", logic()),)))
    with pytest.raises(ZeroDivisionError):
        resilience.guard("g")(lambda: 1)()
    fault = next(e for e in events if isinstance(e, FaultInjected))
    assert fault.call is not None
    assert fault.call.site == "g"


def test_latency_at_a_point_waits_through_the_resilience_clock() -> None:
    """latency() at point() sleeps on the fake clock: no real time passes."""
    with fake_clock() as clock:
        fi.install(FaultPlan(0, (Rule("slow", latency(2.5)),)))
        fi.point("slow")
    assert clock.sleeps == [2.5]


def test_latency_at_a_guard_is_returned_to_the_policy() -> None:
    """At a guard site latency is the interceptor's delay, waited by the policy's clock."""
    with fake_clock() as clock:
        fi.install(FaultPlan(0, (Rule("slow", latency(1.5)),)))
        assert resilience.guard("slow")(lambda: "done")() == "done"
    assert clock.sleeps == [1.5]


def test_latency_past_the_deadline_fails_the_guarded_call() -> None:
    """Injected latency longer than the guard's deadline ends in DeadlineExceeded."""
    with fake_clock():
        fi.install(FaultPlan(0, (Rule("slow", latency(5.0)),)))
        with pytest.raises(resilience.DeadlineExceeded):
            resilience.guard("slow", deadline=1.0)(lambda: "done")()


def test_ttl_removes_a_forgotten_rule_on_the_fake_clock() -> None:
    """A rule with ttl=60 injects until 60 s pass, then is gone from the plan."""
    expired_before = fi.status().expired
    with fake_clock() as clock:
        fi.install(FaultPlan(0, (Rule("s", network(), ttl=60),)))
        clock.advance(59)
        assert _outcomes("s", 1) == ["ConnectionRefusedError"]
        clock.advance(1)
        assert _outcomes("s", 1) == ["ok"]
        assert fi.active_plan().rules == ()
        assert fi.status().expired == expired_before + 1


def test_ttl_expiry_shows_in_listing_without_any_call() -> None:
    """stats() drops expired rules even if no call reached their site."""
    with fake_clock() as clock:
        fi.install(FaultPlan(0, (Rule("s", network(), ttl=10), Rule("t", network()))))
        clock.advance(10)
        assert [s.rule.site for s in fi.stats()] == ["t"]


def test_for_seconds_stops_firing_but_keeps_the_rule_listed() -> None:
    """for_seconds bounds when a rule fires; the rule stays armed afterwards."""
    with fake_clock() as clock:
        fi.install(FaultPlan(0, (Rule("s", network(), for_seconds=5),)))
        assert _outcomes("s", 1) == ["ConnectionRefusedError"]
        clock.advance(5)
        assert _outcomes("s", 1) == ["ok"]
        assert len(fi.active_plan().rules) == 1


@pytest.mark.parametrize(("triggers", "expected"), [
    ({"first": 2}, [1, 2]),
    ({"after": 3}, [4, 5]),
    ({"every": 2}, [2, 4]),
    ({"max_hits": 1}, [1]),
    ({"rate": 0.0}, []),
])
def test_runtime_triggers_match_the_plan_preview(triggers: dict[str, float], expected: list[int]) -> None:
    """Each counting trigger injects on the ordinals FaultPlan.decisions predicts."""
    plan = FaultPlan(3, (Rule("s", network(), **triggers),))  # type: ignore[arg-type]
    fi.install(plan)
    hits = [i + 1 for i, o in enumerate(_outcomes("s", 5)) if o != "ok"]
    assert hits == expected == [d.ordinal for d in plan.decisions("s", 5) if d.injected]


def test_rules_count_each_site_on_its_own() -> None:
    """A glob rule keeps one ordinal sequence per site it matches."""
    fi.install(FaultPlan(0, (Rule("s.*", network(), first=1),)))
    assert _outcomes("s.a", 2) + _outcomes("s.b", 2) == ["ConnectionRefusedError", "ok"] * 2


def test_only_flagged_rules_fire_only_in_a_flagged_context() -> None:
    """only_flagged rules skip ordinary calls and hit calls inside flagged()."""
    fi.install(FaultPlan(0, (Rule("s", network(), only_flagged=True, id="mine"),)))
    assert _outcomes("s", 1) == ["ok"]
    with fi.flagged("mine"):
        assert _outcomes("s", 1) == ["ConnectionRefusedError"]
    with fi.flagged("someone-else"):
        assert _outcomes("s", 1) == ["ok"]


def test_remove_rule_disarms_only_that_rule() -> None:
    """remove_rule(id) leaves the other rules and their counters in place."""
    fi.install(FaultPlan(0, (Rule("a", network(), id="a"), Rule("b", network(), every=2, id="b"))))
    _outcomes("b", 1)
    assert fi.remove_rule("a")
    assert not fi.remove_rule("a")
    assert _outcomes("a", 1) == ["ok"]
    assert _outcomes("b", 1) == ["ConnectionRefusedError"]  # ordinal 2: the counter survived


def test_adding_an_active_id_again_is_a_conflict() -> None:
    """add_rule with an id already armed raises RuleConflict and changes nothing."""
    fi.install(FaultPlan(0, (Rule("a", network(), id="x"),)))
    with pytest.raises(fi.RuleConflict):
        fi.add_rules([Rule("b", network()), Rule("c", network(), id="x")])
    assert [r.id for r in fi.active_plan().rules] == ["x"]


def test_installed_restores_the_previous_plan() -> None:
    """installed(plan) puts back the rules (and the switch) that were there before."""
    fi.install(FaultPlan(0, (Rule("outer", network(), id="outer"),)))
    with fi.installed(FaultPlan(0, (Rule("inner", network(), id="inner"),))):
        assert [r.id for r in fi.active_plan().rules] == ["inner"]
    assert [r.id for r in fi.active_plan().rules] == ["outer"]


def test_status_counts_injections_and_halts() -> None:
    """status() reports the switch, the rules, and counts faults injected and halts (process-wide)."""
    before = fi.status()
    fi.install(FaultPlan(9, (Rule("s", network(), id="counted"),)))
    _outcomes("s", 3)
    assert fi.status().active_rules == 1
    fi.halt()
    status = fi.status()
    assert (status.enabled, status.active_rules, status.seed) == (True, 0, 9)
    assert (status.injected - before.injected, status.halts - before.halts) == (3, 1)
    assert [(i.rule_id, i.ordinal) for i in fi.recent()[-3:]] == [("counted", n) for n in (1, 2, 3)]


# -- @site -----------------------------------------------------------------------------------------


def test_site_decorator_on_a_plain_function() -> None:
    """@site makes each call of a sync function a site and keeps its metadata."""
    @fi.site("fn.sync")
    def double(x: int) -> int:
        """Doubles."""
        return 2 * x

    assert double(2) == 4
    assert double.__doc__ == "Doubles."
    fi.install(FaultPlan(0, (Rule("fn.*", logic()),)))
    with pytest.raises(ZeroDivisionError):
        double(2)


def test_site_decorator_on_a_coroutine_function() -> None:
    """@site on an async function injects before the body runs; latency is awaited."""
    ran: list[int] = []

    @fi.site("fn.async")
    async def work() -> int:
        ran.append(1)
        return 7

    with fake_clock() as clock:
        fi.install(FaultPlan(0, (Rule("fn.async", latency(3.0)),)))
        assert asyncio.run(work()) == 7
    assert clock.sleeps == [3.0]
    assert ran == [1]


def test_site_decorator_on_a_generator_function() -> None:
    """@site on a generator runs the site when iteration starts."""
    @fi.site("fn.gen")
    def numbers() -> Iterator[int]:
        yield from (1, 2)

    assert list(numbers()) == [1, 2]
    fi.install(FaultPlan(0, (Rule("fn.gen", io("EIO")),)))
    stream = numbers()
    with pytest.raises(OSError):
        next(stream)


def test_site_decorator_on_an_async_generator_function() -> None:
    """@site on an async generator runs the site when iteration starts."""
    @fi.site("fn.agen")
    async def numbers() -> AsyncIterator[int]:
        for n in (1, 2):
            yield n

    async def collect() -> list[int]:
        return [n async for n in numbers()]

    assert asyncio.run(collect()) == [1, 2]
    fi.install(FaultPlan(0, (Rule("fn.agen", network()),)))
    with pytest.raises(ConnectionRefusedError):
        asyncio.run(collect())


# -- threads -----------------------------------------------------------------------------------------


def test_decisions_are_the_same_across_threads(events: list[object]) -> None:
    """8 threads sharing a site get exactly the ordinals the plan predicts, however they interleave."""
    plan = FaultPlan(11, (Rule("shared", network(), rate=0.25, id="r"),
                          Rule("shared", io("EIO"), every=7, max_hits=5, id="q")))
    fi.install(plan)
    barrier = threading.Barrier(8)

    def worker() -> None:
        barrier.wait()
        _outcomes("shared", 100)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    seen = sorted((e.rule_id, e.ordinal) for e in events if isinstance(e, FaultInjected))
    expected = sorted((d.raised, d.ordinal) for d in plan.decisions("shared", 800) if d.raised)
    assert seen == expected


def test_halt_under_concurrent_traffic_stops_every_fault_without_hanging() -> None:
    """Threads hammer guarded calls while halt() runs: it returns, and no fault follows it."""
    guarded = resilience.guard("busy.call")(lambda: "ok")
    fi.install(FaultPlan(0, (Rule("busy.*", network(), rate=0.5),)))
    halted = threading.Event()
    after_halt: list[str] = []
    stop = threading.Event()
    started = threading.Barrier(5)

    def hammer() -> None:
        started.wait()
        while not stop.is_set():
            was_halted = halted.is_set()
            try:
                guarded()
            except ConnectionError:
                if was_halted:
                    after_halt.append("fault after halt")

    threads = [threading.Thread(target=hammer) for _ in range(4)]
    for t in threads:
        t.start()
    started.wait()
    while fi.stats()[0].calls < 200:  # traffic is flowing through the armed rule
        pass
    halter = threading.Thread(target=lambda: (fi.halt(), halted.set()))
    halter.start()
    halter.join(10)
    assert halted.is_set(), "halt() hung"
    count_after = len(after_halt)
    stop.set()
    for t in threads:
        t.join(10)
    assert count_after == 0
    assert after_halt == []
    assert fi.active_plan().rules == ()
