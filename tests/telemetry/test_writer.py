"""The log writer: chain lines at once, request lines in batches, order kept, failures counted."""

from __future__ import annotations

import io
from collections.abc import Iterator

import pytest

from telemetry._metrics import drops
from telemetry._writer import SafeWriter


@pytest.fixture(autouse=True)
def _clean_drops() -> Iterator[None]:
    """The process-wide drop counter starts and ends empty."""
    drops.clear()
    yield
    drops.clear()


class Broken(io.StringIO):
    """A stream whose writes fail."""

    def write(self, text: str) -> int:
        raise OSError(28, "No space left on device")


def test_batched_lines_are_written_at_flush_in_one_piece() -> None:
    """Request lines wait for flush() and go out together, in order."""
    out = io.StringIO()
    writer = SafeWriter(out)
    writer.batched("a\n")
    writer.batched("b\n")
    assert out.getvalue() == ""
    writer.flush()
    assert out.getvalue() == "a\nb\n"


def test_a_batch_of_lines_joins_the_waiting_ones_in_order() -> None:
    """batched_many() adds a batch's lines after those already waiting; flush writes them all."""
    out = io.StringIO()
    writer = SafeWriter(out)
    writer.batched("a\n")
    writer.batched_many(["b\n", "c\n"])
    writer.batched_many([])
    assert out.getvalue() == ""
    writer.flush()
    assert out.getvalue() == "a\nb\nc\n"


def test_a_chain_line_writes_the_waiting_lines_first() -> None:
    """msg() keeps the order in which lines were made."""
    out = io.StringIO()
    writer = SafeWriter(out)
    seen: list[str] = []
    writer.before = lambda: seen.append("before")
    writer.batched("request\n")
    writer.msg("later")
    assert out.getvalue() == "request\nlater\n"
    assert seen == ["before"]


def test_a_broken_stream_costs_the_batch_counted_never_raised() -> None:
    """A write that fails drops the batch's lines, counted under log_output."""
    writer = SafeWriter(Broken())
    writer.batched("a\n")
    writer.batched("b\n")
    writer.flush()
    writer.msg("c")
    assert drops.counts()["log_output"] == 3
