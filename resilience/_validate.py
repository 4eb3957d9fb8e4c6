"""Input validation for guarded calls, and the one translation of pydantic's errors.

``validate=`` takes a pydantic model (checked against the call's arguments by
parameter name) or a callable with the function's own parameters that raises
:class:`ValidationFailed`, ``pydantic.ValidationError`` or ``ValueError``.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from ._errors import ConfigurationError, FieldError, ValidationFailed

Validator = Callable[..., Any]


def field_errors(exc: BaseException) -> list[FieldError]:
    """Field-by-field errors from a pydantic ``ValidationError`` (or ours, or a ValueError)."""
    if isinstance(exc, ValidationFailed):
        return list(exc.errors)
    errors = getattr(exc, "errors", None)
    if callable(errors):  # pydantic.ValidationError
        out: list[FieldError] = []
        for err in errors(include_url=False, include_input=False):
            loc = ".".join(str(p) for p in err.get("loc", ())) or "__root__"
            out.append(FieldError(field=loc, message=str(err.get("msg", "invalid")),
                                  type=str(err.get("type", "value_error"))))
        return out
    return [FieldError(field="__root__", message=str(exc) or "invalid", type="value_error")]


def is_pydantic_model(obj: object) -> bool:
    return isinstance(obj, type) and hasattr(obj, "model_validate") and hasattr(obj, "model_fields")


def make_checker(validate: Validator, fn: Callable[..., Any]) -> Callable[[tuple[Any, ...], dict[str, Any]], None]:
    """Build ``check(args, kwargs)`` that raises :class:`ValidationFailed` on bad input."""
    if not callable(validate):
        raise ConfigurationError(f"validate= must be a pydantic model or a callable, got {validate!r}")
    signature = inspect.signature(fn)
    if is_pydantic_model(validate):
        model: Any = validate

        def run(args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
            bound = signature.bind_partial(*args, **kwargs).arguments
            model.model_validate(dict(bound))
    else:
        def run(args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
            validate(*args, **kwargs)

    def check(args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        try:
            run(args, kwargs)
        except ValidationFailed:
            raise
        except (ValueError, TypeError) as exc:  # pydantic.ValidationError is a ValueError
            raise ValidationFailed(field_errors(exc)) from exc

    return check
