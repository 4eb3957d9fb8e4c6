"""Leftovers of writes killed mid-way are swept when the stores start, by age only."""

from __future__ import annotations

import os
import time
from pathlib import Path

from demo_app.storage import STALE_AFTER_S, ProgressStore, UserStore, sweep_stale
from demo_app.uploads_store import UploadStore


def _aged(path: Path, age_s: float) -> Path:
    stamp = time.time() - age_s
    os.utime(path, (stamp, stamp))
    return path


def _leftovers(root: Path, age_s: float) -> list[Path]:
    (root / "alice").mkdir(parents=True, exist_ok=True)
    (root / ".incoming" / f"up{int(age_s)}").mkdir(parents=True, exist_ok=True)
    tmp = root / "alice" / f".1.json.{int(age_s)}.tmp"
    tmp.write_bytes(b'{"title_id": 1, "posi')
    return [_aged(tmp, age_s), _aged(root / ".incoming" / f"up{int(age_s)}", age_s)]


def test_stale_temp_files_and_staging_dirs_are_removed(tmp_path: Path) -> None:
    """Older than the threshold: a torn temp file and a staging directory both go."""
    stale = _leftovers(tmp_path, STALE_AFTER_S + 60)
    assert sweep_stale(tmp_path) == 2
    assert [p.exists() for p in stale] == [False, False]


def test_recent_leftovers_are_kept_for_writers_in_flight(tmp_path: Path) -> None:
    """Younger than the threshold: possibly another worker's write in flight, so kept."""
    recent = _leftovers(tmp_path, 5)
    assert sweep_stale(tmp_path) == 0
    assert [p.exists() for p in recent] == [True, True]


def test_final_files_are_never_swept(tmp_path: Path) -> None:
    """Only *.tmp names and staging directories are candidates, however old the rest is."""
    (tmp_path / "alice").mkdir()
    final = tmp_path / "alice" / "1.json"
    final.write_text('{"title_id": 1}')
    _aged(final, STALE_AFTER_S * 10)
    assert sweep_stale(tmp_path) == 0
    assert final.read_text() == '{"title_id": 1}'


def test_every_store_sweeps_its_directory_when_it_starts(tmp_path: Path) -> None:
    """ProgressStore, UserStore and UploadStore each sweep their root on construction."""
    roots = [tmp_path / name for name in ("progress", "users", "uploads")]
    stale = [p for root in roots for p in _leftovers(root, STALE_AFTER_S + 60)]
    ProgressStore(roots[0]), UserStore(roots[1]), UploadStore(roots[2])
    assert [p for p in stale if p.exists()] == []
