"""PII canaries across the demo: planted secrets never reach telemetry or an error body.

Emails, passwords, tokens, API keys, cookies, Authorization headers and card numbers
are planted everywhere a client can put them (JSON and form bodies, multipart fields
and filenames, headers, cookies, query strings, URL paths) and where the server can
carry them (messages of injected exceptions), through every path of the demo: signup,
uploads with a logic error, progress with an I/O error, the catalog with the upstream
down for real, the fault control API. Then the store file (with its WAL), the log
output, the Sentry envelopes and every error body are scanned byte for byte.

A control run with redaction switched off (``RedactionRules(defaults=False)``) proves
the scan sees the planted values in each telemetry sink, so a pass is not vacuous.
Error bodies have no redaction to switch off: their control is that the scan finds
the path canary in the one member that echoes the request path (``instance``).
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

import fault_injection
import telemetry
from demo_app import media
from fault_injection import FaultPlan, Rule, logic
from fault_injection import io as io_fault
from fault_injection.proxy import ChaosProxy, down
from resilience.testing import waits_off
from telemetry import RedactionRules
from tests.telemetry.conftest import Recorder

from .support import close_demo, make_demo, upload

EMAIL = "canary.viewer+q7@example.org"
PASSWORD = "Canary-Pa55-w0rd-913x"
SHORT_PASSWORD = "cnry-pw1"
TOKEN = "cnrytok5f8e7d6c5b4a3"
API_KEY = "cnrykey0a1b2c3d4e5f6"
COOKIE = "cnrysess77aa99bb"
CARD = "4012 8888 8888 1881"  # a Luhn-valid test card number
CANARIES = (EMAIL, PASSWORD, SHORT_PASSWORD, TOKEN, API_KEY, COOKIE, CARD, CARD.replace(" ", ""))
HEADERS = {"Authorization": f"Bearer {TOKEN}", "Cookie": f"session={COOKIE}; shockproof_user=bob",
           "X-Api-Key": API_KEY, "User-Agent": f"canary-agent token={TOKEN}"}
QUERY = f"?token={TOKEN}&card={CARD.replace(' ', '')}&email={EMAIL}"
SECRET_MESSAGE = f"failed for {EMAIL} password={PASSWORD} card {CARD} Authorization: Bearer {TOKEN}"


@dataclass
class Run:
    """What one run produced: every error response, and the bytes each sink received."""

    errors: list[TestResponse] = field(default_factory=list)
    sinks: dict[str, bytes] = field(default_factory=dict)


def hits(data: bytes) -> list[str]:
    """The canaries found in ``data``."""
    return [c for c in CANARIES if c.encode() in data]


def _body_without_instance(response: TestResponse) -> bytes:
    body = json.loads(response.get_data())
    return json.dumps({k: v for k, v in body.items() if k != "instance"}).encode()


class Traffic:
    """Every path of the demo, with canaries planted in everything a client can send."""

    def __init__(self, client: FlaskClient, proxy: ChaosProxy, fault_token: str, run: Run) -> None:
        self.client, self.proxy, self.fault_token, self.run = client, proxy, fault_token, run

    def send(self, method: str, path: str, **kwargs: Any) -> TestResponse:
        response = self.client.open(path + QUERY, method=method, headers={**HEADERS, **kwargs.pop("headers", {})},
                                    **kwargs)
        return self._keep(response)

    def _keep(self, response: TestResponse) -> TestResponse:
        response.get_data()
        response.close()
        if response.status_code >= 400:
            self.run.errors.append(response)
        return response

    def all(self) -> None:
        self.signups()
        self.progress()
        self.uploads()
        self.catalog()
        self.controls()

    def signups(self) -> None:
        body = {"email": EMAIL, "display_name": "Canary", "password": PASSWORD, "plan": "free",
                "card": CARD, "api_key": API_KEY}
        assert self.send("POST", "/api/signup", json=body).status_code == 201
        assert self.send("POST", "/api/signup", json=body).status_code == 409
        short = {**body, "email": "other@example.com", "password": SHORT_PASSWORD}
        assert self.send("POST", "/api/signup", json=short).status_code == 422
        form = {**body, "email": f"{EMAIL}\r\n", "display_name": f"{EMAIL}\x00"}
        assert self.send("POST", "/api/signup", data=form).status_code == 422
        assert self.send("POST", "/api/signup", data=f'{{"password": "{PASSWORD}", "email": ',
                         content_type="application/json").status_code == 400

    def progress(self) -> None:
        assert self.send("PUT", "/api/progress/1", json={"position_s": 3},
                         headers={"X-User": EMAIL}).status_code == 422
        assert self.send("PUT", "/api/progress/1", json={"position_s": CARD, "password": PASSWORD},
                         headers={"X-User": "bob"}).status_code == 422
        with fault_injection.installed(FaultPlan(7, (Rule("progress.save", io_fault("ENOSPC", SECRET_MESSAGE)),))):
            assert self.send("PUT", "/api/progress/1", json={"position_s": 3},
                             headers={"X-User": "bob"}).status_code == 507
        assert self.send("GET", f"/api/progress/{EMAIL}").status_code == 404

    def uploads(self) -> None:
        extra = {"password": PASSWORD, "email": EMAIL, "note": CARD}
        with fault_injection.installed(FaultPlan(7, (Rule("upload.analyse", logic(message=SECRET_MESSAGE)),))):
            response = upload(self.client, media.sample_wav(1), 3, name=f"{EMAIL}.wav", extra=extra,
                              headers=HEADERS)
        assert self._keep(response).status_code == 500
        response = upload(self.client, b"", 3, name=f"{EMAIL}.wav", extra=extra, headers=HEADERS)
        assert self._keep(response).status_code == 422

    def catalog(self) -> None:
        assert self.send("GET", "/api/catalog").status_code == 200
        self.proxy.add_toxic(down("refuse"))
        try:
            assert self.send("GET", "/api/titles/2").status_code == 503
            assert self.send("GET", "/api/catalog").get_json()["degraded"] is True
        finally:
            self.proxy.clear_toxics()
        assert self.send("GET", f"/api/titles/{EMAIL}").status_code == 404

    def controls(self) -> None:
        assert self.send("GET", "/_shockproof/faults/status").status_code == 401
        assert self.send("POST", "/_shockproof/faults/", json={"site": EMAIL, "fault": {"kind": PASSWORD}},
                         headers={"Authorization": f"Bearer {self.fault_token}"}).status_code == 422


@pytest.fixture
def run_demo(tmp_path: Path, chaos_proxy: ChaosProxy, recorder: Recorder,
             capfd: pytest.CaptureFixture[str]) -> Iterator[Any]:
    """Run the traffic with telemetry writing to a store, a log stream and Sentry (loopback)."""
    def run(redact: RedactionRules | None) -> Run:
        stream = io.StringIO()
        store_dir = tmp_path / "store"
        telemetry.configure(service_name="canary", store=store_dir / "telemetry.db", log_stream=stream,
                            sentry_dsn=f"http://publickey@127.0.0.1:{recorder.port}/1", redact=redact)
        host, port = chaos_proxy.listen
        app = make_demo(tmp_path / "data", f"http://{host}:{port}", fault_control=True)
        result = Run()
        with waits_off():
            Traffic(app.test_client(), chaos_proxy, (tmp_path / "data" / "faults.token").read_text().strip(),
                    result).all()
        close_demo(app)
        assert telemetry.flush(10.0)
        recorder.wait_for("/envelope/", count=3)
        out, err = capfd.readouterr()
        result.sinks = {
            "store": b"".join(p.read_bytes() for p in sorted(store_dir.iterdir())),
            "logs": stream.getvalue().encode() + out.encode() + err.encode(),
            "sentry": b"".join(recorder.bodies("/envelope/")),
        }
        return result

    yield run
    telemetry.reset()


def test_no_canary_reaches_the_store_logs_or_sentry(run_demo: Any) -> None:
    """Zero planted values in the store file and its WAL, the log output and the Sentry envelopes."""
    run = run_demo(None)
    assert {sink: hits(data) for sink, data in run.sinks.items()} == {"store": [], "logs": [], "sentry": []}
    assert all(b"[REDACTED]" in data for data in run.sinks.values())


def test_no_canary_is_in_an_error_body(run_demo: Any) -> None:
    """Every error response (all kinds, 4xx and 5xx) is free of planted values."""
    run = run_demo(None)
    assert {r.status_code for r in run.errors} >= {400, 401, 404, 409, 422, 500, 503, 507}
    assert [(r.status_code, hits(_body_without_instance(r))) for r in run.errors
            if hits(_body_without_instance(r))] == []


def test_the_sinks_recorded_the_run(run_demo: Any) -> None:
    """Redaction on, the sinks still hold the run: traces with kinds, the 5xx errors in Sentry."""
    run = run_demo(None)
    for kind in (b'"logic"', b'"io"', b'"network"', b'"validation"'):
        assert kind in run.sinks["logs"], kind
    assert b"ZeroDivisionError" in run.sinks["sentry"]
    assert b"ZeroDivisionError" in run.sinks["store"]


@pytest.mark.parametrize("sink", ["store", "logs", "sentry"])
def test_control_without_redaction_the_canaries_arrive(run_demo: Any, sink: str) -> None:
    """With the default redaction rules off, each sink does receive planted values."""
    run = run_demo(RedactionRules(defaults=False))
    assert EMAIL in hits(run.sinks[sink])


def test_control_the_body_scan_sees_an_echoed_path(run_demo: Any) -> None:
    """The one member that echoes the request (``instance``) carries the path canary: the scan sees it."""
    run = run_demo(None)
    echoed = [r for r in run.errors if hits(r.get_data())]
    assert echoed
    assert all(EMAIL in json.loads(r.get_data())["instance"] for r in echoed)
