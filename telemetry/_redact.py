"""One redaction pass, applied where data enters telemetry (spans, logs, Sentry, the store).

Two ways a value is found secret:

* **by key**: a field, attribute or header whose name says it holds a secret
  (``password``, ``api_key``, ``Authorization``, ``cookie``, ``email`` ...) has its
  whole value replaced, whatever its type;
* **by value**: inside any string, what looks like an e-mail address, a bearer or
  basic credential, ``password=...``-style pairs, a cookie header, a JWT, a
  well-known API token, credentials in a URL or a card number (Luhn-checked) is
  replaced, and the rest of the text is kept.

Both lists are extensible through :class:`RedactionRules`. Redaction never raises:
a value it cannot walk is replaced whole.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

REPLACEMENT: Final = "[REDACTED]"

#: Key fragments (lower case, separators removed) that mark a value secret.
SECRET_KEY_PARTS: Final = (
    "password", "passwd", "passphrase", "secret", "token", "apikey", "accesskey",
    "privatekey", "authorization", "authentication", "credential", "cookie", "session",
    "csrf", "xsrf", "email", "creditcard", "cardnumber", "iban", "signature",
)
#: Short words that are secret only as a whole word of the key (``pwd``, not ``classname``).
SECRET_KEY_WORDS: Final = ("pwd", "pin", "cvv", "cvc", "ssn", "otp", "auth", "card", "jwt")

_KV_WORDS = (r"password|passwd|passphrase|pwd|secret|token|api[-_]?key|access[-_]?key|"
             r"private[-_]?key|session(?:[-_]?id)?|csrf|credentials?|authorization|auth")
_SCHEME_WORDS = r"bearer|basic|digest|token|negotiate"

#: Value patterns, tried together in one scan (order matters where two start at one place).
DEFAULT_PATTERNS: Final[Mapping[str, str]] = {
    "cookie": r"(?i:\b(?:set-)?cookie[\"']?\s*[:=]\s*[^\r\n\"']+)",
    "kv": (rf"(?P<kvkey>(?i:(?:{_KV_WORDS})[\w.-]{{0,24}}?[\"']?\s*[:=]\s*))"
           rf"(?i:(?:{_SCHEME_WORDS})\s+)?(?:\"[^\"]*\"|'[^']*'|[^\s&;,\"'}}]+)"),
    "scheme": rf"(?i:\b(?:{_SCHEME_WORDS})\s+[A-Za-z0-9._~+/=-]{{8,}})",
    "jwt": r"\beyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*",
    "url_credentials": r"(?P<urlscheme>(?i:\b[a-z][a-z0-9+.-]*://))[^/\s:@]*:[^/\s@]+@",
    "email": r"(?<![A-Za-z0-9._%+-])[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}",
    "api_token": (r"\b(?:gh[pousr]_[A-Za-z0-9]{20,}|github_pat_\w{20,}|xox[abposr]-[A-Za-z0-9-]{10,}"
                  r"|[sr]k_(?:live|test)_[A-Za-z0-9]{10,}|sk-[A-Za-z0-9_-]{20,}|AKIA[0-9A-Z]{16}"
                  r"|AIza[0-9A-Za-z_-]{35})\b"),
    "card": r"(?<![\w.-])(?:\d[ -]?){12,18}\d(?![\w-])",
}

#: Cheap necessary conditions of the patterns above: a string matching none of them is clean.
_TRIGGERS = re.compile(
    r"@|eyJ|\d[\d -]{11,}\d|gh[pousr]_|github_pat_|xox[abposr]-|[sr]k_(?:live|test)_|sk-|AKIA|AIza"
    rf"|(?i:cookie|{_KV_WORDS}|{_SCHEME_WORDS})")
_SEPARATORS = re.compile(r"[\s_.\-]+")
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
_MAX_DEPTH = 12
_KEY_CACHE_MAX = 4096
#: Strings found clean are remembered (never a string that held a secret), up to this many.
_CLEAN_CACHE_MAX = 4096
_CLEAN_CACHE_LEN = 256


@dataclass(frozen=True, slots=True)
class RedactionRules:
    """What counts as secret, on top of (or instead of) the built-in rules.

    ``keys`` are extra key fragments (case and ``-``/``_``/``.`` ignored); ``patterns``
    extra regular expressions whose every match is replaced; ``safe_keys`` exact key
    names never redacted by key (their values are still scanned). ``defaults=False``
    drops the built-in keys and patterns (only for those who know why).
    """

    keys: tuple[str, ...] = ()
    patterns: tuple[str | re.Pattern[str], ...] = ()
    safe_keys: tuple[str, ...] = ()
    defaults: bool = True
    replacement: str = REPLACEMENT


def luhn_ok(digits: str) -> bool:
    """True when ``digits`` (only digits) passes the Luhn check, as card numbers do."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def _normalise_key(key: str) -> tuple[str, tuple[str, ...]]:
    words = _SEPARATORS.split(_CAMEL.sub(" ", key).lower())
    return "".join(words), tuple(w for w in words if w)


class Redactor:
    """Applies one :class:`RedactionRules` to strings, mappings and OTel attributes."""

    __slots__ = ("_clean", "_extra", "_key_cache", "_parts", "_replacement", "_safe", "_scan", "_words")

    def __init__(self, rules: RedactionRules | None = None) -> None:
        rules = rules or RedactionRules()
        self._replacement = rules.replacement
        parts = list(SECRET_KEY_PARTS if rules.defaults else ())
        parts += [_normalise_key(k)[0] for k in rules.keys]
        self._parts = tuple(p for p in parts if p)
        self._words = frozenset(SECRET_KEY_WORDS if rules.defaults else ())
        self._safe = frozenset(rules.safe_keys)
        self._scan = (re.compile("|".join(f"(?P<{name}>{p})" for name, p in DEFAULT_PATTERNS.items()))
                      if rules.defaults else None)
        self._extra = tuple(re.compile(p) if isinstance(p, str) else p for p in rules.patterns)
        self._key_cache: dict[str, bool] = {}
        self._clean: set[str] = set()

    # -- keys -------------------------------------------------------------------------

    def secret_key(self, key: str) -> bool:
        """True when a value stored under ``key`` must be hidden whole."""
        known = self._key_cache.get(key)
        if known is not None:
            return known
        verdict = key not in self._safe and self._judge_key(key)
        if len(self._key_cache) < _KEY_CACHE_MAX:
            self._key_cache[key] = verdict
        return verdict

    def _judge_key(self, key: str) -> bool:
        joined, words = _normalise_key(key)
        return any(p in joined for p in self._parts) or any(w in self._words for w in words)

    # -- values ------------------------------------------------------------------------

    def text(self, value: str) -> str:
        """``value`` with every secret-looking part replaced."""
        if len(value) < 6 or value in self._clean:
            return value
        out = value
        if self._scan is not None and _TRIGGERS.search(value) is not None:
            out = self._scan.sub(self._replace, value)
        for pattern in self._extra:
            out = pattern.sub(self._replacement, out)
        if out == value and len(value) <= _CLEAN_CACHE_LEN:
            if len(self._clean) >= _CLEAN_CACHE_MAX:
                self._clean.clear()
            self._clean.add(value)
        return out

    def _replace(self, match: re.Match[str]) -> str:
        kind = match.lastgroup
        if kind == "card":
            digits = re.sub(r"\D", "", match.group())
            return self._replacement if luhn_ok(digits) else match.group()
        if kind == "kv":
            return match.group("kvkey") + self._replacement
        if kind == "url_credentials":
            return f"{match.group('urlscheme')}{self._replacement}@"
        return self._replacement

    def value(self, value: Any, depth: int = 0) -> Any:
        """Redact any value: strings are scanned, containers walked, card-like ints hidden."""
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, bool) or value is None or isinstance(value, float):
            return value
        if isinstance(value, int):
            return self._int(value)
        if depth > _MAX_DEPTH:
            return self._replacement
        if isinstance(value, Mapping):
            return self.mapping(value, depth + 1)
        if isinstance(value, tuple):
            return tuple(self.value(v, depth + 1) for v in value)
        if isinstance(value, list | set | frozenset):
            return [self.value(v, depth + 1) for v in value]
        if isinstance(value, bytes | bytearray):
            return self.text(bytes(value).decode("utf-8", "replace"))
        return value

    def _int(self, value: int) -> int | str:
        if 10**12 <= abs(value) < 10**19 and luhn_ok(str(abs(value))):
            return self._replacement
        return value

    def pair(self, key: str, value: Any, depth: int = 0) -> Any:
        """The value to keep under ``key``."""
        if self.secret_key(key):
            return self._replacement if value not in (None, "") else value
        return self.value(value, depth)

    def mapping(self, data: Mapping[Any, Any], depth: int = 0) -> dict[Any, Any]:
        """A redacted copy of ``data`` (nested mappings and sequences too)."""
        try:
            return {k: (self.pair(k, v, depth) if isinstance(k, str) else self.value(v, depth))
                    for k, v in data.items()}
        except Exception:
            return {"redaction_failed": self._replacement}

    def attributes(self, attrs: Mapping[str, Any] | None) -> dict[str, Any]:
        """OpenTelemetry attributes (primitives or sequences of them), redacted."""
        if not attrs:
            return {}
        out: dict[str, Any] = {}
        for key, val in attrs.items():
            kind = type(val)
            if self.secret_key(key):
                out[key] = self._replacement
            elif kind is str:  # the common kinds first, by exact type
                out[key] = self.text(val)
            elif kind is int:
                out[key] = self._int(val)
            elif kind is bool or kind is float:
                out[key] = val
            elif isinstance(val, str):
                out[key] = self.text(val)
            elif isinstance(val, Sequence) and not isinstance(val, bytes):
                out[key] = tuple(self.text(v) if isinstance(v, str) else v for v in val)
            elif isinstance(val, int) and not isinstance(val, bool):
                out[key] = self._int(val)
            else:
                out[key] = val
        return out


def redact(data: Any, rules: RedactionRules | None = None) -> Any:
    """One-off redaction of ``data`` (a mapping, a string or anything :meth:`Redactor.value` takes)."""
    redactor = Redactor(rules)
    return redactor.mapping(data) if isinstance(data, Mapping) else redactor.value(data)

