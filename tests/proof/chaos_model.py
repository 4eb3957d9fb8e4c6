"""What the chaos test knows independently of the app: the ledger of acknowledged writes,
the catalog circuit's failure history, and the oracles for expected answers.

The ledger holds only what the app *acknowledged* (signup 201, upload 201, progress
2xx); the data directory is checked against it after every step, file by file, so a
lost write, a phantom write from a failed request or a half-written file shows up.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from demo_app import upstream
from demo_app.storage import USER_ID
from resilience import ErrorKind, classify

TITLES = 3


@dataclass(frozen=True)
class UserRecord:
    """An acknowledged signup."""

    user_id: str
    email: str
    display_name: str
    plan: str


@dataclass
class Ledger:
    """Every acknowledged write, with the value the app acknowledged."""

    users: dict[str, UserRecord] = field(default_factory=dict)  # by lower-cased email
    uploads: dict[str, dict[str, Any]] = field(default_factory=dict)  # id -> meta
    upload_digests: dict[str, str] = field(default_factory=dict)  # id -> sha256 of what was sent
    progress: dict[tuple[str, int], float] = field(default_factory=dict)

    def problems(self, data_dir: Path) -> list[str]:
        """Differences between the data directory and the ledger (empty when they agree)."""
        return [*self._user_problems(data_dir / "users"), *self._upload_problems(data_dir / "uploads"),
                *self._progress_problems(data_dir / "progress")]

    def _user_problems(self, root: Path) -> list[str]:
        found = sorted(p.stem for p in root.glob("*.json")) if root.is_dir() else []
        out = [] if found == sorted(u.user_id for u in self.users.values()) else [
            f"users on disk {found} != acknowledged {sorted(u.user_id for u in self.users.values())}"]
        for email, user in self.users.items():
            record = _json(root / f"{user.user_id}.json")
            seen = {k: record.get(k) for k in ("user_id", "email", "display_name", "plan")} if record else None
            if seen != {"user_id": user.user_id, "email": email, "display_name": user.display_name,
                        "plan": user.plan}:
                out.append(f"user {user.user_id}: stored {seen}, acknowledged {user}")
            claim = root / "by-email" / hashlib.sha256(email.encode()).hexdigest()
            if not claim.is_file() or claim.read_text() != user.user_id:
                out.append(f"email claim of {user.user_id} missing or wrong")
        return out

    def _upload_problems(self, root: Path) -> list[str]:
        found = sorted(p.name for p in root.iterdir() if not p.name.startswith(".")) if root.is_dir() else []
        out = [] if found == sorted(self.uploads) else [f"uploads on disk {found} != acknowledged {sorted(self.uploads)}"]
        for upload_id, meta in self.uploads.items():
            stored = _json(root / upload_id / "meta.json")
            media = root / upload_id / f"media.{meta['container']}"
            if stored != meta:
                out.append(f"upload {upload_id}: meta {stored} != acknowledged {meta}")
            elif not media.is_file() or hashlib.sha256(media.read_bytes()).hexdigest() != self.upload_digests[upload_id]:
                out.append(f"upload {upload_id}: media missing or not the bytes sent")
        return out

    def _progress_problems(self, root: Path) -> list[str]:
        found = {(p.parent.name, int(p.stem)) for p in root.glob("*/*.json")} if root.is_dir() else set()
        out = [] if found == set(self.progress) else [f"progress on disk {sorted(found)} != acknowledged {sorted(self.progress)}"]
        for (user, title), position in self.progress.items():
            stored = _json(root / user / f"{title}.json")
            if not stored or stored.get("position_s") != position or stored.get("title_id") != title:
                out.append(f"progress {user}/{title}: stored {stored}, acknowledged {position}")
        return out


def _json(path: Path) -> dict[str, Any] | None:
    try:
        value = json.loads(path.read_bytes())
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


# -- the catalog circuit's failure history ---------------------------------------------------------


def counted(exc: BaseException) -> bool:
    """Whether a breaker counts this failure (DESIGN: network, I/O and transient errors do)."""
    c = classify(exc)
    return c.transient or c.kind in (ErrorKind.NETWORK, ErrorKind.IO)


@dataclass
class Attempt:
    """One attempt of a ``catalog.fetch`` call: None until it failed (or the next one began)."""

    call_id: int
    number: int
    failed: bool = False
    counted: bool = False


@dataclass(frozen=True)
class Transition:
    """A circuit transition, after ``attempts`` attempts, at fake-clock time ``at``."""

    attempts: int
    old: str
    new: str
    at: float


@dataclass
class CircuitModel:
    """The attempts the circuit admitted and the transitions it made, in order."""

    consecutive: int
    open_for: float
    attempts: list[Attempt] = field(default_factory=list)
    transitions: list[Transition] = field(default_factory=list)

    def failed(self, call_id: int, number: int, exc: BaseException) -> None:
        for attempt in reversed(self.attempts):
            if (attempt.call_id, attempt.number) == (call_id, number):
                attempt.failed, attempt.counted = True, counted(exc)
                return
        raise AssertionError(f"attempt {number} of call {call_id} failed without starting")

    def streak(self, end: int) -> int:
        """Counted failures in a row before attempt ``end`` (since the circuit last closed)."""
        start = max((t.attempts for t in self.transitions if t.new == "closed" and t.attempts <= end),
                    default=0)
        run = 0
        for attempt in reversed(self.attempts[start:end]):
            if not attempt.failed:
                break
            run += attempt.counted  # logic and validation failures neither count nor reset
        return run

    def problems(self, state: str, now: float) -> list[str]:
        """Transitions or a current state (at fake-clock time ``now``) the history does not explain."""
        out = [self._unexplained(i, t) for i, t in enumerate(self.transitions)]
        if state == "closed" and self.streak(len(self.attempts)) >= self.consecutive:
            out.append(f"closed after {self.streak(len(self.attempts))} counted failures in a row")
        last = self.transitions[-1] if self.transitions else None
        last_state = last.new if last else "closed"
        timed_out = last is not None and last.new == "open" and now - last.at >= self.open_for
        if state != last_state and not (state == "half-open" and timed_out):
            out.append(f"circuit is {state} but its last transition was to {last_state} ({last})")
        return [p for p in out if p]

    def _unexplained(self, index: int, t: Transition) -> str:
        before = self.attempts[t.attempts - 1] if t.attempts else None
        opened_at = next((x.at for x in reversed(self.transitions[:index]) if x.new == "open"), None)
        if (t.old, t.new) == ("closed", "open") and self.streak(t.attempts) < self.consecutive:
            return f"opened after only {self.streak(t.attempts)} counted failures: {t}"
        if (t.old, t.new) == ("half-open", "open") and not (before and before.failed and before.counted):
            return f"re-opened without a failed probe: {t}"
        if (t.old, t.new) == ("half-open", "closed") and (before is None or before.failed):
            return f"closed without a successful probe: {t}"
        if t.new == "half-open" and (t.old != "open" or opened_at is None or t.at - opened_at < self.open_for):
            return f"half-opened before open_for elapsed: {t} (opened at {opened_at})"
        return ""


# -- oracles -------------------------------------------------------------------------------------


def catalog_document() -> dict[str, Any]:
    """What the upstream serves at ``/titles`` (deterministic)."""
    return {"titles": [{**upstream.title(t), "artwork": upstream.artwork(t)} for t in range(1, TITLES + 1)]}


def title_document(title_id: int) -> dict[str, Any]:
    return upstream.details(title_id, TITLES)


def expected_range(header: str | None, size: int) -> tuple[int, int] | str | None:
    """An independent reading of RFC 9110 byte ranges: (first, last), None (whole body) or "416"."""
    if header is None:
        return None
    spec = header.strip()
    unit, _, ranges = spec.partition("=")
    if unit.lower() == "bytes" and "," in ranges:
        return None
    if unit != "bytes" or ranges.count("-") != 1:
        return "416"
    first, last = ranges.split("-")
    if not (_digits(first) and _digits(last)) or first == last == "":
        return "416"
    if first == "":
        n = int(last)
        return "416" if n == 0 or size == 0 else (max(0, size - n), size - 1)
    start, end = int(first), min(int(last), size - 1) if last else size - 1
    return "416" if start >= size or end < start else (start, end)


def _digits(text: str) -> bool:
    return text == "" or (text.isascii() and text.isdigit())


def valid_user(user_id: str) -> bool:
    return USER_ID.fullmatch(user_id) is not None
