"""The daemon's own WAV files, read and written with the standard library's `wave`.

The recorder writes each 3-s chunk; the classifier reads it and writes the alert clips;
the notifier turns a clip into MP3. All are 16-bit PCM, mono, at `SAMPLE_RATE`, which
`wave` handles, so none of those processes loads soundfile (libsndfile and cffi, about
3 MB of every process that imports it) for them; `pcm16` needs not even numpy, which the
supervisor (the notifier's process) never imports. Recordings of any other kind (`beepnet
detect`, `run --source`, hand-labelled clips) go through `beepnet.audio.files`.
"""

from __future__ import annotations

import io
import os
import wave
from pathlib import Path
from typing import TYPE_CHECKING

from ..fsutil import write_atomic
from . import SAMPLE_RATE

if TYPE_CHECKING:
    import numpy as np


def pcm16(path: str | os.PathLike, rate: int = SAMPLE_RATE, last: int | None = None
          ) -> bytes | None:
    """The samples of a WAV this package wrote (16-bit mono at ``rate``), as little-endian
    PCM bytes, its ``last`` frames only if given; None for any other kind of file."""
    try:
        with wave.open(str(path), "rb") as w:
            if (w.getnchannels(), w.getsampwidth(), w.getframerate()) != (1, 2, rate):
                return None
            n = w.getnframes()
            if last is not None:
                w.setpos(max(0, n - last))
                n = last
            return w.readframes(n)
    except (wave.Error, EOFError, OSError):
        return None


def write_wav_atomic(path: Path, audio: np.ndarray, rate: int = SAMPLE_RATE) -> None:
    """Write 16-bit PCM WAV so readers never see a half-written file (temp file + rename)."""
    import numpy as np

    pcm = np.round(np.clip(audio, -1.0, 1.0) * 32767.0).astype("<i2")
    write_pcm16_atomic(path, pcm.tobytes(), rate)


def write_pcm16_atomic(path: Path, pcm: bytes, rate: int = SAMPLE_RATE) -> None:
    """The same from 16-bit little-endian PCM bytes (no numpy: the supervisor uses it)."""
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm)
    write_atomic(path, buf.getvalue())


def read_wav(path: str | os.PathLike, rate: int = SAMPLE_RATE) -> np.ndarray:
    """A WAV this package wrote, as mono float32 in [-1, 1) at ``rate``.

    Anything else (another rate, stereo, float samples, a damaged file) is read by
    `beepnet.audio.files.read_audio`, which converts it or raises AudioFileError."""
    import numpy as np

    pcm = pcm16(path, rate)
    if pcm is not None:
        return np.frombuffer(pcm, "<i2").astype(np.float32) / np.float32(32768)
    from .files import read_audio

    return read_audio(path, rate)
