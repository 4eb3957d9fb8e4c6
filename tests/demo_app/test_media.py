"""Seeded sample media: deterministic, playable WAV, at least 100 KB; container sniffing."""

from __future__ import annotations

import io
import wave
from pathlib import Path

import pytest

from demo_app import media


@pytest.mark.parametrize("title_id", [1, 2, 3, 4])
def test_sample_media_is_a_valid_wav_of_at_least_100_kb(title_id: int) -> None:
    """Each title's media is a readable WAV whose length matches the catalog's duration."""
    data = media.sample_wav(title_id)
    assert len(data) >= media.MIN_SEED_BYTES
    with wave.open(io.BytesIO(data)) as w:
        assert w.getnframes() / w.getframerate() == media.duration_for(title_id)


def test_sample_media_is_deterministic_and_differs_per_title() -> None:
    """Same id, same bytes (fresh generation); different ids, different bytes."""
    media.sample_wav.cache_clear()
    first = media.sample_wav(2)
    media.sample_wav.cache_clear()
    assert media.sample_wav(2) == first
    assert media.sample_wav(3) != first


def test_seed_writes_missing_media_and_repairs_damaged_files(tmp_path: Path) -> None:
    """seed() creates 1..N and rewrites a truncated file; a good file is left alone."""
    paths = media.seed(tmp_path, 2)
    assert [p.name for p in paths] == ["1.wav", "2.wav"]
    paths[0].write_bytes(b"RIFF")
    before = paths[1].stat().st_mtime_ns
    media.seed(tmp_path, 2)
    assert paths[0].read_bytes() == media.sample_wav(1)
    assert paths[1].stat().st_mtime_ns == before


@pytest.mark.parametrize(
    ("head", "container"),
    [(b"\x00\x00\x00\x18ftypisom", "mp4"), (b"\x1a\x45\xdf\xa3\x01", "webm"), (b"OggS\x00", "ogg"),
     (b"RIFF\x00\x00\x00\x00WAVEfmt ", "wav"), (b"<html>", None), (b"", None)],
)
def test_sniff_recognises_containers_by_magic_bytes(head: bytes, container: str | None) -> None:
    """sniff() names the container from the first bytes, None when unknown."""
    assert media.sniff(head) == container


def test_bitrate_is_size_over_duration_in_bits() -> None:
    """bitrate = size * 8 / duration."""
    assert media.bitrate(1000, 2.0) == 4000.0
