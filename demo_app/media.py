"""Sample media for the seeded titles, container sniffing, and the upload analysis.

The seeded titles need playable media without downloads or codecs: each is a
deterministic WAV tune (8-bit mono PCM at 22.05 kHz, a few seconds, > 100 KB),
which a ``<video>`` element plays like any other stream. The same title id always
gives the same bytes.
"""

from __future__ import annotations

import functools
import io
import math
import wave
from dataclasses import dataclass
from pathlib import Path

from .storage import atomic_write

SAMPLE_RATE = 22_050
MEDIA_TYPE = "audio/wav"
MIN_SEED_BYTES = 100 * 1024
#: A pentatonic scale (Hz); each title plays its own walk through it.
_SCALE = (261.63, 293.66, 329.63, 392.00, 440.00, 523.25, 587.33, 659.25)
_NOTES_PER_S = 5  # 4410 samples each: durations come out exact

#: Containers the upload endpoint accepts: declared content type -> magic-bytes check.
ACCEPTED_TYPES = {
    "video/mp4": "mp4",
    "video/quicktime": "mp4",
    "video/webm": "webm",
    "video/ogg": "ogg",
    "audio/wav": "wav",
    "audio/x-wav": "wav",
    "audio/wave": "wav",
}


def duration_for(title_id: int) -> float:
    """Seconds of media for a seeded title (between 6 and 9)."""
    return 6.0 + title_id % 4


def media_path(media_dir: Path, title_id: int) -> Path:
    return media_dir / f"{int(title_id)}.wav"


@functools.lru_cache(maxsize=16)
def sample_wav(title_id: int) -> bytes:
    """The deterministic tune of ``title_id`` as WAV bytes."""
    frames = bytearray()
    per_note = SAMPLE_RATE // _NOTES_PER_S
    notes = round(duration_for(title_id) * _NOTES_PER_S)
    for n in range(notes):
        freq = _SCALE[(title_id * 3 + n * (title_id % 5 + 1)) % len(_SCALE)]
        step = 2 * math.pi * freq / SAMPLE_RATE
        for i in range(per_note):
            fade = min(1.0, i / 400, (per_note - i) / 400)
            frames.append(128 + int(90 * fade * math.sin(step * i)))
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(1)
        w.setframerate(SAMPLE_RATE)
        w.writeframes(bytes(frames))
    return out.getvalue()


def expected_size(title_id: int) -> int:
    """Size in bytes of :func:`sample_wav` (a 44-byte header and one byte per sample)."""
    return 44 + round(duration_for(title_id) * SAMPLE_RATE)


def seed(media_dir: Path, count: int) -> list[Path]:
    """Write the media of titles ``1..count`` that are missing or damaged; return their paths."""
    paths = []
    for title_id in range(1, count + 1):
        path = media_path(media_dir, title_id)
        if not path.is_file() or path.stat().st_size != expected_size(title_id):
            atomic_write(path, sample_wav(title_id))
        paths.append(path)
    return paths


def sniff(head: bytes) -> str | None:
    """The container family of a file from its first bytes (mp4, webm, ogg, wav), if known."""
    if head[4:8] == b"ftyp" or head[4:8] in (b"moov", b"mdat", b"wide", b"free"):
        return "mp4"
    if head.startswith(b"\x1a\x45\xdf\xa3"):
        return "webm"
    if head.startswith(b"OggS"):
        return "ogg"
    if head.startswith(b"RIFF") and head[8:12] == b"WAVE":
        return "wav"
    return None


@dataclass(frozen=True, slots=True)
class Analysis:
    """What the upload analysis found."""

    container: str
    size_bytes: int
    duration_s: float
    bitrate_bps: float


def bitrate(size_bytes: int, duration_s: float) -> float:
    """Bits per second: size / duration (the seed's logic-error site when duration is 0)."""
    return size_bytes * 8 / duration_s


def analyse(container: str, size_bytes: int, duration_s: float) -> Analysis:
    return Analysis(container, size_bytes, duration_s, round(bitrate(size_bytes, duration_s), 1))
