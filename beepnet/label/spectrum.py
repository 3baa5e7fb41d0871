"""What a clip looks like without listening to it: level, a coarse spectrogram, a spectral profile.

Only numpy, and cheap (a 3-s clip is 120 FFTs of 512 points), so the labeller can compute it
for every clip it shows, even on a Raspberry Pi. The spectrogram is kept at a fixed resolution
(32 bands of 250 Hz from 0 to 8 kHz, one column per 25 ms) and pooled down to whatever the
terminal has room for when it is drawn.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..audio import SAMPLE_RATE

N_FFT = 512
HOP = 400
"""25 ms between spectrogram columns: 120 columns for a 3-s chunk."""
BANDS = 32
"""250 Hz each from 0 to 8 kHz (Nyquist at 16 kHz); linear, because beeps sit at 1-6 kHz and
a linear axis gives them most of the rows."""
FLOOR_DB = -120.0
"""Anything quieter (digital silence) is clamped here, so logs stay finite."""


@dataclass(frozen=True, eq=False)  # compared by identity: arrays have no single truth value
class ClipLook:
    """The measurements of one clip the labeller shows and compares."""

    duration: float
    """Seconds of audio."""
    peak_dbfs: float
    rms_dbfs: float
    spectrogram: np.ndarray
    """(BANDS, frames) power in dB, row 0 the lowest band; float32."""
    profile: np.ndarray
    """(BANDS,) mean power per band over the whole clip in dB: what "sounds alike" compares."""
    loudness: np.ndarray
    """(frames,) RMS of each spectrogram column in dBFS: the level over time."""


def _db(power: np.ndarray) -> np.ndarray:
    return np.maximum(10.0 * np.log10(np.maximum(power, 1e-30)), FLOOR_DB)


def look(audio: np.ndarray, sample_rate: int = SAMPLE_RATE) -> ClipLook:
    """Measure ``audio`` (mono float32 in [-1, 1] at 16 kHz)."""
    if sample_rate != SAMPLE_RATE:
        raise ValueError(f"look() wants {SAMPLE_RATE} Hz audio, got {sample_rate}")
    x = np.asarray(audio, dtype=np.float32).reshape(-1)
    duration = len(x) / sample_rate
    if len(x) == 0:
        empty = np.full((BANDS, 1), FLOOR_DB, np.float32)
        return ClipLook(0.0, FLOOR_DB, FLOOR_DB, empty, empty[:, 0], np.full(1, FLOOR_DB))
    peak = float(np.max(np.abs(x)))
    rms = float(np.sqrt(np.mean(np.square(x, dtype=np.float64))))
    # Frames centred every HOP samples; short clips are padded so there is at least one.
    padded = np.pad(x, (N_FFT // 2, N_FFT // 2 + (-len(x)) % HOP))
    n_frames = max(1, (len(padded) - N_FFT) // HOP + 1)
    idx = np.arange(N_FFT)[None, :] + HOP * np.arange(n_frames)[:, None]
    frames = padded[idx]
    window = np.hanning(N_FFT).astype(np.float32)
    spec = np.fft.rfft(frames * window, axis=1)
    # Scaled so a full-scale sine reads about 0 dB in its band.
    power = (np.abs(spec[:, :BANDS * (N_FFT // 2 // BANDS)]) ** 2) * (4.0 / window.sum() ** 2)
    per_band = power.reshape(n_frames, BANDS, -1).sum(axis=2).T  # (BANDS, frames)
    loud = np.sqrt(np.mean(np.square(frames.astype(np.float64)), axis=1))
    return ClipLook(
        duration=duration,
        peak_dbfs=float(_db(np.array(peak ** 2))),
        rms_dbfs=float(_db(np.array(rms ** 2))),
        spectrogram=_db(per_band).astype(np.float32),
        profile=_db(per_band.mean(axis=1)).astype(np.float32),
        loudness=_db(np.square(loud)).astype(np.float32))


PROFILE_RANGE_DB = 60.0
"""Bands more than this far below a clip's loudest band count as that far: differences deep
in the noise floor (a microphone's roll-off, digital silence) say nothing about the sound."""


def aligned_profile(look: ClipLook) -> np.ndarray:
    """The spectral profile floored at PROFILE_RANGE_DB below its peak, minus its median band:
    level-independent, and one band lifted by a beep does not shift the others."""
    p = np.maximum(look.profile, look.profile.max() - PROFILE_RANGE_DB)
    return p - np.median(p)


def spectral_distance(a: ClipLook, b: ClipLook) -> float:
    """How differently two clips spread their energy over frequency: the largest difference,
    in dB, between their aligned profiles (:func:`aligned_profile`) in any of the 32 bands.

    A louder or quieter take of the same sound scores about 0. Consecutive chunks of one
    washer phase score 2-4 dB; the same washer with a beep 10 dB above it 15-25 dB (the beep's
    band stands out), with a beep as loud as the washer about 10 dB.
    """
    return float(np.max(np.abs(aligned_profile(a) - aligned_profile(b))))


def pool(spectrogram: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """The spectrogram reduced to ``rows`` x ``cols`` cells (loudest value in each cell, so a
    short beep is not averaged away), row 0 the lowest frequencies."""
    bands, frames = spectrogram.shape
    rows, cols = max(1, min(rows, bands)), max(1, cols)
    r_edges = np.linspace(0, bands, rows + 1).round().astype(int)
    c_edges = np.linspace(0, frames, cols + 1)
    out = np.empty((rows, cols), np.float32)
    for i in range(rows):
        band = spectrogram[r_edges[i]:r_edges[i + 1]].max(axis=0)
        for j in range(cols):
            lo = int(c_edges[j])
            hi = max(lo + 1, int(np.ceil(c_edges[j + 1])))
            out[i, j] = band[min(lo, frames - 1):min(hi, frames)].max()
    return out
