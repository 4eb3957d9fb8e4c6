"""Helpers shared by the proof tests: demo configurations, requests, and the checks every
error response, data directory and trace must pass."""

from __future__ import annotations

import io
import itertools
import json
import re
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from flask import Flask
from flask.testing import FlaskClient
from werkzeug.datastructures import FileStorage, MultiDict
from werkzeug.test import TestResponse, encode_multipart

from demo_app import DemoConfig, create_app
from demo_app.state import EXTENSION_KEY, DemoState
from telemetry.query import TraceDetail

ROOT = Path(__file__).resolve().parents[2]
PROBLEM_MEMBERS = frozenset({"type", "title", "status", "detail", "instance", "error_id",
                             "trace_id", "kind"})
KINDS = frozenset({"logic", "validation", "network", "io"})
#: Problem types that come from a runtime error (an exception classified into a kind).
RUNTIME_TYPES = frozenset(
    "https://shockproof.dev/problems/" + slug for slug in (
        "validation-failed", "malformed-request", "circuit-open", "overloaded",
        "deadline-exceeded", "upstream-unavailable", "upstream-failed", "insufficient-storage",
        "storage-unavailable", "internal-error"))
#: What a stack trace or an internal path looks like in a response.
LEAK = re.compile(r"Traceback|File \"|/work/|site-packages|\b[\w-]+\.py\b|\.venv|/tmp/|/usr/lib")
_names = itertools.count()


def demo_config(data_dir: Path, upstream_url: str, **overrides: Any) -> DemoConfig:
    """A demo configuration for tests: its own circuit name, small limits, telemetry on."""
    base = DemoConfig(data_dir=data_dir, upstream_url=upstream_url, fault_control=False,
                      circuit_name=f"catalog-proof-{next(_names)}", max_upload_bytes=256 * 1024,
                      upstream_timeout=2.0, catalog_deadline=5.0)
    return replace(base, **overrides)


def make_demo(data_dir: Path, upstream_url: str, **overrides: Any) -> Flask:
    app = create_app(demo_config(data_dir, upstream_url, **overrides))
    app.testing = True
    return app


def demo_state(app: Flask) -> DemoState:
    found: DemoState = app.extensions[EXTENSION_KEY]
    return found


def close_demo(app: Flask) -> None:
    """Close the app's upstream session and reset its circuits."""
    state = demo_state(app)
    state.catalog.close()
    for circuit in state.circuits:
        circuit.reset()


def upload(client: FlaskClient, data: bytes | None, duration: Any, *, content_type: str = "audio/wav",
           name: str = "clip.wav", extra: Mapping[str, str] | None = None,
           headers: Mapping[str, str] | None = None) -> TestResponse:
    """POST a multipart upload encoded in memory (the test client would spool it to a temp file)."""
    form: dict[str, Any] = {"duration": str(duration), **(extra or {})}
    if data is not None:
        form["file"] = FileStorage(io.BytesIO(data), name, content_type=content_type)
    boundary, body = encode_multipart(MultiDict(form))
    return client.post("/api/uploads", data=body, headers=dict(headers or {}),
                       content_type=f"multipart/form-data; boundary={boundary}")


def leaks(text: str) -> list[str]:
    """Stack-trace and internal-path markers found in ``text``."""
    return LEAK.findall(text)


def problem_body(response: TestResponse, *, data_dir: Path | None = None) -> dict[str, Any]:
    """The problem+json body of an error response, checked: media type, members, no leaks.

    The ``instance`` member is the request path by definition (RFC 9457), so it is
    left out of the leak scan; every other byte of the body is scanned.
    """
    raw = response.get_data(as_text=True)
    assert response.mimetype == "application/problem+json", (response.status, raw[:300])
    body: dict[str, Any] = json.loads(raw)
    missing = PROBLEM_MEMBERS - set(body)
    assert not missing, (missing, body)
    assert body["status"] == response.status_code, body
    assert body["kind"] in KINDS, body
    assert re.fullmatch(r"[0-9a-f]{32}", body["trace_id"]), body
    scanned = json.dumps({k: v for k, v in body.items() if k != "instance"})
    assert not leaks(scanned), (leaks(scanned), body)
    if data_dir is not None:
        assert str(data_dir) not in raw, body
        assert str(ROOT) not in raw, body
    return body


def leftovers(data_dir: Path) -> list[str]:
    """Temporary or partial files visible in the data directory (should always be none)."""
    found = []
    for path in data_dir.rglob("*"):
        rel = path.relative_to(data_dir)
        if path.is_file() and (path.name.endswith(".tmp") or path.name.startswith(".")):
            found.append(str(rel))
        elif path.is_dir() and path.name == ".incoming" and any(path.iterdir()):
            found.append(f"{rel}/ (staging not empty)")
    return sorted(found)


def request_span(detail: TraceDetail) -> Any:
    """The server span of a request's trace (AssertionError when there is none)."""
    servers = [s for s in detail.spans if s.kind == "server"]
    assert servers, [s.name for s in detail.spans]
    return servers[0]


def request_log(detail: TraceDetail) -> Any:
    """The request's own log line (``event == "request"``)."""
    lines = [log for log in detail.logs if log.event == "request"]
    assert lines, [log.event for log in detail.logs]
    return lines[-1]
