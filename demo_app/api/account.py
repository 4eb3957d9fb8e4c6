"""Validation path: signup, checked field by field at the edge; passwords kept only as hashes."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify

from demo_app.schemas import SignupForm
from demo_app.state import USER_COOKIE, state
from demo_app.storage import EmailTaken, hash_password
from resilience.flask import PROBLEM_TYPE_BASE, problem, validate_body

bp = Blueprint("account", __name__)

_ONE_YEAR = 365 * 24 * 3600


@bp.post("/api/signup")
@validate_body(SignupForm)
def signup(body: SignupForm) -> Response:
    """Create an account; answers 201 and sets the user cookie."""
    current = state()
    password_hash = hash_password(body.password.get_secret_value())
    try:
        user = current.users.create(body.email, body.display_name, password_hash, body.plan)
    except EmailTaken:
        return problem(409, "Email already registered",
                       "An account with this email exists already.",
                       type=PROBLEM_TYPE_BASE + "email-taken")
    response = jsonify(user_id=user.user_id, display_name=user.display_name, plan=user.plan)
    response.status_code = 201
    response.set_cookie(USER_COOKIE, user.user_id, max_age=_ONE_YEAR, path="/", httponly=True,
                        samesite="Lax", secure=current.config.cookie_secure)
    return response
