"""Network path: the catalog, fetched from the upstream service (degraded from cache when down)."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify

from demo_app.catalog_client import Answer, UnknownTitle
from demo_app.state import state
from resilience.flask import PROBLEM_TYPE_BASE, problem

bp = Blueprint("catalog", __name__)

STALE_WARNING = '110 - "Response is Stale"'


def answer_response(answer: Answer) -> Response:
    """The document, marked ``degraded`` (with headers saying so) when served from the cache."""
    body = {**answer.data, "degraded": answer.degraded}
    if answer.degraded:
        body["cached_at"] = answer.cached_at
    response = jsonify(body)
    if answer.degraded:
        response.headers["Warning"] = STALE_WARNING
        response.headers["X-Shockproof-Degraded"] = "1"
        response.headers["Cache-Control"] = "no-store"
    return response


@bp.get("/api/catalog")
def catalog() -> Response:
    """Every title with its artwork metadata."""
    return answer_response(state().catalog.catalog())


@bp.get("/api/titles/<int:title_id>")
def title(title_id: int) -> Response:
    """One title: details, artwork metadata and recommendations."""
    try:
        answer = state().catalog.title(title_id)
    except UnknownTitle:
        return problem(404, "Title not found", f"There is no title {title_id} in the catalog.",
                       type=PROBLEM_TYPE_BASE + "title-not-found")
    return answer_response(answer)
