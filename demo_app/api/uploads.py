"""Upload path: validated at the edge, analysed at a guarded site, stored all-or-nothing."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify

from demo_app.schemas import UploadForm
from demo_app.state import state
from resilience.flask import validate_body

bp = Blueprint("uploads", __name__)


@bp.post("/api/uploads")
@validate_body(UploadForm)
def upload(body: UploadForm) -> Response:
    """Store a video (multipart ``file`` + ``duration``); answers 201 with its analysis."""
    current = state()
    body.check_size(current.config.max_upload_bytes)
    meta = current.uploads.store(body.file.stream, body.file.mimetype, body.container, body.duration)
    response = jsonify(meta)
    response.status_code = 201
    return response
