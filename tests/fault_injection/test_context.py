"""The fault context: signed fault headers, W3C baggage in and out, the contextvar."""

from __future__ import annotations

import contextvars

import pytest

import fault_injection as fi
from fault_injection import FAULT_HEADER, extract, outgoing_headers, sign

TOKEN = "s3cret-token"


def test_a_signed_header_verifies_under_the_same_token() -> None:
    """sign() then extract() gives back the rules the header selects."""
    ctx = extract({FAULT_HEADER: sign(TOKEN, "a,b")}, TOKEN)
    assert ctx is not None
    assert ctx.rules == frozenset({"a", "b"})
    assert ctx.allows("a")
    assert not ctx.allows("c")


def test_star_selects_every_flagged_rule() -> None:
    """The selector * allows any rule id."""
    ctx = extract({FAULT_HEADER: sign(TOKEN)}, TOKEN)
    assert ctx is not None
    assert ctx.rules is None
    assert ctx.allows("anything")


@pytest.mark.parametrize("value", [
    sign("another-token", "*"),
    "*",
    "*;sig=",
    "*;sig=" + "0" * 64,
    sign(TOKEN, "a").replace("a;", "b;"),
    "a b;sig=00",
])
def test_unauthorised_or_malformed_headers_are_ignored(value: str) -> None:
    """A header not signed with this token (or malformed) flags nothing."""
    assert extract({FAULT_HEADER: value}, TOKEN) is None


def test_header_lookup_ignores_case() -> None:
    """Plain dicts of headers are searched case-insensitively."""
    assert extract({"x-shockproof-fault": sign(TOKEN)}, TOKEN) is not None


def test_signature_does_not_contain_the_token() -> None:
    """The header proves the token without carrying it."""
    assert TOKEN not in sign(TOKEN)


def test_invalid_selector_is_refused_when_signing() -> None:
    """sign() rejects selectors that are neither * nor rule ids."""
    with pytest.raises(ValueError, match="selector"):
        sign(TOKEN, "a b")


def test_outgoing_headers_carry_the_context_as_w3c_baggage() -> None:
    """Inside a signed flagged context, outgoing_headers adds a baggage member that verifies downstream."""
    with fi.flagged("r1", token=TOKEN):
        headers = outgoing_headers({"baggage": "userId=7"})
    assert headers["baggage"].startswith("userId=7,shockproof.fault=")
    assert ";" not in headers["baggage"].split("shockproof.fault=")[1]
    ctx = extract(headers, TOKEN)
    assert ctx is not None
    assert ctx.rules == frozenset({"r1"})


def test_outgoing_headers_replace_an_older_entry() -> None:
    """An existing shockproof.fault baggage member is replaced, not duplicated."""
    with fi.flagged("*", token=TOKEN):
        headers = outgoing_headers(outgoing_headers())
    assert headers["baggage"].count("shockproof.fault=") == 1


def test_outgoing_headers_add_nothing_outside_a_flagged_request() -> None:
    """No context, no baggage; an unsigned in-process context is not forwarded either."""
    assert outgoing_headers() == {}
    with fi.flagged("*"):
        assert outgoing_headers() == {}


def test_the_context_is_per_context_not_global() -> None:
    """flagged() in one contextvars context is invisible in another."""
    with fi.flagged("*"):
        assert fi.fault_context() is not None
        assert contextvars.Context().run(fi.fault_context) is None
    assert fi.fault_context() is None
