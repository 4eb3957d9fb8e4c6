"""Uploads bigger than Werkzeug's 64 KiB multipart chunk (found by the crash campaign)."""

from __future__ import annotations

import io
from pathlib import Path

from demo_app import create_app
from tests.demo_app.support import config_for


def test_an_upload_spanning_many_multipart_chunks_is_accepted(tmp_path: Path) -> None:
    """A 200 KiB file full of CR/LF (a partial boundary at every chunk's end) is stored, not 413."""
    size = 200 * 1024
    payload = b"RIFF" + (size - 8).to_bytes(4, "little") + b"WAVE" + b"\r\n" * ((size - 12) // 2)
    client = create_app(config_for(tmp_path / "data", "http://127.0.0.1:9")).test_client()
    response = client.post("/api/uploads", content_type="multipart/form-data",
                           data={"duration": "2.5", "file": (io.BytesIO(payload), "clip.wav", "audio/wav")})
    assert response.status_code == 201, response.get_data(as_text=True)
    assert response.get_json()["size_bytes"] == len(payload)
