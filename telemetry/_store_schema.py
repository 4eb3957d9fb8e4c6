"""The trace store's SQLite schema: tables, indexes, version, and how a file is opened.

Whoever opens a file first creates the schema, inside one ``BEGIN IMMEDIATE``
transaction, so several processes opening a new file at once agree; the
version lives in ``PRAGMA user_version``. Writers run in WAL mode with
``synchronous=NORMAL`` (a power cut may lose the last commits, never corrupt
the file) and a busy timeout; readers open the file read-only.

Tables (``*_ns`` are nanoseconds since the epoch; JSON columns hold attributes):

* ``spans`` and ``span_events`` (events keyed by their span's row id);
* ``traces``: one summary row per trace, maintained on every write, so that
  listing and filtering traces never scans spans. It also lists its spans' row
  ids (``span_refs``, comma-separated), which is how a trace finds its spans:
  an index on ``spans.trace_id`` would cost a random B-tree page per span
  written, and spans are the bulk of every write;
* ``error_groups`` (one row per fingerprint, all-time aggregates) and
  ``error_traces`` (one row per fingerprint and trace: windowed counts,
  distinct traces, trends; it repeats its trace's ``user_id``, so distinct
  users of a group are counted from its own rows, clustered by fingerprint);
* ``logs``, ``circuit_events``, ``faults``;
* ``store_counters``: records dropped by writers, for :func:`stats` readers;
* ``store_settings``: the store's own settings, such as ``user_hash_key``, the
  random HMAC key (hex) that every process writing the file hashes user ids
  with, created by whoever needs it first (:func:`setting_or_create`), so that
  all agree on it.

Version 2 added ``traces.user_id`` and ``error_traces.user_id`` (a pseudonymous
user id, never the raw one) and ``store_settings``; :func:`prepare` migrates a version 1 file in place.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Final

SCHEMA_VERSION: Final = 2
#: Writers checkpoint the WAL themselves past this many pages (and truncate it to this size).
WAL_LIMIT_PAGES: Final = 4000

#: Bits of ``traces.kinds``: which error kinds appeared anywhere in a trace.
KIND_BITS: Final = {"logic": 1, "validation": 2, "network": 4, "io": 8}

#: Duration thresholds with a partial index each: a ``min_duration`` filter uses the
#: largest one at or below it, so slow traces are found without scanning fast ones.
SLOW_MS: Final = (100, 1000, 10_000)

_TABLES: Final = (
    """CREATE TABLE IF NOT EXISTS spans (
        id INTEGER PRIMARY KEY, trace_id TEXT NOT NULL, span_id TEXT NOT NULL,
        parent_span_id TEXT, name TEXT NOT NULL, kind TEXT NOT NULL,
        start_ns INTEGER NOT NULL, end_ns INTEGER NOT NULL, status TEXT NOT NULL,
        status_message TEXT NOT NULL, service_name TEXT NOT NULL, attributes TEXT NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS span_events (
        span_ref INTEGER NOT NULL, seq INTEGER NOT NULL, name TEXT NOT NULL,
        time_ns INTEGER NOT NULL, attributes TEXT NOT NULL,
        PRIMARY KEY (span_ref, seq)) WITHOUT ROWID""",
    """CREATE TABLE IF NOT EXISTS traces (
        trace_id TEXT PRIMARY KEY, start_ns INTEGER NOT NULL, end_ns INTEGER NOT NULL,
        duration_ns INTEGER NOT NULL, root_rank INTEGER NOT NULL, root_name TEXT NOT NULL,
        service_name TEXT NOT NULL, route TEXT, method TEXT, status_code INTEGER,
        status TEXT NOT NULL, error_kind TEXT, kinds INTEGER NOT NULL, has_fault INTEGER NOT NULL,
        span_count INTEGER NOT NULL, error_count INTEGER NOT NULL, span_refs TEXT NOT NULL,
        user_id TEXT)""",
    """CREATE TABLE IF NOT EXISTS error_groups (
        fingerprint TEXT PRIMARY KEY, kind TEXT, error_type TEXT, message TEXT,
        first_seen_ns INTEGER NOT NULL, last_seen_ns INTEGER NOT NULL, count INTEGER NOT NULL,
        injected_count INTEGER NOT NULL, trace_count INTEGER NOT NULL DEFAULT 0,
        sample_trace_id TEXT NOT NULL, route TEXT)""",
    """CREATE TABLE IF NOT EXISTS error_traces (
        fingerprint TEXT NOT NULL, trace_id TEXT NOT NULL, first_ns INTEGER NOT NULL,
        last_ns INTEGER NOT NULL, count INTEGER NOT NULL, injected INTEGER NOT NULL, route TEXT,
        user_id TEXT, PRIMARY KEY (fingerprint, trace_id)) WITHOUT ROWID""",
    """CREATE TABLE IF NOT EXISTS logs (
        id INTEGER PRIMARY KEY, time_ns INTEGER NOT NULL, level TEXT NOT NULL,
        event TEXT NOT NULL, logger TEXT NOT NULL, trace_id TEXT, span_id TEXT,
        attributes TEXT NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS circuit_events (
        id INTEGER PRIMARY KEY, time_ns INTEGER NOT NULL, circuit TEXT NOT NULL,
        old_state TEXT, new_state TEXT NOT NULL, failure_rate REAL, trace_id TEXT, span_id TEXT)""",
    """CREATE TABLE IF NOT EXISTS faults (
        id INTEGER PRIMARY KEY, time_ns INTEGER NOT NULL, trace_id TEXT, span_id TEXT,
        site TEXT, fault_kind TEXT, rule_id TEXT, seed TEXT, ordinal INTEGER,
        error_type TEXT, message TEXT, attributes TEXT NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS store_counters (
        name TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID""",
    """CREATE TABLE IF NOT EXISTS store_settings (
        name TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID""",
)

_INDEXES: Final = (
    "CREATE INDEX IF NOT EXISTS traces_start ON traces(start_ns)",
    "CREATE INDEX IF NOT EXISTS traces_status ON traces(status, start_ns)",
    "CREATE INDEX IF NOT EXISTS traces_route ON traces(route, start_ns)",
    *(f"CREATE INDEX IF NOT EXISTS traces_slower_{ms}ms ON traces(start_ns) "
      f"WHERE duration_ns >= {ms * 1_000_000}" for ms in SLOW_MS),
    "CREATE INDEX IF NOT EXISTS traces_fault ON traces(start_ns) WHERE has_fault",
    *(f"CREATE INDEX IF NOT EXISTS traces_kind_{kind} ON traces(start_ns) WHERE kinds & {bit}"
      for kind, bit in KIND_BITS.items()),
    "CREATE INDEX IF NOT EXISTS error_traces_trace ON error_traces(trace_id)",
    "CREATE INDEX IF NOT EXISTS error_traces_time ON error_traces(first_ns)",
    "CREATE INDEX IF NOT EXISTS error_traces_fp_time ON error_traces(fingerprint, first_ns)",
    "CREATE INDEX IF NOT EXISTS error_traces_route ON error_traces(route, first_ns)",
    "CREATE INDEX IF NOT EXISTS logs_trace ON logs(trace_id) WHERE trace_id IS NOT NULL",
    "CREATE INDEX IF NOT EXISTS logs_time ON logs(time_ns)",
    "CREATE INDEX IF NOT EXISTS circuit_events_name ON circuit_events(circuit, time_ns)",
    "CREATE INDEX IF NOT EXISTS circuit_events_time ON circuit_events(time_ns)",
    "CREATE INDEX IF NOT EXISTS faults_time ON faults(time_ns)",
)

_TRIGGERS: Final = (
    # A new (fingerprint, trace) pair is one more distinct trace for the group; an
    # upsert that updates an existing pair fires no INSERT trigger.
    """CREATE TRIGGER IF NOT EXISTS error_traces_new AFTER INSERT ON error_traces BEGIN
        UPDATE error_groups SET trace_count = trace_count + 1
        WHERE fingerprint = NEW.fingerprint; END""",
)

#: Statements that create the current version, in order; all are idempotent.
DDL: Final = (*_TABLES, *_INDEXES, *_TRIGGERS)

#: Columns later versions added to tables of older files: (table, column, declaration).
_ADDED_COLUMNS: Final = (("traces", "user_id", "TEXT"), ("error_traces", "user_id", "TEXT"))


class StoreVersionError(RuntimeError):
    """The file was written by a newer schema version than this code knows."""


def connect(path: Path, busy_timeout: float) -> sqlite3.Connection:
    """A read-write connection in autocommit mode (transactions are explicit)."""
    return sqlite3.connect(path, timeout=busy_timeout, isolation_level=None,
                           check_same_thread=False)


def connect_readonly(path: Path, busy_timeout: float = 5.0) -> sqlite3.Connection:
    """A read-only connection (``file:...?mode=ro``) that may be shared across threads."""
    uri = f"{path.resolve().as_uri()}?mode=ro"
    conn = sqlite3.connect(uri, uri=True, timeout=busy_timeout, isolation_level=None,
                           check_same_thread=False)
    check_version(conn)
    return conn


def check_version(conn: sqlite3.Connection) -> int:
    """The file's schema version; raises :class:`StoreVersionError` when it is too new."""
    version = int(conn.execute("PRAGMA user_version").fetchone()[0])
    if version > SCHEMA_VERSION:
        raise StoreVersionError(
            f"trace store schema version {version} is newer than this code's {SCHEMA_VERSION}")
    return version


def prepare(conn: sqlite3.Connection, *, cache_kib: int = 16384) -> None:
    """Set the connection's pragmas and create the schema if nobody has yet."""
    # auto_vacuum only takes effect on a file without tables; later it is a no-op.
    conn.execute("PRAGMA auto_vacuum = INCREMENTAL")
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.execute(f"PRAGMA journal_size_limit = {WAL_LIMIT_PAGES * 4096}")
    # Checkpoints normally run on the store's checkpointer thread; this is the backstop.
    conn.execute(f"PRAGMA wal_autocheckpoint = {WAL_LIMIT_PAGES}")
    conn.execute(f"PRAGMA cache_size = -{int(cache_kib)}")
    conn.execute("BEGIN IMMEDIATE")
    try:
        if check_version(conn) < SCHEMA_VERSION:
            _add_columns(conn)
            for statement in DDL:
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


def _add_columns(conn: sqlite3.Connection) -> None:
    """``ALTER TABLE ... ADD COLUMN`` for each column an older file's existing table lacks."""
    for table, column, declaration in _ADDED_COLUMNS:
        have = {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}
        if have and column not in have:
            conn.execute(f"ALTER TABLE {table} ADD COLUMN {column} {declaration}")


def setting_or_create(conn: sqlite3.Connection, name: str, default: str) -> str:
    """The ``store_settings`` value ``name``; ``default`` is stored first if there is none.

    ``INSERT OR IGNORE`` then ``SELECT``: when several processes race, all read the
    value of whichever inserted first.
    """
    conn.execute("INSERT OR IGNORE INTO store_settings VALUES (?, ?)", (name, default))
    row = conn.execute("SELECT value FROM store_settings WHERE name = ?", (name,)).fetchone()
    return str(row[0])


def used_bytes(conn: sqlite3.Connection) -> int:
    """Bytes of the database file in use: all pages minus free ones."""
    page_size = int(conn.execute("PRAGMA page_size").fetchone()[0])
    pages = int(conn.execute("PRAGMA page_count").fetchone()[0])
    free = int(conn.execute("PRAGMA freelist_count").fetchone()[0])
    return (pages - free) * page_size
