"""Sentry (sentry-sdk), only when a DSN is given, with every privacy setting explicit.

* ``data_collection`` (the SDK's structured successor to ``send_default_pii``,
  which it now deprecates) with every category off: no user info, cookies,
  headers, bodies, query strings, GraphQL/GenAI/database/queue data, frame
  variables or source lines; plus ``include_local_variables=False``,
  ``include_source_context=False`` and ``max_request_body_size="never"``.
* ``default_integrations=False`` and ``auto_enabling_integrations=False``, then
  only ``Dedupe`` (one report per exception object) and ``Atexit`` (flush at
  exit). Left out on purpose: ``Logging`` (would turn stdlib error logs into
  events, bypassing our capture), ``Stdlib`` (breadcrumbs with full URLs,
  query strings included), ``Argv`` (``sys.argv`` may hold secrets),
  ``Modules``, ``Threading``, ``Excepthook`` and the Flask integration (our
  ``telemetry.flask`` reports request errors itself, with kind and fingerprint).
* no sessions, no client reports, no performance tracing (OpenTelemetry does that).
* ``before_send`` (and ``before_breadcrumb``) run every event through the SAME
  redaction as spans, logs and the store, strip any frame ``vars``, and add our
  kind, fingerprint and trace id when the event came from elsewhere. If scrubbing
  fails the event is dropped, never sent unscrubbed.

The SDK's transport sends from its own background thread through a bounded
queue: an unreachable Sentry costs dropped events, never a slow request.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from resilience import ErrorKind, classify

from . import _semconv as sc
from ._fingerprint import fingerprint
from ._metrics import drops
from ._redact import Redactor
from ._tracing import current_ids, error_attributes, safe_message

if TYPE_CHECKING:
    from ._config import TelemetryConfig

TRACE_TAG = "shockproof.trace_id"
#: The SDK's structured privacy settings (its successor to ``send_default_pii``): nothing collected.
DATA_COLLECTION: dict[str, Any] = {
    "user_info": False,
    "cookies": {"mode": "off"},
    "http_headers": {"request": {"mode": "off"}},
    "http_bodies": [],
    "url_query_params": {"mode": "off"},
    "graphql": {"document": False, "variables": False},
    "gen_ai": {"inputs": False, "outputs": False},
    "database_query_data": False,
    "queues": False,
    "stack_frame_variables": False,
    "frame_context_lines": 0,
}


def dsn_problem(dsn: str) -> str | None:
    """Why the SDK cannot use ``dsn``, or None when it can."""
    from sentry_sdk.utils import BadDsn, Dsn

    try:
        Dsn(dsn)
    except BadDsn as exc:
        return f"sentry_dsn is not a valid DSN ({exc})"
    return None


class Sentry:
    """The initialised SDK client and how we report to it."""

    def __init__(self, config: TelemetryConfig, redactor: Redactor) -> None:
        import sentry_sdk
        from sentry_sdk.integrations.atexit import AtexitIntegration
        from sentry_sdk.integrations.dedupe import DedupeIntegration

        dsn = str(config.sentry_dsn)
        self.redactor = redactor
        self._sdk = sentry_sdk
        sentry_sdk.init(
            dsn=dsn,
            environment=config.sentry_environment,
            data_collection=DATA_COLLECTION,  # type: ignore[arg-type]
            include_local_variables=False,
            include_source_context=False,
            max_request_body_size="never",
            attach_stacktrace=False,
            default_integrations=False,
            auto_enabling_integrations=False,
            integrations=[DedupeIntegration(), AtexitIntegration()],
            auto_session_tracking=False,
            send_client_reports=False,
            traces_sample_rate=None,
            before_send=self.before_send,
            before_breadcrumb=self.before_breadcrumb,
            shutdown_timeout=1,
        )
        self.client = sentry_sdk.get_client()

    # -- reporting ------------------------------------------------------------------------

    def capture(self, exc: BaseException, *, error_id: str | None = None) -> str | None:
        """Report ``exc`` with our tags; returns Sentry's event id. Never raises."""
        try:
            with self._sdk.new_scope() as scope:
                _tag(scope, exc, current_ids(), error_id)
                event_id: str | None = scope.capture_exception(exc)
                return event_id
        except Exception as err:
            drops.report("sentry", 1, err)
            return None

    def before_send(self, event: Any, hint: dict[str, Any]) -> Any:
        try:
            exc_info = hint.get("exc_info") if hint else None
            exc = exc_info[1] if isinstance(exc_info, tuple) and len(exc_info) == 3 else None
            if isinstance(exc, BaseException):
                _complete(event, exc)
                _hide_validation_input(event, exc)
            _strip_vars(event)
            return self.redactor.mapping(event)
        except Exception as err:
            drops.report("sentry", 1, err)
            return None

    def before_breadcrumb(self, crumb: Any, hint: dict[str, Any]) -> Any:
        try:
            return self.redactor.mapping(crumb)
        except Exception:
            return None

    # -- lifecycle --------------------------------------------------------------------------

    def flush(self, timeout: float) -> bool:
        try:
            self.client.flush(timeout=timeout)
            return True
        except Exception as exc:
            drops.report("sentry", 0, exc)
            return False

    def stop(self) -> None:
        try:
            self.client.close(timeout=1.0)
        finally:
            self._sdk.get_global_scope().set_client(None)


def _tag(scope: Any, exc: BaseException, ids: tuple[str, str] | None, error_id: str | None) -> None:
    attrs = error_attributes(exc)
    scope.set_tag(sc.KIND, attrs[sc.KIND])
    scope.set_tag(sc.FINGERPRINT, attrs[sc.FINGERPRINT])
    scope.fingerprint = [attrs[sc.FINGERPRINT]]
    if error_id:
        scope.set_tag(sc.ERROR_ID, error_id)
    if ids is not None:
        scope.set_tag(TRACE_TAG, ids[0])
        scope.set_context("trace", {"trace_id": ids[0], "span_id": ids[1]})


def _complete(event: dict[str, Any], exc: BaseException) -> None:
    """Events that did not come through :meth:`Sentry.capture` get our tags too."""
    tags = event.setdefault("tags", {})
    if sc.KIND not in tags:
        attrs = error_attributes(exc)
        tags[sc.KIND] = attrs[sc.KIND]
        tags[sc.FINGERPRINT] = attrs[sc.FINGERPRINT]
    event.setdefault("fingerprint", [fingerprint(exc)])
    ids = current_ids()
    if ids is not None and TRACE_TAG not in tags:
        tags[TRACE_TAG] = ids[0]
        event.setdefault("contexts", {})["trace"] = {"trace_id": ids[0], "span_id": ids[1]}


def _hide_validation_input(event: dict[str, Any], exc: BaseException) -> None:
    """Validation errors (and their pydantic causes) name the rejected input: keep fields only."""
    if classify(exc).kind is not ErrorKind.VALIDATION:
        return
    message = safe_message(exc)
    for value in (event.get("exception") or {}).get("values") or ():
        value["value"] = message


def _strip_vars(event: dict[str, Any]) -> None:
    """Locals never leave, whatever a future SDK default says."""
    for value in (event.get("exception") or {}).get("values") or ():
        for frame in (value.get("stacktrace") or {}).get("frames") or ():
            frame.pop("vars", None)
    for thread in (event.get("threads") or {}).get("values") or ():
        for frame in (thread.get("stacktrace") or {}).get("frames") or ():
            frame.pop("vars", None)
    request = event.get("request")
    if isinstance(request, dict):
        for key in ("cookies", "data", "env"):
            request.pop(key, None)
