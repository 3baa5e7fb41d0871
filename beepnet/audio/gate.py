"""The silence gate: which chunks are worth writing to disk and classifying.

Level is measured as RMS in dBFS over short frames, so a 100 ms beep in an otherwise quiet
3-s chunk still opens the gate (an RMS over the whole chunk would average it away).
"""

from __future__ import annotations

import numpy as np

from . import SAMPLE_RATE

SILENCE_DBFS = -120.0


def frame_levels(audio: np.ndarray, frame: int) -> np.ndarray:
    """RMS level in dBFS of each whole frame of ``frame`` samples (full-scale sine = -3 dBFS)."""
    n = len(audio) // frame
    if n == 0:
        return np.array([level_dbfs(audio)]) if len(audio) else np.array([SILENCE_DBFS])
    frames = np.asarray(audio[: n * frame], dtype=np.float32).reshape(n, frame)
    ms = np.einsum("ij,ij->i", frames, frames) / frame
    return 10.0 * np.log10(np.maximum(ms, 1e-12))


def level_dbfs(audio: np.ndarray) -> float:
    """RMS level of the whole array in dBFS."""
    if len(audio) == 0:
        return SILENCE_DBFS
    a = np.asarray(audio, dtype=np.float32)
    return float(10.0 * np.log10(max(float(np.dot(a, a)) / len(a), 1e-12)))


class Gate:
    """Opens for a chunk when any of its frames is at least ``threshold_dbfs`` loud."""

    def __init__(self, threshold_dbfs: float, frame_ms: float, sample_rate: int = SAMPLE_RATE):
        self.threshold_dbfs = threshold_dbfs
        self.frame = max(1, int(round(frame_ms * sample_rate / 1000.0)))

    def peak_dbfs(self, chunk: np.ndarray) -> float:
        """The loudest frame's level."""
        return float(frame_levels(chunk, self.frame).max())

    def opens(self, chunk: np.ndarray) -> bool:
        return self.threshold_dbfs <= SILENCE_DBFS or self.peak_dbfs(chunk) >= self.threshold_dbfs
