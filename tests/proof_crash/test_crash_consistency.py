"""Crash consistency: SIGKILL the demo app mid-write, again and again; nothing is torn or lost.

One campaign (``_campaign.py``) runs for the module: the demo app is a real process
(waitress) on its own data directory, clients write watch progress and upload media
back to back, and the app is killed with SIGKILL at seeded moments (after a number of
requests, or while an upload or a progress write is half-way) and started again on the
same directory. After each kill the directory is checked while the app is dead, and
every progress value is read back over HTTP from the restarted app.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from demo_app.uploads_store import UploadStore
from tests.proof_crash._campaign import Campaign, Result

KILLS = 16


@pytest.fixture(scope="module")
def crashes(tmp_path_factory: pytest.TempPathFactory) -> tuple[Result, Path]:
    """The campaign's result and its data directory."""
    root = tmp_path_factory.mktemp("crash")
    result = Campaign(root / "data", root / "app-stderr.log", kills=KILLS).run()
    assert not result.errors, f"a client crashed, the campaign is void: {result.errors}"
    return result, root / "data"


@pytest.fixture(scope="module")
def result(crashes: tuple[Result, Path]) -> Result:
    """The campaign's result alone."""
    return crashes[0]


def test_kills_broke_requests_in_flight(result: Result) -> None:
    """Kills landed while requests were in flight, so the checks below are about interrupted writes."""
    assert sum(k.in_flight for k in result.kills) >= KILLS
    assert result.broken >= KILLS // 2


def test_kills_caught_uploads_and_progress_writes_half_way(result: Result) -> None:
    """Some kills hit an upload being stored and some a progress write before its rename."""
    caught = {k.mode for k in result.kills if k.caught}
    assert {"upload", "progress"} <= caught, result.kills


def test_writes_were_acknowledged_between_kills(result: Result) -> None:
    """Clients got acknowledgements all along (the ledger is not empty)."""
    assert result.ledger.acknowledged() >= 2 * KILLS
    assert len(result.acked_uploads) >= KILLS // 4


def test_a_live_app_acknowledges_every_write(result: Result) -> None:
    """Outside kills, every write and read-back is answered successfully."""
    assert result.unexpected == []


def test_no_progress_file_is_torn(result: Result) -> None:
    """Every progress file under a reader's name is a whole JSON document of the right shape."""
    assert result.torn == []


def test_progress_keeps_the_last_acknowledged_or_a_later_sent_value(result: Result) -> None:
    """After each kill (on disk, and read over HTTP after the restart) no acknowledged write is lost."""
    assert result.lost == []


def test_every_acknowledged_upload_is_stored_whole(result: Result) -> None:
    """Every upload answered 201 is on disk after every later kill, with the bytes that were sent."""
    assert result.missing_uploads == []


def test_published_uploads_are_complete(result: Result) -> None:
    """Nothing half-stored is ever published: each visible upload has its meta and its full media."""
    assert result.partial_uploads == []


def test_published_uploads_are_what_clients_sent(result: Result) -> None:
    """Every published upload's bytes hash to a payload a client sent (acknowledged or not)."""
    assert result.unsent_uploads == []


def test_the_app_lists_published_uploads_and_none_of_the_leftovers(crashes: tuple[Result, Path]) -> None:
    """The app's own listing is exactly the whole uploads: staging a kill left behind stays hidden."""
    result, data_dir = crashes
    assert result.final is not None
    assert any(path.startswith("uploads/.incoming/") for path in result.final.leftovers)
    assert UploadStore(data_dir / "uploads").complete() == sorted(result.final.uploads)


def test_trace_store_is_intact_after_kills(crashes: tuple[Result, Path]) -> None:
    """The app's SQLite trace store passes an integrity check after all the kills."""
    with sqlite3.connect(f"file:{crashes[1] / 'telemetry.db'}?mode=ro", uri=True) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
