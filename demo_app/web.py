"""The web page at ``/``: server-rendered, enhanced by one static script (no inline scripts)."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, render_template

from resilience import classify

from .catalog_client import Answer
from .state import state

bp = Blueprint("web", __name__)


def _catalog() -> tuple[Answer | None, str | None]:
    """The catalog for the page, or a friendly note saying why there is none."""
    try:
        return state().catalog.catalog(), None
    except Exception as exc:  # the page must render whatever the catalog does
        kind = classify(exc).kind.value
        return None, f"The catalog is unavailable right now ({kind} error). Try again in a moment."


@bp.get("/")
def index() -> str:
    """Browse, sign up, upload, save progress and play, all on one page."""
    answer, note = _catalog()
    titles: list[dict[str, Any]] = list(answer.data.get("titles", [])) if answer else []
    return render_template("index.html", titles=titles, note=note,
                           degraded=bool(answer and answer.degraded),
                           max_upload_mb=state().config.max_upload_bytes // (1024 * 1024))
