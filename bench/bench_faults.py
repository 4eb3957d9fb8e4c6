"""What a fault site costs (issue 5's targets).

1. ``point()`` with fault injection off, against an empty function call with the
   same signature: target <= 2x.
2. ``point()`` with a plan armed whose rules match other sites: target <= 1 us
   per call (absolute), also shown against the empty call.
3. For information: a matching rule that does not fire (rate 0; the ordinal is
   counted and the draw skipped), one with a rate (a BLAKE2b draw per call), and a
   guarded call with and without rules armed for other sites (the interceptor tells
   resilience which sites it wants, so other guards stay on their fast path).

Every case is called through ``functools.partial`` so that loop overhead is equal.
"""

from __future__ import annotations

import functools

import fault_injection as fi
from fault_injection import FaultPlan, Rule, network
from resilience import guard

from ._harness import NS_PER_CALL, Bench

SITE_COST = "point(): disabled vs enabled, against an empty call"
GUARD_COST = "a guarded call with fault injection idle vs armed (information)"
EMPTY = "empty function call"
OFF = "point(), fault injection off"
NO_MATCH = "point(), armed, no matching rule"
NO_FIRE = "point(), matching rule, rate=0"
DRAW = "point(), matching rule, rate=1e-9"
GUARD_IDLE = "guard, nothing armed"
GUARD_ARMED = "guard, rules for other sites"
ENABLED_LIMIT_NS = 1000.0


def empty(name: str) -> None:
    """The baseline: a call with point()'s signature that does nothing."""


@guard("bench.guarded")
def guarded() -> int:
    return 42


def _armed(rule: Rule) -> FaultPlan:
    return FaultPlan(1, (Rule("elsewhere.*", network()), rule))


def main() -> None:
    bench = Bench("bench_faults")
    site = "storage.write"
    call_point = functools.partial(fi.point, site)
    fi.halt()
    off = bench.time_calls(SITE_COST, {EMPTY: functools.partial(empty, site), OFF: call_point},
                           baseline=EMPTY)
    try:
        fi.install(_armed(Rule("other.site", network())))
        bench.time_calls(SITE_COST + " (armed)", {NO_MATCH: call_point}, baseline=None)
        fi.install(_armed(Rule(site, network(), rate=0.0)))
        bench.time_calls(SITE_COST + " (matching)", {NO_FIRE: call_point}, baseline=None)
        fi.install(_armed(Rule(site, network(), rate=1e-9)))
        bench.time_calls(SITE_COST + " (drawing)", {DRAW: call_point}, baseline=None)
        fi.halt()
        idle = bench.time_calls(GUARD_COST, {GUARD_IDLE: guarded}, baseline=GUARD_IDLE)
        fi.install(_armed(Rule("other.site", network())))
        bench.time_calls(GUARD_COST + " (armed)", {GUARD_ARMED: guarded})
    finally:
        fi.disable()
    bench.compare("point() off / empty call", OFF, EMPTY, at_most=2.0)
    bench.compare("point() armed, no match / empty call", NO_MATCH, EMPTY, at_most=25.0)
    no_match = bench.results[NO_MATCH].value
    verdict = "PASS" if no_match <= ENABLED_LIMIT_NS else "MISS"
    bench.note(f"point() armed, no matching rule: {no_match:.0f} {NS_PER_CALL} "
               f"(target <= {ENABLED_LIMIT_NS:.0f} ns) {verdict}")
    bench.note(f"empty call {off[EMPTY].value:.1f} ns; guard idle {idle[GUARD_IDLE].value:.0f} ns, "
               f"armed {bench.results[GUARD_ARMED].value:.0f} ns "
               "(rules for other sites leave guards on their fast path: resilience asks the interceptor which sites it wants)")
    bench.report()


if __name__ == "__main__":
    main()
