"""The guarded client of the upstream catalog service, with a last-good-answer cache.

Every request to the upstream runs under the ``catalog.fetch`` policy::

    fallback -> retry (transient errors, jittered backoff) inside an overall deadline
             -> circuit "catalog" -> the HTTP call (timeout = what the deadline leaves)

When the upstream is down or the circuit is open, the fallback serves the last good
answer from a cache kept on disk (shared by worker processes) and the response is
marked degraded; with nothing cached the caller gets :class:`CatalogUnavailable`
(503 with ``Retry-After``).
"""

from __future__ import annotations

import contextlib
import json
import re
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

from resilience import Circuit, Policy, Retry, check_deadline, exponential, timeout_or

from .config import DemoConfig
from .storage import atomic_write, read_json

HeaderHook = Callable[[dict[str, str]], None]


class UpstreamError(ConnectionError):
    """The catalog answered, but with an error status or a body that is not a JSON object.

    A ``ConnectionError`` so that it is classified as a (transient) network error.
    """

    def __init__(self, status: int, reason: str, retry_after: float | None = None) -> None:
        super().__init__(f"catalog answered {status}: {reason}")
        self.status = status
        if retry_after is not None:
            self.retry_after = retry_after


class CatalogUnavailable(ConnectionError):
    """The catalog cannot be reached and nothing is cached: try again after ``retry_after``."""

    def __init__(self, retry_after: float) -> None:
        super().__init__("the catalog is unavailable and no cached answer exists")
        self.retry_after = retry_after


class UnknownTitle(LookupError):
    """The catalog has no such title (a 404 upstream: neither retried nor counted)."""


@dataclass(frozen=True, slots=True)
class Answer:
    """A catalog document, and whether it came from the cache because the upstream failed."""

    data: dict[str, Any]
    degraded: bool = False
    cached_at: float | None = None


class _Unavailable:
    """What the policy's fallback returns: the failure, for the caller to answer from cache."""

    __slots__ = ("error",)

    def __init__(self, error: BaseException) -> None:
        self.error = error


class LastGood:
    """The last good answer per key: in memory, and on disk for the other workers and restarts."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._memory: dict[str, tuple[str, float]] = {}
        self._lock = threading.Lock()

    def _path(self, key: str) -> Path:
        return self.root / f"{re.sub(r'[^a-z0-9-]', '_', key)}.json"

    def put(self, key: str, data: dict[str, Any]) -> None:
        """Remember ``data`` (best effort: a cache that cannot be written is no error)."""
        text = json.dumps(data, sort_keys=True)
        with self._lock:
            known = self._memory.get(key)
            if known is not None and known[0] == text:
                return
            now = time.time()
            self._memory[key] = (text, now)
        with contextlib.suppress(OSError):
            atomic_write(self._path(key), json.dumps({"cached_at": now, "data": data}).encode())

    def get(self, key: str) -> Answer | None:
        with self._lock:
            known = self._memory.get(key)
        if known is not None:
            return Answer(json.loads(known[0]), degraded=True, cached_at=known[1])
        try:
            stored = read_json(self._path(key))
        except (OSError, ValueError):
            return None
        if not isinstance(stored, dict) or not isinstance(stored.get("data"), dict):
            return None
        return Answer(stored["data"], degraded=True, cached_at=float(stored.get("cached_at", 0)))


class CatalogClient:
    """Fetches catalog documents from the upstream over HTTP, guarded, with a stale fallback."""

    def __init__(self, config: DemoConfig, circuit: Circuit, cache: LastGood,
                 header_hooks: Sequence[HeaderHook] = ()) -> None:
        self.base_url = config.upstream
        self.timeout = config.upstream_timeout
        self.circuit = circuit
        self.cache = cache
        self.header_hooks = list(header_hooks)
        self.unavailable_retry_after = config.unavailable_retry_after
        self.policy = Policy(
            "catalog.fetch",
            retry=Retry(attempts=config.upstream_attempts,
                        backoff=exponential(config.backoff_base, cap=1.0)),
            circuit=circuit,
            deadline=config.catalog_deadline,
            fallback=_Unavailable,
        )
        self._session = requests.Session()

    def catalog(self) -> Answer:
        """Every title, with its artwork metadata."""
        return self._answer("catalog", "/titles")

    def title(self, title_id: int) -> Answer:
        """One title with artwork and recommendations; :class:`UnknownTitle` if there is none."""
        return self._answer(f"title-{int(title_id)}", f"/titles/{int(title_id)}")

    def close(self) -> None:
        self._session.close()

    def _answer(self, key: str, path: str) -> Answer:
        result: dict[str, Any] | _Unavailable = self.policy.call(self._get, path)
        if isinstance(result, _Unavailable):
            return self._stale(key, result.error)
        self.cache.put(key, result)
        return Answer(result)

    def _stale(self, key: str, error: BaseException) -> Answer:
        cached = self.cache.get(key)
        if cached is None:
            wait = self.circuit.retry_after or self.unavailable_retry_after
            raise CatalogUnavailable(wait) from error
        return cached

    def _get(self, path: str) -> dict[str, Any]:
        check_deadline("catalog.fetch")
        headers: dict[str, str] = {"Accept": "application/json"}
        for hook in self.header_hooks:
            hook(headers)
        timeout = max(0.001, timeout_or(self.timeout) or self.timeout)
        response = self._session.get(self.base_url + path, headers=headers, timeout=timeout)
        return _document(response)


def _document(response: requests.Response) -> dict[str, Any]:
    if response.status_code == 404:
        raise UnknownTitle(response.url)
    if response.status_code >= 400:
        raise UpstreamError(response.status_code, "error status", _retry_after(response))
    try:
        data = response.json()
    except ValueError:
        raise UpstreamError(response.status_code, "body is not JSON") from None
    if not isinstance(data, dict):
        raise UpstreamError(response.status_code, "body is not a JSON object")
    return data


def _retry_after(response: requests.Response) -> float | None:
    value = response.headers.get("Retry-After", "")
    return float(value) if value.isdigit() else None
