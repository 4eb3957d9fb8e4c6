"""The app factory: ``create_app(DemoConfig(...))`` builds one demo app instance.

Telemetry (``telemetry.flask``) and fault injection (``fault_injection.control``) are
wired in :func:`_wire`, and only there; each is used when its package provides it.
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from typing import Any

from flask import Flask, Response

from resilience import Circuit, redis_storage
from resilience.flask import Resilience

from . import media
from .api import BLUEPRINTS
from .catalog_client import CatalogClient, HeaderHook, LastGood
from .config import DemoConfig
from .state import EXTENSION_KEY, USER_COOKIE, DemoState
from .storage import ProgressStore, UserStore
from .uploads_store import UploadStore
from .web import bp as web

_HERE = Path(__file__).parent
#: Room for the multipart envelope and the other form fields around an upload.
_FORM_OVERHEAD = 1024 * 1024
#: Text form fields kept in memory; must stay well above Werkzeug's 64 KiB multipart chunk.
_FORM_FIELD_MEMORY = 256 * 1024
_CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "media-src 'self' blob:; connect-src 'self'; object-src 'none'; base-uri 'none'; "
        "frame-ancestors 'none'; form-action 'self'")


def create_app(config: DemoConfig | None = None) -> Flask:
    """A demo app for ``config`` (defaults: ``./.shockproof``, upstream on 127.0.0.1:8002)."""
    config = config or DemoConfig()
    app = Flask("demo_app", static_folder=str(_HERE / "static"),
                template_folder=str(_HERE / "templates"))
    app.config["MAX_CONTENT_LENGTH"] = config.max_upload_bytes + _FORM_OVERHEAD
    # Werkzeug also bounds its multipart read buffer by this (64 KiB chunks plus a partial
    # boundary carried over), not only text fields: at 64 KiB, file uploads failed with 413.
    app.config["MAX_FORM_MEMORY_SIZE"] = _FORM_FIELD_MEMORY
    state = _build_state(config, _header_hooks(config))
    app.extensions[EXTENSION_KEY] = state
    _wire(app, config)
    for blueprint in (*BLUEPRINTS, web):
        app.register_blueprint(blueprint)
    app.after_request(_security_headers)
    return app


def create_app_from_env() -> Flask:
    """The factory gunicorn workers call (configuration from ``SHOCKPROOF_*`` variables)."""
    config = DemoConfig.from_env()
    configure_telemetry(config)
    return create_app(config)


def _build_state(config: DemoConfig, hooks: list[HeaderHook]) -> DemoState:
    data_dir = config.data_dir.absolute()
    media_dir = data_dir / "media"
    media.seed(media_dir, config.titles)
    storage = redis_storage(config.redis_url) if config.redis_url else None
    circuit = Circuit(config.circuit_name, consecutive=config.circuit_failures,
                      open_for=config.circuit_open_for, storage=storage)
    catalog = CatalogClient(config, circuit, LastGood(data_dir / "cache"), hooks)
    return DemoState(config=config, data_dir=data_dir, media_dir=media_dir, catalog=catalog,
                     users=UserStore(data_dir / "users"), progress=ProgressStore(data_dir / "progress"),
                     uploads=UploadStore(data_dir / "uploads"), circuits=(circuit,))


def _security_headers(response: Response) -> Response:
    """A strict CSP (no inline scripts or styles) and the usual hardening headers."""
    response.headers.setdefault("Content-Security-Policy", _CSP)
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "no-referrer")
    response.headers.setdefault("X-Frame-Options", "DENY")
    return response


# =========================================================================================
# WIRING — telemetry (issue 3) and fault injection (issue 5). Keep it to these lines.
# =========================================================================================


def _optional(module: str, name: str) -> Any:
    """``module.name`` when that package provides it, else None."""
    try:
        return getattr(importlib.import_module(module), name, None)
    except ImportError:
        return None


def configure_telemetry(config: DemoConfig) -> None:
    """Once per server process: traces and logs into ``<data_dir>/telemetry.db``."""
    configure = _optional("telemetry", "configure")
    if configure is not None and config.telemetry:
        configure(service_name=config.service_name, store=config.data_dir / "telemetry.db")


def _wire(app: Flask, config: DemoConfig) -> None:
    # TELEMETRY: telemetry.flask.Shockproof wires resilience.flask and telemetry.flask together.
    shockproof = _optional("telemetry.flask", "Shockproof")
    if shockproof is not None and config.telemetry:
        shockproof(app, user=_user_of)  # stored only as an HMAC pseudonym, never the id
    else:
        Resilience(app)  # problem+json only, until telemetry.flask exists
    # FAULT INJECTION: the control API at /_shockproof/faults (token in <data_dir>/faults.token).
    control = _optional("fault_injection.control", "blueprint")
    if control is not None and config.fault_control:
        app.register_blueprint(control(data_dir=config.data_dir))


def _user_of(request: Any) -> str | None:
    """Who made the request, for "users affected": ``X-User``, else the signup cookie."""
    user = request.headers.get("X-User") or request.cookies.get(USER_COOKIE)
    return str(user) if user else None


def fault_token_env(config: DemoConfig) -> dict[str, str]:
    """One fault-control token for all gunicorn workers (each would otherwise make its own)."""
    resolve = _optional("fault_injection.control", "resolve_token")
    if resolve is None or not config.fault_control or os.environ.get("SHOCKPROOF_FAULTS_TOKEN"):
        return {}
    return {"SHOCKPROOF_FAULTS_TOKEN": resolve(None, config.data_dir)}


def _header_hooks(config: DemoConfig) -> list[HeaderHook]:
    """Headers added to every upstream request: W3C traceparent and the fault-context baggage."""
    found = [_optional("telemetry", "inject_headers") if config.telemetry else None,
             _optional("fault_injection", "outgoing_headers")]
    return [hook for hook in found if callable(hook)]
