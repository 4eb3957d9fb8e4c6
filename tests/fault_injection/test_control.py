"""The HTTP control API: token and loopback checks, rules over HTTP, problem+json, the client."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient

import fault_injection as fi
from fault_injection import FAULT_HEADER, FaultPlan, Rule, network, sign
from fault_injection.control import (
    TOKEN_FILE,
    ApiError,
    AppUnreachable,
    AuthFailed,
    ControlClient,
    blueprint,
    resolve_token,
)
from tests.fault_injection.conftest import TOKEN, closed_port, make_app

BASE = "/_shockproof/faults"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
RULE = {"site": "app.*", "fault": {"kind": "network", "variant": "reset"}, "id": "down"}


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    """A loopback test client of the app, fault injection enabled."""
    fi.enable()
    return app.test_client()


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN},
                                     {"Authorization": f"Basic {TOKEN}"}])
@pytest.mark.parametrize(("method", "path"), [("GET", ""), ("POST", "/"), ("DELETE", "/x"),
                                              ("POST", "/halt"), ("GET", "/status")])
def test_every_route_needs_the_bearer_token(client: FlaskClient, headers: dict[str, str],
                                            method: str, path: str) -> None:
    """Without the right bearer token every route answers 401 problem+json."""
    response = client.open(BASE + path, method=method, headers=headers, json=RULE)
    assert response.status_code == 401
    assert response.mimetype == "application/problem+json"
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert TOKEN not in response.get_data(as_text=True)


def test_non_loopback_clients_get_403_even_with_the_token(client: FlaskClient) -> None:
    """A request from 10.0.0.5 is refused before the token is looked at."""
    response = client.get(BASE + "/status", headers=AUTH, environ_base={"REMOTE_ADDR": "10.0.0.5"})
    assert response.status_code == 403
    assert response.json is not None
    assert response.json["type"].endswith("not-loopback")


def test_ipv6_loopback_is_accepted(client: FlaskClient) -> None:
    """::1 and ::ffff:127.0.0.1 are loopback too."""
    for addr in ("::1", "::ffff:127.0.0.1"):
        assert client.get(BASE + "/status", headers=AUTH, environ_base={"REMOTE_ADDR": addr}).status_code == 200


def test_allow_remote_opts_out_of_the_loopback_check(tmp_path: Path) -> None:
    """blueprint(allow_remote=True) answers non-loopback clients that hold the token."""
    app = make_app(tmp_path, allow_remote=True)
    response = app.test_client().get(BASE + "/status", headers=AUTH, environ_base={"REMOTE_ADDR": "10.0.0.5"})
    assert response.status_code == 200


def test_post_arms_a_rule_that_the_app_then_hits(client: FlaskClient) -> None:
    """POST a rule, and the app's site raises it; GET lists it with its counters."""
    response = client.post(BASE + "/", headers=AUTH, json=RULE)
    assert response.status_code == 201
    assert response.json is not None
    assert response.json["rules"][0]["id"] == "down"
    assert client.get("/work").json == {"faulted": True, "rule": "down"}
    listed = client.get(BASE, headers=AUTH).json
    assert listed is not None
    assert [(r["id"], r["stats"]["hits"]) for r in listed["rules"]] == [("down", 1)]
    assert listed["recent"][-1]["site"] == "app.work"


def test_posted_rules_get_the_default_ttl_unless_they_say(client: FlaskClient) -> None:
    """Without a ttl a posted rule expires after default_ttl; an explicit null keeps it."""
    client.post(BASE + "/", headers=AUTH, json=RULE)
    client.post(BASE + "/", headers=AUTH, json={**RULE, "id": "kept", "ttl": None})
    assert [r.ttl for r in fi.active_plan().rules] == [900.0, None]


def test_post_a_whole_plan_arms_every_rule_with_its_seed(client: FlaskClient) -> None:
    """A plan body arms all its rules, using its seed."""
    plan = FaultPlan(77, (Rule("a", network(), id="a"), Rule("b", network(), id="b")))
    response = client.post(BASE + "/", headers=AUTH, json=plan.to_dict())
    assert response.status_code == 201
    assert [(s.rule.id, s.seed) for s in fi.stats()] == [("a", 77), ("b", 77)]


def test_an_invalid_rule_is_422_problem_json_naming_the_field(client: FlaskClient) -> None:
    """A bad variant comes back as 422 with errors [{field, message}]."""
    bad = {**RULE, "fault": {"kind": "network", "variant": "sideways"}}
    response = client.post(BASE + "/", headers=AUTH, json=bad)
    assert response.status_code == 422
    assert response.mimetype == "application/problem+json"
    assert response.json is not None
    assert response.json["errors"][0]["field"] == "fault.variant"


def test_a_body_that_is_not_json_is_400(client: FlaskClient) -> None:
    """A non-JSON body is refused with a problem naming the body."""
    response = client.post(BASE + "/", headers=AUTH, data="site=a")
    assert response.status_code == 400
    assert response.json is not None
    assert response.json["errors"][0]["field"] == "(body)"


def test_an_id_already_armed_is_409(client: FlaskClient) -> None:
    """Posting a rule id twice is a conflict naming the id."""
    client.post(BASE + "/", headers=AUTH, json=RULE)
    response = client.post(BASE + "/", headers=AUTH, json=RULE)
    assert response.status_code == 409
    assert response.json is not None
    assert response.json["errors"][0]["field"] == "id"


def test_rules_are_refused_while_fault_injection_is_off(app: Flask) -> None:
    """With fault injection off, POST answers 409 and nothing is armed."""
    response = app.test_client().post(BASE + "/", headers=AUTH, json=RULE)
    assert response.status_code == 409
    assert fi.active_plan().rules == ()


def test_delete_disarms_a_rule_and_404s_an_unknown_one(client: FlaskClient) -> None:
    """DELETE /<id> answers 204, then 404 once the rule is gone."""
    client.post(BASE + "/", headers=AUTH, json=RULE)
    assert client.delete(BASE + "/down", headers=AUTH).status_code == 204
    assert client.delete(BASE + "/down", headers=AUTH).status_code == 404
    assert client.get("/work").json == {"faulted": False, "context": False}


def test_halt_clears_every_rule(client: FlaskClient) -> None:
    """POST /halt disarms everything and says how many rules it cleared."""
    client.post(BASE + "/", headers=AUTH, json=RULE)
    response = client.post(BASE + "/halt", headers=AUTH)
    assert response.json is not None
    assert response.json["halted"] == 1
    assert fi.active_plan().rules == ()


def test_status_and_plan_routes(client: FlaskClient) -> None:
    """GET /status reports the switch; GET /plan returns the armed rules in the plan format."""
    client.post(BASE + "/", headers=AUTH, json={**RULE, "ttl": None})
    status = client.get(BASE + "/status", headers=AUTH).json
    assert status is not None
    assert status["enabled"]
    assert status["active_rules"] == 1
    assert status["fault_header"] == FAULT_HEADER
    plan = client.get(BASE + "/plan", headers=AUTH).json
    assert plan is not None
    assert fi.parse_plan(plan).rules[0].id == "down"


def test_only_flagged_rules_hit_requests_with_an_authorised_header(client: FlaskClient) -> None:
    """The app honours a signed fault header; unsigned or foreign ones are ignored."""
    client.post(BASE + "/", headers=AUTH, json={**RULE, "only_flagged": True})
    assert client.get("/work").json == {"faulted": False, "context": False}
    assert client.get("/work", headers={FAULT_HEADER: sign("other", "*")}).json == \
        {"faulted": False, "context": False}
    assert client.get("/work", headers={FAULT_HEADER: sign(TOKEN, "down")}).json == \
        {"faulted": True, "rule": "down"}
    assert fi.fault_context() is None  # the request's context did not leak


def test_a_generated_token_is_written_owner_only(tmp_path: Path) -> None:
    """Without a configured token one is generated, announced and written with mode 0600."""
    said: list[str] = []
    token = resolve_token(None, tmp_path, said.append)
    path = tmp_path / TOKEN_FILE
    assert path.read_text().strip() == token
    assert len(token) >= 32
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert str(path) in said[0]


def test_a_configured_token_is_used_as_given(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """token= wins; else $SHOCKPROOF_FAULTS_TOKEN; neither writes a file."""
    monkeypatch.setenv("SHOCKPROOF_FAULTS_TOKEN", "from-env")
    assert resolve_token("given", tmp_path) == "given"
    assert resolve_token(None, tmp_path) == "from-env"
    assert not (tmp_path / TOKEN_FILE).exists()
    blueprint(data_dir=tmp_path, announce=None)  # builds without writing either


# -- the client, over real HTTP ------------------------------------------------------------------


def test_client_drives_a_running_app(served: str) -> None:
    """ControlClient adds, lists, removes and halts over real HTTP."""
    fi.enable()
    client = ControlClient(served, TOKEN)
    assert [r["id"] for r in client.add(Rule("x", network(), id="x"))] == ["x"]
    client.add_plan(FaultPlan(5, (Rule("y", network(), id="y"),)))
    assert [r["id"] for r in client.rules()] == ["x", "y"]
    assert [r.id for r in client.plan().rules] == ["x", "y"]
    client.remove("x")
    assert client.status()["active_rules"] == 1
    assert client.halt() == 1
    assert client.fault_header("y") == {FAULT_HEADER: sign(TOKEN, "y")}


def test_client_reports_a_wrong_token_as_auth_failed(served: str) -> None:
    """A 401 becomes AuthFailed, and its message never contains the token."""
    with pytest.raises(AuthFailed) as info:
        ControlClient(served, "not-the-token").status()
    assert info.value.status == 401
    assert "not-the-token" not in str(info.value)


def test_client_reports_api_problems_with_their_fields(served: str) -> None:
    """A 422 becomes ApiError carrying the problem's field errors."""
    fi.enable()
    with pytest.raises(ApiError) as info:
        ControlClient(served, TOKEN).add({"site": "a", "fault": {"kind": "io", "errno": "EWHAT"}})
    assert info.value.status == 422
    assert info.value.errors[0]["field"] == "fault.errno"


def test_client_reports_an_unreachable_app() -> None:
    """Nothing listening becomes AppUnreachable."""
    with pytest.raises(AppUnreachable, match="cannot reach"):
        ControlClient(f"http://127.0.0.1:{closed_port()}", TOKEN, timeout=2).status()


def test_client_says_when_the_api_is_not_mounted(served: str) -> None:
    """A 404 without a problem body means the API is not at that path."""
    with pytest.raises(ApiError, match="is it mounted"):
        ControlClient(served, TOKEN, prefix="/elsewhere").status()


def test_client_needs_a_token_and_an_http_url() -> None:
    """Bad constructor arguments are ValueErrors, before any request."""
    with pytest.raises(ValueError, match="token"):
        ControlClient("http://127.0.0.1:8000")
    with pytest.raises(ValueError, match="url"):
        ControlClient("127.0.0.1:8000", "t")
