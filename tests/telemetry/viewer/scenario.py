"""A trace store filled by real guarded calls and real requests, for the viewer's tests.

A small Flask app wired with ``telemetry.flask.Shockproof`` serves five routes,
each failing in its own way through real ``resilience`` guards:

* ``GET /catalog``  network: a fault injected on the first attempt (fault_injection),
  then the upstream refuses twice more; three attempts, two retries, 502. The
  exception message carries a ``<script>`` payload, the request span an attribute
  with one, and a log line a field with one (the viewer must show them as text);
* ``GET /home``     network, handled: the circuit is open, the fallback answers (200);
* ``GET /slow``     network: the deadline runs out between retries (502: the last error);
* ``POST /upload``  logic: ``ZeroDivisionError`` (500);
* ``POST /signup``  validation: a form without an email (422);
* ``PUT /progress`` io: ``PermissionError`` saving progress (503).
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flask import Flask
from opentelemetry import trace
from pydantic import BaseModel

import fault_injection
import telemetry
from resilience import Circuit, Retry, guard
from resilience.flask import validate_body
from resilience.testing import fake_clock, isolated, waits_off
from telemetry.flask import Shockproof

#: Planted in an exception message, a span attribute and a log field: it must never run.
XSS_MESSAGE = "upstream <script>window.__pwned='message'</script> refused"
XSS_ATTRIBUTE = "<img src=x onerror=\"window.__pwned='attribute'\"><script>window.__pwned=1</script>"
XSS_LOG = "</span><script>window.__pwned='log'</script>"
CIRCUIT = "viewer-test.recommendations"
ROUTES = {"network": ("GET", "/catalog"), "logic": ("POST", "/upload"),
          "validation": ("POST", "/signup"), "io": ("PUT", "/progress")}


class Signup(BaseModel):
    email: str
    name: str


@dataclass(frozen=True)
class Scenario:
    """The store and the trace id of each request made."""

    store: Path
    traces: dict[str, str]


def _app() -> Flask:
    app = Flask("viewer-scenario")
    Shockproof(app)
    recommendations = Circuit(CIRCUIT, consecutive=1, open_for=600)
    log = telemetry.get_logger("scenario")

    @guard("catalog.fetch", retry=Retry(attempts=3))
    def fetch_catalog() -> list[str]:
        raise ConnectionRefusedError(XSS_MESSAGE)

    @guard("recommendations.fetch", circuit=recommendations, fallback=lambda exc: ["cached"])
    def fetch_recommendations() -> list[str]:
        raise ConnectionResetError("recommendations reset the connection")

    @guard("upload.analyse")
    def analyse(size: int) -> float:
        return 100 / size

    @guard("progress.save", retry=Retry(attempts=2))
    def save_progress() -> None:
        raise PermissionError(13, "Permission denied", "progress.json")

    @app.get("/catalog")
    def catalog() -> Any:
        trace.get_current_span().set_attribute("scenario.note", XSS_ATTRIBUTE)
        log.warning("catalog.requested", note=XSS_LOG)
        return {"items": fetch_catalog()}

    @app.get("/home")
    def home() -> Any:
        return {"recommended": fetch_recommendations()}

    @app.get("/slow")
    def slow() -> Any:
        with fake_clock() as clock:

            @guard("search.query", retry=Retry(attempts=5), deadline=1.0)
            def query() -> list[str]:
                clock.advance(0.6)
                raise TimeoutError("search timed out")

            return {"hits": query()}

    @app.post("/upload")
    def upload() -> Any:
        return {"score": analyse(0)}

    @app.post("/signup")
    @validate_body(Signup)
    def signup(body: Signup) -> Any:
        return {"welcome": body.name}

    @app.put("/progress")
    def progress() -> Any:
        save_progress()
        return {"saved": True}

    return app


def build(store: Path) -> Scenario:
    """Run every request once (``/home`` twice: closed, then open) and flush the store."""
    traces: dict[str, str] = {}
    plan = fault_injection.FaultPlan(seed=7, rules=(
        fault_injection.Rule("catalog.fetch", fault_injection.network("refused"), first=1,
                             id="catalog-refused"),))
    was_enabled = fault_injection.is_enabled()
    with isolated(), waits_off():
        telemetry.configure(service_name="viewer-scenario", store=str(store), log_stream=io.StringIO())
        try:
            fault_injection.enable()
            client = _app().test_client()
            with fault_injection.installed(plan):
                traces["network"] = _call(client, "GET", "/catalog", 502)
            traces["home-open"] = _call(client, "GET", "/home", 200)
            traces["home"] = _call(client, "GET", "/home", 200)
            traces["deadline"] = _call(client, "GET", "/slow", 502)
            traces["logic"] = _call(client, "POST", "/upload", 500)
            traces["validation"] = _call(client, "POST", "/signup", 422, json={"name": "Ada"})
            traces["io"] = _call(client, "PUT", "/progress", 503)
            assert telemetry.flush(10)
        finally:
            telemetry.reset()
            if not was_enabled:
                fault_injection.disable()
    return Scenario(store, traces)


def _call(client: Any, method: str, path: str, status: int, **kw: Any) -> str:
    response = client.open(path, method=method, **kw)
    assert response.status_code == status, (path, response.status_code, response.get_data(True))
    trace_id: str = response.headers["X-Trace-Id"]
    return trace_id
