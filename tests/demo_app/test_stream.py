"""Streaming path: media bytes with HTTP Range (200, 206, 416) from a guarded generator."""

from __future__ import annotations

import errno
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.exceptions import RequestedRangeNotSatisfiable

from demo_app import media
from demo_app.api.stream import parse_range, read_chunks
from resilience import policy_of
from tests.demo_app.support import demo_state, problem


@pytest.fixture
def media_bytes(app: Flask) -> bytes:
    return media.media_path(demo_state(app).media_dir, 1).read_bytes()


def test_the_whole_file_streams_with_accept_ranges(client: FlaskClient, media_bytes: bytes) -> None:
    """Without Range: 200, the whole file, Accept-Ranges and Content-Length."""
    response = client.get("/api/stream/1")
    assert response.status_code == 200
    assert response.data == media_bytes
    assert response.headers["Accept-Ranges"] == "bytes"
    assert response.headers["Content-Length"] == str(len(media_bytes))
    assert response.mimetype == "audio/wav"


@pytest.mark.parametrize(
    ("header", "first", "last"),
    [("bytes=0-99", 0, 99), ("bytes=100-", 100, None), ("bytes=-500", -500, None),
     ("bytes=150000-999999999", 150000, None)],
)
def test_a_range_gives_206_with_that_slice(client: FlaskClient, media_bytes: bytes, header: str,
                                           first: int, last: int | None) -> None:
    """A satisfiable range: 206, exactly those bytes, and a matching Content-Range."""
    size = len(media_bytes)
    expected = media_bytes[first:] if last is None else media_bytes[first:last + 1]
    start = first % size
    response = client.get("/api/stream/1", headers={"Range": header})
    assert response.status_code == 206
    assert response.data == expected
    assert response.headers["Content-Range"] == f"bytes {start}-{start + len(expected) - 1}/{size}"
    assert response.headers["Content-Length"] == str(len(expected))


@pytest.mark.parametrize("header", ["bytes=999999-", "bytes=50-10", "bytes=-0", "bytes=abc",
                                    "items=0-1", "bytes=-", "bytes=1-2-3"])
def test_bad_or_unsatisfiable_ranges_are_416(client: FlaskClient, media_bytes: bytes, header: str) -> None:
    """416 problem with Content-Range: bytes */size."""
    response = client.get("/api/stream/1", headers={"Range": header})
    assert response.status_code == 416
    assert response.headers["Content-Range"] == f"bytes */{len(media_bytes)}"
    assert problem(response)["kind"] == "validation"


def test_several_ranges_get_the_whole_file(client: FlaskClient, media_bytes: bytes) -> None:
    """Multiple ranges are answered with 200 and everything (Range may be ignored)."""
    response = client.get("/api/stream/1", headers={"Range": "bytes=0-1,5-6"})
    assert (response.status_code, response.data) == (200, media_bytes)


def test_a_title_without_media_is_404(client: FlaskClient) -> None:
    """No media file for the title: a 404 problem."""
    response = client.get("/api/stream/77")
    assert response.status_code == 404
    assert problem(response)["type"].endswith("/media-not-found")


def test_the_stream_comes_from_a_guarded_generator() -> None:
    """read_chunks is guarded as the site stream.read."""
    found = policy_of(read_chunks)
    assert found is not None
    assert found.name == "stream.read"
    assert found.bulkhead is not None


def test_the_bulkhead_slot_is_released_when_the_stream_ends(client: FlaskClient) -> None:
    """After a streamed response is consumed and closed, no slot stays taken."""
    bulkhead = policy_of(read_chunks).bulkhead  # type: ignore[union-attr]
    assert bulkhead is not None
    response = client.get("/api/stream/2")
    assert len(response.data) > 0
    response.close()
    assert bulkhead.in_flight == 0


def test_a_failure_opening_the_media_is_a_problem_not_a_broken_stream(
        client: FlaskClient, monkeypatch: pytest.MonkeyPatch) -> None:
    """An I/O error while establishing the stream becomes a 503 problem before any byte is sent."""
    def broken(self: Path, *args: Any, **kwargs: Any) -> Any:
        raise OSError(errno.EIO, "I/O error")

    monkeypatch.setattr(Path, "open", broken)
    response = client.get("/api/stream/1")
    assert (response.status_code, problem(response)["kind"]) == (503, "io")


def test_parse_range_reads_first_last_and_suffix() -> None:
    """parse_range: absent -> None; a-b, a- and -n become inclusive positions."""
    assert parse_range(None, 100) is None
    assert parse_range("bytes=10-19", 100) == (10, 19)
    assert parse_range("bytes=90-", 100) == (90, 99)
    assert parse_range("bytes=-10", 100) == (90, 99)
    assert parse_range("bytes=-1000", 100) == (0, 99)


def test_parse_range_rejects_ranges_past_the_end() -> None:
    """A start beyond the file raises 416."""
    with pytest.raises(RequestedRangeNotSatisfiable):
        parse_range("bytes=100-", 100)
