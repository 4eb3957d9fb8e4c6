"""resilience.flask: every exception becomes problem+json; bodies and queries validated by pydantic."""

from __future__ import annotations

import asyncio
import errno
import itertools
import json
import pickle
import re
from collections.abc import Callable
from typing import Any, Literal

import pydantic
import pytest
from flask import Flask, Response, abort, g, request
from flask.testing import FlaskClient

from resilience import (
    Bulkhead,
    BulkheadFull,
    Circuit,
    DeadlineExceeded,
    ValidationFailed,
    guard,
)
from resilience import flask as rflask
from resilience.flask import (
    PROBLEM_MIMETYPE,
    MalformedRequest,
    Resilience,
    problem,
    validate_body,
    validate_query,
)

_names = itertools.count()
PASSWORD = "hunter2-very-secret"
HEX32 = re.compile(r"^[0-9a-f]{32}$")


class Signup(pydantic.BaseModel):
    email: str = pydantic.Field(pattern=r"^[^@\s]+@[^@\s]+$")
    password: pydantic.SecretStr = pydantic.Field(min_length=30)
    plan: Literal["free", "premium"]


class Page(pydantic.BaseModel):
    page: int = pydantic.Field(ge=1)
    tag: list[str] = []


def _app(**config: Any) -> Flask:
    app = Flask(__name__)
    app.config.update(config)
    Resilience(app)
    return app


def _raising(exc: BaseException) -> Callable[[], Any]:
    def view() -> Any:
        raise exc
    return view


def _client_raising(exc: BaseException, **config: Any) -> FlaskClient:
    app = _app(**config)
    app.add_url_rule("/boom", "boom", _raising(exc))
    return app.test_client()


def _problem(response: Any) -> dict[str, Any]:
    assert response.mimetype == PROBLEM_MIMETYPE
    body: dict[str, Any] = response.get_json(force=True)
    return body


@pytest.fixture
def signup_client() -> FlaskClient:
    app = _app()

    @app.post("/signup")
    @validate_body(Signup)
    def signup(body: Signup) -> dict[str, Any]:
        return {"email": body.email, "plan": body.plan, "pw_len": len(body.password.get_secret_value())}

    @app.get("/items")
    @validate_query(Page)
    def items(query: Page) -> dict[str, Any]:
        return {"page": query.page, "tag": query.tag}

    return app.test_client()


# -- the four kinds -------------------------------------------------------------------------


def test_logic_error_is_500_with_a_generic_detail() -> None:
    """A logic error maps to 500 and its message (which may hold secrets) is never shown."""
    response = _client_raising(ZeroDivisionError("token=abc123 in /srv/app/secret.py")).get("/boom")
    body = _problem(response)
    assert response.status_code == 500
    assert body["kind"] == "logic"
    assert body["type"] == "https://shockproof.dev/problems/internal-error"
    assert "abc123" not in response.get_data(as_text=True)
    assert "/srv" not in response.get_data(as_text=True)


def test_every_problem_body_carries_the_standard_members() -> None:
    """type, title, status, detail, instance, error_id, trace_id and kind are always present."""
    body = _problem(_client_raising(RuntimeError("x")).get("/boom"))
    assert set(body) >= {"type", "title", "status", "detail", "instance", "error_id", "trace_id", "kind"}
    assert body["instance"] == "/boom"
    assert body["status"] == 500


def test_error_ids_differ_from_one_error_to_the_next() -> None:
    """Each error gets its own error id."""
    client = _client_raising(RuntimeError("x"))
    ids = {_problem(client.get("/boom"))["error_id"] for _ in range(5)}
    assert len(ids) == 5


def test_validation_failed_is_422_listing_each_field() -> None:
    """ValidationFailed maps to 422 with its field errors."""
    exc = ValidationFailed.from_mapping({"email": "missing", "plan": "unknown plan"})
    response = _client_raising(exc).get("/boom")
    body = _problem(response)
    assert response.status_code == 422
    assert body["kind"] == "validation"
    assert [e["field"] for e in body["errors"]] == ["email", "plan"]


def test_a_raw_pydantic_error_is_422_without_its_input() -> None:
    """A pydantic ValidationError raised by app code maps to 422 and never echoes the input."""
    try:
        Signup.model_validate({"email": "a@b", "password": PASSWORD, "plan": "free"})
    except pydantic.ValidationError as exc:
        error = exc
    response = _client_raising(error).get("/boom")
    assert response.status_code == 422
    assert _problem(response)["errors"][0]["field"] == "password"
    assert PASSWORD not in response.get_data(as_text=True)


def test_connection_error_is_502() -> None:
    """A network failure of a dependency maps to 502 upstream-failed."""
    response = _client_raising(ConnectionError("refused by 10.0.0.7")).get("/boom")
    body = _problem(response)
    assert (response.status_code, body["kind"]) == (502, "network")
    assert "10.0.0.7" not in response.get_data(as_text=True)


def test_network_error_with_a_retry_after_hint_is_503() -> None:
    """A network error carrying retry_after is a rejection: 503 with Retry-After."""
    exc = ConnectionError("busy")
    exc.retry_after = 7.2  # type: ignore[attr-defined]
    response = _client_raising(exc).get("/boom")
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "8"


def test_open_circuit_is_503_with_retry_after() -> None:
    """A call rejected by an open circuit maps to 503 with an integer Retry-After >= 1."""
    circuit = Circuit(f"test-flask-{next(_names)}", consecutive=1, open_for=30)
    circuit.force_open()
    app = _app()

    @app.get("/guarded")
    @guard("flask.test", circuit=circuit)
    def guarded() -> str:
        return "never"

    response = app.test_client().get("/guarded")
    body = _problem(response)
    assert response.status_code == 503
    assert body["type"].endswith("/circuit-open")
    assert 1 <= int(response.headers["Retry-After"]) <= 30


def test_retry_after_is_rounded_up_to_at_least_one_second() -> None:
    """A sub-second wait still gives Retry-After: 1."""
    exc = ConnectionError("soon")
    exc.retry_after = 0.01  # type: ignore[attr-defined]
    assert _client_raising(exc).get("/boom").headers["Retry-After"] == "1"


def test_bulkhead_full_is_503_with_retry_after() -> None:
    """A bulkhead rejection is an overload: 503 with Retry-After."""
    bulkhead = Bulkhead(1, 0.0)
    bulkhead.try_acquire()
    app = _app()

    @app.get("/busy")
    @guard("flask.busy", bulkhead=bulkhead)
    def busy() -> str:
        return "never"

    response = app.test_client().get("/busy")
    assert response.status_code == 503
    assert _problem(response)["type"].endswith("/overloaded")
    assert response.headers["Retry-After"] == "1"


def test_bulkhead_full_raised_directly_is_503() -> None:
    """BulkheadFull maps the same way when app code raises it."""
    assert _client_raising(BulkheadFull("b", 1)).get("/boom").status_code == 503


def test_deadline_exceeded_is_504() -> None:
    """An exhausted time budget maps to 504."""
    response = _client_raising(DeadlineExceeded(2.0, "catalog")).get("/boom")
    assert response.status_code == 504
    assert _problem(response)["kind"] == "network"


def test_enospc_is_507() -> None:
    """A full disk maps to 507 Insufficient Storage."""
    response = _client_raising(OSError(errno.ENOSPC, "No space left", "/data/p.json")).get("/boom")
    body = _problem(response)
    assert (response.status_code, body["kind"]) == (507, "io")
    assert "/data" not in response.get_data(as_text=True)


def test_edquot_is_507() -> None:
    """An exceeded disk quota maps to 507 as well."""
    assert _client_raising(OSError(errno.EDQUOT, "quota")).get("/boom").status_code == 507


def test_transient_io_error_is_503_with_retry_after() -> None:
    """A transient I/O error (EIO) maps to 503 with Retry-After."""
    response = _client_raising(OSError(errno.EIO, "I/O error")).get("/boom")
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "1"


def test_permanent_io_error_is_503_without_leaking_the_path() -> None:
    """A permanent I/O error maps to 503 storage-unavailable and hides the file name."""
    response = _client_raising(PermissionError(errno.EACCES, "denied", "/srv/secret")).get("/boom")
    body = _problem(response)
    assert response.status_code == 503
    assert body["type"].endswith("/storage-unavailable")
    assert "Retry-After" not in response.headers
    assert "/srv/secret" not in response.get_data(as_text=True)


# -- werkzeug's HTTP errors --------------------------------------------------------------


def test_unknown_route_is_a_404_problem() -> None:
    """A werkzeug NotFound keeps its status and becomes problem+json with about:blank."""
    response = _app().test_client().get("/nowhere")
    body = _problem(response)
    assert response.status_code == 404
    assert (body["type"], body["title"]) == ("about:blank", "Not Found")


def test_wrong_method_is_a_405_problem_with_allow() -> None:
    """MethodNotAllowed keeps status 405 and its Allow header."""
    app = _app()
    app.add_url_rule("/only-get", "only_get", lambda: "ok")
    response = app.test_client().post("/only-get")
    assert response.status_code == 405
    assert "GET" in response.headers["Allow"]
    assert _problem(response)["kind"] == "validation"


def test_oversized_body_is_a_413_problem() -> None:
    """A body over MAX_CONTENT_LENGTH becomes a 413 problem."""
    app = _app(MAX_CONTENT_LENGTH=10)

    @app.post("/up")
    def up() -> dict[str, str]:
        return request.form.to_dict()

    response = app.test_client().post("/up", data={"a": "x" * 100})
    assert response.status_code == 413
    assert _problem(response)["status"] == 413


def test_server_side_abort_keeps_a_generic_description() -> None:
    """abort(503, description=...) does not echo the app's server-side description."""
    app = _app()

    @app.get("/down")
    def down() -> str:
        abort(503, description="db at 10.1.2.3 is down")

    response = app.test_client().get("/down")
    assert response.status_code == 503
    assert "10.1.2.3" not in response.get_data(as_text=True)


def test_redirects_pass_through_untouched() -> None:
    """Routing redirects (308 to the slash URL) are not turned into problems."""
    app = _app()
    app.add_url_rule("/dir/", "dir", lambda: "ok")
    response = app.test_client().get("/dir")
    assert response.status_code == 308


def test_abort_with_a_prepared_response_passes_through() -> None:
    """abort(Response) sends the app's own response."""
    app = _app()

    @app.get("/teapot")
    def teapot() -> str:
        abort(Response("short and stout", status=418))

    response = app.test_client().get("/teapot")
    assert (response.status_code, response.get_data(as_text=True)) == (418, "short and stout")


# -- trace ids, telemetry contract, safety ------------------------------------------------------


def test_trace_id_comes_from_telemetry_when_set() -> None:
    """flask.g.shockproof_trace_id, set by telemetry, is the body's trace_id."""
    app = _app()
    app.before_request(lambda: setattr(g, "shockproof_trace_id", "ab" * 16))
    app.add_url_rule("/boom", "boom", _raising(RuntimeError()))
    assert _problem(app.test_client().get("/boom"))["trace_id"] == "ab" * 16


def test_trace_id_comes_from_an_incoming_traceparent() -> None:
    """Without telemetry, a valid W3C traceparent's trace id is used."""
    header = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    body = _problem(_client_raising(RuntimeError()).get("/boom", headers={"traceparent": header}))
    assert body["trace_id"] == "4bf92f3577b34da6a3ce929d0e0e4736"


def test_an_invalid_traceparent_gets_a_fresh_trace_id() -> None:
    """A malformed or all-zero traceparent is ignored; a fresh 32-hex id is made."""
    client = _client_raising(RuntimeError())
    zero = "00-" + "0" * 32 + "-00f067aa0ba902b7-01"
    for header in ("garbage", zero):
        trace_id = _problem(client.get("/boom", headers={"traceparent": header}))["trace_id"]
        assert HEX32.match(trace_id)
        assert trace_id != "0" * 32


def test_the_exception_and_error_id_are_left_for_telemetry() -> None:
    """g.shockproof_error holds (exception, error_id) for telemetry.flask to record."""
    seen: list[Any] = []
    exc = KeyError("k")
    app = _app()
    app.add_url_rule("/boom", "boom", _raising(exc))
    app.teardown_request(lambda _e: seen.append(g.get("shockproof_error")))
    body = _problem(app.test_client().get("/boom"))
    assert seen == [(exc, body["error_id"])]


def test_debug_mode_never_shows_a_stack_trace() -> None:
    """Even with DEBUG on, the response is a problem without a traceback."""
    app = _app(DEBUG=True)
    app.add_url_rule("/boom", "boom", _raising(ValueError("internal detail")))
    response = app.test_client().get("/boom")
    text = response.get_data(as_text=True)
    assert response.status_code == 500
    assert "Traceback" not in text
    assert "internal detail" not in text


def test_a_failing_mapping_still_answers_a_fixed_500(monkeypatch: pytest.MonkeyPatch) -> None:
    """If building the problem fails, a fixed last-resort 500 problem is sent."""
    def broken(exc: BaseException) -> Any:
        raise RuntimeError("mapping bug")

    monkeypatch.setattr(rflask, "problem_spec", broken)
    response = _client_raising(ValueError("x")).get("/boom")
    assert response.status_code == 500
    assert _problem(response)["type"].endswith("/internal-error")


def test_problem_helper_builds_a_problem_response() -> None:
    """problem() makes a problem+json response with the standard members and extras."""
    app = _app()

    @app.get("/p")
    def p() -> Response:
        return problem(409, "Conflict", "Already there.", headers={"X-A": "1"}, resource="user")

    response = app.test_client().get("/p")
    body = _problem(response)
    assert response.status_code == 409
    assert response.headers["X-A"] == "1"
    assert (body["title"], body["detail"], body["resource"], body["kind"]) == (
        "Conflict", "Already there.", "user", "validation")
    assert HEX32.match(body["trace_id"])


# -- request validation -----------------------------------------------------------------------


def test_valid_json_body_is_passed_as_a_model(signup_client: FlaskClient) -> None:
    """validate_body hands the validated model to the view as ``body``."""
    response = signup_client.post("/signup", json={"email": "a@b", "password": PASSWORD * 2, "plan": "free"})
    assert response.status_code == 200
    assert response.get_json() == {"email": "a@b", "plan": "free", "pw_len": len(PASSWORD) * 2}


def test_valid_form_body_is_accepted(signup_client: FlaskClient) -> None:
    """Form fields validate like JSON."""
    response = signup_client.post("/signup", data={"email": "a@b", "password": PASSWORD * 2, "plan": "premium"})
    assert response.status_code == 200
    assert response.get_json()["plan"] == "premium"


def test_every_invalid_field_is_listed(signup_client: FlaskClient) -> None:
    """A body with several bad fields gets one 422 listing each of them."""
    response = signup_client.post("/signup", json={"email": "nope", "password": "short", "plan": "gold"})
    body = _problem(response)
    assert response.status_code == 422
    assert sorted(e["field"] for e in body["errors"]) == ["email", "password", "plan"]
    assert all(set(e) == {"field", "message", "type"} for e in body["errors"])


def test_a_missing_field_is_listed(signup_client: FlaskClient) -> None:
    """Missing fields are reported with type 'missing'."""
    body = _problem(signup_client.post("/signup", json={"email": "a@b", "password": PASSWORD * 2}))
    assert body["errors"] == [{"field": "plan", "message": "Field required", "type": "missing"}]


def test_passwords_are_never_echoed_in_errors(signup_client: FlaskClient) -> None:
    """The rejected password appears nowhere in the 422 response."""
    response = signup_client.post("/signup", json={"email": "x", "password": PASSWORD, "plan": 3})
    assert response.status_code == 422
    assert PASSWORD not in response.get_data(as_text=True)


@pytest.mark.parametrize(
    ("data", "reason"),
    [(b'{"email": ', "not valid JSON"), (b"\xff\xfe{}", "not valid UTF-8"),
     (b"   ", "empty"), (b'{"n": NaN}', "not valid JSON")],
)
def test_malformed_json_is_400(signup_client: FlaskClient, data: bytes, reason: str) -> None:
    """Unparseable JSON (syntax, encoding, empty, NaN) is a 400 malformed-request problem."""
    response = signup_client.post("/signup", data=data, content_type="application/json")
    body = _problem(response)
    assert response.status_code == 400
    assert body["type"].endswith("/malformed-request")
    assert reason in body["detail"]


def test_deeply_nested_json_is_400(signup_client: FlaskClient) -> None:
    """JSON nested beyond the parser's recursion limit is malformed, not a 500."""
    data = b"[" * 100_000 + b"]" * 100_000
    assert signup_client.post("/signup", data=data, content_type="application/json").status_code == 400


def test_other_content_types_are_415(signup_client: FlaskClient) -> None:
    """A body that is neither JSON nor a form is a 415 problem."""
    response = signup_client.post("/signup", data="email=a", content_type="text/plain")
    assert response.status_code == 415
    assert _problem(response)["kind"] == "validation"


def test_an_empty_body_lists_every_required_field(signup_client: FlaskClient) -> None:
    """No body at all validates as an empty object: each required field is missing."""
    body = _problem(signup_client.post("/signup"))
    assert sorted(e["field"] for e in body["errors"]) == ["email", "password", "plan"]


def test_query_is_validated(signup_client: FlaskClient) -> None:
    """validate_query passes the validated query (repeated keys become lists)."""
    response = signup_client.get("/items?page=2&tag=a&tag=b")
    assert response.get_json() == {"page": 2, "tag": ["a", "b"]}


def test_invalid_query_is_422(signup_client: FlaskClient) -> None:
    """A bad query parameter is a 422 naming it."""
    body = _problem(signup_client.get("/items?page=0"))
    assert [e["field"] for e in body["errors"]] == ["page"]


def test_validate_body_wraps_async_views() -> None:
    """An async view gets the validated model too."""
    async def view(body: Page) -> int:
        return body.page

    wrapped = validate_body(Page)(view)
    app = Flask(__name__)
    with app.test_request_context("/", method="POST", json={"page": 4}):
        assert asyncio.run(wrapped()) == 4


def test_malformed_request_pickles_and_keeps_its_reason() -> None:
    """MalformedRequest survives pickling (worker processes) with its reason."""
    exc = pickle.loads(pickle.dumps(MalformedRequest("bad")))
    assert (exc.reason, exc.errors[0]["field"]) == ("bad", "body")


def test_problem_bodies_are_valid_json_documents() -> None:
    """The body is JSON with a string detail, whatever the exception."""
    body = json.loads(_client_raising(OSError(errno.ENOSPC, "x")).get("/boom").get_data())
    assert isinstance(body["detail"], str)
