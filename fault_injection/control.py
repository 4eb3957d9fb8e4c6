"""The HTTP control API (a Flask blueprint) and its client.

Mount it (the demo app does, at ``/_shockproof/faults``)::

    from fault_injection import control
    app.register_blueprint(control.blueprint(data_dir=".shockproof"))

======  ==================  ==============================================================
GET     ``/``               the armed rules with their counters, and the recent injections
POST    ``/``               arm a rule, or several: the body is a rule or a plan, in the
                            plan file format (``ttl`` defaults to ``default_ttl``)
DELETE  ``/<rule_id>``      disarm one rule
POST    ``/halt``           disarm everything, now
GET     ``/status``         the switch and the counters
GET     ``/plan``           the armed rules as a plan file
======  ==================  ==============================================================

Safety: every route needs ``Authorization: Bearer <token>`` (401 otherwise, compared
in constant time); clients that are not on loopback get 403 unless
``allow_remote=True``. The token comes from ``token=``, else ``$SHOCKPROOF_FAULTS_TOKEN``,
else it is generated, announced on stderr and written to ``<data_dir>/faults.token``
(mode 0600) for the CLI's ``--token-file``. Errors are RFC 9457 problem+json naming
the field at fault. Mounting the blueprint also makes the whole app honour the
authorised fault header (see :mod:`fault_injection._context`) for ``only_flagged`` rules.

:class:`ControlClient` speaks to it (stdlib ``urllib`` only); the CLI and experiment
actions use it.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import os
import secrets
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._context import BAGGAGE_HEADER, FAULT_HEADER, activate, deactivate, extract, sign
from ._io import parse_plan_file, parse_rule
from ._plan import FaultInjectionError, FaultPlan, PlanError, PlanFieldError, Rule
from ._sites import (
    FaultsDisabled,
    RuleConflict,
    active_plan,
    add_rules,
    halt,
    recent,
    remove_rule,
    stats,
    status,
)

if TYPE_CHECKING:
    from flask import Blueprint, Response

DEFAULT_PREFIX = "/_shockproof/faults"
DEFAULT_DATA_DIR = ".shockproof"
TOKEN_FILE = "faults.token"
ENV_TOKEN = "SHOCKPROOF_FAULTS_TOKEN"
PROBLEM = "application/problem+json"
_PROBLEM_BASE = "https://shockproof.invalid/problems/"


# -- the token -------------------------------------------------------------------------------


def write_token(path: Path, token: str) -> Path:
    """Write ``token`` to ``path`` readable by the owner only (0600), atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, (token + "\n").encode())
    finally:
        os.close(fd)
    os.replace(tmp, path)
    return path


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def resolve_token(token: str | None = None, data_dir: str | Path = DEFAULT_DATA_DIR,
                  announce: Callable[[str], None] | None = _stderr) -> str:
    """The control token: ``token``, else ``$SHOCKPROOF_FAULTS_TOKEN``, else a new one that is
    written to ``<data_dir>/faults.token`` (0600) and announced."""
    chosen = token or os.environ.get(ENV_TOKEN, "").strip()
    if chosen:
        return chosen
    chosen = secrets.token_urlsafe(32)
    path = write_token(Path(data_dir) / TOKEN_FILE, chosen)
    if announce is not None:
        announce(f"shockproof: fault control token {chosen} (also in {path}, mode 0600; "
                 f"use: shockproof-faults --token-file {path} ...)")
    return chosen


# -- the blueprint ---------------------------------------------------------------------------------


def problem(status: int, title: str, detail: str, *, slug: str = "",
            errors: list[PlanFieldError] | None = None) -> Response:
    """An RFC 9457 problem+json response."""
    from flask import Response

    body: dict[str, Any] = {"type": _PROBLEM_BASE + (slug or str(status)), "title": title,
                            "status": status, "detail": detail}
    if errors:
        body["errors"] = errors
    return Response(json.dumps(body), status=status, mimetype=PROBLEM)


def _is_loopback(addr: str | None) -> bool:
    if not addr:
        return False
    try:
        ip = ipaddress.ip_address(addr.split("%", 1)[0])
    except ValueError:
        return False
    mapped = getattr(ip, "ipv4_mapped", None)
    return bool(ip.is_loopback or (mapped is not None and mapped.is_loopback))


def _bearer(header: str) -> str:
    scheme, _, value = header.partition(" ")
    return value.strip() if scheme.lower() == "bearer" else ""


def _with_default_ttl(body: Mapping[str, Any], default_ttl: float | None) -> dict[str, Any]:
    out = dict(body)
    if default_ttl is not None and "ttl" not in out:
        out["ttl"] = default_ttl
    return out


def parse_body(body: Any, default_ttl: float | None = None) -> tuple[tuple[Rule, ...], int | None]:
    """The rules a POST body asks for (a rule, or a plan with ``rules``) and the plan's seed."""
    if not isinstance(body, dict):
        raise PlanError.one("(body)", "must be a JSON object: a rule, or a plan with rules")
    if "rules" in body:
        rules = body["rules"]
        doc = {**body, "rules": [_with_default_ttl(r, default_ttl) if isinstance(r, dict) else r
                                 for r in rules]} if isinstance(rules, list) else body
        plan = parse_plan_file(doc).plan
        return plan.rules, (plan.seed if "seed" in body else None)
    return (parse_rule(_with_default_ttl(body, default_ttl)),), None


def blueprint(*, token: str | None = None, data_dir: str | Path = DEFAULT_DATA_DIR,
              allow_remote: bool = False, default_ttl: float | None = 900.0,
              url_prefix: str = DEFAULT_PREFIX, name: str = "shockproof_faults",
              announce: Callable[[str], None] | None = _stderr) -> Blueprint:
    """The control API as a Flask blueprint (register it on the app; prefix included).

    ``default_ttl`` (seconds) applies to rules posted without a ``ttl``, so a forgotten
    fault expires; ``None`` keeps such rules until removed.
    """
    from flask import Blueprint, g, request

    secret = resolve_token(token, data_dir, announce)
    bp = Blueprint(name, __name__, url_prefix=url_prefix)

    @bp.before_request
    def _guard() -> Response | None:
        if not allow_remote and not _is_loopback(request.remote_addr):
            return problem(403, "Forbidden", "the fault control API only answers loopback clients",
                           slug="not-loopback")
        given = _bearer(request.headers.get("Authorization", ""))
        if not given or not hmac.compare_digest(given.encode(), secret.encode()):
            response = problem(401, "Unauthorized", "a valid bearer token is required",
                               slug="unauthorized")
            response.headers["WWW-Authenticate"] = 'Bearer realm="shockproof-faults"'
            return response
        return None

    @bp.before_app_request
    def _enter_fault_context() -> None:
        headers = request.headers
        value = headers.get(FAULT_HEADER) or headers.get(BAGGAGE_HEADER)
        if not value:
            return  # the common case: one or two dict lookups per request
        ctx = extract({FAULT_HEADER: headers.get(FAULT_HEADER, ""),
                       BAGGAGE_HEADER: headers.get(BAGGAGE_HEADER, "")}, secret)
        if ctx is not None:
            g.shockproof_fault_reset = activate(ctx)

    @bp.teardown_app_request
    def _leave_fault_context(_exc: BaseException | None) -> None:
        reset = g.pop("shockproof_fault_reset", None)
        if reset is not None:
            deactivate(reset)

    _add_routes(bp, default_ttl)
    return bp


def _add_routes(bp: Blueprint, default_ttl: float | None) -> None:
    from flask import jsonify, request

    @bp.get("/", strict_slashes=False)
    def list_rules() -> Any:
        return jsonify({**status().to_dict(), "rules": [s.to_dict() for s in stats()],
                        "recent": [{"at": i.at, "site": i.site, "rule_id": i.rule_id,
                                    "fault": i.fault, "ordinal": i.ordinal} for i in recent()]})

    @bp.post("/", strict_slashes=False)
    def add() -> Any:
        try:
            body = request.get_json(silent=True)
        except RecursionError:  # nested too deep to decode: as unreadable as invalid JSON
            body = None
        if body is None:
            return problem(400, "Bad Request", "the body must be JSON (Content-Type: application/json)",
                           slug="invalid-json", errors=[PlanFieldError(field="(body)", message="not JSON")])
        try:
            rules, seed = parse_body(body, default_ttl)
            added = add_rules(rules, seed=seed)
        except PlanError as exc:
            return problem(422, "Invalid rule", str(exc), slug="invalid-plan", errors=exc.errors)
        except RuleConflict as exc:
            return problem(409, "Conflict", str(exc), slug="rule-conflict",
                           errors=[PlanFieldError(field="id", message=str(exc))])
        except FaultsDisabled as exc:
            return problem(409, "Fault injection is off", str(exc), slug="disabled")
        ids = {r.id for r in added}
        response = jsonify({"rules": [s.to_dict() for s in stats() if s.rule.id in ids]})
        response.status_code = 201
        return response

    @bp.delete("/<rule_id>")
    def remove(rule_id: str) -> Any:
        if not remove_rule(rule_id):
            return problem(404, "Not Found", f"no active rule with id {rule_id!r}", slug="no-such-rule",
                           errors=[PlanFieldError(field="id", message="no such active rule")])
        return "", 204

    @bp.post("/halt")
    def halt_all() -> Any:
        return jsonify({"halted": halt(), **status().to_dict()})

    @bp.get("/status")
    def get_status() -> Any:
        return jsonify({**status().to_dict(), "fault_header": FAULT_HEADER})

    @bp.get("/plan")
    def get_plan() -> Any:
        return jsonify(active_plan().to_dict())


# -- the client ---------------------------------------------------------------------------------


class ControlError(FaultInjectionError):
    """Talking to a running app's control API failed."""


class AppUnreachable(ControlError):
    """Nothing answered at the URL (connection refused, timed out, bad host)."""


class AuthFailed(ControlError):
    """The app refused the token (401) or the client's address (403)."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


class ApiError(ControlError):
    """The API answered with a problem: ``status``, ``problem`` (the body) and field ``errors``."""

    def __init__(self, status: int, problem: Mapping[str, Any]) -> None:
        self.status = status
        self.problem = dict(problem)
        self.errors: list[PlanFieldError] = list(self.problem.get("errors") or [])
        detail = self.problem.get("detail") or self.problem.get("title") or f"HTTP {status}"
        super().__init__(f"{detail} (HTTP {status})")


def read_token_file(path: str | Path) -> str:
    """The token in a ``faults.token`` file (AuthFailed-free: OSError/ValueError if unusable)."""
    text = Path(path).read_text(encoding="utf-8").strip()
    if not text:
        raise ValueError(f"{path} is empty")
    return text


class ControlClient:
    """A client for the control API of a running app.

    ``url`` is the app's base URL (``http://127.0.0.1:8000``); the API prefix is added
    unless the URL already has a path. Methods raise :class:`AppUnreachable`,
    :class:`AuthFailed` or :class:`ApiError`.
    """

    def __init__(self, url: str = "http://127.0.0.1:8000", token: str | None = None, *,
                 token_file: str | Path | None = None, prefix: str = DEFAULT_PREFIX,
                 timeout: float = 5.0) -> None:
        if token is None and token_file is not None:
            token = read_token_file(token_file)
        if not token:
            raise ValueError("a token is required (token= or token_file=)")
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"url must be http(s)://host:port, got {url!r}")
        path = parts.path.rstrip("/") or prefix.rstrip("/")
        self.base = urllib.parse.urlunsplit((parts.scheme, parts.netloc, path, "", ""))
        self._token = token
        self.timeout = timeout
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def __repr__(self) -> str:
        return f"ControlClient({self.base!r})"  # never the token

    # -- calls ---------------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        """The switch and counters (``GET /status``)."""
        return dict(self._request("GET", "/status"))

    def rules(self) -> list[dict[str, Any]]:
        """The armed rules with their stats (``GET /``)."""
        return list(self._request("GET", "/")["rules"])

    def overview(self) -> dict[str, Any]:
        """Status, rules and recent injections in one answer (``GET /``)."""
        return dict(self._request("GET", "/"))

    def plan(self) -> FaultPlan:
        """The armed rules as a plan (``GET /plan``)."""
        from ._io import parse_plan

        return parse_plan(self._request("GET", "/plan"))

    def add(self, rule: Rule | Mapping[str, Any]) -> list[dict[str, Any]]:
        """Arm one rule; returns it as the API lists it."""
        body = rule.to_dict() if isinstance(rule, Rule) else dict(rule)
        return list(self._request("POST", "/", body)["rules"])

    def add_plan(self, plan: FaultPlan | Mapping[str, Any]) -> list[dict[str, Any]]:
        """Arm every rule of a plan (with its seed), all or none."""
        body = plan.to_dict() if isinstance(plan, FaultPlan) else dict(plan)
        return list(self._request("POST", "/", body)["rules"])

    def remove(self, rule_id: str) -> None:
        """Disarm one rule (ApiError 404 if it is not active)."""
        self._request("DELETE", "/" + urllib.parse.quote(rule_id, safe=""))

    def halt(self) -> int:
        """Disarm everything; returns how many rules were armed."""
        return int(self._request("POST", "/halt")["halted"])

    def fault_header(self, selector: str = "*") -> dict[str, str]:
        """The authorised fault header for requests that ``only_flagged`` rules should hit."""
        return {FAULT_HEADER: sign(self._token, selector)}

    # -- transport -----------------------------------------------------------------------------

    def _request(self, method: str, path: str, body: Any = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Authorization": f"Bearer {self._token}", "Accept": "application/json"}
        if data is not None:
            headers["Content-Type"] = "application/json"
        req = urllib.request.Request(self.base + path, data=data, headers=headers, method=method)
        try:
            with self._opener.open(req, timeout=self.timeout) as resp:
                raw = resp.read()
        except urllib.error.HTTPError as exc:
            raise self._error(exc.code, exc.read()) from None
        except (urllib.error.URLError, OSError, ValueError) as exc:
            reason = getattr(exc, "reason", exc)
            raise AppUnreachable(f"cannot reach {self.base}: {reason}") from None
        return json.loads(raw) if raw else {}

    def _error(self, code: int, raw: bytes) -> ControlError:
        try:
            body = json.loads(raw) if raw else {}
        except ValueError:
            body = {}
        if not isinstance(body, dict):
            body = {}
        if code == 401:
            return AuthFailed(f"{self.base} refused the token (HTTP 401): check --token/--token-file", 401)
        if code == 403:
            return AuthFailed(f"{self.base} refused this client (HTTP 403): "
                              f"{body.get('detail', 'forbidden')}", 403)
        if code == 404 and not body:
            return ApiError(404, {"detail": f"no fault control API at {self.base} (is it mounted?)"})
        return ApiError(code, body)
