"""API fuzzing: schemathesis drives every operation of ``/openapi.json`` in-process.

Each operation is fuzzed with valid (positive) and invalid (negative) data against the
demo app, reached over WSGI, with the upstream catalog as a real process. Every
response must be a non-5xx answer the document describes: status code, content type,
body schema and headers; invalid data must be rejected.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from flask import Flask, request
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    negative_data_rejection,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.core.failures import AcceptedNegativeData, FailureGroup, ServerError

from demo_app import media
from demo_app.openapi import openapi_document
from tests.demo_app.servers import Server

from .chaos_model import valid_user
from .support import close_demo, make_demo

MAX_EXAMPLES = 15
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_schema_conformance, response_headers_conformance]
OPERATIONS = [(method.upper(), path) for path, item in openapi_document()["paths"].items()
              for method in item]
#: Operations with constrained input (parameters or a body): the ones negative data can target.
#: (``/static/{filename}`` takes any string, so no request to it is invalid.)
# The upload's file part is declared with the video media types: send those parts as bytes.
schemathesis.serializer.alias(sorted(media.ACCEPTED_TYPES), "application/octet-stream")

WITH_INPUT = [(m, p) for m, p in OPERATIONS if p != "/static/{filename}"
              and {"parameters", "requestBody"} & set(openapi_document()["paths"][p][m.lower()])]


@pytest.fixture(scope="module")
def fuzz_app(tmp_path_factory: pytest.TempPathFactory, proof_upstream: Server) -> Iterator[Flask]:
    """One demo app (telemetry off) for every fuzzed operation."""
    app = make_demo(tmp_path_factory.mktemp("fuzz") / "data", proof_upstream.url, telemetry=False)
    yield app
    close_demo(app)


@pytest.fixture(scope="module")
def api(fuzz_app: Flask) -> Any:
    """The app's own ``/openapi.json``, loaded by schemathesis over WSGI."""
    return schemathesis.openapi.from_wsgi("/openapi.json", fuzz_app)


def rejects_invalid_data(ctx: Any, response: Any, case: Any) -> bool | None:
    """``negative_data_rejection``, except for an invalid cookie the app does not read: with
    a valid ``X-User`` header the ``shockproof_user`` cookie is ignored (the header wins)."""
    try:
        return bool(negative_data_rejection(ctx, response, case)) or None
    except AcceptedNegativeData as failure:
        user = (case.headers or {}).get("X-User")
        if "`shockproof_user` in cookie" in failure.message and isinstance(user, str) \
                and valid_user(user.strip()):
            return None
        raise


def _fuzz(api: Any, method: str, path: str, mode: GenerationMode, checks: list[Any]) -> None:
    strategy = api[path][method].as_strategy(generation_mode=mode)

    @settings(max_examples=MAX_EXAMPLES, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(case=strategy)
    def run(case: Any) -> None:
        case.call_and_validate(checks=checks)

    run()


@pytest.mark.parametrize(("method", "path"), OPERATIONS)
def test_valid_requests_get_documented_answers(api: Any, method: str, path: str) -> None:
    """Positive data: no 5xx, and status, content type, body and headers as documented."""
    _fuzz(api, method, path, GenerationMode.POSITIVE, CHECKS)


@pytest.mark.parametrize(("method", "path"), WITH_INPUT)
def test_invalid_requests_are_rejected_as_documented(api: Any, method: str, path: str) -> None:
    """Negative data: rejected with a documented 4xx, never a 5xx."""
    _fuzz(api, method, path, GenerationMode.NEGATIVE, [*CHECKS, rejects_invalid_data])


def test_every_route_is_fuzzed(fuzz_app: Flask) -> None:
    """The operations fuzzed are every route the app serves (nothing left out of the document)."""
    served = {(m, rule.rule.replace("<int:", "{").replace("<path:", "{").replace("<", "{").replace(">", "}"))
              for rule in fuzz_app.url_map.iter_rules() for m in rule.methods or ()
              if m not in ("HEAD", "OPTIONS") and not rule.rule.startswith("/_shockproof")}
    assert served == set(OPERATIONS)


def test_the_fuzzing_reaches_the_app(tmp_path: Path, proof_upstream: Server) -> None:
    """A route that answers 500 is caught: the checks are live, not vacuous."""
    app = make_demo(tmp_path / "data", proof_upstream.url, telemetry=False)

    @app.before_request
    def broken() -> None:
        if request.path == "/healthz":
            raise ZeroDivisionError("planted")

    with pytest.raises(FailureGroup) as found:
        _fuzz(schemathesis.openapi.from_wsgi("/openapi.json", app), "GET", "/healthz",
              GenerationMode.POSITIVE, CHECKS)
    assert found.group_contains(ServerError)
    close_demo(app)


@pytest.mark.parametrize("position", [True, False, "42", "1e3"])
def test_a_position_must_be_a_json_number(fuzz_app: Flask, position: Any) -> None:
    """Booleans and numeric strings are not positions: 422 (found by the negative fuzzing)."""
    response = fuzz_app.test_client().put("/api/progress/1", json={"position_s": position},
                                          headers={"X-User": "alice"})
    assert response.status_code == 422
    assert [e["field"] for e in response.get_json()["errors"]] == ["position_s"]


def test_an_unroutable_progress_id_is_a_documented_404(fuzz_app: Flask) -> None:
    """A negative title id never matches the route; the document lists that 404 for PUT too."""
    response = fuzz_app.test_client().put("/api/progress/-1", json={"position_s": 1.0},
                                          headers={"X-User": "alice"})
    assert response.status_code == 404
    assert "404" in openapi_document()["paths"]["/api/progress/{title_id}"]["put"]["responses"]
