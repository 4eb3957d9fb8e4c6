"""Faults, rules and plans: what each fault raises, and how invalid values are reported."""

from __future__ import annotations

import errno
import pickle

import pytest

import resilience
from fault_injection import (
    Fault,
    FaultPlan,
    HTTPStatusFault,
    PlanError,
    Rule,
    http_status,
    injected_rule,
    io,
    is_injected,
    latency,
    logic,
    network,
    validation,
)
from resilience import ErrorKind


@pytest.mark.parametrize(("variant", "exc_type", "code"), [
    ("refused", ConnectionRefusedError, errno.ECONNREFUSED),
    ("reset", ConnectionResetError, errno.ECONNRESET),
    ("timeout", TimeoutError, errno.ETIMEDOUT),
])
def test_network_variants_raise_the_matching_oserror(variant: str, exc_type: type[OSError], code: int) -> None:
    """network(variant) builds the builtin exception with its errno, classified network."""
    exc = network(variant).build("catalog.fetch", "r1")
    assert type(exc) is exc_type
    assert isinstance(exc, OSError)
    assert exc.errno == code
    assert resilience.classify(exc).kind is ErrorKind.NETWORK


@pytest.mark.parametrize(("name", "exc_type"), [
    ("ENOENT", FileNotFoundError), ("EACCES", PermissionError), ("ENOSPC", OSError),
    ("EIO", OSError), ("EROFS", OSError),
])
def test_io_faults_raise_the_oserror_subclass_with_errno_and_strerror(name: str, exc_type: type[OSError]) -> None:
    """io(errno) raises the OSError subclass Python itself would, with errno and strerror set."""
    exc = io(name).build("storage.write", "r1")
    code = getattr(errno, name)
    assert type(exc) is exc_type
    assert isinstance(exc, OSError)
    assert exc.errno == code
    assert exc.strerror
    assert resilience.classify(exc).kind is ErrorKind.IO


def test_io_accepts_an_errno_number() -> None:
    """io(errno.ENOSPC) is the same fault as io("ENOSPC")."""
    assert io(errno.ENOSPC) == io("ENOSPC")


def test_logic_raises_zero_division_by_default_and_a_given_class() -> None:
    """logic() raises ZeroDivisionError; logic(KeyError) raises KeyError."""
    assert type(logic().build("s", "r")) is ZeroDivisionError
    assert type(logic(KeyError).build("s", "r")) is KeyError


def test_validation_raises_validation_failed_naming_the_field() -> None:
    """validation("email") raises ValidationFailed with that field."""
    exc = validation("email").build("signup", "r")
    assert isinstance(exc, resilience.ValidationFailed)
    assert [e["field"] for e in exc.errors] == ["email"]


@pytest.mark.parametrize(("status", "kind", "retry_after"), [
    (503, ErrorKind.NETWORK, 1.0), (429, ErrorKind.NETWORK, 1.0), (500, ErrorKind.NETWORK, None),
    (404, ErrorKind.VALIDATION, None), (422, ErrorKind.VALIDATION, None),
])
def test_http_status_faults_carry_status_retry_after_and_a_fitting_kind(
        status: int, kind: ErrorKind, retry_after: float | None) -> None:
    """http_status(code) carries .status, .retry_after for 429/503, and classifies without registration."""
    exc = http_status(status).build("catalog.fetch", "r")
    assert isinstance(exc, HTTPStatusFault)
    assert (exc.status, exc.retry_after) == (status, retry_after)
    assert resilience.classify(exc).kind is kind
    assert resilience.retry_after_of(exc) == retry_after


def test_injected_exceptions_are_marked_with_the_rule_id() -> None:
    """Every built exception says it was injected, and by which rule."""
    exc = network().build("s", "rule-7")
    assert is_injected(exc)
    assert injected_rule(exc) == "rule-7"
    assert not is_injected(ConnectionError())
    assert injected_rule(ConnectionError()) is None


def test_latency_delay_stays_within_jitter_and_never_goes_negative() -> None:
    """latency(s, j).delay(u) spans s-j..s+j and is clamped at zero."""
    fault = latency(0.5, 0.1)
    assert fault.delay(0.0) == pytest.approx(0.4)
    assert fault.delay(0.5) == pytest.approx(0.5)
    assert latency(0.05, 0.1).delay(0.0) == 0.0


def test_a_fault_rejects_fields_of_another_kind() -> None:
    """Fault("network", seconds=1) names the field that does not apply."""
    with pytest.raises(PlanError) as info:
        Fault("network", variant="reset", seconds=1.0)
    assert info.value.errors == [{"field": "seconds", "message": "does not apply to a network fault"}]


@pytest.mark.parametrize(("build", "field"), [
    (lambda: network("sideways"), "variant"),
    (lambda: io("ENOTREAL"), "errno"),
    (lambda: latency(-1), "seconds"),
    (lambda: http_status(200), "status"),
    (lambda: logic("os.getcwd"), "exception"),
    (lambda: logic("no_such_module.Error"), "exception"),
])
def test_invalid_faults_name_the_field(build: object, field: str) -> None:
    """Each invalid fault value is reported against its field."""
    with pytest.raises(PlanError) as info:
        build()  # type: ignore[operator]
    assert [e["field"] for e in info.value.errors] == [field]


def test_rule_reports_every_invalid_trigger_at_once() -> None:
    """A rule with several bad triggers names each of them."""
    with pytest.raises(PlanError) as info:
        Rule("a", network(), rate=1.5, first=0, every=-1, ttl=0, id="bad id!")
    assert {e["field"] for e in info.value.errors} == {"rate", "first", "every", "ttl", "id"}


def test_rule_id_defaults_to_a_stable_hash_of_its_content() -> None:
    """Equal rules get equal ids; a different trigger gives another id."""
    assert Rule("a", network()).id == Rule("a", network()).id
    assert Rule("a", network()).id != Rule("a", network(), first=1).id
    assert Rule("a", network(), id="mine").id == "mine"


def test_plan_rejects_duplicate_rule_ids() -> None:
    """Two rules with one id are an error naming the second one."""
    with pytest.raises(PlanError) as info:
        FaultPlan(1, (Rule("a", network()), Rule("a", network())))
    assert info.value.errors[0]["field"] == "rules[1].id"


def test_plan_rejects_a_seed_out_of_range() -> None:
    """The seed is an unsigned 64-bit integer."""
    with pytest.raises(PlanError, match="seed"):
        FaultPlan(-1, ())


def test_plan_add_and_without_return_new_plans() -> None:
    """Plans are values: add() and without() leave the original alone."""
    plan = FaultPlan(3, ())
    bigger = plan.add(Rule("a", network(), id="x"))
    assert plan.rules == ()
    assert [r.id for r in bigger.rules] == ["x"]
    assert bigger.without("x").rules == ()
    assert bigger.rule("x").site == "a"


def test_plan_error_pickles_with_its_errors() -> None:
    """PlanError survives pickling (it crosses process boundaries in test runners)."""
    err = PlanError.one("rules[0].rate", "too big")
    assert pickle.loads(pickle.dumps(err)).errors == err.errors


def test_triggers_phrase_lists_the_triggers_given() -> None:
    """Rule.triggers() is the short text the CLI table shows."""
    assert Rule("a", network()).triggers() == "always"
    assert Rule("a", network(), rate=0.5, first=3, ttl=60, only_flagged=True).triggers() == \
        "rate=0.5 first=3 ttl=60s flagged only"
