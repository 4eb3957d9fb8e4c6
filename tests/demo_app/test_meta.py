"""Health, readiness and the OpenAPI 3.1 document."""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

import jsonschema_rs
import pytest
from flask import Flask
from flask.testing import FlaskClient
from schemathesis.specs.openapi.definitions import OPENAPI_31

from tests.demo_app.support import demo_state, problem


@pytest.fixture
def document(client: FlaskClient) -> dict[str, Any]:
    response = client.get("/openapi.json")
    assert response.status_code == 200
    body: dict[str, Any] = response.get_json()
    return body


def test_healthz_answers_ok(client: FlaskClient) -> None:
    """/healthz: 200 while the process is up."""
    assert client.get("/healthz").get_json() == {"status": "ok"}


def test_readyz_is_ready_with_a_writable_store_and_closed_circuits(client: FlaskClient, app: Flask) -> None:
    """/readyz: 200 listing the store and each circuit's state."""
    body = client.get("/readyz").get_json()
    name = demo_state(app).circuits[0].name
    assert body["status"] == "ready"
    assert body["checks"] == {"store": "ok", "circuits": {name: "closed"}}


def test_readyz_is_503_while_a_circuit_is_open(client: FlaskClient, app: Flask) -> None:
    """An open circuit makes the instance not ready: 503 problem naming the circuit's state."""
    circuit = demo_state(app).circuits[0]
    circuit.force_open()
    response = client.get("/readyz")
    body = problem(response)
    assert response.status_code == 503
    assert body["checks"]["circuits"] == {circuit.name: "open"}
    assert int(response.headers["Retry-After"]) >= 1


def test_readyz_is_503_when_the_data_dir_is_not_writable(client: FlaskClient, tmp_path: Path) -> None:
    """The data directory replaced by a regular file: 503, store unwritable, kind io."""
    data = tmp_path / "data"
    shutil.rmtree(data)
    data.write_text("not a directory")
    response = client.get("/readyz")
    body = problem(response)
    assert (body["kind"], body["checks"]["store"]) == ("io", "unwritable")


def test_openapi_is_a_valid_openapi_3_1_document(document: dict[str, Any]) -> None:
    """The document validates against the OpenAPI 3.1 schema."""
    assert document["openapi"] == "3.1.0"
    jsonschema_rs.Draft202012Validator(OPENAPI_31).validate(document)


def test_openapi_describes_every_route_and_method(app: Flask, document: dict[str, Any]) -> None:
    """Each Flask URL rule and method (but HEAD/OPTIONS) has an operation in the document."""
    routes = [(re.sub(r"<(?:[a-z]+:)?([a-z_]+)>", r"{\1}", rule.rule), method)
              for rule in app.url_map.iter_rules()
              for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"})]
    missing = [f"{m} {p}" for p, m in routes if m.lower() not in document["paths"].get(p, {})]
    assert len(routes) >= 12
    assert missing == []


def test_every_operation_documents_its_problem_responses(document: dict[str, Any]) -> None:
    """Every operation has a 500 problem+json response; every 4xx/5xx is problem+json."""
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            assert "500" in operation["responses"], f"{method} {path}"
            for status, response in operation["responses"].items():
                if status.startswith(("4", "5")):
                    assert list(response["content"]) == ["application/problem+json"], f"{method} {path} {status}"


def _validator(document: dict[str, Any], name: str) -> Any:
    schema = {"$ref": f"#/components/schemas/{name}", "components": document["components"]}
    return jsonschema_rs.Draft202012Validator(schema)


def test_real_problem_bodies_match_the_documented_schema(client: FlaskClient, document: dict[str, Any]) -> None:
    """A real 422 matches ValidationProblem; a real 404 matches Problem."""
    invalid = client.post("/api/signup", json={"email": "x"}).get_json()
    missing = client.get("/api/stream/99").get_json()
    _validator(document, "ValidationProblem").validate(invalid)
    _validator(document, "Problem").validate(missing)


def test_real_answers_match_the_documented_schemas(client: FlaskClient, document: dict[str, Any]) -> None:
    """Catalog, title and progress answers match their schemas."""
    _validator(document, "Catalog").validate(client.get("/api/catalog").get_json())
    _validator(document, "Title").validate(client.get("/api/titles/1").get_json())
    saved = client.put("/api/progress/1", json={"position_s": 3}, headers={"X-User": "a"}).get_json()
    _validator(document, "Progress").validate(saved)


def test_the_signup_schema_marks_the_password_write_only(document: dict[str, Any]) -> None:
    """The request schema comes from the pydantic model; the password is writeOnly."""
    password = document["components"]["schemas"]["SignupForm"]["properties"]["password"]
    assert password["writeOnly"] is True
    assert document["components"]["schemas"]["SignupForm"]["properties"]["plan"]["enum"] == [
        "free", "standard", "premium"]
