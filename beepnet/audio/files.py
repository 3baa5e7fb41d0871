"""Reading recordings of any rate, channel count and format (the daemon's own chunks: wav.py).

soundfile (libsndfile) reads WAV, FLAC, OGG and MP3. Its errors are terse ("System error.",
"Format not recognised.") and it reads a truncated WAV without complaint, so this module
checks the cases users actually hit and raises :class:`AudioFileError` with one plain reason.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path
from typing import Iterator

import numpy as np
import soundfile as sf

from . import SAMPLE_RATE, AudioFileError
from .resample import Resampler


def to_mono(block: np.ndarray) -> np.ndarray:
    """Average the channels of a (frames, channels) block."""
    if block.ndim == 1:
        return block.astype(np.float32, copy=False)
    return block.mean(axis=1, dtype=np.float32)


def _wav_truncation(path: Path, size: int) -> str | None:
    """For RIFF/WAVE files, compare the declared data length with the bytes present."""
    with open(path, "rb") as f:
        head = f.read(12)
        if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            return None
        pos = 12
        while True:
            f.seek(pos)
            hdr = f.read(8)
            if len(hdr) < 8:
                return None  # no data chunk: libsndfile reports that itself
            cid, clen = hdr[:4], struct.unpack("<I", hdr[4:])[0]
            if cid == b"data":
                # 0 and 0xFFFFFFFF mean "unknown length" (streamed WAVs); not truncation.
                if clen in (0, 0xFFFFFFFF):
                    return None
                present = size - (pos + 8)
                if present < clen:
                    return (f"truncated: header promises {clen} bytes of audio, "
                            f"file holds {max(present, 0)}")
                return None
            pos += 8 + clen + (clen & 1)


class AudioFile:
    """An opened recording, read as mono float32 blocks at its own rate."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        try:
            st = self.path.stat()
        except FileNotFoundError:
            raise AudioFileError("no such file") from None
        except OSError as e:
            raise AudioFileError(f"cannot access it ({e.strerror})") from None
        if self.path.is_dir():
            raise AudioFileError("is a directory, not an audio file")
        if st.st_size == 0:
            raise AudioFileError("empty file (0 bytes)")
        if not os.access(self.path, os.R_OK):
            raise AudioFileError("permission denied")
        problem = _wav_truncation(self.path, st.st_size)
        if problem:
            raise AudioFileError(problem)
        try:
            self._sf = sf.SoundFile(str(self.path))
        except (sf.LibsndfileError, RuntimeError) as e:
            reason = str(e).split(": ", 1)[-1].rstrip(".")
            if "not recognised" in reason.lower():
                raise AudioFileError("not an audio file libsndfile can read "
                                     "(WAV, FLAC, OGG, MP3 ...)") from None
            raise AudioFileError(f"unreadable or truncated audio ({reason})") from None
        self.rate = int(self._sf.samplerate)
        self.channels = int(self._sf.channels)
        self.format = self._sf.format
        if self._sf.frames == 0:
            self.close()
            raise AudioFileError("holds no audio (0 samples; truncated?)")

    @property
    def duration(self) -> float:
        return self._sf.frames / self.rate

    def blocks(self, frames: int) -> Iterator[np.ndarray]:
        """Mono float32 blocks of up to ``frames`` samples; AudioFileError if decoding fails."""
        done = 0
        while True:
            try:
                block = self._sf.read(frames, dtype="float32", always_2d=True)
            except (sf.LibsndfileError, RuntimeError) as e:
                raise AudioFileError(f"truncated or corrupt after {done / self.rate:.1f} s "
                                     f"({e})") from None
            if len(block) == 0:
                break
            done += len(block)
            yield to_mono(block)
        if done == 0:
            raise AudioFileError("holds no audio (0 samples decoded; truncated?)")

    def close(self) -> None:
        self._sf.close()

    def __enter__(self) -> "AudioFile":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_audio(path: str | os.PathLike, rate: int = SAMPLE_RATE) -> np.ndarray:
    """The whole recording as mono float32 at ``rate`` (for tools and tests, not the daemon)."""
    with AudioFile(path) as f:
        rs = Resampler(f.rate, rate)
        parts = [rs.process(b) for b in f.blocks(f.rate)]
    return np.concatenate(parts) if parts else np.zeros(0, np.float32)
