"""A kill campaign: clients write to the demo app while it is SIGKILLed and restarted, again and again.

Three progress writers (one user each, titles round-robin, increasing positions)
and one uploader (distinct WAV payloads of 256-768 KiB) send requests back to back.
Each round the controller waits for a trigger chosen by a seeded schedule, kills
the app's process group with SIGKILL, waits until every client has its answer (an
acknowledgement or a broken connection), looks at the data directory while the app
is dead, starts the app again on the same directory and reads every progress value
back over HTTP before letting the clients go on. Triggers:

* ``count``: after a seeded number of completed requests (other requests are in flight);
* ``upload``: once an upload is being stored (its staging directory exists);
* ``progress``: once a progress write is between its temporary file and its rename.

The last two watch the data directory in a tight, bounded loop (no sleeping), so the
kill lands in the middle of a write; ``caught`` records whether it did.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

from bench._soak_logic import Ledger, Lost, Value
from tests.proof_crash import _disk
from tests.proof_crash._app import App, start_app

SEED = 20_240_607
USERS = ("ada", "brian", "chloe")
TITLES = (1, 2, 3)
REQUEST_TIMEOUT = 20.0
WAIT = 60.0  # bound on every wait of the campaign (a slow machine, never a hang)
MODES = ("count", "upload", "progress")


@dataclass(frozen=True)
class Kill:
    """One SIGKILL: how it was triggered, whether it caught a write mid-way, what was in flight."""

    mode: str
    caught: bool
    in_flight: int
    leftovers: int


@dataclass
class Result:
    """Everything the campaign saw; the tests assert on it."""

    kills: list[Kill] = field(default_factory=list)
    ledger: Ledger = field(default_factory=Ledger)
    lost: list[tuple[str, Lost]] = field(default_factory=list)  # (where it was read, what)
    torn: list[str] = field(default_factory=list)
    partial_uploads: list[str] = field(default_factory=list)
    sent_uploads: set[str] = field(default_factory=set)  # sha256 of every payload sent
    acked_uploads: dict[str, str] = field(default_factory=dict)  # id -> sha256
    missing_uploads: list[str] = field(default_factory=list)
    unsent_uploads: list[str] = field(default_factory=list)  # published, but not what was sent
    unexpected: list[str] = field(default_factory=list)  # answers from a live app that are not OK
    broken: int = 0  # requests whose connection a kill broke
    errors: list[str] = field(default_factory=list)  # client crashes (the campaign is void)
    final: _disk.DiskState | None = None  # the last look at the data directory


class Gate:
    """Where clients get the app's URL; closed while the app is down; counts requests in flight."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._url: str | None = None
        self._stopped = False
        self.in_flight = 0
        self.completed = 0

    def enter(self) -> str | None:
        """The URL to send one request to (None: the campaign is over)."""
        with self._cond:
            self._cond.wait_for(lambda: self._url is not None or self._stopped, WAIT)
            if self._stopped or self._url is None:
                return None
            self.in_flight += 1
            return self._url

    def leave(self) -> None:
        with self._cond:
            self.in_flight -= 1
            self.completed += 1
            self._cond.notify_all()

    def open(self, url: str) -> None:
        with self._cond:
            self._url, self.completed = url, 0
            self._cond.notify_all()

    def close(self) -> int:
        """No new requests; returns how many are in flight."""
        with self._cond:
            self._url = None
            return self.in_flight

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify_all()

    def wait(self, predicate: Callable[[], bool]) -> bool:
        with self._cond:
            return self._cond.wait_for(predicate, WAIT)


@dataclass
class _Signals:
    upload: threading.Event = field(default_factory=threading.Event)
    progress: threading.Event = field(default_factory=threading.Event)


def wav_payload(rng: random.Random) -> bytes:
    """A distinct WAV-looking payload of 256-768 KiB (the upload endpoint sniffs RIFF/WAVE)."""
    size = rng.randrange(256, 768) * 1024
    return b"RIFF" + (size - 8).to_bytes(4, "little") + b"WAVE" + rng.randbytes(size - 12)


class Campaign:
    """Run :data:`kills` rounds over ``data_dir``; :meth:`run` returns the :class:`Result`."""

    def __init__(self, data_dir: Path, log: Path, kills: int) -> None:
        self.data_dir, self.log = data_dir, log
        self.rng = random.Random(SEED)
        self.schedule = [MODES[i % len(MODES)] for i in range(kills)]
        self.rng.shuffle(self.schedule)
        self.gate = Gate()
        self.signals = _Signals()
        self.result = Result()
        self._lock = threading.Lock()

    # -- clients ---------------------------------------------------------------------------

    def _client(self, body: Callable[[requests.Session, str], None]) -> None:
        session = requests.Session()
        try:
            while (url := self.gate.enter()) is not None:
                try:
                    body(session, url)
                except requests.RequestException:
                    with self._lock:
                        self.result.broken += 1
                    session.close()
                    session = requests.Session()
                finally:
                    self.gate.leave()
        except BaseException as exc:
            self.result.errors.append(repr(exc))
            raise
        finally:
            session.close()

    def _progress_writer(self, user: str) -> Callable[[requests.Session, str], None]:
        sent = iter(range(1, 10**9))

        def write(session: requests.Session, url: str) -> None:
            n = next(sent)
            title, position = TITLES[n % len(TITLES)], n * 1.5
            key = f"{user}/{title}"
            index = self.result.ledger.sent(key, position)
            acked = False
            try:
                self.signals.progress.set()
                response = session.put(f"{url}/api/progress/{title}", json={"position_s": position},
                                       headers={"X-User": user}, timeout=REQUEST_TIMEOUT)
                acked = response.status_code == 200 and response.json().get("position_s") == position
                if not acked:
                    self._unexpected(f"PUT {key} -> {response.status_code} {response.text[:200]}")
            finally:
                self.result.ledger.answered(key, index, acked)

        return write

    def _uploader(self) -> Callable[[requests.Session, str], None]:
        rng = random.Random(SEED + 1)

        def upload(session: requests.Session, url: str) -> None:
            payload = wav_payload(rng)
            digest = _disk.sha256(payload)
            self.result.sent_uploads.add(digest)
            self.signals.upload.set()
            response = session.post(f"{url}/api/uploads", data={"duration": "2.5"},
                                    files={"file": ("clip.wav", payload, "audio/wav")},
                                    timeout=REQUEST_TIMEOUT)
            body: Any = response.json() if response.status_code == 201 else None
            if isinstance(body, dict) and body.get("sha256") == digest:
                self.result.acked_uploads[str(body["id"])] = digest
            else:
                self._unexpected(f"POST upload -> {response.status_code} {response.text[:200]}")

        return upload

    def _unexpected(self, what: str) -> None:
        with self._lock:
            self.result.unexpected.append(what)

    # -- the controller --------------------------------------------------------------------

    def run(self) -> Result:
        bodies = [self._progress_writer(user) for user in USERS] + [self._uploader()]
        threads = [threading.Thread(target=self._client, args=(body,), daemon=True) for body in bodies]
        app = start_app(self.data_dir, self.log)
        try:
            self.gate.open(app.url)
            for thread in threads:
                thread.start()
            for mode in self.schedule:
                app = self._round(app, mode)
        finally:
            self.gate.stop()
            for thread in threads:
                thread.join(WAIT)
            app.stop()
        self.result.final = self._look()
        return self.result

    def _round(self, app: App, mode: str) -> App:
        caught = self._trigger(mode)
        in_flight = self.gate.close()
        app.kill()
        if not self.gate.wait(lambda: self.gate.in_flight == 0):
            raise AssertionError("clients still waiting for answers a minute after the kill")
        known = set(self.result.final.leftovers) if self.result.final else set()
        seen = self.result.final = self._look()
        self.result.kills.append(Kill(mode, caught, in_flight, len(set(seen.leftovers) - known)))
        app = start_app(self.data_dir, self.log)
        self._read_back(app.url)
        self.gate.open(app.url)
        return app

    def _trigger(self, mode: str) -> bool:
        """Wait for this round's moment to kill; True when a write is caught mid-way."""
        known = self._writes_in_progress()  # leftovers of earlier kills are not in progress
        if mode == "count":
            target = self.rng.randint(5, 40)
            self.gate.wait(lambda: self.gate.completed >= target)
            return bool(self._writes_in_progress() - known)
        signal = self.signals.upload if mode == "upload" else self.signals.progress
        signal.clear()
        if not signal.wait(WAIT):
            return False
        prefix = "uploads/" if mode == "upload" else "progress/"
        return _spin_until(lambda: any(p.startswith(prefix) for p in self._writes_in_progress() - known),
                           limit=3.0)

    def _writes_in_progress(self) -> set[str]:
        """Staging directories of uploads and temporary progress files, as relative paths."""
        incoming = self.data_dir / "uploads" / ".incoming"
        found = {f"uploads/{p.name}" for p in _entries(incoming)}
        for user_dir in _entries(self.data_dir / "progress"):
            found |= {f"progress/{user_dir.name}/{p.name}" for p in _entries(user_dir)
                      if p.name.endswith(".tmp")}
        return found

    # -- checks ------------------------------------------------------------------------------

    def _look(self) -> _disk.DiskState:
        """Check the data directory (the app is not running) against what the clients know."""
        seen = _disk.look(self.data_dir)
        result = self.result
        result.torn += seen.torn
        result.partial_uploads += seen.partial_uploads
        result.lost += [("disk", lost) for lost in result.ledger.check_all(seen.progress)]
        result.missing_uploads += [i for i, sha in result.acked_uploads.items()
                                   if seen.uploads.get(i) != sha]
        result.unsent_uploads += [i for i, sha in seen.uploads.items() if sha not in result.sent_uploads]
        return seen

    def _read_back(self, url: str) -> None:
        """Every progress value, read over HTTP from the restarted app."""
        observed: dict[str, Value] = {}
        with requests.Session() as session:
            for key in self.result.ledger.written():
                user, title = key.split("/")
                response = session.get(f"{url}/api/progress/{title}", headers={"X-User": user},
                                       timeout=REQUEST_TIMEOUT)
                if response.status_code == 200:
                    observed[key] = float(response.json()["position_s"])
                elif response.status_code != 404:
                    self._unexpected(f"GET {key} after restart -> {response.status_code}")
        self.result.lost += [("http", lost) for lost in self.result.ledger.check_all(observed)]


def _spin_until(condition: Callable[[], bool], limit: float) -> bool:
    """Check ``condition`` in a tight loop for at most ``limit`` seconds (no sleeping)."""
    give_up = time.monotonic() + limit
    while time.monotonic() < give_up:
        if condition():
            return True
    return False


def _entries(directory: Path) -> list[Path]:
    """What ``directory`` holds right now (nothing when it does not exist, or is being replaced)."""
    try:
        return list(directory.iterdir())
    except OSError:
        return []
