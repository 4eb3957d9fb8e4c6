"""Fingerprints: one short hash that groups an error with its twins.

``fingerprint(exc)`` hashes the exception's type and the *application* frames
that led to it, each as ``module:qualified_function`` - no line numbers, no
paths, no locals - so it is stable across runs, machines and edits that move
lines within a function. Frames of the standard library, of installed packages
and of Shockproof's own plumbing (``resilience``, ``telemetry``) are left out
(they differ between the fast and the instrumented path, between servers and
test runners); when nothing is left, every frame counts.

The frames are the whole stack at the raise: the traceback plus the callers
still above it, so the fingerprint is the same whether it is taken inside the
guarded call or at the request's error handler. It is computed once per
exception object and remembered on it.
"""

from __future__ import annotations

import hashlib
import sysconfig
from collections.abc import Iterator
from types import CodeType, FrameType, TracebackType

_ATTR = "__shockproof_fingerprint__"
#: Our own layers: present or not depending on configuration, so never part of a fingerprint.
PLUMBING = ("resilience", "telemetry", "fault_injection")
_LIBRARY_DIRS = tuple(
    {p for key in ("stdlib", "platstdlib", "purelib", "platlib")
     if (p := sysconfig.get_paths().get(key))}
)
_MAX_FRAMES = 200
_app_code: dict[CodeType, bool] = {}


def type_name(exc: BaseException | type[BaseException]) -> str:
    """``ZeroDivisionError`` for builtins, ``package.module.Name`` otherwise (OTel's ``error.type``)."""
    tp = exc if isinstance(exc, type) else type(exc)
    module = tp.__module__
    return tp.__qualname__ if module in ("builtins", "__main__") else f"{module}.{tp.__qualname__}"


def fingerprint(exc: BaseException) -> str:
    """16 hex characters identifying the error's type and the code path that raised it."""
    known = getattr(exc, _ATTR, None)
    if isinstance(known, str):
        return known
    parts = [type_name(exc), *_normalised_frames(exc.__traceback__)]
    digest = hashlib.sha256("\n".join(parts).encode("utf-8", "replace")).hexdigest()[:16]
    try:
        setattr(exc, _ATTR, digest)
    except (AttributeError, TypeError):  # exceptions with __slots__ and no __dict__
        pass
    return digest


def _normalised_frames(tb: TracebackType | None) -> list[str]:
    frames = list(_stack(tb))
    chosen = [f for f in frames if _is_app(f)] or frames
    out: list[str] = []
    for frame in chosen:
        name = f"{frame.f_globals.get('__name__', '?')}:{frame.f_code.co_qualname}"
        if not out or out[-1] != name:  # recursion collapses to one frame
            out.append(name)
    return out


def _stack(tb: TracebackType | None) -> Iterator[FrameType]:
    """Outermost first: the callers above the traceback, then the traceback's own frames."""
    if tb is None:
        return
    outer: list[FrameType] = []
    caller = tb.tb_frame.f_back
    while caller is not None and len(outer) < _MAX_FRAMES:
        outer.append(caller)
        caller = caller.f_back
    yield from reversed(outer)
    count = 0
    cursor: TracebackType | None = tb
    while cursor is not None and count < _MAX_FRAMES:
        yield cursor.tb_frame
        cursor = cursor.tb_next
        count += 1


def _is_app(frame: FrameType) -> bool:
    code = frame.f_code
    known = _app_code.get(code)
    if known is None:
        module = str(frame.f_globals.get("__name__", ""))
        known = not (module.split(".", 1)[0] in PLUMBING
                     or code.co_filename.startswith(_LIBRARY_DIRS)
                     or code.co_filename.startswith("<frozen"))
        if len(_app_code) < 10_000:
            _app_code[code] = known
    return known
