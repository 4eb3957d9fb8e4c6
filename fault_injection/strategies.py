"""Hypothesis strategies for faults, rules and fault plans.

They shrink towards the simplest plan that still fails: fewer rules, the first
site and kind listed, rules that always fire (``rate=1``, no triggers), seed 0.
A failing plan is saved by the pytest plugin (or :func:`fault_injection.save_plan`)
and replayed with ``shockproof-faults replay PLAN`` (the decisions, call by call)
or ``shockproof-faults replay PLAN --run`` (the test again, with this plan)::

    from hypothesis import given
    from fault_injection import installed
    from fault_injection.strategies import plans

    @given(plan=plans(["catalog.fetch", "storage.write"]))
    def test_survives(plan):
        with installed(plan):
            ...

When ``$SHOCKPROOF_FAULT_PLAN`` names a plan file, :func:`plans` generates exactly
that plan (this is how ``replay --run`` reproduces a failure).
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from hypothesis import strategies as st

from ._io import load_plan
from ._plan import (
    FAULT_KINDS,
    IO_ERRNOS,
    MAX_SEED,
    NETWORK_VARIANTS,
    Fault,
    FaultPlan,
    Rule,
    http_status,
    io,
    latency,
    logic,
    network,
    validation,
)

__all__ = ["ENV_PLAN", "faults", "plans", "replayed_plan", "rules", "triggers"]

ENV_PLAN = "SHOCKPROOF_FAULT_PLAN"
HTTP_STATUSES = (503, 500, 502, 504, 429, 404, 422)


def faults(kinds: Sequence[str] = FAULT_KINDS, *, max_latency: float = 0.05) -> st.SearchStrategy[Fault]:
    """Faults of the given kinds (shrinking to the first kind and its first variant)."""
    unknown = [k for k in kinds if k not in FAULT_KINDS]
    if unknown or not kinds:
        raise ValueError(f"kinds must be a non-empty subset of {FAULT_KINDS}; got {list(kinds)}")
    by_kind: dict[str, st.SearchStrategy[Fault]] = {
        "logic": st.just(logic()),
        "validation": st.just(validation()),
        "network": st.sampled_from(NETWORK_VARIANTS).map(network),
        "io": st.sampled_from(IO_ERRNOS).map(io),
        "latency": st.builds(latency, st.floats(0.0, max_latency, allow_nan=False),
                             st.just(0.0) | st.floats(0.0, max_latency, allow_nan=False)),
        "http_status": st.sampled_from(HTTP_STATUSES).map(http_status),
    }
    return st.one_of([by_kind[k] for k in kinds])


def triggers() -> st.SearchStrategy[dict[str, int]]:
    """Counting triggers as Rule keyword arguments: none, one of first/every/after/max_hits,
    or any combination. One choice per rule (rather than four independent optionals)
    is what lets the shrinker delete a rule that does not matter."""
    small = st.integers(1, 20)
    every, after = st.integers(1, 5), st.integers(0, 20)
    return st.one_of(
        st.just({}),
        small.map(lambda n: {"first": n}),
        every.map(lambda n: {"every": n}),
        after.map(lambda n: {"after": n}),
        small.map(lambda n: {"max_hits": n}),
        st.fixed_dictionaries({}, optional={"first": small, "every": every, "after": after,
                                            "max_hits": small}),
    )


def _rule(site: str, fault: Fault, rate: float, counting: dict[str, int], only_flagged: bool) -> Rule:
    return Rule(site, fault, rate=rate, first=counting.get("first"), every=counting.get("every"),
                after=counting.get("after"), max_hits=counting.get("max_hits"), only_flagged=only_flagged)


def rules(sites: Sequence[str], *, kinds: Sequence[str] = FAULT_KINDS, with_triggers: bool = True,
          flagged: bool = False, max_latency: float = 0.05) -> st.SearchStrategy[Rule]:
    """Rules on one of ``sites`` (names or globs) with a fault of ``kinds``.

    With ``with_triggers`` the counting triggers and ``max_hits`` are drawn too
    (time-based ones never are: a generated plan must replay without a clock); with
    ``flagged`` some rules are ``only_flagged``.
    """
    if not sites:
        raise ValueError("rules() needs at least one site")
    return st.builds(
        _rule,
        st.sampled_from(list(sites)),
        faults(kinds, max_latency=max_latency),
        st.just(1.0) | st.floats(0.0, 1.0, allow_nan=False),
        triggers() if with_triggers else st.just({}),
        st.booleans() if flagged else st.just(False),
    )


def plans(sites: Sequence[str], *, kinds: Sequence[str] = FAULT_KINDS, min_rules: int = 0,
          max_rules: int = 4, with_triggers: bool = True, flagged: bool = False,
          max_latency: float = 0.05, seeds: st.SearchStrategy[int] | None = None,
          ) -> st.SearchStrategy[FaultPlan]:
    """Fault plans over ``sites``: a seed and up to ``max_rules`` rules with distinct ids.

    Under ``$SHOCKPROOF_FAULT_PLAN`` exactly that plan (see the module docstring).
    """
    replay = replayed_plan()
    if replay is not None:
        return st.just(replay)
    seed = seeds if seeds is not None else st.integers(0, MAX_SEED)
    listed = st.lists(rules(sites, kinds=kinds, with_triggers=with_triggers, flagged=flagged,
                            max_latency=max_latency),
                      min_size=min_rules, max_size=max_rules)
    return st.builds(FaultPlan, seed, listed.map(_distinct))


def _distinct(drawn: list[Rule]) -> tuple[Rule, ...]:
    """Drop repeated rules (same content, same id); deletion shrinks better than unique_by."""
    return tuple({rule.id: rule for rule in drawn}.values())


def replayed_plan() -> FaultPlan | None:
    """The plan ``$SHOCKPROOF_FAULT_PLAN`` names, if set (``replay --run`` sets it)."""
    path = os.environ.get(ENV_PLAN, "").strip()
    return load_plan(path) if path else None
