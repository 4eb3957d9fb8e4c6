"""Canaries: planted secrets pushed through every path of a real Flask app never reach telemetry.

Request bodies, headers, query strings, URL paths, exception messages and log
fields carry the planted values; afterwards the store file (and its WAL), the
log output, the Sentry envelopes and the OTLP exports are scanned byte for byte.
A control run with redaction switched off proves each sink did receive them.
"""

from __future__ import annotations

import io
from pathlib import Path

import pydantic
import pytest
from flask import Flask

import telemetry
from resilience import Retry, guard
from resilience.flask import validate_body
from resilience.testing import waits_off
from telemetry import RedactionRules
from telemetry.flask import Shockproof
from telemetry.query import Query

from .conftest import Recorder

EMAIL = "canary.person+x7@example.org"
PASSWORD = "Canary-Pa55-w0rd-913"
TOKEN = "cnrytok5f8e7d6c5b4a3"
API_KEY = "cnrykey0a1b2c3d4e5f6"
COOKIE = "cnrysess77aa99bb"
CARD = "4012 8888 8888 1881"  # a Luhn-valid test card number
CANARIES = (EMAIL, PASSWORD, TOKEN, API_KEY, COOKIE, CARD, CARD.replace(" ", ""))
HEADERS = {"Authorization": f"Bearer {TOKEN}", "Cookie": f"session={COOKIE}", "X-Api-Key": API_KEY,
           "User-Agent": f"canary-agent token={TOKEN}"}


class Signup(pydantic.BaseModel):
    email: str
    password: str
    card: str


def make_app() -> Flask:
    """A Flask app wired with Shockproof whose routes leak everything they are given."""
    app = Flask("canary")
    Shockproof(app)
    log = telemetry.get_logger("canary")

    @app.post("/signup")
    @validate_body(Signup)
    def signup(body: Signup) -> str:
        log.info("signup.received", email=body.email, password=body.password, card=body.card,
                 note=f"user {body.email} paying with {body.card}", api_key=API_KEY)
        raise RuntimeError(f"signup failed for {body.email} password={body.password} "
                           f"card {body.card} token={TOKEN}")

    @app.get("/users/<email>")
    def user(email: str) -> dict[str, str]:
        def fetch() -> str:
            raise ConnectionError(f"upstream refused {email} (Authorization: Bearer {TOKEN})")

        profile = guard("profile.fetch", retry=Retry(attempts=2), fallback=lambda exc: "cached")(fetch)
        return {"profile": profile()}

    return app


def exercise(app: Flask) -> None:
    """Push every canary through every path."""
    client = app.test_client()
    with waits_off():
        body = {"email": EMAIL, "password": PASSWORD, "card": CARD}
        assert client.post(f"/signup?api_key={API_KEY}", json=body, headers=HEADERS).status_code == 500
        assert client.post("/signup", data={**body, "card": ""} | {"password": PASSWORD},
                           headers=HEADERS).status_code == 500
        assert client.post("/signup", json={"email": EMAIL, "password": PASSWORD},
                           headers=HEADERS).status_code == 422
        assert client.get(f"/users/{EMAIL}?token={TOKEN}", headers=HEADERS).get_json() == {
            "profile": "cached"}


def sinks(tmp_path: Path, recorder: Recorder, log_stream: io.StringIO) -> dict[str, bytes]:
    """Everything each sink received, as bytes."""
    assert telemetry.flush(10.0)
    recorder.wait_for("/envelope/")
    recorder.wait_for("/v1/traces")
    store_files = sorted((tmp_path / "store").iterdir())
    return {
        "store": b"".join(p.read_bytes() for p in store_files),
        "logs": log_stream.getvalue().encode(),
        "sentry": b"".join(recorder.bodies("/envelope/")),
        "otlp": b"".join(recorder.bodies("/v1/traces") + recorder.bodies("/v1/logs")),
    }


def hits(received: dict[str, bytes]) -> dict[str, list[str]]:
    return {sink: [c for c in CANARIES if c.encode() in data] for sink, data in received.items()}


def configure(tmp_path: Path, recorder: Recorder, redact: RedactionRules | None) -> io.StringIO:
    stream = io.StringIO()
    telemetry.configure(service_name="canary", store=tmp_path / "store" / "telemetry.db",
                        log_stream=stream, sentry_dsn=f"http://publickey@127.0.0.1:{recorder.port}/1",
                        otlp_endpoint=recorder.url, redact=redact)
    return stream


def test_no_canary_reaches_any_sink(tmp_path: Path, recorder: Recorder) -> None:
    """Zero hits in the store file, the log output, the Sentry envelopes and the OTLP exports."""
    stream = configure(tmp_path, recorder, None)
    exercise(make_app())
    received = sinks(tmp_path, recorder, stream)
    assert hits(received) == {"store": [], "logs": [], "sentry": [], "otlp": []}
    assert all(b"[REDACTED]" in data for data in received.values())


def test_the_sinks_did_receive_the_data(tmp_path: Path, recorder: Recorder) -> None:
    """Redaction on: the store still holds the requests' traces, errors and log lines."""
    configure(tmp_path, recorder, None)
    exercise(make_app())
    assert telemetry.flush(10.0)
    with Query(tmp_path / "store" / "telemetry.db") as query:
        traces = query.traces()
        groups = query.error_groups()
    assert len(traces) == 4
    assert {g.kind for g in groups} >= {"logic"}


@pytest.mark.parametrize("sink", ["store", "logs", "sentry", "otlp"])
def test_control_without_redaction_the_canaries_do_arrive(
        tmp_path: Path, recorder: Recorder, sink: str) -> None:
    """With the default rules switched off, each sink receives planted values: the scan can see."""
    stream = configure(tmp_path, recorder, RedactionRules(defaults=False))
    exercise(make_app())
    assert EMAIL in hits(sinks(tmp_path, recorder, stream))[sink]
