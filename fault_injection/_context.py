"""Who gets faults: the per-request fault context (the Netflix FIT model).

Rules with ``only_flagged=True`` fire only inside a request that carries an
*authorised* fault header, so one engineer can break their own requests on a
shared environment and nobody else's::

    X-Shockproof-Fault: <selector>;sig=<hex>

``selector`` is ``*`` (every flagged rule) or comma-separated rule ids; ``sig``
is HMAC-SHA256 of the selector under the control API's token (:func:`sign`), so
the header proves its sender holds the token without carrying it. The context
lives in a :mod:`contextvars` variable (it follows threads' and tasks' own
contexts) and travels to downstream services as a W3C ``baggage`` entry
``shockproof.fault=<header value>`` (:func:`outgoing_headers`), where the same
verification applies.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Iterator, Mapping, MutableMapping
from contextlib import contextmanager
from contextvars import ContextVar, Token
from dataclasses import dataclass
from urllib.parse import quote, unquote

FAULT_HEADER = "X-Shockproof-Fault"
BAGGAGE_HEADER = "baggage"
BAGGAGE_KEY = "shockproof.fault"
_SELECTOR = re.compile(r"^(\*|[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}(,[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}){0,31})$")
_MAX_HEADER = 4096


@dataclass(frozen=True, slots=True)
class FaultContext:
    """The faults one request asked for: every flagged rule (``rules is None``) or these ids.

    ``header`` is the signed header value, forwarded unchanged as baggage ("" when the
    context was made in-process without a token: then it is not forwarded).
    """

    rules: frozenset[str] | None = None
    header: str = ""

    def allows(self, rule_id: str) -> bool:
        """True when a flagged rule with this id may fire in this request."""
        return self.rules is None or rule_id in self.rules


_current: ContextVar[FaultContext | None] = ContextVar("shockproof_fault_context", default=None)


def current() -> FaultContext | None:
    """The fault context of the running request, if it is flagged."""
    return _current.get()


def activate(ctx: FaultContext | None) -> Token[FaultContext | None]:
    """Make ``ctx`` current; give the token to :func:`deactivate` when the request ends."""
    return _current.set(ctx)


def deactivate(token: Token[FaultContext | None]) -> None:
    """Undo :func:`activate` (a token from another context just clears the context)."""
    try:
        _current.reset(token)
    except ValueError:
        _current.set(None)


@contextmanager
def flagged(selector: str = "*", *, token: str | None = None) -> Iterator[FaultContext]:
    """Run the block as a flagged request (tests, jobs without HTTP). With ``token`` the
    context is signed and so forwarded by :func:`outgoing_headers`."""
    ctx = FaultContext(_parse_selector(selector), sign(token, selector) if token else "")
    reset = activate(ctx)
    try:
        yield ctx
    finally:
        deactivate(reset)


def sign(token: str, selector: str = "*") -> str:
    """The authorised header value for ``selector`` (``*`` or ``id1,id2``) under ``token``."""
    _parse_selector(selector)
    return f"{selector};sig={_mac(token, selector)}"


def _mac(token: str, selector: str) -> str:
    return hmac.new(token.encode(), b"shockproof-fault:" + selector.encode(), hashlib.sha256).hexdigest()


def _parse_selector(selector: str) -> frozenset[str] | None:
    if not _SELECTOR.match(selector):
        raise ValueError(f"fault selector must be '*' or comma-separated rule ids; got {selector!r}")
    return None if selector == "*" else frozenset(selector.split(","))


def verify(value: str, token: str) -> FaultContext | None:
    """The context a header value asks for, or None when it is malformed or wrongly signed."""
    if not value or len(value) > _MAX_HEADER or not token:
        return None
    selector, sep, sig = value.strip().rpartition(";sig=")
    if not sep:
        return None
    try:
        rules = _parse_selector(selector)
    except ValueError:
        return None
    if not hmac.compare_digest(sig.encode(), _mac(token, selector).encode()):
        return None
    return FaultContext(rules, f"{selector};sig={sig}")


def _header(headers: Mapping[str, str], name: str) -> str:
    value = headers.get(name)
    if value is None:
        lowered = name.lower()
        value = next((v for k, v in headers.items() if k.lower() == lowered), None)
    return value or ""


def from_baggage(baggage: str) -> str:
    """Our entry's value in a W3C ``baggage`` header ("" if absent)."""
    for member in baggage.split(","):
        key, sep, rest = member.partition("=")
        if sep and key.strip() == BAGGAGE_KEY:
            return unquote(rest.split(";", 1)[0].strip())
    return ""


def extract(headers: Mapping[str, str], token: str) -> FaultContext | None:
    """The authorised fault context of an incoming request (fault header first, then baggage)."""
    value = _header(headers, FAULT_HEADER)
    if not value:
        value = from_baggage(_header(headers, BAGGAGE_HEADER))
    return verify(value, token) if value else None


def outgoing_headers(headers: MutableMapping[str, str] | None = None) -> MutableMapping[str, str]:
    """Add the current signed fault context to ``headers`` as W3C baggage (for downstream calls).

    Returns the mapping (a new dict when none is given); unchanged outside a flagged request.
    """
    out: MutableMapping[str, str] = {} if headers is None else headers
    ctx = _current.get()
    if ctx is None or not ctx.header:
        return out
    entry = f"{BAGGAGE_KEY}={quote(ctx.header, safe='*=:')}"
    existing = _header(out, BAGGAGE_HEADER)
    kept = [m for m in existing.split(",") if m.strip() and m.partition("=")[0].strip() != BAGGAGE_KEY]
    name = next((k for k in out if k.lower() == BAGGAGE_HEADER), BAGGAGE_HEADER)
    out[name] = ",".join([*(m.strip() for m in kept), entry])
    return out
