"""W3C Trace Context in and out: ``traceparent``/``tracestate`` headers.

In: :func:`extract_context` reads a carrier (``telemetry.flask`` uses it on every
request). Out: :func:`inject_headers` adds the current span's ``traceparent`` to a
dict of headers for any HTTP client; :func:`requests_session` and
:func:`httpx_event_hooks` do it on every request of a ``requests`` session or an
``httpx`` client. Before ``configure()`` there is no span, and nothing is added.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from typing import TYPE_CHECKING, Any

from opentelemetry.context import Context
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from ._metrics import drops

if TYPE_CHECKING:
    import requests

PROPAGATOR = TraceContextTextMapPropagator()


def inject_headers(headers: MutableMapping[str, str] | None = None) -> MutableMapping[str, str]:
    """``headers`` (or a new dict) with the current trace's ``traceparent`` added; never raises."""
    carrier: MutableMapping[str, str] = {} if headers is None else headers
    try:
        PROPAGATOR.inject(carrier)
    except Exception as exc:
        drops.report("propagation", 1, exc)
    return carrier


def extract_context(headers: Mapping[str, str]) -> Context | None:
    """The remote parent described by ``headers``, or None when they carry no valid traceparent."""
    try:
        ctx = PROPAGATOR.extract(headers)
    except Exception as exc:
        drops.report("propagation", 1, exc)
        return None
    return ctx if ctx else None


def requests_session(session: requests.Session | None = None) -> requests.Session:
    """A ``requests.Session`` (``session``, or a new one) whose every request carries ``traceparent``."""
    import requests

    target = session if session is not None else requests.Session()
    prepare = target.prepare_request

    def prepare_with_trace(request: requests.Request) -> requests.PreparedRequest:
        prepared = prepare(request)
        inject_headers(prepared.headers)
        return prepared

    target.prepare_request = prepare_with_trace  # type: ignore[method-assign]
    return target


def _inject_httpx(request: Any) -> None:
    inject_headers(request.headers)


async def _ainject_httpx(request: Any) -> None:
    inject_headers(request.headers)


def httpx_event_hooks(*, asynchronous: bool = False) -> dict[str, list[Callable[[Any], Any]]]:
    """``event_hooks=`` for ``httpx.Client`` (or ``AsyncClient``) that add ``traceparent``."""
    hook: Callable[[Any], Awaitable[None] | None] = _ainject_httpx if asynchronous else _inject_httpx
    return {"request": [hook]}
