"""The soak's traffic: a closed-loop, multi-threaded HTTP load over the demo's routes.

``threads`` clients (a ``requests.Session`` each) send requests back to back until
``requests`` were sent in all or ``until`` returns True. Which route request number
``i`` takes is ``schedule[i % len(schedule)]``: a seeded shuffle of the mix, so the
proportions hold in every phase. Each client is one user (``X-User: soak-<n>``)
whose progress writes are recorded in the shared :class:`~bench._soak_logic.Ledger`;
signups and uploads that were acknowledged are kept for the final check on disk.

A :class:`Monitor` polls ``/readyz`` for the catalog circuit's state.
"""

from __future__ import annotations

import hashlib
import itertools
import random
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import requests

from bench._soak_logic import Ledger, Sample

TITLES: Final = (1, 2, 3)
#: Requests per 1000 by route; uploads are few (each is 64 KiB and fsync-ed twice).
MIX: Final[Mapping[str, int]] = {
    "catalog": 230, "title": 200, "progress_put": 200, "progress_get": 150,
    "stream": 205, "signup": 10, "upload": 5,
}
TIMEOUT: Final = 15.0
RANGE: Final = 64 * 1024
UPLOAD_BYTES: Final = 64 * 1024
PASSWORD: Final = "soak-password-not-secret"


def schedule(seed: int) -> list[str]:
    """The routes of 1000 consecutive requests, in a seeded order."""
    routes = [name for name, weight in MIX.items() for _ in range(weight)]
    random.Random(seed).shuffle(routes)
    return routes


@dataclass
class Shared:
    """What every client of a run shares: the ledger and the acknowledged creations."""

    run_id: str
    ledger: Ledger = field(default_factory=Ledger)
    signups: dict[str, str] = field(default_factory=dict)  # user id -> email
    uploads: dict[str, str] = field(default_factory=dict)  # upload id -> sha256
    stale_reads: list[str] = field(default_factory=list)
    sent: int = 0  # requests sent by every client (all are /api requests)
    lock: threading.Lock = field(default_factory=threading.Lock)


class Client:
    """One user of the load: its session, its progress positions, its randomness."""

    def __init__(self, base: str, number: int, shared: Shared, seed: int) -> None:
        self.base, self.number, self.shared = base, number, shared
        self.user = f"soak-{number}"
        self.session = requests.Session()
        self.rng = random.Random(seed * 1000 + number)
        self.positions = itertools.count(1)
        self.made = itertools.count(1)
        self._routes: dict[str, Callable[..., tuple[str, requests.Response, bool]]] = {
            "catalog": self._catalog, "title": self._title, "progress_put": self.save_progress,
            "progress_get": self._progress_get, "stream": self._stream, "signup": self._signup,
            "upload": self._upload}

    def close(self) -> None:
        self.session.close()

    def send(self, phase: str, route: str, *args: object) -> Sample:
        """Make one request of kind ``route``; never raises for HTTP or transport failures."""
        with self.shared.lock:
            self.shared.sent += 1
        start = time.monotonic()
        try:
            label, response, whole = self._routes[route](*args)
        except requests.RequestException as exc:
            return Sample(phase, route, start, time.monotonic(), None, error=type(exc).__name__)
        end = time.monotonic()
        kind = _problem_kind(response) if response.status_code >= 400 else None
        degraded = response.headers.get("X-Shockproof-Degraded") == "1"
        if not whole:
            return Sample(phase, label, start, end, None, error="unexpected body")
        return Sample(phase, label, start, end, response.status_code, kind, degraded)

    # -- routes: each returns (label, response, whether the body is what was asked for) --------

    def _get(self, path: str, **kwargs: Any) -> requests.Response:
        return self.session.get(self.base + path, timeout=TIMEOUT, **kwargs)

    def _catalog(self) -> tuple[str, requests.Response, bool]:
        response = self._get("/api/catalog")
        return "GET /api/catalog", response, not response.ok or "titles" in response.json()

    def _title(self, title: int | None = None) -> tuple[str, requests.Response, bool]:
        title = title or self.rng.choice(TITLES)
        response = self._get(f"/api/titles/{title}")
        return "GET /api/titles/<id>", response, not response.ok or response.json().get("id") == title

    def save_progress(self, title: int | None = None) -> tuple[str, requests.Response, bool]:
        """Save the next position of ``title`` (a random one when None), recorded in the ledger."""
        title = title or self.rng.choice(TITLES)
        key, position = f"{self.user}/{title}", next(self.positions) * 0.5
        index = self.shared.ledger.sent(key, position)
        acked = False
        try:
            response = self.session.put(f"{self.base}/api/progress/{title}", json={"position_s": position},
                                        headers={"X-User": self.user}, timeout=TIMEOUT)
            acked = response.status_code == 200 and response.json().get("position_s") == position
        finally:
            self.shared.ledger.answered(key, index, acked)
        return "PUT /api/progress/<id>", response, acked or not response.ok

    def _progress_get(self) -> tuple[str, requests.Response, bool]:
        title = self.rng.choice(TITLES)
        key = f"{self.user}/{title}"
        response = self._get(f"/api/progress/{title}", headers={"X-User": self.user})
        if response.status_code in (200, 404):
            observed = response.json()["position_s"] if response.status_code == 200 else None
            lost = self.shared.ledger.check(key, observed)
            if lost is not None:
                with self.shared.lock:
                    self.shared.stale_reads.append(f"{key}: read {observed}, allowed {lost.allowed}")
        return "GET /api/progress/<id>", response, True

    def _stream(self) -> tuple[str, requests.Response, bool]:
        title = self.rng.choice(TITLES)
        first = self.rng.randrange(0, 60_000)
        response = self._get(f"/api/stream/{title}", headers={"Range": f"bytes={first}-{first + RANGE - 1}"})
        whole = response.status_code != 206 or len(response.content) == RANGE
        return "GET /api/stream/<id> (range)", response, whole

    def _signup(self) -> tuple[str, requests.Response, bool]:
        email = f"soak-{self.shared.run_id}-{self.number}-{next(self.made)}@example.test"
        response = self.session.post(f"{self.base}/api/signup", timeout=TIMEOUT, json={
            "email": email, "display_name": f"Soak {self.number}", "password": PASSWORD, "plan": "free"})
        if response.status_code == 201:
            with self.shared.lock:
                self.shared.signups[response.json()["user_id"]] = email
        return "POST /api/signup", response, True

    def _upload(self) -> tuple[str, requests.Response, bool]:
        body = self.rng.randbytes(UPLOAD_BYTES - 12)
        payload = b"RIFF" + (UPLOAD_BYTES - 8).to_bytes(4, "little") + b"WAVE" + body
        digest = hashlib.sha256(payload).hexdigest()
        response = self.session.post(f"{self.base}/api/uploads", timeout=TIMEOUT, data={"duration": "2.0"},
                                     files={"file": ("clip.wav", payload, "audio/wav")})
        whole = True
        if response.status_code == 201:
            meta = response.json()
            whole = meta.get("sha256") == digest
            with self.shared.lock:
                self.shared.uploads[str(meta["id"])] = digest
        return "POST /api/uploads", response, whole


def _problem_kind(response: requests.Response) -> str | None:
    try:
        body = response.json()
    except ValueError:
        return None
    kind = body.get("kind") if isinstance(body, dict) else None
    return kind if isinstance(kind, str) else None


class Load:
    """Runs phases of traffic with ``threads`` clients against ``base``."""

    def __init__(self, base: str, threads: int, shared: Shared, seed: int) -> None:
        self.clients = [Client(base, n, shared, seed) for n in range(threads)]
        self.routes = schedule(seed)
        self._counter = itertools.count()
        self._lock = threading.Lock()

    def close(self) -> None:
        for client in self.clients:
            client.close()

    def warm_up(self) -> list[Sample]:
        """Each client saves progress for every title once; the catalog and titles get cached."""
        samples = []
        for client in self.clients:
            samples.append(client.send("warmup", "catalog"))
            for title in TITLES:
                samples += [client.send("warmup", "title", title), client.send("warmup", "progress_put", title)]
        return samples

    def run(self, phase: str, *, requests_total: int | None = None,
            until: Callable[[], bool] = lambda: False) -> list[Sample]:
        """Send ``requests_total`` requests (or until ``until()``), all clients at once."""
        claimed = itertools.count()
        results: list[list[Sample]] = [[] for _ in self.clients]

        def work(client: Client, out: list[Sample]) -> None:
            for i in claimed:
                if (requests_total is not None and i >= requests_total) or until():
                    return
                out.append(client.send(phase, self._route()))

        threads = [threading.Thread(target=work, args=(c, out), name=f"soak-{c.number}")
                   for c, out in zip(self.clients, results, strict=True)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return [s for out in results for s in out]

    def _route(self) -> str:
        with self._lock:
            return self.routes[next(self._counter) % len(self.routes)]


class Monitor:
    """Polls ``/readyz`` every ``interval`` s: (monotonic time, catalog circuit state) pairs."""

    def __init__(self, base: str, circuit: str = "catalog", interval: float = 0.05) -> None:
        self.base, self.circuit, self.interval = base, circuit, interval
        self.timeline: list[tuple[float, str]] = []
        self.polls = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="soak-monitor", daemon=True)

    def __enter__(self) -> Monitor:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        with requests.Session() as session:
            while not self._stop.wait(self.interval):
                self.polls += 1
                with_state = self._poll(session)
                if with_state is not None:
                    self.timeline.append((time.monotonic(), with_state))

    def _poll(self, session: requests.Session) -> str | None:
        try:
            body = session.get(self.base + "/readyz", timeout=TIMEOUT).json()
        except (requests.RequestException, ValueError):
            return None
        state = body.get("checks", {}).get("circuits", {}).get(self.circuit)
        return state if isinstance(state, str) else None

    def states(self) -> Iterator[tuple[float, str]]:
        return iter(list(self.timeline))
