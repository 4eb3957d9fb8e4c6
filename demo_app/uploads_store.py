"""Uploads: staged, analysed, then published in one rename, so none is ever half-stored.

1. the bytes are copied into ``<root>/.incoming/<id>/`` and ``fsync``-ed;
2. the analysis runs (the guarded site ``upload.analyse``: bitrate = size / duration,
   where fault injection provokes the seed's ``ZeroDivisionError``);
3. only then is the metadata written and the staging directory renamed to
   ``<root>/<id>`` (atomic), and the parent directory ``fsync``-ed.

Any failure on the way removes the staging directory: the store holds complete
uploads or nothing.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import shutil
from pathlib import Path
from typing import IO, Any

from resilience import guard

from . import media
from .storage import fsync_dir, sweep_stale, write_json

_CHUNK = 256 * 1024


@guard("upload.analyse")
def analyse_upload(container: str, size_bytes: int, duration_s: float) -> media.Analysis:
    """The analysis step (a fault site; never retried: its errors are logic errors)."""
    return media.analyse(container, size_bytes, duration_s)


@guard("upload.publish")
def _publish(staging: Path, final: Path) -> None:
    os.rename(staging, final)
    fsync_dir(final.parent)


def _copy(stream: IO[bytes], target: Path) -> tuple[int, str]:
    """Copy ``stream`` to ``target`` (fsync-ed); return its size and sha256."""
    digest, size = hashlib.sha256(), 0
    with target.open("wb") as out:
        while chunk := stream.read(_CHUNK):
            digest.update(chunk)
            size += len(chunk)
            out.write(chunk)
        out.flush()
        os.fsync(out.fileno())
    return size, digest.hexdigest()


class UploadStore:
    """Complete uploads under ``<root>/<id>/`` (``media.<ext>`` and ``meta.json``)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        sweep_stale(root)  # staging directories of uploads killed mid-way

    def store(self, stream: IO[bytes], content_type: str, container: str,
              duration_s: float) -> dict[str, Any]:
        """Stage, analyse and publish one upload; return its metadata."""
        upload_id = secrets.token_hex(8)
        staging = self.root / ".incoming" / upload_id
        staging.mkdir(parents=True)
        try:
            size, sha256 = _copy(stream, staging / f"media.{container}")
            analysis = analyse_upload(container, size, duration_s)
            meta = {"id": upload_id, "content_type": content_type, "container": container,
                    "size_bytes": size, "duration_s": duration_s,
                    "bitrate_bps": analysis.bitrate_bps, "sha256": sha256}
            write_json(staging / "meta.json", meta)
            _publish(staging, self.root / upload_id)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        return meta

    def complete(self) -> list[str]:
        """Ids of the published uploads."""
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if not p.name.startswith("."))
