"""What a fault plan says: faults (what to raise or how long to wait), rules (where,
how often, for whom) and the plan itself (a seed and rules).

Everything here is an immutable value; nothing runs. Values are checked when they
are built, and every complaint names the field it is about (:class:`PlanError`),
so the same messages reach a Python caller, the CLI and the control API.
"""

from __future__ import annotations

import errno as _errno
import hashlib
import json
import math
import os
import re
import sys
from collections.abc import Iterable, Sequence
from dataclasses import KW_ONLY, dataclass, field, replace
from typing import Any, Literal, TypedDict, cast, get_args

from resilience import FieldError, ValidationFailed

FaultKind = Literal["logic", "validation", "network", "io", "latency", "http_status"]
NetworkVariant = Literal["refused", "reset", "timeout"]

#: Every kind of fault, in the order the docs list them.
FAULT_KINDS: tuple[str, ...] = get_args(FaultKind)
NETWORK_VARIANTS: tuple[str, ...] = get_args(NetworkVariant)
#: The errnos the docs promise; any other name the ``errno`` module knows is accepted too.
IO_ERRNOS: tuple[str, ...] = ("ENOENT", "EACCES", "ENOSPC", "EIO", "EROFS")
#: HTTP statuses an injected :class:`HTTPStatusFault` marks as transient (network kind).
TRANSIENT_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})

INJECTED_ATTR = "__shockproof_injected__"
RULE_ATTR = "__shockproof_rule__"

_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$")
_MAX_SITE = 200


# -- the package's exceptions -----------------------------------------------------------


class PlanFieldError(TypedDict):
    """One invalid field of a plan: its path (``rules[0].fault.variant``) and why."""

    field: str
    message: str


class FaultInjectionError(Exception):
    """Root of every exception this package raises about itself (not injected faults)."""


class PlanError(FaultInjectionError, ValueError):
    """A plan, rule or fault is invalid; ``errors`` names every offending field and why."""

    def __init__(self, errors: Sequence[PlanFieldError]) -> None:
        self.errors: list[PlanFieldError] = list(errors)
        super().__init__("; ".join(f"{e['field']}: {e['message']}" for e in self.errors))

    @classmethod
    def one(cls, field: str, message: str) -> PlanError:
        return cls([PlanFieldError(field=field, message=message)])

    def prefixed(self, prefix: str) -> PlanError:
        """The same errors with ``prefix`` in front of every field (``rules[2].`` ...)."""
        return PlanError([PlanFieldError(field=_join(prefix, e["field"]), message=e["message"])
                          for e in self.errors])

    def __reduce__(self) -> tuple[type[PlanError], tuple[list[PlanFieldError]]]:
        return (type(self), (self.errors,))


def _join(prefix: str, name: str) -> str:
    if not prefix:
        return name
    if not name or name.startswith("["):
        return f"{prefix}{name}"
    return f"{prefix}.{name}"


# -- injected HTTP statuses ---------------------------------------------------------------


class HTTPStatusFault(Exception):
    """An injected HTTP error status: ``status`` and, for 429/503, ``retry_after`` seconds.

    The class an :func:`http_status` fault raises depends on the status, so that
    :func:`resilience.classify` needs no registration: 408/425/429/5xx raise
    :class:`TransientHTTPStatusFault` (a ``ConnectionError``: network, transient,
    retried, counted by circuits); other 4xx raise :class:`RejectedHTTPStatusFault`
    (a ``ValidationFailed``: validation, never retried).
    """

    def __init__(self, status: int, retry_after: float | None = None, message: str = "") -> None:
        super().__init__(message or f"injected HTTP {status}")
        self.status = status
        self.retry_after = retry_after


class TransientHTTPStatusFault(HTTPStatusFault, ConnectionError):
    """An injected 408/425/429/5xx: classified network and transient."""


class RejectedHTTPStatusFault(HTTPStatusFault, ValidationFailed):
    """An injected 4xx other than 408/425/429: classified validation."""

    def __init__(self, status: int, retry_after: float | None = None, message: str = "") -> None:
        ValidationFailed.__init__(self, [FieldError(field="request", message=f"injected HTTP {status}",
                                                    type="injected")])
        self.args = (message or f"injected HTTP {status}",)
        self.status = status
        self.retry_after = retry_after


def mark_injected(exc: BaseException, rule_id: str) -> BaseException:
    """Tag ``exc`` as injected by ``rule_id`` (``__shockproof_injected__``/``__shockproof_rule__``)."""
    try:
        setattr(exc, INJECTED_ATTR, True)
        setattr(exc, RULE_ATTR, rule_id)
    except (AttributeError, TypeError):  # exceptions with __slots__ and no __dict__
        pass
    return exc


def is_injected(exc: BaseException) -> bool:
    """True when ``exc`` was raised on purpose by fault injection."""
    return getattr(exc, INJECTED_ATTR, False) is True


def injected_rule(exc: BaseException) -> str | None:
    """The id of the rule that injected ``exc``, or None for a real error."""
    rule = getattr(exc, RULE_ATTR, None) if is_injected(exc) else None
    return rule if isinstance(rule, str) else None


# -- faults -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Fault:
    """What a rule does when it fires. Build one with :func:`logic`, :func:`validation`,
    :func:`network`, :func:`io`, :func:`latency` or :func:`http_status`.

    Only the fields of its ``kind`` are meaningful; the others keep their defaults.
    """

    kind: FaultKind
    exception: str = ""
    message: str = ""
    field: str = ""
    variant: str = ""
    errno: str = ""
    seconds: float = 0.0
    jitter: float = 0.0
    status: int = 0
    retry_after: float | None = None

    def __post_init__(self) -> None:
        problems = list(_fault_problems(self))
        if problems:
            raise PlanError(problems)

    @property
    def is_delay(self) -> bool:
        """True for latency: the fault waits instead of raising."""
        return self.kind == "latency"

    @property
    def label(self) -> str:
        """Short and stable, for events, spans and tables: ``network(reset)``, ``io(ENOSPC)``."""
        arg = {
            "logic": self.exception, "validation": self.field, "network": self.variant,
            "io": self.errno, "http_status": str(self.status),
            "latency": f"{self.seconds:g}s" + (f"±{self.jitter:g}" if self.jitter else ""),
        }[self.kind]
        return f"{self.kind}({arg})"

    def params(self) -> dict[str, Any]:
        """The fields meaningful for this kind, ``kind`` first (the plan file's ``fault`` object)."""
        names = _PARAMS[self.kind]
        out: dict[str, Any] = {"kind": self.kind}
        for name in names:
            value = getattr(self, name)
            if name == "message" and not value:
                continue
            out[name] = value
        return out

    def delay(self, u: float) -> float:
        """Seconds to wait given a uniform draw ``u`` in [0, 1): ``seconds ± jitter``, never < 0."""
        return max(0.0, self.seconds + self.jitter * (2.0 * u - 1.0))

    def build(self, site: str, rule_id: str) -> BaseException:
        """A fresh exception for this fault at ``site``, marked as injected by ``rule_id``."""
        return mark_injected(_BUILDERS[self.kind](self, site), rule_id)


_PARAMS: dict[str, tuple[str, ...]] = {
    "logic": ("exception", "message"),
    "validation": ("field", "message"),
    "network": ("variant", "message"),
    "io": ("errno", "message"),
    "latency": ("seconds", "jitter"),
    "http_status": ("status", "retry_after", "message"),
}
_DEFAULTS = Fault.__dataclass_fields__


def _fault_problems(f: Fault) -> Iterable[PlanFieldError]:
    if f.kind not in FAULT_KINDS:
        yield _err("kind", f"must be one of {', '.join(FAULT_KINDS)}; got {f.kind!r}")
        return
    for name, spec in _DEFAULTS.items():
        if name not in ("kind", *_PARAMS[f.kind]) and getattr(f, name) != spec.default:
            yield _err(name, f"does not apply to a {f.kind} fault")
    yield from _KIND_CHECKS[f.kind](f)


def _err(name: str, message: str) -> PlanFieldError:
    return PlanFieldError(field=name, message=message)


def _check_logic(f: Fault) -> Iterable[PlanFieldError]:
    try:
        resolve_exception(f.exception)
    except LookupError as exc:
        yield _err("exception", str(exc))


def _check_validation(f: Fault) -> Iterable[PlanFieldError]:
    if not f.field:
        yield _err("field", "must be a non-empty field name")


def _check_network(f: Fault) -> Iterable[PlanFieldError]:
    if f.variant not in NETWORK_VARIANTS:
        yield _err("variant", f"must be one of {', '.join(NETWORK_VARIANTS)}; got {f.variant!r}")


def _check_io(f: Fault) -> Iterable[PlanFieldError]:
    if not f.errno.startswith("E") or not isinstance(getattr(_errno, f.errno, None), int):
        yield _err("errno", f"must be an errno name such as {', '.join(IO_ERRNOS)}; got {f.errno!r}")


def _check_latency(f: Fault) -> Iterable[PlanFieldError]:
    if not _finite(f.seconds) or f.seconds < 0:
        yield _err("seconds", f"must be a number of seconds >= 0; got {f.seconds!r}")
    if not _finite(f.jitter) or f.jitter < 0:
        yield _err("jitter", f"must be a number of seconds >= 0; got {f.jitter!r}")


def _check_http(f: Fault) -> Iterable[PlanFieldError]:
    if not _int(f.status) or not 400 <= f.status <= 599:
        yield _err("status", f"must be an HTTP error status from 400 to 599; got {f.status!r}")
    if f.retry_after is not None and (not _finite(f.retry_after) or f.retry_after < 0):
        yield _err("retry_after", f"must be a number of seconds >= 0 or null; got {f.retry_after!r}")


_KIND_CHECKS = {"logic": _check_logic, "validation": _check_validation, "network": _check_network,
                "io": _check_io, "latency": _check_latency, "http_status": _check_http}


def _finite(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def resolve_exception(name: str) -> type[Exception]:
    """The exception class ``name`` stands for: a builtin (``KeyError``) or ``module.Class`` of an
    already imported module. Plans never import anything (a plan may come over HTTP)."""
    if not name:
        raise LookupError("must name an exception class")
    module, _, qual = name.rpartition(":") if ":" in name else name.rpartition(".")
    found: object = sys.modules.get(module or "builtins")
    for part in qual.split("."):
        found = getattr(found, part, None)
    if not (isinstance(found, type) and issubclass(found, Exception)):
        where = "a builtin" if not module else f"a class of the imported module {module!r}"
        raise LookupError(f"{name!r} is not an Exception subclass ({where})")
    return found


def exception_name(tp: type[BaseException]) -> str:
    """How a plan names ``tp``: bare for builtins, ``module.QualName`` otherwise."""
    if tp.__module__ == "builtins":
        return tp.__qualname__
    return f"{tp.__module__}.{tp.__qualname__}"


def _build_logic(f: Fault, site: str) -> BaseException:
    tp = resolve_exception(f.exception)
    message = f.message or f"injected {tp.__name__} at {site}"
    try:
        return tp(message)
    except Exception:  # a custom exception with other required arguments
        exc = tp.__new__(tp)
        exc.args = (message,)
        return exc


def _build_validation(f: Fault, site: str) -> BaseException:
    message = f.message or f"injected validation fault at {site}"
    return ValidationFailed([FieldError(field=f.field, message=message, type="injected")])


_NETWORK_ERRORS = {"refused": _errno.ECONNREFUSED, "reset": _errno.ECONNRESET,
                   "timeout": _errno.ETIMEDOUT}


def _build_network(f: Fault, site: str) -> BaseException:
    code = _NETWORK_ERRORS[f.variant]
    message = f.message or f"{os.strerror(code)} (injected at {site})"
    return OSError(code, message)  # OSError picks ConnectionRefusedError/ResetError/TimeoutError


def _build_io(f: Fault, site: str) -> BaseException:
    code = int(getattr(_errno, f.errno))
    return OSError(code, f.message or os.strerror(code), f"<injected at {site}>")


def _build_latency(f: Fault, site: str) -> BaseException:
    raise AssertionError("latency faults wait; they never raise")


def _build_http(f: Fault, site: str) -> BaseException:
    retry_after = f.retry_after
    if retry_after is None and f.status in (429, 503):
        retry_after = 1.0
    cls = TransientHTTPStatusFault if f.status in TRANSIENT_STATUSES or f.status >= 500 \
        else RejectedHTTPStatusFault
    return cls(f.status, retry_after, f.message or f"injected HTTP {f.status} at {site}")


_BUILDERS = {"logic": _build_logic, "validation": _build_validation, "network": _build_network,
             "io": _build_io, "latency": _build_latency, "http_status": _build_http}


def logic(exc: type[Exception] | str = ZeroDivisionError, message: str = "") -> Fault:
    """Raise a logic error: ``ZeroDivisionError`` unless another exception class is given."""
    name = exc if isinstance(exc, str) else exception_name(exc)
    return Fault("logic", exception=name, message=message)


def validation(field: str = "input", message: str = "") -> Fault:
    """Raise ``resilience.ValidationFailed`` naming ``field``."""
    return Fault("validation", field=field, message=message)


def network(variant: NetworkVariant | str = "refused", message: str = "") -> Fault:
    """Raise ``ConnectionRefusedError``, ``ConnectionResetError`` or ``TimeoutError`` (with errno)."""
    return Fault("network", variant=variant, message=message)


def io(errno: int | str, message: str = "") -> Fault:
    """Raise the ``OSError`` subclass for ``errno`` (``"ENOSPC"`` or ``errno.ENOSPC``) with its strerror."""
    name = _errno.errorcode.get(errno, str(errno)) if isinstance(errno, int) else errno
    return Fault("io", errno=str(name), message=message)


def latency(seconds: float, jitter: float = 0.0) -> Fault:
    """Wait ``seconds ± jitter`` (through resilience's clock, so fake clocks see it) before the call."""
    return Fault("latency", seconds=seconds, jitter=jitter)


def http_status(code: int, retry_after: float | None = None, message: str = "") -> Fault:
    """Raise :class:`HTTPStatusFault` carrying ``.status`` (and ``.retry_after`` for 429/503)."""
    return Fault("http_status", status=code, retry_after=retry_after, message=message)


# -- rules ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Rule:
    """Where (``site`` glob), what (``fault``), how often and for whom.

    A call at a matching site is the rule's *n*-th call there (its ordinal, from 1,
    counted from when the rule was installed; for ``only_flagged`` rules only flagged
    calls count). The rule fires when every trigger given agrees:

    * ``rate``: a keyed hash of (seed, id, site, ordinal) mapped to [0, 1) is below it;
    * ``first=N``: ordinal <= N; ``after=N``: ordinal > N; ``every=N``: ordinal % N == 0;
    * ``max_hits=N``: fewer than N earlier ordinals *at that site* fired (counting per site
      keeps the decision a pure function of the ordinal, whatever the thread timing);
    * ``for_seconds=T``: within T seconds of installation (it then stays listed, silent);
    * ``ttl=T``: the rule is removed T seconds after installation (a forgotten fault expires);
    * ``only_flagged``: only in a request carrying an authorised fault header.

    Every matching rule counts every call it is eligible for. When several fire on one
    call, the first raising rule (in plan order) raises and no latency is waited; when
    only latency rules fire, their delays add up.

    ``id`` defaults to a hash of the rule's content, so a plan file replays identically.
    """

    site: str
    fault: Fault
    _: KW_ONLY
    rate: float = 1.0
    first: int | None = None
    every: int | None = None
    after: int | None = None
    max_hits: int | None = None
    for_seconds: float | None = None
    ttl: float | None = None
    only_flagged: bool = False
    id: str = field(default="")

    def __post_init__(self) -> None:
        problems = list(_rule_problems(self))
        if problems:
            raise PlanError(problems)
        if not self.id:
            object.__setattr__(self, "id", content_id(self))

    @property
    def timed(self) -> bool:
        """True when the clock matters to this rule (``for_seconds`` or ``ttl``)."""
        return self.for_seconds is not None or self.ttl is not None

    def triggers(self) -> str:
        """The triggers as one short phrase, for tables: ``rate=0.3 first=5 ttl=60s``."""
        parts = [] if self.rate == 1.0 else [f"rate={self.rate:g}"]
        parts += [f"{n}={getattr(self, n)}" for n in ("first", "every", "after", "max_hits")
                  if getattr(self, n) is not None]
        parts += [f"{n}={getattr(self, n):g}s" for n in ("for_seconds", "ttl") if getattr(self, n) is not None]
        if self.only_flagged:
            parts.append("flagged only")
        return " ".join(parts) or "always"

    def to_dict(self) -> dict[str, Any]:
        """The rule as the plan file writes it (unset triggers left out)."""
        out: dict[str, Any] = {"id": self.id, "site": self.site, "fault": self.fault.params()}
        if self.rate != 1.0:
            out["rate"] = self.rate
        for name in ("first", "every", "after", "max_hits", "for_seconds", "ttl"):
            if getattr(self, name) is not None:
                out[name] = getattr(self, name)
        if self.only_flagged:
            out["only_flagged"] = True
        return out


def _rule_problems(r: Rule) -> Iterable[PlanFieldError]:
    site, fault, only_flagged, rule_id = cast(tuple[object, ...], (r.site, r.fault, r.only_flagged, r.id))
    if not isinstance(site, str) or not site or len(site) > _MAX_SITE or not site.isprintable():
        yield _err("site", f"must be a printable site name or glob of 1 to {_MAX_SITE} characters")
    if not isinstance(fault, Fault):
        yield _err("fault", "must be a Fault (logic(), network(), io(...), ...)")
    if not _finite(r.rate) or not 0.0 <= r.rate <= 1.0:
        yield _err("rate", f"must be a number from 0 to 1; got {r.rate!r}")
    for name, low in (("first", 1), ("every", 1), ("after", 0), ("max_hits", 1)):
        value = getattr(r, name)
        if value is not None and (not _int(value) or value < low):
            yield _err(name, f"must be an integer >= {low} or null; got {value!r}")
    for name in ("for_seconds", "ttl"):
        value = getattr(r, name)
        if value is not None and (not _finite(value) or value <= 0):
            yield _err(name, f"must be a number of seconds > 0 or null; got {value!r}")
    if not isinstance(only_flagged, bool):
        yield _err("only_flagged", f"must be true or false; got {only_flagged!r}")
    if rule_id and (not isinstance(rule_id, str) or not _ID.match(rule_id)):
        yield _err("id", "must be 1 to 64 letters, digits or _.:- starting with a letter or digit")


def content_id(rule: Rule) -> str:
    """A stable id from the rule's content: the same rule gets the same id in every process."""
    body = {k: v for k, v in rule.to_dict().items() if k != "id"}
    digest = hashlib.blake2b(json.dumps(body, sort_keys=True).encode(), digest_size=4).hexdigest()
    return f"r-{digest}"


# -- plans ----------------------------------------------------------------------------------

MAX_SEED = 2**64 - 1


@dataclass(frozen=True, slots=True)
class FaultPlan:
    """A seed and rules: everything needed to decide, call by call, which faults happen."""

    seed: int = 0
    rules: tuple[Rule, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "rules", tuple(self.rules))
        problems = []
        if not _int(self.seed) or not 0 <= self.seed <= MAX_SEED:
            problems.append(_err("seed", f"must be an integer from 0 to 2**64-1; got {self.seed!r}"))
        seen: set[str] = set()
        for i, rule in enumerate(cast(tuple[object, ...], self.rules)):
            if not isinstance(rule, Rule):
                problems.append(_err(f"rules[{i}]", "must be a Rule"))
            elif rule.id in seen:
                problems.append(_err(f"rules[{i}].id", f"duplicate id {rule.id!r}; give one rule another id"))
            else:
                seen.add(rule.id)
        if problems:
            raise PlanError(problems)

    def rule(self, rule_id: str) -> Rule:
        """The rule with this id (KeyError if none)."""
        for rule in self.rules:
            if rule.id == rule_id:
                return rule
        raise KeyError(rule_id)

    def add(self, *rules: Rule) -> FaultPlan:
        """A new plan with ``rules`` appended."""
        return replace(self, rules=(*self.rules, *rules))

    def without(self, rule_id: str) -> FaultPlan:
        """A new plan without the rule ``rule_id``."""
        return replace(self, rules=tuple(r for r in self.rules if r.id != rule_id))

    def to_dict(self) -> dict[str, Any]:
        """The plan as the schedule file writes it (``version``, ``seed``, ``rules``)."""
        return {"version": 1, "seed": self.seed, "rules": [r.to_dict() for r in self.rules]}

    def decisions(self, site: str, n: int, *, flagged: bool = True) -> list[Decision]:
        """What the first ``n`` calls at ``site`` would get, assuming no time passes.

        ``flagged`` says whether those calls carry an authorised fault header.
        """
        from ._decide import preview

        return preview(self, site, n, flagged=flagged)


@dataclass(frozen=True, slots=True)
class Decision:
    """What one call at a site gets: the rules that fired, which one raised (and its fault
    label), and the delay waited (0 when a rule raised: an error preempts latency)."""

    site: str
    ordinal: int
    fired: tuple[str, ...] = ()
    raised: str | None = None
    fault: str | None = None
    delay: float = 0.0

    @property
    def injected(self) -> bool:
        return bool(self.fired)

    def describe(self) -> str:
        """One line: ``#3 catalog.fetch: network(reset) by r-1a2b``."""
        what = []
        if self.raised is not None:
            what.append(f"{self.fault} by {self.raised}")
        if self.delay:
            what.append(f"+{self.delay:.3g}s delay")
        return f"#{self.ordinal} {self.site}: {', '.join(what) or 'no fault'}"


def as_rules(rules: Iterable[Rule | dict[str, Any]]) -> tuple[Rule, ...]:
    """Rules given as :class:`Rule` objects (dicts are parsed by :mod:`._io`)."""
    from ._io import parse_rule

    return tuple(r if isinstance(r, Rule) else parse_rule(r) for r in rules)
