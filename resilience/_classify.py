"""Which of the four kinds an exception is, and whether trying again can help.

Lookup walks the exception's MRO, most specific first, against a registry; the
first registered type wins. Subclass order is what makes ``ConnectionError`` and
``TimeoutError`` network errors although they are ``OSError`` s too. Plain
``OSError`` s are decided by ``errno``. Results are cached per type.
"""

from __future__ import annotations

import enum
import errno
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass

from ._errors import (
    BulkheadFull,
    CircuitOpenError,
    ConfigurationError,
    DeadlineExceeded,
    ValidationFailed,
)


class ErrorKind(enum.Enum):
    """The four ways an application fails at run time."""

    LOGIC = "logic"
    VALIDATION = "validation"
    NETWORK = "network"
    IO = "io"


@dataclass(frozen=True, slots=True)
class Classification:
    """What kind of error this is and whether a retry can succeed."""

    kind: ErrorKind
    transient: bool


LOGIC = Classification(ErrorKind.LOGIC, transient=False)
_VALIDATION = Classification(ErrorKind.VALIDATION, transient=False)
_NETWORK = Classification(ErrorKind.NETWORK, transient=True)
_IO_TRANSIENT = Classification(ErrorKind.IO, transient=True)
_IO_PERMANENT = Classification(ErrorKind.IO, transient=False)

#: errnos of OSErrors that may succeed when tried again.
TRANSIENT_ERRNOS = frozenset(
    {errno.ENOSPC, errno.EIO, errno.EAGAIN, errno.EBUSY, errno.EINTR, errno.EDQUOT,
     errno.ETIMEDOUT, errno.ENFILE, errno.EMFILE, errno.ESTALE}
)
#: errnos that are network errors even when raised as plain ``OSError``.
NETWORK_ERRNOS = frozenset(
    {errno.ECONNREFUSED, errno.ECONNRESET, errno.ECONNABORTED, errno.EPIPE,
     errno.ENETUNREACH, errno.EHOSTUNREACH, errno.ENETDOWN, errno.ETIMEDOUT,
     errno.EHOSTDOWN, errno.ENOTCONN}
)

Rule = Classification | Callable[[BaseException], Classification]

_lock = threading.Lock()
_registry: dict[type[BaseException], Rule] = {}
_cache: dict[type[BaseException], Rule] = {}


def _classify_oserror(exc: BaseException) -> Classification:
    code = getattr(exc, "errno", None)
    if code in NETWORK_ERRNOS:
        return _NETWORK
    return _IO_TRANSIENT if code in TRANSIENT_ERRNOS else _IO_PERMANENT


def register(
    exc_type: type[BaseException],
    kind: ErrorKind,
    *,
    transient: bool | None = None,
) -> None:
    """Classify ``exc_type`` (and its subclasses) as ``kind``.

    ``transient`` defaults to True for network errors and False otherwise.
    A later registration of the same type replaces the earlier one.
    """
    if not (isinstance(exc_type, type) and issubclass(exc_type, BaseException)):
        raise ConfigurationError(f"register() needs an exception type, got {exc_type!r}")
    if not isinstance(kind, ErrorKind):
        raise ConfigurationError(f"register() needs an ErrorKind, got {kind!r}")
    flag = kind is ErrorKind.NETWORK if transient is None else transient
    _set(exc_type, Classification(kind, flag))


def register_rule(exc_type: type[BaseException], rule: Callable[[BaseException], Classification]) -> None:
    """Classify ``exc_type`` with a function of the exception (e.g. by status code)."""
    _set(exc_type, rule)


def _set(exc_type: type[BaseException], rule: Rule) -> None:
    with _lock:
        _registry[exc_type] = rule
        _cache.clear()


def unregister(exc_type: type[BaseException]) -> None:
    """Remove a registration made with :func:`register` (no error if absent)."""
    with _lock:
        _registry.pop(exc_type, None)
        _cache.clear()


def classify(exc: BaseException) -> Classification:
    """Return the kind of ``exc`` and whether it is transient. Total: unknown -> logic."""
    tp = type(exc)
    rule = _cache.get(tp)
    if rule is None:
        rule = _lookup(tp)
    if isinstance(rule, Classification):
        return rule
    try:
        result = rule(exc)
    except Exception:  # a broken user rule must not break error handling
        return LOGIC
    return result if isinstance(result, Classification) else LOGIC


def _lookup(tp: type[BaseException]) -> Rule:
    rule: Rule = LOGIC
    for base in tp.__mro__:
        found = _registry.get(base)
        if found is None:
            found = _BY_NAME.get(f"{base.__module__}.{base.__qualname__}")
        if found is not None:
            rule = found
            break
    with _lock:
        _cache[tp] = rule
    return rule


def _register_defaults() -> None:
    _set(OSError, _classify_oserror)
    network: tuple[type[BaseException], ...] = (
        ConnectionError, TimeoutError, socket.gaierror, socket.herror, EOFError)
    for tp in network:
        _set(tp, _NETWORK)
    permanent_io: tuple[type[BaseException], ...] = (
        FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError, FileExistsError)
    for tp in permanent_io:
        _set(tp, _IO_PERMANENT)
    _set(BlockingIOError, _IO_TRANSIENT)
    _set(InterruptedError, _IO_TRANSIENT)
    _set(ValidationFailed, _VALIDATION)
    _set(UnicodeDecodeError, _VALIDATION)
    _set(DeadlineExceeded, _NETWORK)
    _set(CircuitOpenError, Classification(ErrorKind.NETWORK, transient=False))
    _set(BulkheadFull, Classification(ErrorKind.NETWORK, transient=False))
    _set(ConfigurationError, LOGIC)


#: Types of optional libraries, matched by qualified name so that classifying
#: never imports them: ``module.QualName`` of any class in the exception's MRO.
_BY_NAME: dict[str, Classification] = {
    "pydantic_core._pydantic_core.ValidationError": _VALIDATION,
    "httpx.TransportError": _NETWORK,
    "httpx.InvalidURL": LOGIC,
    "requests.exceptions.ConnectionError": _NETWORK,
    "requests.exceptions.Timeout": _NETWORK,
    "requests.exceptions.ChunkedEncodingError": _NETWORK,
    "requests.exceptions.InvalidURL": LOGIC,
    "urllib3.exceptions.ProtocolError": _NETWORK,
    "redis.exceptions.ConnectionError": _NETWORK,
    "redis.exceptions.TimeoutError": _NETWORK,
}


def reset_registry() -> None:
    """Forget user registrations and restore the built-in classification."""
    with _lock:
        _registry.clear()
        _cache.clear()
    _register_defaults()


_register_defaults()
