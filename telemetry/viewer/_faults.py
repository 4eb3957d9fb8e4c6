"""The active fault rules, read from a running app's fault control API (optional).

The viewer knows nothing of :mod:`fault_injection` (dependencies point one way):
it speaks the control API's documented HTTP shape, ``GET <url>`` with a bearer
token, answering ``{enabled, active_rules, seed, injected, rules: [...], recent:
[...]}``. The token stays on the server; the page only shows the answer. A
control API that is down or refuses the token is reported on the page, never
raised.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from . import _format as fmt

_TRIGGERS: Final = ("first", "every", "after", "max_hits", "for_seconds", "ttl")
_MAX_ANSWER: Final = 4 * 2**20


@dataclass(frozen=True, slots=True)
class RuleView:
    """One armed rule, as text for the page."""

    id: str
    site: str
    fault: str
    rate: str
    triggers: str
    only_flagged: bool
    calls: int
    hits: int
    expires_in: str


@dataclass(frozen=True, slots=True)
class ControlView:
    """What the control API said (or why it could not be asked)."""

    url: str
    error: str | None = None
    enabled: bool = False
    seed: Any = None
    injected: int = 0
    rules: tuple[RuleView, ...] = ()
    raw: Mapping[str, Any] = field(default_factory=dict)


class FaultControl:
    """Reads ``url`` (the control API's root, e.g. ``http://127.0.0.1:8000/_shockproof/faults``)."""

    def __init__(self, url: str, token: str | None, timeout: float = 1.5) -> None:
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"the fault control URL must be http(s), not {url!r}")
        self.url = url.rstrip("/") + "/"
        self._token = token
        self.timeout = timeout

    def __repr__(self) -> str:
        return f"FaultControl({self.url!r})"  # never the token

    def overview(self) -> ControlView:
        try:
            answer = self._get()
        except urllib.error.HTTPError as exc:
            known = {401: "the token was refused", 403: "the control API refused this client"}
            return ControlView(self.url, f"HTTP {exc.code}: {known.get(exc.code, exc.reason)}")
        except (urllib.error.URLError, OSError, ValueError) as exc:
            reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
            return ControlView(self.url, f"unreachable: {reason}")
        rules = answer.get("rules")
        return ControlView(
            self.url, None, bool(answer.get("enabled")), answer.get("seed"),
            int(answer.get("injected") or 0),
            tuple(rule_view(r) for r in rules if isinstance(r, Mapping))
            if isinstance(rules, list) else (), answer)

    def _get(self) -> dict[str, Any]:
        headers = {"Accept": "application/json"}
        if self._token:
            headers["Authorization"] = f"Bearer {self._token}"
        req = urllib.request.Request(self.url, headers=headers, method="GET")
        with urllib.request.urlopen(req, timeout=self.timeout) as resp:
            data = resp.read(_MAX_ANSWER + 1)
        if len(data) > _MAX_ANSWER:
            raise ValueError("the control API's answer is too large")
        answer = json.loads(data)
        if not isinstance(answer, dict):
            raise ValueError("the control API did not answer a JSON object")
        return answer


def rule_view(rule: Mapping[str, Any]) -> RuleView:
    """A rule of the control API's answer as text."""
    fault = rule.get("fault")
    if isinstance(fault, Mapping):
        kind = fault.get("kind", "?")
        rest = ", ".join(f"{k}={v}" for k, v in fault.items() if k != "kind")
        fault_text = f"{kind} ({rest})" if rest else str(kind)
    else:
        fault_text = str(fault)
    stats = rule.get("stats") if isinstance(rule.get("stats"), Mapping) else {}
    assert isinstance(stats, Mapping)
    triggers = ", ".join(f"{name}={rule[name]}" for name in _TRIGGERS if rule.get(name) is not None)
    expires: Any = stats.get("expires_in")
    return RuleView(
        str(rule.get("id", "")), str(rule.get("site", "")), fault_text,
        f"{float(rule.get('rate', 1.0)):.0%}" if _number(rule.get("rate", 1.0)) else "?",
        triggers or "always", rule.get("only_flagged") is True,
        int(stats.get("calls") or 0), int(stats.get("hits") or 0),
        fmt.seconds(float(expires)) if _number(expires) else "never")


def _number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)
