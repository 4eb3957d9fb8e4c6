"""structlog as a processor chain: JSON lines with level, time, trace ids, errors, redaction."""

from __future__ import annotations

import datetime as dt
import io
from pathlib import Path

import pytest
import structlog

import telemetry
from telemetry import _semconv as sc
from telemetry import fingerprint
from telemetry.query import Query

from .conftest import json_lines


@pytest.fixture
def stream() -> io.StringIO:
    """Telemetry configured (no store) with JSON lines written here."""
    out = io.StringIO()
    telemetry.configure(store=False, log_stream=out)
    return out


def test_a_line_has_level_timestamp_event_and_logger(stream: io.StringIO) -> None:
    """Each line is one JSON object with the basics."""
    telemetry.get_logger("shop").info("order.placed", order=17)
    (line,) = json_lines(stream)
    assert (line["event"], line["level"], line["logger"], line["order"]) == ("order.placed", "info", "shop", 17)
    stamp = dt.datetime.fromisoformat(line["timestamp"].replace("Z", "+00:00"))
    assert stamp.tzinfo is not None
    assert abs(stamp - dt.datetime.now(dt.UTC)) < dt.timedelta(minutes=5)


def test_lines_inside_a_span_carry_its_ids(stream: io.StringIO) -> None:
    """trace_id/span_id of the current span are on the line."""
    with telemetry.get_tracer().start_as_current_span("work") as span:
        telemetry.get_logger().info("inside")
    ctx = span.get_span_context()
    (line,) = json_lines(stream)
    assert (line["trace_id"], line["span_id"]) == (f"{ctx.trace_id:032x}", f"{ctx.span_id:016x}")


def test_lines_outside_spans_have_no_ids(stream: io.StringIO) -> None:
    """No span, no ids."""
    telemetry.get_logger().info("outside")
    (line,) = json_lines(stream)
    assert "trace_id" not in line
    assert "span_id" not in line


def test_exceptions_carry_kind_fingerprint_and_stacktrace_never_locals(stream: io.StringIO) -> None:
    """An exception on a line: error.type, kind, fingerprint and the formatted stack, no locals."""
    def divide(secret_local: str) -> float:
        return 1 / 0

    value = "-".join(("LOCAL", "VALUE", "9z"))  # a runtime value, not a literal in a traced line
    try:
        divide(value)
    except ZeroDivisionError as exc:
        telemetry.get_logger().exception("analysis.failed")
        caught = exc
    (line,) = json_lines(stream)
    assert (line["level"], line[sc.KIND], line[sc.ERROR_TYPE]) == ("error", "logic", "ZeroDivisionError")
    assert line[sc.FINGERPRINT] == fingerprint(caught)
    assert "in divide" in line[sc.EXCEPTION_STACKTRACE]
    assert "LOCAL-VALUE-9z" not in stream.getvalue()


def test_exc_info_may_be_an_exception_object(stream: io.StringIO) -> None:
    """exc_info=<exception> works outside an except block too."""
    telemetry.get_logger().error("failed", exc_info=OSError(28, "No space left on device"))
    (line,) = json_lines(stream)
    assert (line[sc.KIND], line[sc.EXCEPTION_MESSAGE]) == ("io", "[Errno 28] No space left on device")


def test_fields_are_redacted_by_key_and_value(stream: io.StringIO) -> None:
    """Secret keys and secret-looking values never reach the output."""
    telemetry.get_logger().info("signup", password="hunter2", email="a@example.com",
                                note="contact bob@example.com", headers={"Authorization": "Bearer x1y2z3w4v5"})
    (line,) = json_lines(stream)
    assert (line["password"], line["email"], line["note"]) == ("[REDACTED]", "[REDACTED]", "contact [REDACTED]")
    assert line["headers"] == {"Authorization": "[REDACTED]"}
    assert "hunter2" not in stream.getvalue()
    assert "x1y2z3w4v5" not in stream.getvalue()


def test_exception_messages_are_redacted(stream: io.StringIO) -> None:
    """Secrets inside exception messages and stack traces are redacted too."""
    try:
        raise PermissionError("denied for alice@example.com with token=abc123def456")
    except PermissionError:
        telemetry.get_logger().exception("denied")
    out = stream.getvalue()
    assert "alice@example.com" not in out
    assert "abc123def456" not in out


def test_debug_lines_are_filtered_at_info_level(stream: io.StringIO) -> None:
    """The default level is info: debug lines cost nothing and go nowhere."""
    telemetry.get_logger().debug("noise")
    assert json_lines(stream) == []


def test_log_level_is_configurable() -> None:
    """log_level='debug' keeps debug lines."""
    out = io.StringIO()
    telemetry.configure(store=False, log_stream=out, log_level="debug")
    telemetry.get_logger().debug("detail")
    assert [line["event"] for line in json_lines(out)] == ["detail"]


def test_contextvars_are_merged(stream: io.StringIO) -> None:
    """Values bound with structlog.contextvars appear on every line."""
    structlog.contextvars.bind_contextvars(request_id="r-1")
    try:
        telemetry.get_logger().info("with context")
    finally:
        structlog.contextvars.clear_contextvars()
    assert json_lines(stream)[0]["request_id"] == "r-1"


def test_bound_values_appear_and_can_be_removed(stream: io.StringIO) -> None:
    """bind() adds fields, unbind() removes them, new() starts over."""
    log = telemetry.get_logger("b").bind(user_id=7, tenant="t")
    log.info("one")
    log.unbind("tenant").info("two")
    log.new(only=True).info("three")
    one, two, three = json_lines(stream)
    assert (one["user_id"], one["tenant"]) == (7, "t")
    assert "tenant" not in two
    assert two["user_id"] == 7
    assert three["only"] is True
    assert "user_id" not in three


def test_structlog_get_logger_uses_the_same_chain(stream: io.StringIO) -> None:
    """Code logging through structlog directly gets the same processing (redaction included)."""
    structlog.get_logger("direct").info("direct line", password="p4ss")
    (line,) = json_lines(stream)
    assert line["password"] == "[REDACTED]"
    assert line["level"] == "info"


def test_console_format_is_human_readable() -> None:
    """log_format='console' renders one readable line instead of JSON."""
    out = io.StringIO()
    telemetry.configure(store=False, log_stream=out, log_format="console")
    telemetry.get_logger().info("hello", n=1)
    text = out.getvalue()
    assert "hello" in text
    assert "n=1" in text
    assert not text.startswith("{")


def test_a_broken_stream_costs_the_line_not_the_caller() -> None:
    """Writing to a closed stream drops the line (counted), never raises."""
    out = io.StringIO()
    telemetry.configure(store=False, log_stream=out)
    out.close()
    telemetry.get_logger().info("lost")
    assert telemetry.dropped()["log_output"] == 1


def test_a_failing_field_costs_the_line_not_the_caller(stream: io.StringIO) -> None:
    """A field that cannot even be turned into text drops the line, counted."""
    class Unprintable:
        def __str__(self) -> str:
            raise RuntimeError("no")

        __repr__ = __str__

    telemetry.get_logger().info("odd", value=Unprintable())
    assert telemetry.dropped()["logs"] == 1


def test_logs_reach_the_store_linked_to_their_trace(tmp_path: Path) -> None:
    """Log lines land in the store with the trace and span they were logged in."""
    path = tmp_path / "logs.db"
    telemetry.configure(store=path, log_stream=io.StringIO())
    with telemetry.get_tracer().start_as_current_span("request") as span:
        telemetry.get_logger("shop").warning("stock.low", sku="A-1", email="a@example.com")
    assert telemetry.flush(10.0)
    trace_id = f"{span.get_span_context().trace_id:032x}"
    with Query(path) as query:
        detail = query.trace(trace_id)
    assert detail is not None
    (record,) = detail.logs
    assert (record.event, record.level, record.logger, record.span_id) == (
        "stock.low", "warning", "shop", f"{span.get_span_context().span_id:016x}")
    assert record.attributes["sku"] == "A-1"
    assert record.attributes["email"] == "[REDACTED]"


def test_captured_logs_are_the_redacted_event_dicts() -> None:
    """telemetry.testing captures what the store gets: redacted, before rendering."""
    with telemetry.testing.capture() as cap:
        telemetry.get_logger("t").info("e", password="x", n=2)
    assert cap.log("e")["password"] == "[REDACTED]"
    assert cap.records[0].attributes["n"] == 2
    assert '"event": "e"' in cap.output
