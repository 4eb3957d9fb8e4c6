"""Where faults happen: the active plan, the sites, and the switch.

Sites are every guarded call (through :func:`resilience.add_interceptor`, which is
registered only while rules are armed, so idle guards keep their fast path), explicit
:func:`point` calls and functions decorated with :func:`site`.

The active plan is one immutable snapshot (:class:`_Active`) in a module global.
Readers load the global once and never lock; writers build a new snapshot under a
lock and swap it in (with a generation number). The lock guards only that swap and
calls nothing but resilience's copy-on-write interceptor registry, so :func:`halt`
cannot hang: it is one assignment away from every caller, whatever they are doing.
Per-rule counters live in the armed rules and survive swaps that keep the rule.

The hot path of :func:`point`: one global read when off; one dict lookup more when
on and no rule matches the site (matches are cached per snapshot).
"""

from __future__ import annotations

import functools
import inspect
import itertools
import os
import threading
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Any, ParamSpec, TypeVar, cast

from resilience import (
    AttemptInfo,
    CallInfo,
    FaultInjected,
    add_interceptor,
    classify,
    emit,
    get_settings,
    has_subscribers,
    remove_interceptor,
)

from ._context import current
from ._decide import JITTER, Draws, HitLimit, fires
from ._plan import FaultInjectionError, FaultPlan, Rule

P = ParamSpec("P")
R = TypeVar("R")

ENV_SWITCH = "SHOCKPROOF_FAULTS"
_MAX_CACHED_SITES = 10_000
_RECENT = 200


class FaultsDisabled(FaultInjectionError):
    """Rules were added while fault injection is off (enable it first)."""


class RuleConflict(FaultInjectionError, ValueError):
    """A rule with the same id is already active."""


# -- armed rules and snapshots ---------------------------------------------------------------


class _SiteState:
    """One armed rule at one site: its ordinal counter and its draws."""

    __slots__ = ("counter", "draws", "jitter", "limit")

    def __init__(self, rule: Rule, seed: int, site: str) -> None:
        self.counter = itertools.count(1)  # next() is atomic: each call gets its own ordinal
        self.draws = Draws(seed, rule.id, site)
        self.jitter = Draws(seed, rule.id, site, JITTER)
        self.limit = HitLimit(rule, self.draws) if rule.max_hits is not None else None

    @property
    def calls(self) -> int:
        return int(self.counter.__reduce__()[1][0]) - 1


class _Armed:
    """A rule as installed: when, with which seed, and its counters."""

    __slots__ = ("armed_at", "expires", "hits", "rule", "seed", "sites", "timed", "until")

    def __init__(self, rule: Rule, seed: int, now: float) -> None:
        self.rule = rule
        self.seed = seed
        self.armed_at = now
        self.until = now + rule.for_seconds if rule.for_seconds is not None else None
        self.expires = now + rule.ttl if rule.ttl is not None else None
        self.timed = rule.timed
        self.sites: dict[str, _SiteState] = {}
        self.hits = itertools.count(0)

    def state(self, site: str) -> _SiteState:
        found = self.sites.get(site)
        if found is None:
            found = self.sites.setdefault(site, _SiteState(self.rule, self.seed, site))
        return found

    @property
    def hit_count(self) -> int:
        return int(self.hits.__reduce__()[1][0])


class _Active:
    """An immutable snapshot of the armed rules; ``cache`` maps site -> matching rules."""

    __slots__ = ("armed", "cache", "generation", "seed")

    def __init__(self, armed: tuple[_Armed, ...], seed: int, generation: int) -> None:
        self.armed = armed
        self.seed = seed
        self.generation = generation
        self.cache: dict[str, tuple[_Armed, ...]] = {}

    def rules(self, site: str) -> tuple[_Armed, ...]:
        """The armed rules whose glob matches ``site`` (cached per site)."""
        found = self.cache.get(site)
        return found if found is not None else self.match(site)

    def match(self, site: str) -> tuple[_Armed, ...]:
        found = tuple(a for a in self.armed if fnmatchcase(site, a.rule.site))
        if len(self.cache) < _MAX_CACHED_SITES:
            self.cache[site] = found
        return found

    def plan(self) -> FaultPlan:
        return FaultPlan(self.seed, tuple(a.rule for a in self.armed))


@dataclass(frozen=True, slots=True)
class RuleStats:
    """A live rule: calls seen at matching sites, faults injected, time left."""

    rule: Rule
    seed: int
    calls: int
    hits: int
    sites: tuple[str, ...]
    expires_in: float | None
    active_for: float | None

    def to_dict(self) -> dict[str, Any]:
        return {**self.rule.to_dict(), "stats": {
            "calls": self.calls, "hits": self.hits, "sites": list(self.sites), "seed": self.seed,
            "expires_in": self.expires_in, "active_for": self.active_for}}


@dataclass(frozen=True, slots=True)
class Status:
    """The switch and the counters, for ``GET /status`` and ``shockproof-faults status``."""

    enabled: bool
    active_rules: int
    seed: int
    generation: int
    injected: int
    halts: int
    expired: int

    def to_dict(self) -> dict[str, Any]:
        return {"enabled": self.enabled, "active_rules": self.active_rules, "seed": self.seed,
                "generation": self.generation, "injected": self.injected, "halts": self.halts,
                "expired": self.expired}


@dataclass(frozen=True, slots=True)
class Injection:
    """One injected fault, kept in a short in-memory log (``recent()``)."""

    at: float
    site: str
    rule_id: str
    fault: str
    ordinal: int


class _Switch:
    """Process-wide state. ``active`` is what readers load; the rest is for writers and stats."""

    __slots__ = ("enabled", "expired", "generation", "halts", "injected", "lock", "recent", "seed")

    def __init__(self) -> None:
        self.enabled = os.environ.get(ENV_SWITCH, "").strip().lower() in ("1", "true", "yes", "on")
        self.lock = threading.Lock()
        self.generation = 0
        self.seed = 0
        self.halts = 0
        self.expired = 0
        self.injected = itertools.count(0)
        self.recent: deque[Injection] = deque(maxlen=_RECENT)


_switch = _Switch()
_active: _Active | None = None


# -- the switch -----------------------------------------------------------------------------


def enable() -> None:
    """Allow faults to be installed (what ``SHOCKPROOF_FAULTS=1`` does at import)."""
    _switch.enabled = True


def disable() -> None:
    """Halt everything and refuse new rules until :func:`enable`."""
    _switch.enabled = False
    halt()


def is_enabled() -> bool:
    """True when rules may be installed."""
    return _switch.enabled


def _swap(armed: tuple[_Armed, ...], seed: int) -> _Active | None:
    """Publish a new snapshot (caller holds the lock) and keep the interceptor in step."""
    global _active
    _switch.generation += 1
    _switch.seed = seed
    new = _Active(armed, seed, _switch.generation) if armed else None
    _active = new
    if new is None:
        remove_interceptor(_intercept)
    else:
        # Re-adding bumps resilience's interceptor generation, so every policy asks
        # _wanted() again: guarded calls at sites no rule names stay on the fast path.
        add_interceptor(_intercept, sites=_wanted)
    return new


def _now() -> float:
    return get_settings().clock.monotonic()


def install(plan: FaultPlan) -> FaultPlan:
    """Enable fault injection and make ``plan`` the active plan (counters start afresh)."""
    if not isinstance(plan, FaultPlan):
        raise TypeError(f"install() needs a FaultPlan, got {plan!r}")
    now = _now()
    with _switch.lock:
        _switch.enabled = True
        _swap(tuple(_Armed(r, plan.seed, now) for r in plan.rules), plan.seed)
    return plan


def add_rule(rule: Rule, *, seed: int | None = None) -> Rule:
    """Arm one more rule next to the active ones; see :func:`add_rules`."""
    add_rules((rule,), seed=seed)
    return rule


def add_rules(rules: Iterable[Rule], *, seed: int | None = None) -> tuple[Rule, ...]:
    """Arm rules next to the active ones, all or none.

    Their draws use ``seed`` (default: the active plan's seed). Raises
    :class:`FaultsDisabled` when fault injection is off, ValueError when an id is
    already active (:class:`RuleConflict`).
    """
    new_rules = tuple(rules)
    for rule in new_rules:
        if not isinstance(rule, Rule):
            raise TypeError(f"add_rules() needs Rule objects, got {rule!r}")
    now = _now()
    with _switch.lock:
        if not _switch.enabled:
            raise FaultsDisabled("fault injection is off: call fault_injection.enable() "
                                 f"or set {ENV_SWITCH}=1")
        old = _active.armed if _active is not None else ()
        taken = {a.rule.id for a in old}.intersection(r.id for r in new_rules)
        if taken:
            raise RuleConflict(f"already active: {', '.join(sorted(taken))} (remove it first)")
        use_seed = _switch.seed if seed is None else seed
        FaultPlan(use_seed, new_rules)  # validates the seed and the new rules' ids
        armed = tuple(_Armed(r, use_seed, now) for r in new_rules)
        _swap((*old, *armed), _switch.seed if old else use_seed)
    return new_rules


def remove_rule(rule_id: str) -> bool:
    """Disarm the rule ``rule_id``; False if no such rule is active."""
    with _switch.lock:
        old = _active.armed if _active is not None else ()
        kept = tuple(a for a in old if a.rule.id != rule_id)
        if len(kept) == len(old):
            return False
        _swap(kept, _switch.seed)
    return True


def halt() -> int:
    """Clear every fault now; returns how many rules were armed. Never blocks on callers."""
    with _switch.lock:
        count = len(_active.armed) if _active is not None else 0
        _switch.halts += 1
        _swap((), _switch.seed)
    return count


def _expire(armed: _Armed) -> None:
    with _switch.lock:
        old = _active.armed if _active is not None else ()
        if armed in old:
            _switch.expired += 1
            _swap(tuple(a for a in old if a is not armed), _switch.seed)


def _prune() -> None:
    snapshot = _active
    if snapshot is None:
        return
    now = _now()
    for armed in snapshot.armed:
        if armed.expires is not None and now >= armed.expires:
            _expire(armed)


def active_plan() -> FaultPlan:
    """The rules armed now (after dropping expired ones), as a plan."""
    _prune()
    snapshot = _active
    return snapshot.plan() if snapshot is not None else FaultPlan(_switch.seed, ())


def stats() -> list[RuleStats]:
    """Every armed rule with its counters, in installation order."""
    _prune()
    snapshot = _active
    if snapshot is None:
        return []
    now = _now()
    return [RuleStats(a.rule, a.seed, sum(s.calls for s in list(a.sites.values())), a.hit_count,
                      tuple(sorted(a.sites)),
                      None if a.expires is None else max(0.0, a.expires - now),
                      None if a.until is None else max(0.0, a.until - now))
            for a in snapshot.armed]


def status() -> Status:
    """The switch and the counters."""
    _prune()
    snapshot = _active
    return Status(_switch.enabled, len(snapshot.armed) if snapshot else 0, _switch.seed,
                  _switch.generation, int(_switch.injected.__reduce__()[1][0]), _switch.halts,
                  _switch.expired)


def recent() -> list[Injection]:
    """The last injected faults (at most 200), oldest first."""
    return list(_switch.recent)


@contextmanager
def installed(plan: FaultPlan) -> Iterator[FaultPlan]:
    """Install ``plan`` for the block; afterwards put back exactly what was there before."""
    with _switch.lock:
        before, was_enabled, seed = _active, _switch.enabled, _switch.seed
    install(plan)
    try:
        yield plan
    finally:
        with _switch.lock:
            _switch.enabled = was_enabled
            _swap(before.armed if before is not None else (), seed)


# -- deciding one call ----------------------------------------------------------------------------


def _evaluate(site: str, rules: tuple[_Armed, ...], call: CallInfo | None) -> float:
    """Decide every matching rule for this call (each one counts it). The first raising rule
    that fires raises (an error preempts latency); otherwise firing latencies add up."""
    raising: tuple[_Armed, int] | None = None
    waits: list[tuple[_Armed, int, float]] = []
    now: float | None = None
    for armed in rules:
        rule = armed.rule
        if armed.timed:
            now = _now() if now is None else now
            if armed.expires is not None and now >= armed.expires:
                _expire(armed)
                continue
            if armed.until is not None and now >= armed.until:
                continue
        if rule.only_flagged:
            ctx = current()
            if ctx is None or not ctx.allows(rule.id):
                continue
        state = armed.state(site)
        ordinal = next(state.counter)
        if not fires(rule, state.draws, ordinal):
            continue
        if state.limit is not None and not state.limit.allows(ordinal):
            continue
        if rule.fault.is_delay:
            waits.append((armed, ordinal, rule.fault.delay(state.jitter(ordinal))))
        elif raising is None:
            raising = (armed, ordinal)
    if raising is not None:
        armed, ordinal = raising
        error = armed.rule.fault.build(site, armed.rule.id)
        _record(armed, site, ordinal, call, error, f"{type(error).__name__}: {error}")
        raise error
    for armed, ordinal, wait in waits:
        _record(armed, site, ordinal, call, None, f"delay={wait:.6g}s")
    return sum(w for _, _, w in waits)


def _record(armed: _Armed, site: str, ordinal: int, call: CallInfo | None,
            exc: BaseException | None, detail: str) -> None:
    next(armed.hits)
    next(_switch.injected)
    label = armed.rule.fault.label
    _switch.recent.append(Injection(get_settings().clock.time(), site, armed.rule.id, label, ordinal))
    if has_subscribers():
        kind = classify(exc).kind if exc is not None else None
        emit(FaultInjected(site, label, kind, armed.rule.id, armed.seed, ordinal, call, detail))


def _wanted(site: str) -> bool:
    """resilience's site filter: does any armed rule name this site?"""
    snapshot = _active
    if snapshot is None:
        return False
    rules = snapshot.rules(site)
    return bool(rules)


def _intercept(info: AttemptInfo) -> float | None:
    """resilience's interceptor: every attempt of every guarded call is a site."""
    snapshot = _active
    if snapshot is None:
        return None
    rules = snapshot.rules(info.site)
    return _evaluate(info.site, rules, info.call) if rules else None


def check(name: str) -> float:
    """Decide a call at site ``name`` without waiting: raises the fault or returns the delay."""
    snapshot = _active
    if snapshot is None:
        return 0.0
    rules = snapshot.rules(name)
    return _evaluate(name, rules, None) if rules else 0.0


def point(name: str) -> None:
    """A fault site in code without a guard: may raise the injected fault or wait its latency."""
    snapshot = _active
    if snapshot is None:
        return
    rules = snapshot.rules(name)
    if rules:
        delay = _evaluate(name, rules, None)
        if delay > 0:
            get_settings().clock.sleep(delay)


async def apoint(name: str) -> None:
    """:func:`point` for async code: latency is awaited, not slept."""
    if _active is None:
        return
    delay = check(name)
    if delay > 0:
        await get_settings().clock.asleep(delay)


def site(name: str) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Decorate a function (sync, async, generator, async generator) so each call is a site.

    For generators the site runs when iteration starts (the first ``next``).
    """
    def decorate(fn: Callable[P, R]) -> Callable[P, R]:
        if inspect.isasyncgenfunction(fn):
            wrapper: Any = _asyncgen_site(name, fn)
        elif inspect.iscoroutinefunction(fn):
            wrapper = _async_site(name, fn)
        elif inspect.isgeneratorfunction(fn):
            wrapper = _gen_site(name, fn)
        else:
            wrapper = _sync_site(name, fn)
        wrapper = functools.wraps(fn)(wrapper)
        wrapper.__shockproof_site__ = name
        return cast(Callable[P, R], wrapper)

    return decorate


def _sync_site(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    def at_site(*args: Any, **kwargs: Any) -> Any:
        point(name)
        return fn(*args, **kwargs)
    return at_site


def _async_site(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    async def at_site(*args: Any, **kwargs: Any) -> Any:
        await apoint(name)
        return await fn(*args, **kwargs)
    return at_site


def _gen_site(name: str, fn: Callable[..., Iterator[Any]]) -> Callable[..., Iterator[Any]]:
    def at_site(*args: Any, **kwargs: Any) -> Iterator[Any]:
        point(name)
        return (yield from fn(*args, **kwargs))
    return at_site


def _asyncgen_site(name: str, fn: Callable[..., AsyncIterator[Any]]) -> Callable[..., AsyncIterator[Any]]:
    async def at_site(*args: Any, **kwargs: Any) -> AsyncIterator[Any]:
        await apoint(name)
        async for item in fn(*args, **kwargs):
            yield item
    return at_site
