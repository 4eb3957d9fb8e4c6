"""Flask integration: request validation and RFC 9457 problem responses.

Two lines wire it into any Flask app::

    app = Flask(__name__)
    Resilience(app)                      # or Resilience().init_app(app)

    @app.post("/signup")
    @validate_body(Signup)               # a pydantic model; JSON or form fields
    def signup(body: Signup): ...

One error handler turns every exception that reaches Flask into
``application/problem+json``, deciding the status through :func:`classify`:

=========================================  ======  ====================================
exception                                  status  notes
=========================================  ======  ====================================
:class:`MalformedRequest` (bad JSON/UTF-8)  400
other validation (``ValidationFailed``,     422     ``errors: [{field, message, type}]``
pydantic ``ValidationError``)
``CircuitOpenError``                        503     ``Retry-After``
``BulkheadFull``, network with a hint       503     ``Retry-After``
``DeadlineExceeded``                        504
other network                               502
io with ``ENOSPC``/``EDQUOT``               507
other io                                    503     ``Retry-After`` when transient
logic (anything else)                       500     generic detail, never ``str(exc)``
werkzeug ``HTTPException``                  its own keeps its headers (``Allow`` ...)
=========================================  ======  ====================================

Every body has ``type``, ``title``, ``status``, ``detail`` (text written here,
never the exception's message, a path or a stack trace), ``instance`` (the
request path), ``error_id`` (new per error), ``trace_id`` and ``kind``.

Contract with ``telemetry.flask``: the trace id is read from
``flask.g.shockproof_trace_id`` when telemetry set it (else from an incoming W3C
``traceparent``, else a fresh random id), and every exception turned into a
problem is left in ``flask.g.shockproof_error = (exception, error_id)`` for
telemetry to record on the request's span and log line. This module logs nothing.
"""

from __future__ import annotations

import errno
import functools
import inspect
import json
import math
import re
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from flask import Flask, Response, g, has_request_context, request
from werkzeug.exceptions import HTTPException, UnsupportedMediaType

from ._classify import ErrorKind, classify
from ._errors import (
    BulkheadFull,
    CircuitOpenError,
    DeadlineExceeded,
    FieldError,
    ValidationFailed,
)
from ._retry import retry_after_of
from ._validate import field_errors

__all__ = [
    "PROBLEM_MIMETYPE",
    "PROBLEM_TYPE_BASE",
    "MalformedRequest",
    "ProblemSpec",
    "Resilience",
    "current_trace_id",
    "new_error_id",
    "parse_model",
    "problem",
    "problem_spec",
    "render_problem",
    "request_data",
    "validate_body",
    "validate_query",
]

PROBLEM_MIMETYPE = "application/problem+json"
PROBLEM_TYPE_BASE = "https://shockproof.dev/problems/"
_EXTENSION_KEY = "shockproof.resilience"
_TRACEPARENT = re.compile(r"^[0-9a-f]{2}-([0-9a-f]{32})-[0-9a-f]{16}-[0-9a-f]{2}$")
_STORAGE_FULL = frozenset({errno.ENOSPC, errno.EDQUOT})

R = TypeVar("R")


class MalformedRequest(ValidationFailed):
    """The body could not be read at all (not JSON, not UTF-8): a 400, not a 422."""

    def __init__(self, reason: str) -> None:
        super().__init__([FieldError(field="body", message=reason, type="malformed")],
                         title="malformed request")
        self.reason = reason

    def __reduce__(self) -> Any:
        return (type(self), (self.reason,))


class _Model(Protocol):
    """What :func:`validate_body` needs of a pydantic model class."""

    @classmethod
    def model_validate(cls, obj: Any) -> Any: ...


# -- mapping exceptions to problems ---------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ProblemSpec:
    """What a problem response says, before the per-request fields are added."""

    status: int
    type: str
    title: str
    detail: str
    kind: ErrorKind
    headers: tuple[tuple[str, str], ...] = ()
    errors: tuple[FieldError, ...] | None = None


def _spec(status: int, slug: str, title: str, detail: str, kind: ErrorKind,
          retry_after: float | None = None) -> ProblemSpec:
    headers = () if retry_after is None else (("Retry-After", _seconds(retry_after)),)
    return ProblemSpec(status, PROBLEM_TYPE_BASE + slug, title, detail, kind, headers)


def _seconds(value: float) -> str:
    """A ``Retry-After`` value: whole seconds, at least 1."""
    if not math.isfinite(value):
        return "1"
    return str(max(1, math.ceil(value)))


_LOGIC = _spec(500, "internal-error", "Internal server error",
               "Something went wrong on our side. Quote the error id when you report it.",
               ErrorKind.LOGIC)


def problem_spec(exc: BaseException) -> ProblemSpec:
    """Decide the status, type, title and safe detail for ``exc``."""
    if isinstance(exc, HTTPException):
        return _http_spec(exc)
    kind = classify(exc)
    if kind.kind is ErrorKind.VALIDATION:
        return _validation_spec(exc)
    if kind.kind is ErrorKind.NETWORK:
        return _network_spec(exc)
    if kind.kind is ErrorKind.IO:
        return _io_spec(exc, kind.transient)
    return _LOGIC


def _validation_spec(exc: BaseException) -> ProblemSpec:
    if isinstance(exc, MalformedRequest):
        spec = _spec(400, "malformed-request", "Malformed request", exc.reason, ErrorKind.VALIDATION)
        return _with_errors(spec, exc.errors)
    if isinstance(exc, UnicodeDecodeError):
        return _spec(400, "malformed-request", "Malformed request",
                     "The request could not be decoded as UTF-8.", ErrorKind.VALIDATION)
    errors = field_errors(exc) if _has_field_errors(exc) else []
    names = ", ".join(dict.fromkeys(e["field"] for e in errors))
    detail = (f"{len(errors)} invalid field{'s' if len(errors) != 1 else ''}: {names}."
              if errors else "The request was not valid.")
    spec = _spec(422, "validation-failed", "Your request has invalid fields", detail,
                 ErrorKind.VALIDATION)
    return _with_errors(spec, errors)


def _has_field_errors(exc: BaseException) -> bool:
    return isinstance(exc, ValidationFailed) or callable(getattr(exc, "errors", None))


def _with_errors(spec: ProblemSpec, errors: list[FieldError]) -> ProblemSpec:
    return ProblemSpec(spec.status, spec.type, spec.title, spec.detail, spec.kind, spec.headers,
                       tuple(errors))


def _network_spec(exc: BaseException) -> ProblemSpec:
    net = ErrorKind.NETWORK
    if isinstance(exc, CircuitOpenError):
        wait = _seconds(exc.retry_after)
        return _spec(503, "circuit-open", "Service temporarily unavailable",
                     "A service this request depends on is failing, so calls to it are paused. "
                     f"Try again in {wait} seconds.", net, exc.retry_after)
    if isinstance(exc, BulkheadFull):
        return _spec(503, "overloaded", "Too many requests in flight",
                     "The server is at capacity for this operation. Try again shortly.", net, 1.0)
    if isinstance(exc, DeadlineExceeded):
        return _spec(504, "deadline-exceeded", "The request ran out of time",
                     "A service this request depends on did not answer in time.", net)
    hint = retry_after_of(exc)
    if hint is not None:
        return _spec(503, "upstream-unavailable", "Upstream service unavailable",
                     f"A service this request depends on is unavailable. Try again in "
                     f"{_seconds(hint)} seconds.", net, hint)
    return _spec(502, "upstream-failed", "Upstream service failed",
                 "A service this request depends on failed to answer.", net)


def _io_spec(exc: BaseException, transient: bool) -> ProblemSpec:
    if getattr(exc, "errno", None) in _STORAGE_FULL:
        return _spec(507, "insufficient-storage", "Insufficient storage",
                     "The server ran out of storage space. Try again later.", ErrorKind.IO)
    return _spec(503, "storage-unavailable", "Storage unavailable",
                 "The server could not read or write its storage.", ErrorKind.IO,
                 1.0 if transient else None)


def _http_spec(exc: HTTPException) -> ProblemSpec:
    status = exc.code or 500
    if status < 500:
        kind, detail = ErrorKind.VALIDATION, exc.description or type(exc).description or ""
    else:  # a server-side description may say more than it should: use the class default
        kind = ErrorKind.NETWORK if status in (502, 503, 504) else ErrorKind.LOGIC
        detail = type(exc).description or ""
    environ = request.environ if has_request_context() else None
    headers = tuple((k, v) for k, v in exc.get_headers(environ, None) if k.lower() != "content-type")
    return ProblemSpec(status, "about:blank", exc.name, detail, kind, headers)


# -- rendering ------------------------------------------------------------------------------


def new_error_id() -> str:
    """A fresh random error id (16 hex digits), quoted by users in bug reports."""
    return secrets.token_hex(8)


def current_trace_id() -> str:
    """The request's trace id: telemetry's, else the caller's ``traceparent``, else a new one."""
    found = getattr(g, "shockproof_trace_id", None)
    if isinstance(found, str) and found:
        return found
    fallback = getattr(g, "_shockproof_fallback_trace_id", None)
    if isinstance(fallback, str):
        return fallback
    match = _TRACEPARENT.match(request.headers.get("traceparent", "").strip())
    trace_id = match.group(1) if match and match.group(1) != "0" * 32 else secrets.token_hex(16)
    g._shockproof_fallback_trace_id = trace_id
    return trace_id


def _render(body: dict[str, Any], status: int, headers: Mapping[str, str] | None) -> Response:
    response = Response(json.dumps(body, default=_jsonable), status=status, mimetype=PROBLEM_MIMETYPE)
    response.headers["Cache-Control"] = "no-store"
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def _jsonable(value: object) -> object:
    if isinstance(value, ErrorKind):
        return value.value
    return str(value)


def _body(status: int, type_: str, title: str, detail: str, kind: ErrorKind,
          error_id: str) -> dict[str, Any]:
    return {"type": type_, "title": title, "status": status, "detail": detail,
            "instance": request.path, "error_id": error_id, "trace_id": current_trace_id(),
            "kind": kind.value}


def render_problem(spec: ProblemSpec, error_id: str) -> Response:
    """The response for ``spec`` in the current request."""
    body = _body(spec.status, spec.type, spec.title, spec.detail, spec.kind, error_id)
    if spec.errors is not None:
        body["errors"] = [dict(e) for e in spec.errors]
    return _render(body, spec.status, dict(spec.headers))


def _kind_for_status(status: int) -> ErrorKind:
    if status in (502, 503, 504):
        return ErrorKind.NETWORK
    if status == 507:
        return ErrorKind.IO
    return ErrorKind.VALIDATION if status < 500 else ErrorKind.LOGIC


def problem(status: int, title: str, detail: str, *, headers: Mapping[str, str] | None = None,
            **extra: Any) -> Response:
    """A problem+json response for app code; ``extra`` members (``type``, ``kind`` ...) are added."""
    body = _body(status, "about:blank", title, detail, _kind_for_status(status), new_error_id())
    body.update(extra)
    return _render(body, status, headers)


_LAST_RESORT = json.dumps({
    "type": PROBLEM_TYPE_BASE + "internal-error", "title": "Internal server error", "status": 500,
    "detail": "Something went wrong on our side.", "kind": "logic",
})


def _last_resort() -> Response:
    """Used only if building the proper problem failed: fixed text, nothing from the request."""
    return Response(_LAST_RESORT, status=500, mimetype=PROBLEM_MIMETYPE)


# -- the extension --------------------------------------------------------------------------


class Resilience:
    """Flask extension: every exception becomes a problem+json response."""

    def __init__(self, app: Flask | None = None) -> None:
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask) -> None:
        """Register the one error handler on ``app``."""
        app.extensions[_EXTENSION_KEY] = self
        app.register_error_handler(Exception, self.handle_exception)

    def handle_exception(self, exc: Exception) -> Response | HTTPException:
        """Turn ``exc`` into a problem response (redirects and prepared responses pass through)."""
        if isinstance(exc, HTTPException) and (exc.code is None or exc.code < 400
                                               or exc.response is not None):
            return exc
        try:
            spec = problem_spec(exc)
            error_id = new_error_id()
            g.shockproof_error = (exc, error_id)
            return render_problem(spec, error_id)
        except Exception:  # error handling must never fail the response
            return _last_resort()


# -- request validation ---------------------------------------------------------------------

_FORM_TYPES = frozenset({"application/x-www-form-urlencoded", "multipart/form-data"})


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def request_data() -> Any:
    """The request body as plain data: parsed JSON, or form fields (and files)."""
    if request.is_json:
        return _json_body(request.get_data(cache=True))
    if request.mimetype in _FORM_TYPES:
        data: dict[str, Any] = {k: v[0] if len(v) == 1 else v for k, v in request.form.lists()}
        data.update({k: v[0] if len(v) == 1 else v for k, v in request.files.lists()})
        return data
    if not request.mimetype and not request.get_data(cache=True):
        return {}
    raise UnsupportedMediaType("Send the body as JSON or as form fields.")


def _json_body(raw: bytes) -> Any:
    if not raw.strip():
        raise MalformedRequest("The request body is empty; send a JSON object.")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise MalformedRequest("The request body is not valid UTF-8.") from None
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except (ValueError, RecursionError):  # never chain: the decoder keeps the whole document
        raise MalformedRequest("The request body is not valid JSON.") from None


def parse_model(model: type[Any], data: Any) -> Any:
    """Validate ``data`` against a pydantic ``model``; every invalid field -> ValidationFailed.

    The pydantic error is not chained: its text repeats the input (passwords included).
    """
    try:
        return model.model_validate(data)
    except ValueError as exc:  # pydantic.ValidationError is a ValueError
        errors = field_errors(exc)
    raise ValidationFailed(errors)


def _inject(arg: str, source: Callable[[], Any], model: type[Any]) -> Callable[[Callable[..., R]], Callable[..., R]]:
    def decorate(view: Callable[..., R]) -> Callable[..., R]:
        if inspect.iscoroutinefunction(view):
            @functools.wraps(view)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                kwargs[arg] = parse_model(model, source())
                return await view(*args, **kwargs)
            return async_wrapper  # type: ignore[return-value]

        @functools.wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> R:
            kwargs[arg] = parse_model(model, source())
            return view(*args, **kwargs)
        return wrapper

    return decorate


def _query_data() -> dict[str, Any]:
    return {k: v[0] if len(v) == 1 else v for k, v in request.args.lists()}


def validate_body(model: type[_Model], *, arg: str = "body") -> Callable[[Callable[..., R]], Callable[..., R]]:
    """Validate the JSON or form body with ``model``; the instance is passed as ``arg``."""
    return _inject(arg, request_data, model)


def validate_query(model: type[_Model], *, arg: str = "query") -> Callable[[Callable[..., R]], Callable[..., R]]:
    """Validate the query string with ``model``; the instance is passed as ``arg``."""
    return _inject(arg, _query_data, model)
