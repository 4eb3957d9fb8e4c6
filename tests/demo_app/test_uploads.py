"""Upload path: validated at the edge, analysed at a guarded site, never left half-stored."""

from __future__ import annotations

import errno
import io
import json
import os
import re
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient
from werkzeug.datastructures import FileStorage, MultiDict
from werkzeug.test import encode_multipart

import resilience
from demo_app import media
from resilience import AttemptInfo, policy_of
from tests.demo_app.support import MakeApp, files_under, problem

MP4 = b"\x00\x00\x00\x18ftypisom" + bytes(range(256)) * 40
WEBM = b"\x1a\x45\xdf\xa3" + b"\x01" * 5000


def _upload(client: FlaskClient, data: bytes = MP4, duration: Any = 4, *,
            content_type: str = "video/mp4", name: str = "clip.mp4") -> Any:
    form: dict[str, Any] = {"duration": str(duration)}
    if data is not None:
        form["file"] = FileStorage(io.BytesIO(data), name, content_type=content_type)
    # Encoded in memory: the test client would spool big bodies to a temp file it never closes.
    boundary, body = encode_multipart(MultiDict(form))
    return client.post("/api/uploads", data=body,
                       content_type=f"multipart/form-data; boundary={boundary}")


def _stored(tmp_path: Path) -> list[str]:
    return files_under(tmp_path / "data" / "uploads")


def test_an_upload_is_analysed_and_stored(client: FlaskClient, tmp_path: Path) -> None:
    """201 with bitrate = size * 8 / duration; the media and its metadata are on disk."""
    response = _upload(client, MP4, 4)
    body = response.get_json()
    assert response.status_code == 201
    assert (body["size_bytes"], body["bitrate_bps"]) == (len(MP4), len(MP4) * 8 / 4)
    assert _stored(tmp_path) == [f"{body['id']}/media.mp4", f"{body['id']}/meta.json"]
    stored = tmp_path / "data" / "uploads" / body["id"]
    assert (stored / "media.mp4").read_bytes() == MP4
    assert json.loads((stored / "meta.json").read_text()) == body


def test_a_webm_upload_is_accepted(client: FlaskClient) -> None:
    """Other accepted containers work too."""
    assert _upload(client, WEBM, 2.5, content_type="video/webm", name="c.webm").status_code == 201


@pytest.mark.parametrize("duration", [0, -3, "abc", "inf", "nan", 10**6])
def test_bad_durations_are_422(client: FlaskClient, tmp_path: Path, duration: Any) -> None:
    """Zero, negative, non-numeric, non-finite and absurd durations: 422 naming duration."""
    response = _upload(client, MP4, duration)
    assert [e["field"] for e in problem(response)["errors"]] == ["duration"]
    assert _stored(tmp_path) == []


def test_an_empty_file_is_422(client: FlaskClient, tmp_path: Path) -> None:
    """A zero-byte file is rejected."""
    response = _upload(client, b"", 3)
    errors = problem(response)["errors"]
    assert [e["field"] for e in errors] == ["file"]
    assert "empty" in errors[0]["message"]


def test_a_wrong_content_type_is_422(client: FlaskClient) -> None:
    """A declared type that is not a video is rejected."""
    response = _upload(client, b"hello", 3, content_type="text/plain", name="a.txt")
    assert [e["field"] for e in problem(response)["errors"]] == ["file"]


def test_content_that_does_not_match_its_declared_type_is_422(client: FlaskClient) -> None:
    """A file declared video/mp4 whose bytes are not MP4 is rejected."""
    response = _upload(client, b"<script>alert(1)</script>", 3)
    assert "not a video/mp4" in problem(response)["errors"][0]["message"]


def test_missing_fields_are_each_listed(client: FlaskClient) -> None:
    """Neither file nor duration: both are reported missing."""
    response = client.post("/api/uploads", data={}, content_type="multipart/form-data")
    assert sorted(e["field"] for e in problem(response)["errors"]) == ["duration", "file"]


def test_an_oversize_file_is_413(make_app: MakeApp, tmp_path: Path) -> None:
    """A file over the configured limit is a 413 problem, and nothing is stored."""
    client = make_app(max_upload_bytes=1000).test_client()
    response = _upload(client, MP4 + b"\x00" * 1000, 3)
    body = problem(response)
    assert (response.status_code, body["kind"]) == (413, "validation")
    assert _stored(tmp_path) == []


def test_a_body_over_the_request_limit_is_413(make_app: MakeApp) -> None:
    """A request body far over the limit is refused before it is parsed."""
    client = make_app(max_upload_bytes=1000).test_client()
    response = _upload(client, MP4 + b"\x00" * (2 * 1024 * 1024), 3)
    assert response.status_code == 413


def test_a_logic_error_in_the_analysis_is_500_and_stores_nothing(
        client: FlaskClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """ZeroDivisionError in the analysis: 500 problem with ids, no stack trace, no half-stored upload."""
    monkeypatch.setattr(media, "bitrate", lambda size, duration: size / 0)
    response = _upload(client, MP4, 4)
    body = problem(response)
    text = response.get_data(as_text=True)
    assert (response.status_code, body["kind"]) == (500, "logic")
    assert re.fullmatch(r"[0-9a-f]{16}", body["error_id"])
    assert re.fullmatch(r"[0-9a-f]{32}", body["trace_id"])
    assert "Traceback" not in text
    assert "division" not in text
    assert _stored(tmp_path) == []


def test_a_fault_at_the_analysis_site_is_500_and_stores_nothing(client: FlaskClient, tmp_path: Path) -> None:
    """The analysis is the guarded site "upload.analyse": an interceptor raising there gives a 500."""
    def inject(info: AttemptInfo) -> float:
        if info.site == "upload.analyse":
            raise ZeroDivisionError("injected")
        return 0.0

    resilience.add_interceptor(inject)
    try:
        response = _upload(client, MP4, 4)
    finally:
        resilience.remove_interceptor(inject)
    assert response.status_code == 500
    assert _stored(tmp_path) == []


def test_the_analysis_is_a_guarded_site() -> None:
    """analyse_upload runs under the policy named upload.analyse."""
    from demo_app.uploads_store import analyse_upload

    found = policy_of(analyse_upload)
    assert found is not None
    assert found.name == "upload.analyse"


def test_a_full_disk_while_storing_is_507_and_stores_nothing(
        client: FlaskClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """ENOSPC while writing the upload: 507 and no partial files left behind."""
    def full(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    response = _upload(client, MP4, 4)
    monkeypatch.undo()
    assert (response.status_code, problem(response)["kind"]) == (507, "io")
    assert _stored(tmp_path) == []
