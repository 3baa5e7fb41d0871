"""The last few seconds of a stream, whatever the gate made of them: for `/listen`."""

from __future__ import annotations

import numpy as np


class AudioRing:
    """The last ``seconds`` of 16 kHz audio as 16-bit samples (320 kB for 10 s): the
    recorder's memory budget has room for that, and a phone plays nothing finer."""

    def __init__(self, seconds: float, rate: int):
        self.rate = rate
        self._buf = np.zeros(max(1, int(round(seconds * rate))), dtype=np.int16)
        self._pos = 0
        self._filled = 0

    def push(self, x: np.ndarray) -> None:
        """Append float audio in [-1, 1]."""
        pcm = np.round(np.clip(np.asarray(x, np.float32), -1.0, 1.0) * 32767.0).astype(np.int16)
        n = len(self._buf)
        if len(pcm) >= n:
            self._buf[:] = pcm[-n:]
            self._pos, self._filled = 0, n
            return
        end = self._pos + len(pcm)
        if end <= n:
            self._buf[self._pos:end] = pcm
        else:
            split = n - self._pos
            self._buf[self._pos:] = pcm[:split]
            self._buf[: end - n] = pcm[split:]
        self._pos = end % n
        self._filled = min(n, self._filled + len(pcm))

    def last(self) -> np.ndarray:
        """What it holds, oldest first, as float32."""
        if self._filled < len(self._buf):
            pcm = self._buf[: self._filled]
        else:
            pcm = np.concatenate([self._buf[self._pos:], self._buf[: self._pos]])
        return pcm.astype(np.float32) / 32767.0

    @property
    def seconds(self) -> float:
        return self._filled / self.rate
