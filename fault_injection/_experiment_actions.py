"""What experiment activities do: HTTP probes, and Shockproof's fault, toxic and load functions.

Every function takes the :class:`RunContext` and the activity's arguments and
returns a JSON-ready output. Control-plane failures (nothing answers at the
control URL, the token is refused) are raised as :class:`Abort`: an experiment
whose faults cannot be set or cleared is stopped, its rollbacks run.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from . import control
from ._experiment_load import Recorder, http_request, run_load
from ._experiment_model import Activity, Provider
from .proxy import ControlAuthFailed, ControlUnreachable, ProxyClient, Toxic

EXIT_UNREACHABLE: Final = 3
EXIT_AUTH: Final = 4
_MAX_TEXT: Final = 2000


class Abort(Exception):
    """Stop the experiment now (rollbacks still run); ``exit_code`` tells the CLI why."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


@dataclass
class Window:
    """A fault on the timeline: what, where, and from when to when (s since start)."""

    kind: str
    key: str
    label: str
    target: str
    start: float
    end: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "key": self.key, "label": self.label, "target": self.target,
                "start": round(self.start, 3), "end": None if self.end is None else round(self.end, 3)}


@dataclass
class RunContext:
    """Shared state of one run: configuration, samples, the timeline and fault windows."""

    config: Mapping[str, Any]
    recorder: Recorder = field(default_factory=Recorder)
    stop: threading.Event = field(default_factory=threading.Event)
    timeline: list[dict[str, Any]] = field(default_factory=list)
    windows: list[Window] = field(default_factory=list)
    added_faults: list[tuple[str, str]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def note(self, event: str, name: str, **detail: Any) -> None:
        """Add an entry to the timeline."""
        with self.lock:
            self.timeline.append({"t": round(self.recorder.now(), 3), "event": event, "name": name, **detail})

    def open_window(self, kind: str, key: str, label: str, target: str) -> None:
        with self.lock:
            self.windows.append(Window(kind, key, label, target, self.recorder.now()))

    def close_windows(self, kind: str, target: str, key: str | None = None) -> None:
        """End the open windows of ``kind`` at ``target`` (only ``key`` when given)."""
        now = self.recorder.now()
        with self.lock:
            for window in self.windows:
                if window.kind == kind and window.target == target and window.end is None and key in (None, window.key):
                    window.end = now

    def token(self) -> str:
        """The control token: configuration ``token``, ``token_file``, ``$SHOCKPROOF_FAULTS_TOKEN``,
        then ``<data_dir>/faults.token``."""
        if self.config.get("token"):
            return str(self.config["token"])
        path = self.config.get("token_file")
        env = os.environ.get(control.ENV_TOKEN, "").strip()
        if not path and env:
            return env
        try:
            return control.read_token_file(path or Path(str(self.config["data_dir"])) / control.TOKEN_FILE)
        except (OSError, ValueError) as exc:
            raise Abort(f"no control token: {exc} (give --token/--token-file or configuration.token_file)",
                        EXIT_AUTH) from None


# -- HTTP probes -------------------------------------------------------------------------


def run_http(ctx: RunContext, provider: Provider) -> dict[str, Any]:
    """An HTTP provider: ``{status, headers, body, latency_ms}`` (body parsed as JSON when it is)."""
    url = provider.url if re.match(r"https?://", provider.url) else str(ctx.config["app_url"]).rstrip("/") + provider.url
    body = provider.arguments or None
    result = http_request(url, provider.method, body=body, headers=provider.headers, timeout=provider.timeout)
    if provider.expected_status is not None and result.status != provider.expected_status:
        raise AssertionError(f"expected status {provider.expected_status}, got {result.status}")
    return {"status": result.status, "headers": dict(result.headers), "body": result.json(),
            "latency_ms": round(result.latency * 1000, 2)}


def for_journal(output: Any) -> Any:
    """Long text bodies are cut for the journal (the tolerance saw them whole)."""
    if isinstance(output, dict) and isinstance(output.get("body"), str) and len(output["body"]) > _MAX_TEXT:
        return {**output, "body": output["body"][:_MAX_TEXT] + "…"}
    return output


# -- Shockproof's functions ----------------------------------------------------------------


def _faults(ctx: RunContext, args: Mapping[str, Any]) -> tuple[control.ControlClient, str]:
    url = str(args.get("url") or ctx.config["app_url"])
    return control.ControlClient(url, ctx.token(), timeout=10.0), url


def _proxy(ctx: RunContext, args: Mapping[str, Any]) -> tuple[ProxyClient, str]:
    url = str(args.get("url") or ctx.config["proxy_url"])
    return ProxyClient(url, ctx.token(), timeout=10.0), url


def add_fault(ctx: RunContext, args: Mapping[str, Any]) -> Any:
    client, url = _faults(ctx, args)
    rules = client.add({k: v for k, v in args.items() if k != "url"})
    for rule in rules:
        ctx.added_faults.append((url, str(rule["id"])))
        ctx.open_window("fault", str(rule["id"]), f"{rule['site']}: {_fault_label(rule['fault'])}", url)
    return rules


def _fault_label(fault: Mapping[str, Any]) -> str:
    """``io(ENOSPC)``, ``network(reset)``, ``logic(ZeroDivisionError)`` ..."""
    detail = [str(v) for k, v in fault.items() if k not in ("kind", "message") and v not in (None, "")]
    return f"{fault.get('kind', '?')}({', '.join(detail)})"


def remove_fault(ctx: RunContext, args: Mapping[str, Any]) -> Any:
    client, url = _faults(ctx, args)
    ids = [str(args["id"])] if "id" in args else [i for u, i in ctx.added_faults if u == url]
    removed = []
    for rule_id in ids:
        try:
            client.remove(rule_id)
            removed.append(rule_id)
        except control.ApiError as exc:
            if exc.status != 404 or "id" in args:  # already expired is fine when cleaning up
                raise
        ctx.close_windows("fault", url, rule_id)
    return {"removed": removed}


def halt_faults(ctx: RunContext, args: Mapping[str, Any]) -> Any:
    client, url = _faults(ctx, args)
    halted = client.halt()
    ctx.close_windows("fault", url)
    return {"halted": halted}


def list_faults(ctx: RunContext, args: Mapping[str, Any]) -> Any:
    return _faults(ctx, args)[0].overview()


def add_toxic(ctx: RunContext, args: Mapping[str, Any]) -> Any:
    client, url = _proxy(ctx, args)
    toxic = client.add_toxic(Toxic.from_dict({k: v for k, v in args.items() if k != "url"}))
    attrs = " ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in toxic.attributes.items())
    ctx.open_window("toxic", toxic.name, f"{toxic.name}: {toxic.type} {toxic.stream} {attrs}".strip(), url)
    return toxic.to_dict()


def remove_toxic(ctx: RunContext, args: Mapping[str, Any]) -> Any:
    client, url = _proxy(ctx, args)
    removed = client.remove_toxic(str(args["name"]))
    ctx.close_windows("toxic", url, removed.name)
    return {"removed": removed.to_dict()}


def clear_toxics(ctx: RunContext, args: Mapping[str, Any]) -> Any:
    client, url = _proxy(ctx, args)
    removed = client.halt()
    ctx.close_windows("toxic", url)
    return {"removed": removed}


def proxy_status(ctx: RunContext, args: Mapping[str, Any]) -> Any:
    return _proxy(ctx, args)[0].status()


def load(ctx: RunContext, args: Mapping[str, Any]) -> Any:
    return run_load(args, str(args.get("url") or ctx.config["app_url"]), ctx.recorder, ctx.stop)


FUNCTIONS: Final[Mapping[str, Callable[[RunContext, Mapping[str, Any]], Any]]] = {
    "add_fault": add_fault,
    "add_toxic": add_toxic,
    "clear_toxics": clear_toxics,
    "halt_faults": halt_faults,
    "list_faults": list_faults,
    "load": load,
    "proxy_status": proxy_status,
    "remove_fault": remove_fault,
    "remove_toxic": remove_toxic,
}


def execute(ctx: RunContext, activity: Activity) -> Any:
    """Run one activity's provider; control-plane failures become :class:`Abort`."""
    provider = activity.provider
    if provider.type == "http":
        return run_http(ctx, provider)
    try:
        return FUNCTIONS[provider.func](ctx, provider.arguments)
    except (control.AppUnreachable, ControlUnreachable) as exc:
        raise Abort(f"{activity.name}: {exc}", EXIT_UNREACHABLE) from exc
    except (control.AuthFailed, ControlAuthFailed) as exc:
        raise Abort(f"{activity.name}: {exc}", EXIT_AUTH) from exc
