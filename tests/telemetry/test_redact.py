"""One redaction pass: secrets by key name and by value pattern, configurable."""

from __future__ import annotations

import re

import pytest

from telemetry import RedactionRules, Redactor, redact
from telemetry._redact import REPLACEMENT, luhn_ok

VISA = "4111 1111 1111 1111"


@pytest.fixture
def r() -> Redactor:
    """The default redactor."""
    return Redactor()


@pytest.mark.parametrize("key", ["password", "user_password", "X-Api-Key", "Authorization",
                                 "Cookie", "Set-Cookie", "sessionId", "access_token", "email",
                                 "client_secret", "card_number", "cvv", "pwd"])
def test_secret_keys_are_recognised(r: Redactor, key: str) -> None:
    """Keys that name a secret are recognised whatever their case and separators."""
    assert r.secret_key(key)


@pytest.mark.parametrize("key", ["classname", "author", "spinner", "trace_id", "span_id",
                                 "shockproof.fingerprint", "exception.stacktrace", "http.route",
                                 "shockproof.circuit.name", "event"])
def test_ordinary_keys_are_kept(r: Redactor, key: str) -> None:
    """Short secret words count only as whole words, and our own attribute names are safe."""
    assert not r.secret_key(key)


def test_value_under_secret_key_is_replaced_whole(r: Redactor) -> None:
    """Any value under a secret key is replaced, whatever its type."""
    assert r.mapping({"password": "hunter2", "pin": 1234, "name": "bob"}) == {
        "password": REPLACEMENT, "pin": REPLACEMENT, "name": "bob"}


@pytest.mark.parametrize(("text", "secret"), [
    ("contact alice@example.com today", "alice@example.com"),
    ("Authorization: Bearer abcdef0123456789", "abcdef0123456789"),
    ("authorization=Basic dXNlcjpwYXNzd29yZA==", "dXNlcjpwYXNzd29yZA=="),
    ("GET /login?password=hunter2&next=/", "hunter2"),
    ('{"api_key": "k-123456789"}', "k-123456789"),
    ("Cookie: session=abc123; theme=dark; other=zz9", "abc123"),
    ("Cookie: a=first1; b=second2", "second2"),
    ("jwt eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.c2lnbmF0dXJl", "eyJzdWIiOiIxMjM0In0"),
    ("redis://:s3cretpw@localhost:6379/0", "s3cretpw"),
    ("postgres://app:pa55w0rd@db/app", "pa55w0rd"),
    ("key ghp_abcdefghijklmnopqrstuvwxyz0123456789", "ghp_abcdefghijklmnopqrstuvwxyz0123456789"),
    ("aws AKIAABCDEFGHIJKLMNOP here", "AKIAABCDEFGHIJKLMNOP"),
    (f"card {VISA} declined", VISA),
    ("card 4111111111111111 declined", "4111111111111111"),
])
def test_secret_values_are_found_in_text(r: Redactor, text: str, secret: str) -> None:
    """Secret-looking parts of any string are replaced; the rest of the text stays."""
    out = r.text(text)
    assert secret not in out
    assert REPLACEMENT in out


def test_text_around_a_secret_is_kept(r: Redactor) -> None:
    """Only the secret part goes: the message stays readable."""
    assert r.text("refused for alice@example.com at login") == f"refused for {REPLACEMENT} at login"


def test_key_value_pairs_keep_their_key(r: Redactor) -> None:
    """``password=...`` keeps the key, so the reader knows what was hidden."""
    assert r.text("password=hunter2") == f"password={REPLACEMENT}"


def test_numbers_failing_luhn_are_not_cards(r: Redactor) -> None:
    """Digit runs that fail the Luhn check (ids, timestamps) stay."""
    assert r.text("order 4111 1111 1111 1112") == "order 4111 1111 1111 1112"


def test_trace_ids_are_not_redacted(r: Redactor) -> None:
    """32-hex trace ids and 16-hex span ids are not mistaken for secrets."""
    text = "trace 0af7651916cd43dd8448eb211c80319c span b7ad6b7169203331"
    assert r.text(text) == text


def test_card_like_integers_are_redacted(r: Redactor) -> None:
    """A card number given as an int is replaced too; ordinary ints stay."""
    assert r.value(4111111111111111) == REPLACEMENT
    assert r.value(1_700_000_000) == 1_700_000_000


def test_luhn_check() -> None:
    """The Luhn check accepts a test card number and rejects a one-digit change."""
    assert luhn_ok("4111111111111111")
    assert not luhn_ok("4111111111111112")


def test_nested_structures_are_walked(r: Redactor) -> None:
    """Mappings inside lists inside mappings are redacted, types kept."""
    data = {"user": {"email": "a@b.co", "tags": ["x", "mail bob@example.com"]}, "t": ("ok",)}
    assert r.mapping(data) == {"user": {"email": REPLACEMENT, "tags": ["x", f"mail {REPLACEMENT}"]},
                               "t": ("ok",)}


def test_otel_attributes_are_redacted(r: Redactor) -> None:
    """Span attributes: secret keys replaced, string values and sequences scanned."""
    attrs = {"http.request.header.authorization": "Bearer abcdefgh12345678", "url.path": "/u/a@b.co",
             "list": ("x", "a@b.co"), "n": 3, "flag": True}
    assert r.attributes(attrs) == {"http.request.header.authorization": REPLACEMENT,
                                   "url.path": f"/u/{REPLACEMENT}", "list": ("x", REPLACEMENT),
                                   "n": 3, "flag": True}


def test_extra_keys_are_configurable() -> None:
    """Project-specific key names are added through RedactionRules.keys."""
    r = Redactor(RedactionRules(keys=("national-id",)))
    assert r.mapping({"nationalId": "X123", "name": "n"}) == {"nationalId": REPLACEMENT, "name": "n"}


def test_extra_patterns_are_configurable() -> None:
    """Project-specific value patterns are added through RedactionRules.patterns."""
    r = Redactor(RedactionRules(patterns=(r"ACME-\d{6}", re.compile(r"emp#\d+"))))
    assert r.text("ticket ACME-123456 by emp#42") == f"ticket {REPLACEMENT} by {REPLACEMENT}"


def test_safe_keys_are_exempt_from_key_rules() -> None:
    """A key listed in safe_keys keeps its value (still scanned by pattern)."""
    r = Redactor(RedactionRules(safe_keys=("token_count",)))
    assert r.mapping({"token_count": 12}) == {"token_count": 12}


def test_defaults_can_be_dropped() -> None:
    """defaults=False keeps only the project's own rules."""
    r = Redactor(RedactionRules(defaults=False, keys=("x",)))
    assert r.mapping({"password": "p", "x": "y"}) == {"password": "p", "x": REPLACEMENT}


def test_replacement_is_configurable() -> None:
    """The replacement text is a setting."""
    assert Redactor(RedactionRules(replacement="***")).text("a@b.co") == "***"


def test_one_off_redact_helper() -> None:
    """telemetry.redact() redacts one mapping or value with the default rules."""
    assert redact({"password": "p"}) == {"password": REPLACEMENT}
    assert redact("mail a@b.co") == f"mail {REPLACEMENT}"


def test_unwalkable_mapping_is_replaced_not_raised(r: Redactor) -> None:
    """A mapping whose items() raises is replaced whole: redaction never raises."""
    class Broken(dict[str, str]):
        def items(self):  # type: ignore[override]
            raise RuntimeError("boom")

    assert r.mapping(Broken()) == {"redaction_failed": REPLACEMENT}
