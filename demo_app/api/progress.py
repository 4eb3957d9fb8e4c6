"""File path: watch progress per user and title, written atomically (the old value survives)."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify, request
from werkzeug.datastructures import WWWAuthenticate
from werkzeug.exceptions import Unauthorized

from demo_app.schemas import ProgressBody
from demo_app.state import USER_COOKIE, state
from demo_app.storage import check_user_id
from resilience.flask import PROBLEM_TYPE_BASE, problem, validate_body

bp = Blueprint("progress", __name__)


def current_user() -> str:
    """The user from the ``X-User`` header, else from the signup cookie (validated either way)."""
    header = request.headers.get("X-User")
    if header is not None:
        return check_user_id(header.strip(), "X-User")
    cookie = request.cookies.get(USER_COOKIE)
    if cookie:
        return check_user_id(cookie, USER_COOKIE)
    raise Unauthorized("Say who is watching: send an X-User header, or sign up first.",
                       www_authenticate=WWWAuthenticate("X-User", {"realm": "shockproof-demo"}))


@bp.put("/api/progress/<int:title_id>")
@validate_body(ProgressBody)
def save(title_id: int, body: ProgressBody) -> Response:
    """Save the position; the previous value stays intact if the write fails."""
    saved = state().progress.save(current_user(), title_id, body.position_s)
    return jsonify(saved.as_json())


@bp.get("/api/progress/<int:title_id>")
def load(title_id: int) -> Response:
    """The saved position, or 404 when none was saved."""
    found = state().progress.load(current_user(), title_id)
    if found is None:
        return problem(404, "No progress saved", f"Nothing was saved for title {title_id} yet.",
                       type=PROBLEM_TYPE_BASE + "no-progress")
    return jsonify(found.as_json())
