"""Attribute and event names: OpenTelemetry's where it has one, ``shockproof.*`` where not.

This is the one table the README documents; spans, logs, the store, its queries
and the viewer all use these constants, never string literals.
"""

from __future__ import annotations

from typing import Final

# --- OpenTelemetry semantic conventions -------------------------------------------
ERROR_TYPE: Final = "error.type"
EXCEPTION_TYPE: Final = "exception.type"
EXCEPTION_MESSAGE: Final = "exception.message"
EXCEPTION_STACKTRACE: Final = "exception.stacktrace"
EXCEPTION_EVENT: Final = "exception"
HTTP_REQUEST_METHOD: Final = "http.request.method"
HTTP_ROUTE: Final = "http.route"
HTTP_RESPONSE_STATUS_CODE: Final = "http.response.status_code"
URL_PATH: Final = "url.path"
URL_SCHEME: Final = "url.scheme"
SERVER_ADDRESS: Final = "server.address"
SERVER_PORT: Final = "server.port"
CLIENT_ADDRESS: Final = "client.address"
USER_AGENT: Final = "user_agent.original"
SERVICE_NAME: Final = "service.name"
USER_PSEUDO_ID: Final = "enduser.pseudo.id"          # HMAC of the app's user id, never the id

# --- shockproof.* : what OpenTelemetry has no name for ----------------------------
KIND: Final = "shockproof.kind"                      # logic | validation | network | io
TRANSIENT: Final = "shockproof.transient"            # bool
FINGERPRINT: Final = "shockproof.fingerprint"        # hex, groups an error with its twins
ERROR_ID: Final = "shockproof.error_id"              # id shown to the user in problem+json
SITE: Final = "shockproof.site"                      # guarded call / fault site name
ATTEMPT: Final = "shockproof.attempt"                # 1-based attempt number
ATTEMPTS: Final = "shockproof.attempts"              # attempts made in total
WAIT_S: Final = "shockproof.retry.wait_s"            # backoff before the next attempt
EXHAUSTED_REASON: Final = "shockproof.retry.reason"  # attempts | max_time | deadline | budget | permanent
OUTCOME: Final = "shockproof.outcome"                # success | error | fallback
CIRCUIT_NAME: Final = "shockproof.circuit.name"
CIRCUIT_STATE: Final = "shockproof.circuit.state"    # closed | open | half-open (new state)
CIRCUIT_OLD_STATE: Final = "shockproof.circuit.old_state"
CIRCUIT_FAILURE_RATE: Final = "shockproof.circuit.failure_rate"
REJECT_REASON: Final = "shockproof.rejected.reason"  # circuit_open | bulkhead_full
RETRY_AFTER_S: Final = "shockproof.retry_after_s"
DEADLINE_S: Final = "shockproof.deadline_s"
DEGRADED: Final = "shockproof.degraded"              # bool: answered from a fallback/cache
FAULT_INJECTED: Final = "shockproof.fault.injected"  # bool
FAULT_RULE_ID: Final = "shockproof.fault.rule_id"
FAULT_SEED: Final = "shockproof.fault.seed"
FAULT_KIND: Final = "shockproof.fault.kind"          # what was injected: logic, network, latency...
FAULT_SITE: Final = "shockproof.fault.site"
FAULT_ORDINAL: Final = "shockproof.fault.ordinal"
VALIDATION_FIELDS: Final = "shockproof.validation.fields"  # comma-separated field names

# --- span event names -----------------------------------------------------------------
EVENT_ATTEMPT_FAILED: Final = "shockproof.attempt_failed"
EVENT_RETRY: Final = "shockproof.retry_scheduled"
EVENT_RETRIES_EXHAUSTED: Final = "shockproof.retries_exhausted"
EVENT_CIRCUIT: Final = "shockproof.circuit.state_changed"
EVENT_REJECTED: Final = "shockproof.rejected"
EVENT_FALLBACK: Final = "shockproof.fallback_used"
EVENT_DEADLINE: Final = "shockproof.deadline_expired"
EVENT_VALIDATION: Final = "shockproof.validation_rejected"
EVENT_FAULT: Final = "shockproof.fault.injected"

# --- added by the telemetry core (configure, spans, logs, metrics) -------------------
ATTEMPT_DURATION_S: Final = "shockproof.attempt.duration_s"
DURATION_MS: Final = "shockproof.duration_ms"        # request / call duration in a log line
FAULT_DETAIL: Final = "shockproof.fault.detail"
INCOMPLETE: Final = "shockproof.incomplete"          # bool: a span ended without its call finishing
VALIDATION_TYPES: Final = "shockproof.validation.types"  # comma-separated error types
LOGGER_NAME: Final = "logger"                        # log record fields (structlog event dict)
LOG_LEVEL: Final = "level"
LOG_TIMESTAMP: Final = "timestamp"
LOG_EVENT: Final = "event"
LOG_TRACE_ID: Final = "trace_id"
LOG_SPAN_ID: Final = "span_id"
TRACE_ID_HEADER: Final = "X-Trace-Id"                # response header carrying the trace id
TRACEPARENT_HEADER: Final = "traceparent"

# --- log event names ------------------------------------------------------------------
LOG_REQUEST: Final = "request"                       # one line per HTTP request
LOG_CALL_FAILED: Final = "shockproof.call_failed"    # a guarded call failed (kind, fingerprint; the exception with exceptions_as="logs")
LOG_RETRY: Final = EVENT_RETRY
LOG_FALLBACK: Final = EVENT_FALLBACK
LOG_CIRCUIT: Final = EVENT_CIRCUIT
LOG_FAULT: Final = EVENT_FAULT

# --- metric instruments ---------------------------------------------------------------
METRIC_ERRORS: Final = "shockproof.errors"           # counter {shockproof.kind, http.route, shockproof.site}
METRIC_RETRIES: Final = "shockproof.retries"         # counter {shockproof.site}
METRIC_FALLBACKS: Final = "shockproof.fallbacks"     # counter {shockproof.site}
METRIC_REJECTIONS: Final = "shockproof.rejections"   # counter {shockproof.site, shockproof.rejected.reason}
METRIC_FAULTS: Final = "shockproof.faults"           # counter {shockproof.fault.site, shockproof.fault.kind}
METRIC_CIRCUIT_STATE: Final = "shockproof.circuit.state"  # gauge 0 closed, 1 half-open, 2 open
METRIC_CIRCUIT_TRANSITIONS: Final = "shockproof.circuit.transitions"  # counter {name, state}
METRIC_DROPPED: Final = "shockproof.telemetry.dropped"    # counter {shockproof.telemetry.source}
METRIC_HTTP_DURATION: Final = "http.server.request.duration"  # histogram, seconds (opt-in)
METRIC_HTTP_REQUESTS: Final = "shockproof.http.requests"  # counter {method, route, status}
METRIC_HTTP_TIME: Final = "shockproof.http.time"     # counter, seconds {method, route, status}
DROP_SOURCE: Final = "shockproof.telemetry.source"   # spans | logs | store | otlp | sentry | events ...
LOG_EXCEPTION: Final = "exception"                   # telemetry.record_exception()'s log line
REJECT_TARGET: Final = "shockproof.rejected.target"  # the circuit or bulkhead that refused
