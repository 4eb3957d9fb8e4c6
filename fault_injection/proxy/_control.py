"""The proxy's control endpoint (HTTP on loopback, bearer token) and its client.

Protocol (JSON bodies; errors are ``application/problem+json`` with ``title``,
``status``, ``detail`` and, for an invalid toxic, ``field``)::

    GET    /_shockproof/proxy                 200 status: listen, upstream, connections, toxics
    GET    /_shockproof/proxy/toxics          200 {"toxics": [toxic, ...]}
    POST   /_shockproof/proxy/toxics          201 toxic      (400 invalid, 409 name taken)
    GET    /_shockproof/proxy/toxics/<name>   200 toxic      (404 unknown)
    DELETE /_shockproof/proxy/toxics/<name>   200 {"removed": toxic}   (404 unknown)
    POST   /_shockproof/proxy/halt            200 {"removed": [name, ...]}  every toxic, at once

A toxic is ``{"name", "type", "stream", "toxicity", "attributes"}`` (see ``_toxics``).
Every request needs ``Authorization: Bearer <token>`` (401 otherwise); clients
that are not on loopback get 403. The token is the fault-injection token: by
convention read from (or generated into) ``<data dir>/faults.token``, mode 0600.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import os
import secrets
import threading
import urllib.error
import urllib.parse
import urllib.request
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Final

from ._server import ChaosProxy
from ._toxics import DuplicateToxic, InvalidToxic, ProxyError, Toxic, UnknownToxic

BASE: Final = "/_shockproof/proxy"
DEFAULT_CONTROL: Final = "127.0.0.1:8474"
TOKEN_FILE: Final = "faults.token"
_MAX_BODY: Final = 64 * 1024


class ControlError(ProxyError):
    """The control endpoint refused or failed a request."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(f"{status}: {detail}" if status else detail)
        self.status = status
        self.detail = detail


class ControlUnreachable(ControlError, ConnectionError):
    """Nothing answers at the control URL."""


class ControlAuthFailed(ControlError, PermissionError):
    """The token was missing or wrong (or the client is not on loopback)."""


def is_loopback(host: str) -> bool:
    """Whether ``host`` is a loopback address (or ``localhost``)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.split("%")[0]).is_loopback
    except ValueError:
        return False


# -- token file ---------------------------------------------------------------
def read_token(path: str | os.PathLike[str]) -> str:
    """The token stored in ``path`` (stripped); ``OSError`` if unreadable, ``ValueError`` if empty."""
    token = Path(path).read_text(encoding="utf-8").strip()
    if not token:
        raise ValueError(f"{path} is empty")
    return token


def ensure_token(data_dir: str | os.PathLike[str]) -> tuple[str, Path, bool]:
    """Read ``<data_dir>/faults.token`` or create it (mode 0600): ``(token, path, created)``."""
    path = Path(data_dir) / TOKEN_FILE
    if path.exists():
        return read_token(path), path, False
    path.parent.mkdir(parents=True, exist_ok=True)
    token = secrets.token_urlsafe(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(token + "\n")
    return token, path, True


# -- server -------------------------------------------------------------------
class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    proxy: ChaosProxy
    token: str


class _Handler(BaseHTTPRequestHandler):
    server: _HTTPServer
    protocol_version = "HTTP/1.1"
    timeout = 10.0

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def log_message(self, format: str, *args: Any) -> None:
        """Silent: request lines would go to stderr, and nothing here is worth logging."""

    def _dispatch(self, method: str) -> None:
        try:
            refusal = self._refusal()
            if refusal is not None:
                self._problem(*refusal)
                return
            status, body = self._route(method, urllib.parse.urlsplit(self.path).path.rstrip("/"))
            self._send(status, body)
        except DuplicateToxic as exc:
            self._problem(HTTPStatus.CONFLICT, str(exc), field=exc.field)
        except InvalidToxic as exc:
            self._problem(HTTPStatus.BAD_REQUEST, str(exc), field=exc.field)
        except UnknownToxic as exc:
            self._problem(HTTPStatus.NOT_FOUND, str(exc))
        except _BadRequest as exc:
            self._problem(HTTPStatus.BAD_REQUEST, str(exc))
        except OSError as exc:  # e.g. the listener could not be reopened
            self._problem(HTTPStatus.INTERNAL_SERVER_ERROR, f"the proxy could not apply it: {exc}")

    def _refusal(self) -> tuple[HTTPStatus, str] | None:
        if not is_loopback(self.client_address[0]):
            return HTTPStatus.FORBIDDEN, "the proxy control endpoint only answers loopback clients"
        given = self.headers.get("Authorization", "")
        scheme, _, token = given.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), self.server.token.encode()):
            return HTTPStatus.UNAUTHORIZED, "a valid 'Authorization: Bearer <token>' header is required"
        return None

    def _route(self, method: str, path: str) -> tuple[HTTPStatus, object]:
        proxy = self.server.proxy
        if path == BASE and method == "GET":
            return HTTPStatus.OK, proxy.status()
        if path == f"{BASE}/toxics" and method == "GET":
            return HTTPStatus.OK, {"toxics": proxy.status()["toxics"]}
        if path == f"{BASE}/toxics" and method == "POST":
            return HTTPStatus.CREATED, proxy.add_toxic(Toxic.from_dict(self._json())).to_dict()
        if path == f"{BASE}/halt" and method == "POST":
            return HTTPStatus.OK, {"removed": [t.name for t in proxy.clear_toxics()]}
        if path.startswith(f"{BASE}/toxics/"):
            return self._one(method, urllib.parse.unquote(path.removeprefix(f"{BASE}/toxics/")))
        raise _BadRequest(f"no route {method} {path}")

    def _one(self, method: str, name: str) -> tuple[HTTPStatus, object]:
        proxy = self.server.proxy
        if method == "DELETE":
            return HTTPStatus.OK, {"removed": proxy.remove_toxic(name).to_dict()}
        for toxic in proxy.status()["toxics"]:
            if method == "GET" and toxic["name"] == name:
                return HTTPStatus.OK, toxic
        if method == "GET":
            raise UnknownToxic(name)
        raise _BadRequest(f"no route {method} {BASE}/toxics/{name}")

    def _json(self) -> object:
        length = int(self.headers.get("Content-Length") or 0)
        if length > _MAX_BODY:
            raise _BadRequest(f"body larger than {_MAX_BODY} bytes")
        try:
            return json.loads(self.rfile.read(length) or b"null")
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise _BadRequest(f"body is not JSON: {exc}") from None

    def _problem(self, status: HTTPStatus, detail: str, **extra: object) -> None:
        body = {"type": "about:blank", "title": status.phrase, "status": int(status), "detail": detail, **extra}
        self._send(status, body, "application/problem+json")

    def _send(self, status: HTTPStatus, body: object, content_type: str = "application/json") -> None:
        payload = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        self.send_header("Connection", "close")  # an unread body must not be taken for a request
        self.close_connection = True
        if status == HTTPStatus.UNAUTHORIZED:
            self.send_header("WWW-Authenticate", 'Bearer realm="shockproof-proxy"')
        self.end_headers()
        self.wfile.write(payload)


class _BadRequest(Exception):
    pass


class ControlServer:
    """Serves the control protocol for ``proxy`` on loopback, in a background thread."""

    def __init__(self, proxy: ChaosProxy, token: str, *, host: str = "127.0.0.1", port: int = 8474) -> None:
        if not is_loopback(host):
            raise ValueError(f"the control endpoint binds to loopback only, not {host!r}")
        if not token:
            raise ValueError("the control endpoint needs a token")
        self._httpd = _HTTPServer((host, port), _Handler)
        self._httpd.proxy, self._httpd.token = proxy, token
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self._httpd.socket.getsockname()[:2]
        return f"http://{host}:{port}"

    def start(self) -> ControlServer:
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, args=(0.1,), name="shockproof-proxy-control", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join(10)
            self._thread = None
        self._httpd.server_close()

    def __enter__(self) -> ControlServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


# -- client -------------------------------------------------------------------
class ProxyClient:
    """Talks to a proxy's control endpoint; raises :class:`ControlError` subclasses."""

    def __init__(self, url: str = f"http://{DEFAULT_CONTROL}", token: str = "", *, timeout: float = 5.0) -> None:
        self.url, self._token, self.timeout = url.rstrip("/"), token, timeout
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # no $http_proxy

    def __repr__(self) -> str:  # never shows the token
        return f"ProxyClient({self.url!r})"

    def status(self) -> dict[str, Any]:
        return dict(self._call("GET", BASE))

    def toxics(self) -> list[Toxic]:
        return [Toxic.from_dict(_public(t)) for t in self._call("GET", f"{BASE}/toxics")["toxics"]]

    def add_toxic(self, toxic: Toxic) -> Toxic:
        return Toxic.from_dict(self._call("POST", f"{BASE}/toxics", toxic.to_dict()))

    def remove_toxic(self, name: str) -> Toxic:
        quoted = urllib.parse.quote(name, safe="")
        return Toxic.from_dict(self._call("DELETE", f"{BASE}/toxics/{quoted}")["removed"])

    def halt(self) -> list[str]:
        return list(self._call("POST", f"{BASE}/halt")["removed"])

    def _call(self, method: str, path: str, body: object = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.url + path, data=data, method=method)
        request.add_header("Authorization", f"Bearer {self._token}")
        if data is not None:
            request.add_header("Content-Type", "application/json")
        try:
            with self._opener.open(request, timeout=self.timeout) as response:
                return json.loads(response.read() or b"null")
        except urllib.error.HTTPError as exc:
            raise _mapped(exc) from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise ControlUnreachable(0, f"cannot reach the proxy control endpoint at {self.url}: {reason}") from None


def _public(toxic: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in toxic.items() if k != "hits"}


def _mapped(exc: urllib.error.HTTPError) -> ProxyError:
    try:
        problem = json.loads(exc.read() or b"{}")
    except (ValueError, OSError):
        problem = {}
    detail = str(problem.get("detail") or exc.reason)
    if exc.code in (401, 403):
        return ControlAuthFailed(exc.code, detail)
    if exc.code in (400, 409) and "field" in problem:
        field = str(problem["field"])
        return (DuplicateToxic if exc.code == 409 else InvalidToxic)(field, detail.removeprefix(f"{field}: "))
    if exc.code == 404 and detail.startswith("no toxic named"):
        return UnknownToxic(detail.removeprefix("no toxic named ").strip("'\""))
    return ControlError(exc.code, detail)
