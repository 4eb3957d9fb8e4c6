"""classify(): the four kinds, the transient flag, the registry, and totality."""

from __future__ import annotations

import errno
import socket
from typing import Any

import httpx
import pydantic
import pytest
import requests
from hypothesis import given, settings
from hypothesis import strategies as st

from resilience import (
    Classification,
    ErrorKind,
    ValidationFailed,
    _classify,
    classify,
    register,
    register_rule,
    unregister,
)
from resilience._errors import ConfigurationError

LOGIC = Classification(ErrorKind.LOGIC, transient=False)
VALIDATION = Classification(ErrorKind.VALIDATION, transient=False)
NETWORK = Classification(ErrorKind.NETWORK, transient=True)
IO_TRANSIENT = Classification(ErrorKind.IO, transient=True)
IO_PERMANENT = Classification(ErrorKind.IO, transient=False)


class _Model(pydantic.BaseModel):
    email: str


def _pydantic_error() -> pydantic.ValidationError:
    try:
        _Model.model_validate({})
    except pydantic.ValidationError as exc:
        return exc
    raise AssertionError("the model accepted an empty payload")


def test_zero_division_is_permanent_logic() -> None:
    """ZeroDivisionError is a logic error and never transient."""
    assert classify(ZeroDivisionError("division by zero")) == LOGIC


def test_pydantic_validation_error_is_permanent_validation() -> None:
    """pydantic's ValidationError is a validation error and never transient."""
    assert classify(_pydantic_error()) == VALIDATION


def test_validation_failed_is_permanent_validation() -> None:
    """Our own ValidationFailed is a validation error and never transient."""
    exc = ValidationFailed.from_mapping({"email": "missing"})
    assert classify(exc) == VALIDATION


@pytest.mark.parametrize(
    "exc",
    [
        ConnectionError("refused"),
        ConnectionRefusedError("refused"),
        ConnectionResetError("reset"),
        TimeoutError("slow"),
        socket.gaierror(socket.EAI_NONAME, "no such host"),
        socket.timeout("timed out"),  # noqa: UP041 - the socket alias is what I/O code raises
        httpx.ConnectError("refused"),
        httpx.ReadTimeout("slow"),
        requests.ConnectionError("refused"),
        requests.Timeout("slow"),
        requests.exceptions.ConnectTimeout("slow"),
    ],
    ids=lambda e: type(e).__name__,
)
def test_network_errors_are_transient_network(exc: BaseException) -> None:
    """Connection, timeout, socket and HTTP-client transport errors are transient network errors."""
    assert classify(exc) == NETWORK


@pytest.mark.parametrize("exc", [FileNotFoundError("gone"), PermissionError("denied")], ids=lambda e: type(e).__name__)
def test_missing_or_forbidden_files_are_permanent_io(exc: BaseException) -> None:
    """FileNotFoundError and PermissionError are I/O errors that retrying cannot fix."""
    assert classify(exc) == IO_PERMANENT


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EIO, errno.EAGAIN], ids=errno.errorcode.get)
def test_full_disk_io_error_and_eagain_are_transient_io(code: int) -> None:
    """OSError with ENOSPC, EIO or EAGAIN is a transient I/O error."""
    assert classify(OSError(code, "boom")) == IO_TRANSIENT


def test_read_only_filesystem_is_io() -> None:
    """OSError(EROFS) is an I/O error (and permanent: a remount is not a retry)."""
    assert classify(OSError(errno.EROFS, "read-only file system")) == IO_PERMANENT


def test_network_errnos_on_plain_oserror_are_network() -> None:
    """A plain OSError carrying a network errno is a network error."""
    assert classify(OSError(errno.ENETUNREACH, "unreachable")) == NETWORK


def test_unknown_exception_is_permanent_logic() -> None:
    """An exception nobody registered is a logic error."""

    class Surprise(Exception):
        pass

    assert classify(Surprise()) == LOGIC


def test_register_classifies_a_new_type() -> None:
    """register() makes a user type classify as the given kind."""

    class QuotaExceeded(Exception):
        pass

    register(QuotaExceeded, ErrorKind.NETWORK, transient=False)
    assert classify(QuotaExceeded()) == Classification(ErrorKind.NETWORK, transient=False)


def test_register_defaults_transient_to_network_only() -> None:
    """Without transient=, network registrations are transient and other kinds are not."""

    class Flaky(Exception):
        pass

    class Broken(Exception):
        pass

    register(Flaky, ErrorKind.NETWORK)
    register(Broken, ErrorKind.IO)
    assert (classify(Flaky()), classify(Broken())) == (NETWORK, IO_PERMANENT)


def test_register_replaces_a_cached_classification() -> None:
    """A registration made after a type was classified takes effect at once."""

    class Late(Exception):
        pass

    assert classify(Late()) == LOGIC
    register(Late, ErrorKind.IO, transient=True)
    assert classify(Late()) == IO_TRANSIENT


def test_register_overrides_a_builtin() -> None:
    """A user registration for a built-in type wins over the default."""
    register(ZeroDivisionError, ErrorKind.VALIDATION)
    assert classify(ZeroDivisionError()) == VALIDATION


def test_unregister_restores_the_fallback() -> None:
    """unregister() removes a registration; classification falls back to the MRO."""

    class Gone(ConnectionError):
        pass

    register(Gone, ErrorKind.LOGIC)
    unregister(Gone)
    assert classify(Gone()) == NETWORK


def test_unregister_of_an_unknown_type_is_a_no_op() -> None:
    """unregister() of a type that was never registered does nothing."""

    class Never(Exception):
        pass

    unregister(Never)
    assert classify(Never()) == LOGIC


def test_subclasses_inherit_a_registration() -> None:
    """A subclass of a registered type classifies like its base."""

    class Upstream(Exception):
        pass

    class UpstreamDown(Upstream):
        pass

    register(Upstream, ErrorKind.NETWORK)
    assert classify(UpstreamDown()) == NETWORK


def test_most_specific_registration_wins() -> None:
    """A registration on a subclass beats one on its base."""

    class Base(Exception):
        pass

    class Child(Base):
        pass

    register(Base, ErrorKind.NETWORK)
    register(Child, ErrorKind.VALIDATION)
    assert (classify(Base()), classify(Child())) == (NETWORK, VALIDATION)


def test_connection_error_beats_oserror() -> None:
    """ConnectionError subclasses stay network although OSError is io."""

    class MyReset(ConnectionResetError):
        pass

    assert classify(MyReset(errno.EIO, "x")) == NETWORK


def test_register_rule_decides_from_the_instance() -> None:
    """register_rule() classifies by looking at the exception (e.g. a status code)."""

    class HttpStatus(Exception):
        def __init__(self, status: int) -> None:
            super().__init__(status)
            self.status = status

    def by_status(exc: BaseException) -> Classification:
        status = getattr(exc, "status", 0)
        return NETWORK if status >= 500 else VALIDATION

    register_rule(HttpStatus, by_status)
    assert (classify(HttpStatus(503)), classify(HttpStatus(422))) == (NETWORK, VALIDATION)


def test_rule_that_raises_classifies_as_logic() -> None:
    """A broken user rule never breaks classification: the answer is logic."""

    class Odd(ConnectionError):
        pass

    def broken(exc: BaseException) -> Classification:
        raise RuntimeError("bug in the rule")

    register_rule(Odd, broken)
    assert classify(Odd()) == LOGIC


def test_rule_returning_garbage_classifies_as_logic() -> None:
    """A rule that returns something other than a Classification yields logic."""

    class Odd(Exception):
        pass

    register_rule(Odd, lambda exc: "network")  # type: ignore[arg-type, return-value]
    assert classify(Odd()) == LOGIC


@pytest.mark.parametrize(
    ("exc_type", "kind"),
    [(ValueError(), ErrorKind.NETWORK), (ValueError, "network"), (int, ErrorKind.LOGIC)],
)
def test_register_rejects_bad_arguments(exc_type: object, kind: object) -> None:
    """register() raises ConfigurationError for a non-exception type or a non-ErrorKind."""
    with pytest.raises(ConfigurationError):
        register(exc_type, kind)  # type: ignore[arg-type]


_BASES: list[type[BaseException]] = [
    Exception, ValueError, OSError, ConnectionError, TimeoutError, FileNotFoundError,
    PermissionError, ArithmeticError, LookupError, RuntimeError, KeyboardInterrupt,
    GeneratorExit, UnicodeError, EOFError, ValidationFailed, BlockingIOError,
]


@st.composite
def _exceptions(draw: st.DrawFn) -> BaseException:
    bases = draw(st.lists(st.sampled_from(_BASES), min_size=1, max_size=3, unique=True))
    name = draw(st.text(st.characters(codec="utf-8", exclude_characters="\x00"), min_size=1, max_size=8))
    tp: Any
    try:  # skip __init__: some bases need arguments
        tp = type(f"E{name}", tuple(bases), {})
        instance = tp.__new__(tp)
    except TypeError:  # incompatible layouts, an impossible MRO or an unsafe __new__
        tp = type(f"E{name}", (bases[0],), {})
        instance = tp.__new__(tp)
    if isinstance(instance, OSError):
        code: Any = draw(st.one_of(  # OSError accepts any object as errno
            st.none(), st.integers(-(2**40), 2**40), st.text(max_size=3), st.lists(st.integers(), max_size=2)))
        instance.errno = code
    assert isinstance(instance, BaseException)
    return instance


_KIND = st.sampled_from(list(ErrorKind))


@settings(max_examples=150, deadline=None)
@given(exc=_exceptions(), registrations=st.lists(st.tuples(st.sampled_from(_BASES), _KIND), max_size=3),
       raising_rule=st.booleans())
def test_classify_is_total(exc: BaseException, registrations: list[tuple[type[BaseException], ErrorKind]],
                           raising_rule: bool) -> None:
    """Any exception type, any errno, any registry (even a rule that raises) -> a Classification."""
    for tp, kind in registrations:
        register(tp, kind)
    if raising_rule:
        register_rule(type(exc).__mro__[1], lambda e: 1 / 0)  # type: ignore[arg-type, return-value]
    try:
        result = classify(exc)
    finally:
        _classify.reset_registry()  # examples must not leak registrations into each other
    assert isinstance(result, Classification)
    assert isinstance(result.kind, ErrorKind)
    assert isinstance(result.transient, bool)


@settings(max_examples=100, deadline=None)
@given(code=st.integers(min_value=0, max_value=200))
def test_every_errno_classifies_as_io_or_network(code: int) -> None:
    """OSError with any errno is an I/O or network error, never logic."""
    assert classify(OSError(code, "x")).kind in (ErrorKind.IO, ErrorKind.NETWORK)
