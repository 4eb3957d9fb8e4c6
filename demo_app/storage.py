"""Files on disk, written so that nothing half-written is ever read.

Every write goes to a temporary file in the target's own directory, is flushed and
``fsync``-ed, then ``os.replace``-d over the target, and the directory is
``fsync``-ed so the rename itself survives a crash. A failure at any step leaves
the previous file exactly as it was and removes the temporary one.

The stores below are guarded call sites (``progress.save``, ``progress.load``,
``users.save``): transient I/O errors (EIO, EAGAIN, ENOSPC ...) are retried, and
fault injection can target them by name.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import json
import os
import re
import secrets
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from resilience import Retry, ValidationFailed, exponential, guard

#: User ids double as directory names: a strict alphabet keeps them inside the store.
USER_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")

_IO_RETRY = Retry(attempts=3, backoff=exponential(0.02, cap=0.2))


def fsync_dir(directory: Path) -> None:
    """Make a rename in ``directory`` durable."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` atomically (temp file, fsync, rename, fsync dir)."""
    directory = path.parent
    directory.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    fsync_dir(directory)


#: Leftovers of a write killed mid-way (SIGKILL, power loss) older than this are swept
#: when a store starts. By age, so that workers never delete each other's writes in flight.
STALE_AFTER_S = 3600.0


def sweep_stale(root: Path, older_than: float = STALE_AFTER_S, now: float | None = None) -> int:
    """Remove temporary files (``*.tmp``) and upload staging directories (``.incoming/*``)
    under ``root`` that are older than ``older_than`` seconds; returns how many went.

    Readers never see these (they look only at final names), but after crashes they
    would otherwise pile up on disk forever.
    """
    if not root.is_dir():
        return 0
    cutoff = (time.time() if now is None else now) - older_than
    removed = 0
    for path in [*root.rglob("*.tmp"), *root.glob(".incoming/*")]:
        with contextlib.suppress(OSError):  # gone already, or not ours to remove
            if path.lstat().st_mtime >= cutoff:
                continue
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink()
            removed += 1
    return removed


def write_json(path: Path, value: Any) -> None:
    atomic_write(path, json.dumps(value, sort_keys=True).encode())


def read_json(path: Path) -> Any | None:
    """The JSON document at ``path``, or None when there is none."""
    try:
        return json.loads(path.read_bytes())
    except FileNotFoundError:
        return None


def check_user_id(user_id: str, field: str = "user") -> str:
    """Reject user ids that could leave the store (``..``, ``/``, NUL ...)."""
    if not USER_ID.fullmatch(user_id):
        raise ValidationFailed.from_mapping(
            {field: "must be 1-64 letters, digits, '-' or '_', starting with a letter or digit"})
    return user_id


def _inside(root: Path, *parts: str) -> Path:
    path = root.joinpath(*parts)
    if not path.resolve().is_relative_to(root.resolve()):  # belt and braces after check_user_id
        raise ValidationFailed.from_mapping({"user": "not a valid user id"})
    return path


# -- watch progress -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Progress:
    title_id: int
    position_s: float
    updated_at: float

    def as_json(self) -> dict[str, Any]:
        return {"title_id": self.title_id, "position_s": self.position_s,
                "updated_at": self.updated_at}


class ProgressStore:
    """One small JSON file per user and title: ``<root>/<user>/<title>.json``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        sweep_stale(root)

    def path(self, user_id: str, title_id: int) -> Path:
        return _inside(self.root, check_user_id(user_id), f"{int(title_id)}.json")

    @guard("progress.save", retry=_IO_RETRY)
    def save(self, user_id: str, title_id: int, position_s: float) -> Progress:
        progress = Progress(int(title_id), float(position_s), round(time.time(), 3))
        write_json(self.path(user_id, title_id), progress.as_json())
        return progress

    @guard("progress.load", retry=_IO_RETRY)
    def load(self, user_id: str, title_id: int) -> Progress | None:
        found = read_json(self.path(user_id, title_id))
        if not isinstance(found, dict):
            return None
        return Progress(int(found["title_id"]), float(found["position_s"]),
                        float(found["updated_at"]))


# -- users ----------------------------------------------------------------------------------

_SCRYPT = {"n": 2**14, "r": 8, "p": 1}


def hash_password(password: str) -> str:
    """``scrypt$n$r$p$salt$hash`` with a fresh 16-byte salt; the clear text is never kept."""
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, dklen=32, **_SCRYPT)
    b64 = base64.b64encode
    return f"scrypt${_SCRYPT['n']}${_SCRYPT['r']}${_SCRYPT['p']}${b64(salt).decode()}${b64(digest).decode()}"


def verify_password(password: str, stored: str) -> bool:
    """True when ``password`` matches a hash made by :func:`hash_password`."""
    scheme, n, r, p, salt, digest = stored.split("$")
    if scheme != "scrypt":
        return False
    again = hashlib.scrypt(password.encode(), salt=base64.b64decode(salt), n=int(n), r=int(r),
                           p=int(p), dklen=32)
    return hmac.compare_digest(again, base64.b64decode(digest))


class EmailTaken(Exception):
    """An account with this email exists already."""


@dataclass(frozen=True, slots=True)
class User:
    user_id: str
    display_name: str
    plan: str


class UserStore:
    """Users as ``<root>/<user_id>.json``, plus ``<root>/by-email/<sha256>`` for uniqueness."""

    def __init__(self, root: Path) -> None:
        self.root = root
        sweep_stale(root)

    @staticmethod
    def _email_key(email: str) -> str:
        return hashlib.sha256(email.strip().lower().encode()).hexdigest()

    @guard("users.save", retry=_IO_RETRY)
    def create(self, email: str, display_name: str, password_hash: str, plan: str) -> User:
        """Store a new user; raises :class:`EmailTaken` if the email is registered.

        Takes the password's hash (:func:`hash_password`): the clear text never enters
        a guarded call, so it cannot reach an event, a span or a log.
        """
        user = User("u-" + secrets.token_hex(8), display_name, plan)
        record = {"user_id": user.user_id, "email": email, "display_name": display_name,
                  "plan": plan, "password_hash": password_hash, "created_at": time.time()}
        path = self.root / f"{user.user_id}.json"
        write_json(path, record)
        try:
            self._claim_email(email, user.user_id)
        except BaseException:
            with contextlib.suppress(OSError):
                path.unlink()
            raise
        return user

    def _claim_email(self, email: str, user_id: str) -> None:
        index = self.root / "by-email"
        index.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=index, suffix=".tmp")
        try:
            try:
                os.write(fd, user_id.encode())
                os.fsync(fd)
            finally:
                os.close(fd)
            try:
                os.link(tmp, index / self._email_key(email))  # atomic: fails if it exists
            except FileExistsError:
                raise EmailTaken() from None
        finally:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        fsync_dir(index)

    def get(self, user_id: str) -> dict[str, Any] | None:
        found = read_json(_inside(self.root, f"{check_user_id(user_id)}.json"))
        return found if isinstance(found, dict) else None
