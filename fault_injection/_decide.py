"""Deterministic decisions: whether a rule fires is a pure function of
(seed, rule id, site, the call's ordinal at that site).

The draw is a keyed BLAKE2b hash of those four values mapped to [0, 1); it is
compared with the rule's rate. Nothing here reads a clock or depends on which
thread asks: the same plan and the same per-site call counts give the same
faults, in any process, which is what ``shockproof-faults replay`` shows.

``max_hits`` is the one stateful trigger; it stays a pure function of the
ordinal by being defined as "fewer than N *earlier ordinals* fired", which
:class:`HitLimit` answers by scanning ordinals in order (lazily, amortised O(1)).
"""

from __future__ import annotations

import bisect
import hashlib
import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._plan import Decision, FaultPlan, Rule

_SCALE = float(2**64)
HIT = b"hit"
JITTER = b"jitter"


class Draws:
    """Uniform draws for one (seed, rule id, site): the hash prefix is computed once."""

    __slots__ = ("_base",)

    def __init__(self, seed: int, rule_id: str, site: str, salt: bytes = HIT) -> None:
        base = hashlib.blake2b(seed.to_bytes(8, "little"), digest_size=8, person=salt[:16])
        base.update(rule_id.encode() + b"\0" + site.encode() + b"\0")
        self._base = base

    def __call__(self, ordinal: int) -> float:
        """A uniform float in [0, 1) for this ordinal."""
        h = self._base.copy()
        h.update(ordinal.to_bytes(8, "little"))
        return int.from_bytes(h.digest(), "little") / _SCALE


def uniform(seed: int, rule_id: str, site: str, ordinal: int, salt: bytes = HIT) -> float:
    """The draw for one call: a pure function of its four inputs (and the salt)."""
    return Draws(seed, rule_id, site, salt)(ordinal)


def eligible(rule: Rule, ordinal: int) -> bool:
    """The counting triggers: ``first``, ``after``, ``every``."""
    if rule.first is not None and ordinal > rule.first:
        return False
    if rule.after is not None and ordinal <= rule.after:
        return False
    return rule.every is None or ordinal % rule.every == 0


def fires(rule: Rule, draws: Draws, ordinal: int) -> bool:
    """Counting triggers and rate (``max_hits`` and the clock are checked by the caller)."""
    if not eligible(rule, ordinal):
        return False
    rate = rule.rate
    if rate >= 1.0:
        return True
    return rate > 0.0 and draws(ordinal) < rate


class HitLimit:
    """``max_hits`` at one site: ordinal n is within the limit when fewer than ``max_hits``
    ordinals before it fire. The scan runs under a lock that guards nothing but the scan."""

    __slots__ = ("_draws", "_found", "_lock", "_rule", "_scanned")

    def __init__(self, rule: Rule, draws: Draws) -> None:
        self._rule = rule
        self._draws = draws
        self._found: list[int] = []
        self._scanned = 0
        self._lock = threading.Lock()

    def allows(self, ordinal: int) -> bool:
        """True when ``ordinal`` (which fires) is among the first ``max_hits`` that fire."""
        limit = self._rule.max_hits or 0
        with self._lock:
            while self._scanned < ordinal - 1 and len(self._found) < limit:
                self._scanned += 1
                if fires(self._rule, self._draws, self._scanned):
                    self._found.append(self._scanned)
            before = bisect.bisect_left(self._found, ordinal)
        return before < limit


def preview(plan: FaultPlan, site: str, n: int, *, flagged: bool = True) -> list[Decision]:
    """What calls 1..n at ``site`` get under ``plan`` (no time passing; see FaultPlan.decisions)."""
    from fnmatch import fnmatchcase

    from ._plan import Decision

    rules = [r for r in plan.rules if fnmatchcase(site, r.site) and (flagged or not r.only_flagged)]
    draws = {r.id: Draws(plan.seed, r.id, site) for r in rules}
    jitters = {r.id: Draws(plan.seed, r.id, site, JITTER) for r in rules}
    hits = dict.fromkeys(draws, 0)
    out = []
    for ordinal in range(1, n + 1):
        fired: list[str] = []
        raised: Rule | None = None
        delay = 0.0
        for rule in rules:
            if not fires(rule, draws[rule.id], ordinal):
                continue
            if rule.max_hits is not None and hits[rule.id] >= rule.max_hits:
                continue
            hits[rule.id] += 1
            fired.append(rule.id)
            if rule.fault.is_delay:
                delay += rule.fault.delay(jitters[rule.id](ordinal))
            elif raised is None:
                raised = rule
        out.append(Decision(site, ordinal, tuple(fired), raised.id if raised else None,
                            raised.fault.label if raised else None, 0.0 if raised else delay))
    return out
