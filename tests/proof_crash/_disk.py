"""What the data directory holds after a crash: progress files, published uploads, leftovers.

Readers look at ``progress/<user>/<title>.json`` and at the published uploads
``uploads/<id>/`` (``meta.json`` and ``media.<container>``). Writers stage under
dot-names (``progress/<user>/.<title>.json.<random>.tmp``, ``uploads/.incoming/<id>/``)
that readers never look at; a SIGKILL may leave those behind (leftovers), but
nothing partial may ever appear under a reader's name.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

_PROGRESS_NAME = re.compile(r"^(\d+)\.json$")
_PROGRESS_KEYS = {"title_id", "position_s", "updated_at"}
_META_KEYS = {"id", "content_type", "container", "size_bytes", "duration_s", "bitrate_bps", "sha256"}


@dataclass
class DiskState:
    """One look at the data directory."""

    #: (user/title) -> position found on disk.
    progress: dict[str, float] = field(default_factory=dict)
    #: upload id -> sha256 of its media, for every published upload that is whole.
    uploads: dict[str, str] = field(default_factory=dict)
    #: Files under a reader's name that do not parse or do not have the expected shape.
    torn: list[str] = field(default_factory=list)
    #: Published uploads that are not whole (missing or extra files, wrong size or hash).
    partial_uploads: list[str] = field(default_factory=list)
    #: Temporary files and staging directories a writer left behind (hidden from readers).
    leftovers: list[str] = field(default_factory=list)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def look(data_dir: Path) -> DiskState:
    """Read everything readers could see under ``data_dir`` (and note the hidden leftovers)."""
    state = DiskState()
    _look_progress(data_dir / "progress", state)
    _look_uploads(data_dir / "uploads", state)
    return state


def _look_progress(root: Path, state: DiskState) -> None:
    for user_dir in sorted(root.iterdir()) if root.is_dir() else []:
        for path in sorted(user_dir.iterdir()):
            if path.name.startswith("."):
                state.leftovers.append(str(path.relative_to(root.parent)))
                continue
            key = f"{user_dir.name}/{path.stem}"
            position = _progress_value(path)
            if position is None:
                state.torn.append(f"{key}: {path.read_bytes()[:80]!r}")
            else:
                state.progress[key] = position


def _progress_value(path: Path) -> float | None:
    """The position in a progress file, or None when the file is not a whole progress document."""
    match = _PROGRESS_NAME.fullmatch(path.name)
    if match is None or not path.is_file():
        return None
    try:
        doc: Any = json.loads(path.read_bytes())
    except ValueError:
        return None
    if not isinstance(doc, dict) or set(doc) != _PROGRESS_KEYS or doc["title_id"] != int(match[1]):
        return None
    position = doc["position_s"]
    return float(position) if isinstance(position, int | float) else None


def _look_uploads(root: Path, state: DiskState) -> None:
    for entry in sorted(root.iterdir()) if root.is_dir() else []:
        if entry.name == ".incoming":
            state.leftovers += [str(p.relative_to(root.parent)) for p in sorted(entry.iterdir())]
        elif entry.name.startswith("."):
            state.leftovers.append(str(entry.relative_to(root.parent)))
        else:
            digest = _whole_upload(entry)
            if digest is None:
                state.partial_uploads.append(entry.name)
            else:
                state.uploads[entry.name] = digest


def _whole_upload(directory: Path) -> str | None:
    """The media's sha256 when ``directory`` is one complete upload, else None."""
    try:
        meta: Any = json.loads((directory / "meta.json").read_bytes())
    except (OSError, ValueError):
        return None
    if not isinstance(meta, dict) or set(meta) != _META_KEYS or meta["id"] != directory.name:
        return None
    media = directory / f"media.{meta['container']}"
    if sorted(p.name for p in directory.iterdir()) != sorted(["meta.json", media.name]):
        return None
    data = media.read_bytes()
    if len(data) != meta["size_bytes"] or sha256(data) != meta["sha256"]:
        return None
    return str(meta["sha256"])
