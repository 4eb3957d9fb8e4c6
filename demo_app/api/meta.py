"""Health, readiness and the OpenAPI document."""

from __future__ import annotations

import os
import tempfile
from typing import Any

from flask import Blueprint, Response, jsonify

from demo_app.openapi import openapi_document
from demo_app.state import state
from resilience.flask import PROBLEM_TYPE_BASE, problem

bp = Blueprint("meta", __name__)


@bp.get("/healthz")
def healthz() -> Response:
    """The process is up and answering."""
    return jsonify(status="ok")


def _store_state() -> str:
    try:
        with tempfile.TemporaryFile(dir=state().data_dir):
            return "ok"
    except OSError:
        return "unwritable"


@bp.get("/readyz")
def readyz() -> Response:
    """Ready when the data directory is writable and no circuit is open."""
    circuits = {c.name: c.state for c in state().circuits}
    checks: dict[str, Any] = {"store": _store_state(), "circuits": circuits}
    ready = checks["store"] == "ok" and "open" not in circuits.values()
    if ready:
        return jsonify(status="ready", checks=checks, pid=os.getpid())
    return problem(503, "Not ready", "A dependency is failing or the data directory is not writable.",
                   type=PROBLEM_TYPE_BASE + "not-ready", headers={"Retry-After": "5"},
                   kind="io" if checks["store"] != "ok" else "network", checks=checks, pid=os.getpid())


@bp.get("/openapi.json")
def openapi() -> Response:
    """This API, described in OpenAPI 3.1."""
    return jsonify(openapi_document())
