"""File path: watch progress saved atomically per user; ENOSPC is 507 and the old value survives."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient

from demo_app import storage
from tests.demo_app.support import files_under, problem

ALICE = {"X-User": "alice"}


def _put(client: FlaskClient, position: Any, title: int = 1, headers: dict[str, str] = ALICE) -> Any:
    return client.put(f"/api/progress/{title}", json={"position_s": position}, headers=headers)


def test_saved_progress_reads_back(client: FlaskClient) -> None:
    """PUT then GET returns the saved position for that user and title."""
    saved = _put(client, 42.5)
    assert saved.status_code == 200
    body = client.get("/api/progress/1", headers=ALICE).get_json()
    assert (body["title_id"], body["position_s"]) == (1, 42.5)


def test_progress_is_kept_per_user(client: FlaskClient) -> None:
    """Another user does not see alice's position."""
    _put(client, 10)
    response = client.get("/api/progress/1", headers={"X-User": "bob"})
    assert response.status_code == 404
    assert problem(response)["type"].endswith("/no-progress")


def test_the_signup_cookie_identifies_the_user(client: FlaskClient) -> None:
    """After signup, progress works without an X-User header."""
    client.post("/api/signup", json={"email": "c@example.com", "display_name": "C",
                                     "password": "long-enough-pw", "plan": "free"})
    assert _put(client, 7.0, headers={}).status_code == 200
    assert client.get("/api/progress/1").get_json()["position_s"] == 7.0


def test_no_user_at_all_is_401(client: FlaskClient) -> None:
    """Without X-User or a cookie: 401 problem whose challenge names the X-User header."""
    response = _put(client, 1.0, headers={})
    assert (response.status_code, problem(response)["kind"]) == (401, "validation")
    assert response.headers["WWW-Authenticate"].startswith("X-User ")


@pytest.mark.parametrize("user", ["../etc", "a/b", ".hidden", "x" * 65, "..", "a\\b", "ä"])
def test_user_ids_that_could_leave_the_store_are_rejected(client: FlaskClient, tmp_path: Path,
                                                          user: str) -> None:
    """Path-traversal shaped user ids are a 422, and nothing is written anywhere."""
    response = _put(client, 1.0, headers={"X-User": user})
    assert response.status_code == 422
    assert files_under(tmp_path / "data" / "progress") == []


@pytest.mark.parametrize("position", [-1, "NaN", "soon", None, 10**9])
def test_invalid_positions_are_422(client: FlaskClient, position: Any) -> None:
    """Negative, non-finite, non-numeric and absurd positions are rejected field by field."""
    response = _put(client, position)
    assert [e["field"] for e in problem(response)["errors"]] == ["position_s"]


def test_unknown_fields_are_422(client: FlaskClient) -> None:
    """Extra fields are refused (extra=forbid)."""
    response = client.put("/api/progress/1", json={"position_s": 1, "pos": 2}, headers=ALICE)
    assert [e["field"] for e in problem(response)["errors"]] == ["pos"]


def test_malformed_json_is_400(client: FlaskClient) -> None:
    """A body that is not JSON is a 400."""
    response = client.put("/api/progress/1", data=b"{position", content_type="application/json",
                          headers=ALICE)
    assert response.status_code == 400


def test_a_full_disk_is_507_and_the_previous_value_survives(client: FlaskClient, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """ENOSPC at the rename: 507 problem (kind io), the old position intact, no temp file left."""
    _put(client, 10.0)

    def full(src: object, dst: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "replace", full)
    response = _put(client, 99.0)
    monkeypatch.undo()
    body = problem(response)
    assert (response.status_code, body["kind"]) == (507, "io")
    assert client.get("/api/progress/1", headers=ALICE).get_json()["position_s"] == 10.0
    assert files_under(tmp_path / "data" / "progress") == ["alice/1.json"]


def test_enospc_while_writing_leaves_the_previous_value(client: FlaskClient, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """ENOSPC in the middle of writing the temp file: the old value is still what is read."""
    _put(client, 5.0)
    real_fsync = os.fsync

    def failing_fsync(fd: int) -> None:
        if stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(errno.ENOSPC, "No space left on device")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", failing_fsync)
    assert _put(client, 6.0).status_code == 507
    monkeypatch.undo()
    assert client.get("/api/progress/1", headers=ALICE).get_json()["position_s"] == 5.0
    assert files_under(tmp_path / "data" / "progress") == ["alice/1.json"]


def test_a_transient_io_error_is_retried(client: FlaskClient, monkeypatch: pytest.MonkeyPatch) -> None:
    """One EIO at the rename is retried and the save succeeds."""
    real_replace = os.replace
    failures = [OSError(errno.EIO, "I/O error")]

    def flaky(src: Any, dst: Any) -> None:
        if failures:
            raise failures.pop()
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", flaky)
    assert _put(client, 12.5).status_code == 200
    assert failures == []
    assert client.get("/api/progress/1", headers=ALICE).get_json()["position_s"] == 12.5


def test_a_missing_store_directory_is_a_503_io_problem(client: FlaskClient, tmp_path: Path) -> None:
    """When the progress directory is a regular file (ENOTDIR), save and load answer 503, kind io."""
    (tmp_path / "data" / "progress").write_text("in the way")
    saved = _put(client, 1.0)
    loaded = client.get("/api/progress/1", headers=ALICE)
    assert [(r.status_code, problem(r)["kind"]) for r in (saved, loaded)] == [(503, "io"), (503, "io")]
    assert "progress" not in problem(saved)["detail"]


def test_the_write_is_atomic_temp_fsync_rename_fsync_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """atomic_write fsyncs the temp file, renames it over the target, then fsyncs the directory."""
    steps: list[str] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd: int) -> None:
        steps.append("fsync dir" if stat.S_ISDIR(os.fstat(fd).st_mode) else "fsync file")
        real_fsync(fd)

    def replace(src: Any, dst: Any) -> None:
        steps.append("rename")
        real_replace(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    storage.atomic_write(tmp_path / "f.json", b"{}")
    assert steps == ["fsync file", "rename", "fsync dir"]
    assert (tmp_path / "f.json").read_bytes() == b"{}"
