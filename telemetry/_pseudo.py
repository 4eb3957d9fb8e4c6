"""Pseudonymous user ids: an HMAC-SHA256 of the app's user id, never the id itself.

The key, first found of: the ``user_hash_key`` given to the Flask extension, the
``SHOCKPROOF_USER_HASH_KEY`` environment variable, the random key the trace
store keeps in its ``store_settings`` table (created by the first process that
needs it, so every process writing one store hashes alike and counts of
distinct users agree), or, with no store (or one that cannot give its key), a
random key of this process. The id is the HMAC's first 16 hex
characters.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import sqlite3
from typing import Final

from ._metrics import drops
from ._store import TraceStore

ENV_KEY: Final = "SHOCKPROOF_USER_HASH_KEY"
PSEUDO_ID_CHARS: Final = 16
_PROCESS_KEY: Final = secrets.token_bytes(32)


def hash_key(explicit: str | bytes | None, store: TraceStore | None) -> bytes:
    """The HMAC key to use (see the module docstring for the order)."""
    if explicit is not None:
        return explicit.encode() if isinstance(explicit, str) else explicit
    from_env = os.environ.get(ENV_KEY)
    if from_env:
        return from_env.encode()
    if store is None:
        return _PROCESS_KEY
    try:
        return store.user_hash_key.encode()
    except sqlite3.Error as exc:  # counts of users may then differ between processes
        drops.report("requests", 0, exc)
        return _PROCESS_KEY


def pseudo_id(user: object, key: bytes) -> str | None:
    """The pseudonymous id of ``user`` (None for no user: None or empty)."""
    if user is None or user == "":
        return None
    raw = user if isinstance(user, bytes) else str(user).encode()
    return hmac.new(key, raw, hashlib.sha256).hexdigest()[:PSEUDO_ID_CHARS]
