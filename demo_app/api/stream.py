"""Streaming path: media bytes with HTTP Range support, produced by a guarded generator."""

from __future__ import annotations

import errno
import re
from collections.abc import Iterator
from pathlib import Path

from flask import Blueprint, Response, request
from werkzeug.exceptions import RequestedRangeNotSatisfiable

from demo_app import media
from demo_app.state import state
from resilience import Bulkhead, Retry, exponential, guard
from resilience.flask import PROBLEM_TYPE_BASE, problem

bp = Blueprint("stream", __name__)

CHUNK = 64 * 1024
_RANGE = re.compile(r"^bytes=([0-9]*)-([0-9]*)$", re.ASCII)


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """``(first, last)`` byte positions (inclusive), or None to send everything.

    Multiple ranges are answered with the whole body (RFC 9110 lets a server ignore
    Range); a malformed or unsatisfiable range is a 416.
    """
    if header is None:
        return None
    spec = header.strip()
    if "," in spec and spec.lower().startswith("bytes="):
        return None
    match = _RANGE.fullmatch(spec)
    if match is None or match.group(1) == match.group(2) == "":
        raise RequestedRangeNotSatisfiable(length=size)
    first, last = match.group(1), match.group(2)
    if first == "":
        suffix = int(last)
        if suffix == 0 or size == 0:
            raise RequestedRangeNotSatisfiable(length=size)
        return max(0, size - suffix), size - 1
    start = int(first)
    end = min(int(last), size - 1) if last else size - 1
    if start >= size or end < start:
        raise RequestedRangeNotSatisfiable(length=size)
    return start, end


@guard("stream.read", retry=Retry(attempts=2, backoff=exponential(0.01, cap=0.1)),
       bulkhead=Bulkhead(32, 0.5, name="stream"))
def read_chunks(path: Path, first: int, last: int) -> Iterator[bytes]:
    """Bytes ``first..last`` of ``path`` in chunks (the guard covers opening and the first chunk)."""
    with path.open("rb") as handle:
        handle.seek(first)
        left = last - first + 1
        while left > 0:
            chunk = handle.read(min(CHUNK, left))
            if not chunk:
                raise OSError(errno.EIO, "media file ended early")
            left -= len(chunk)
            yield chunk


def _prepend(first: bytes, rest: Iterator[bytes]) -> Iterator[bytes]:
    """``first`` then ``rest``, closing ``rest`` (and so the guard's slot) when the server stops."""
    try:
        if first:
            yield first
        yield from rest
    finally:
        close = getattr(rest, "close", None)
        if close is not None:
            close()


@bp.get("/api/stream/<int:title_id>")
def stream(title_id: int) -> Response:
    """The title's media; ``Range: bytes=a-b`` gives 206 with that slice."""
    path = media.media_path(state().media_dir, title_id)
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return problem(404, "No media for this title", f"Title {title_id} has no media.",
                       type=PROBLEM_TYPE_BASE + "media-not-found")
    wanted = parse_range(request.headers.get("Range"), size)
    first, last = wanted if wanted is not None else (0, size - 1)
    chunks = read_chunks(path, first, last)
    head = next(chunks, b"") if size else b""  # establishing the stream fails here, as a problem
    response = Response(_prepend(head, chunks), status=206 if wanted else 200,
                        mimetype=media.MEDIA_TYPE, direct_passthrough=True)
    response.headers["Accept-Ranges"] = "bytes"
    response.headers["Content-Length"] = str(last - first + 1 if size else 0)
    if wanted is not None:
        response.headers["Content-Range"] = f"bytes {first}-{last}/{size}"
    return response
