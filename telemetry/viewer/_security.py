"""The viewer's guard: who may bind it, which requests it answers, and the headers on every answer.

The viewer shows the application's own data (traces, exception messages, log
lines), so it is treated as secret:

* **Binding.** Loopback by default. Any other address needs ``--allow-remote``
  *and* a token, or the viewer refuses to start (:func:`check_bind`).
* **Host header.** Only the loopback names (``127.0.0.1``, ``localhost``,
  ``[::1]``) with the viewer's port, and names the operator listed, are
  answered; anything else is a DNS-rebinding attempt and gets 403.
* **Cross-origin.** A state-changing request (POST: OTLP ingest) carrying an
  ``Origin`` other than the viewer's own, or a ``Sec-Fetch-Site`` other than
  ``same-origin``/``none``, gets 403; so does a read made by another site's page
  (a script, an image, a fetch) other than a top-level navigation. Other
  processes posting OTLP send neither header and are fine.
* **Token.** When one is configured every request needs it: ``Authorization:
  Bearer <token>``, or the cookie set by opening a ``?token=<token>`` login link
  (which then redirects to the same URL without it). Compared in constant time;
  the cookie holds an HMAC of the token, never the token itself.
* **Headers.** A Content-Security-Policy with no inline scripts or styles,
  ``nosniff``, ``no-referrer``, ``DENY`` framing, and ``no-store`` caching.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
from collections.abc import Callable, Iterable
from typing import Final
from urllib.parse import urlencode

from flask import Flask, Request, Response, request

COOKIE: Final = "shockproof_viewer"
LOOPBACK_NAMES: Final = ("127.0.0.1", "localhost", "[::1]")
CSP: Final = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; "
              "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; "
              "form-action 'self'; frame-ancestors 'none'")
HEADERS: Final = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Cache-Control": "no-store",
}
_SAFE_METHODS: Final = frozenset({"GET", "HEAD", "OPTIONS"})

#: Answers a refusal: (status, title, detail) -> response.
Refuse = Callable[[int, str, str], Response]


class ViewerError(Exception):
    """Root of the viewer's own errors (raised before it serves anything)."""


class BindRefused(ViewerError, ValueError):
    """The viewer was asked to listen on a non-loopback address without the safeguards."""


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback IP addresses (``127.0.0.0/8``, ``::1``)."""
    name = host.strip().strip("[]").lower()
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def check_bind(host: str, *, allow_remote: bool, token: str | None) -> None:
    """Refuse (:class:`BindRefused`) to listen on a non-loopback ``host`` unless both
    ``allow_remote`` and a ``token`` are given."""
    if is_loopback(host):
        return
    if not allow_remote:
        raise BindRefused(f"refusing to listen on {host}: the viewer shows the application's "
                          "data and binds to 127.0.0.1 unless --allow-remote is given "
                          "(together with --token)")
    if not token:
        raise BindRefused(f"refusing to listen on {host} without a token: --allow-remote "
                          "requires --token (or SHOCKPROOF_VIEWER_TOKEN)")


def loopback_hosts(port: int) -> tuple[str, ...]:
    """The ``Host`` values a loopback viewer on ``port`` answers to."""
    return tuple(f"{name}:{port}" for name in LOOPBACK_NAMES)


def _split_host(value: str) -> tuple[str, str | None]:
    """``("name", "port")`` of a Host header value (IPv6 literals keep their brackets)."""
    host = value.strip().lower()
    if host.startswith("["):
        end = host.find("]")
        if end < 0:
            return host, None
        rest = host[end + 1:]
        return host[: end + 1], rest[1:] if rest.startswith(":") else None
    name, sep, port = host.rpartition(":")
    if sep and port.isdigit():
        return name, port
    return host, None


class HostPolicy:
    """Which ``Host`` header values are answered.

    Entries are ``name:port`` (that port only) or ``name`` (any port). ``None``
    means the loopback names with any port (for tests and embedding: the
    command line passes the exact ``name:port`` list).
    """

    def __init__(self, allowed: Iterable[str] | None = None) -> None:
        entries = LOOPBACK_NAMES if allowed is None else tuple(allowed)
        self.exact: frozenset[str] = frozenset()
        self.any_port: frozenset[str] = frozenset()
        exact, any_port = set(), set()
        for entry in entries:
            name, port = _split_host(entry)
            if port is None:
                any_port.add(name)
            else:
                exact.add(f"{name}:{port}")
        self.exact, self.any_port = frozenset(exact), frozenset(any_port)

    def allows(self, host_header: str | None) -> bool:
        if not host_header:
            return False
        name, port = _split_host(host_header)
        if name in self.any_port:
            return True
        return port is not None and f"{name}:{port}" in self.exact


def _cookie_value(token: str) -> str:
    return hmac.new(token.encode(), b"shockproof-viewer-session", hashlib.sha256).hexdigest()


def _same(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode("utf-8", "replace"), expected.encode("utf-8"))


def _bearer(header: str) -> str:
    scheme, _, value = header.partition(" ")
    return value.strip() if scheme.lower() == "bearer" else ""


def cross_origin(req: Request) -> bool:
    """True when another site's page made this request (see the module docstring)."""
    site = req.headers.get("Sec-Fetch-Site")
    if req.method not in _SAFE_METHODS:
        origin = req.headers.get("Origin")
        own = f"{req.scheme}://{req.host}".lower()
        if origin is not None and origin.lower() != own:
            return True
        return site is not None and site not in ("same-origin", "none")
    if site is None or site in ("same-origin", "none"):
        return False
    navigation = (req.headers.get("Sec-Fetch-Mode") == "navigate"
                  and req.headers.get("Sec-Fetch-Dest", "document") == "document")
    return not navigation


class Guard:
    """Installs the checks and headers on a Flask app (see the module docstring)."""

    def __init__(self, *, token: str | None, hosts: HostPolicy, refuse: Refuse) -> None:
        self.token = token or None
        self.hosts = hosts
        self.refuse = refuse
        self._cookie = _cookie_value(token) if token else ""

    def init_app(self, app: Flask) -> None:
        app.before_request_funcs.setdefault(None, []).insert(0, self.check)
        app.after_request(add_headers)

    def check(self) -> Response | None:
        if not self.hosts.allows(request.headers.get("Host")):
            return self.refuse(403, "Forbidden", "unexpected Host header: open the viewer through "
                               "127.0.0.1 or localhost (or a name given with --allowed-host)")
        if cross_origin(request):
            return self.refuse(403, "Forbidden", "cross-origin requests are refused")
        if self.token is not None:
            return self._authenticate()
        return None

    def _authenticate(self) -> Response | None:
        assert self.token is not None
        given = request.args.get("token")
        if given is not None and request.method == "GET":
            if not _same(given, self.token):
                return self.refuse(401, "Unauthorized", "this login link's token is not valid")
            return self._login()
        bearer = _bearer(request.headers.get("Authorization", ""))
        if bearer and _same(bearer, self.token):
            return None
        cookie = request.cookies.get(COOKIE, "")
        if cookie and _same(cookie, self._cookie):
            return None
        response = self.refuse(401, "Unauthorized", "this viewer needs its token: open the login "
                               "link printed when it started, or send Authorization: Bearer <token>")
        response.headers["WWW-Authenticate"] = 'Bearer realm="shockproof-traces"'
        return response

    def _login(self) -> Response:
        """Set the session cookie and redirect to the same URL without the token."""
        query = urlencode([(k, v) for k, v in request.args.items(multi=True) if k != "token"])
        response = Response(status=303)
        response.headers["Location"] = request.path + (f"?{query}" if query else "")
        response.set_cookie(COOKIE, self._cookie, httponly=True, samesite="Strict", path="/")
        return response


def add_headers(response: Response) -> Response:
    """The security headers, on every response."""
    for name, value in HEADERS.items():
        response.headers.setdefault(name, value)
    return response
