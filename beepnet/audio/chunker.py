"""Gapless, overlapping windows over a stream of 16 kHz audio.

Every input sample lands in at least one window, whatever block sizes the stream arrives in,
and windows start every ``hop`` samples. With ``hop`` < ``size`` they overlap, so a beep shorter
than ``size - hop`` that straddles one window's edge is whole inside the next.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import numpy as np

from . import SAMPLE_RATE


@dataclass(frozen=True)
class Window:
    start: int
    """Index of the window's first sample in the stream."""
    audio: np.ndarray
    """``size`` samples (the last window of a finished stream is zero-padded)."""
    valid: int
    """How many of those samples are real audio rather than end-of-stream padding."""


class Chunker:
    def __init__(self, size: int, hop: int):
        if not 0 < hop <= size:
            raise ValueError(f"need 0 < hop <= size, got hop={hop} size={size}")
        self.size, self.hop = size, hop
        self._buf = np.zeros(0, dtype=np.float32)
        self._buf_start = 0      # stream index of _buf[0]
        self._next_start = 0     # stream index where the next window starts
        self._last_start: int | None = None  # start of the last window given out
        self.samples_in = 0      # total samples pushed, for loss accounting

    def set_hop(self, hop: int) -> None:
        """From now on, windows ``hop`` samples apart: the next one starts at the first
        multiple of ``hop`` after the last one given out (a shorter hop gives it sooner: its
        audio is still in the buffer). On multiples, so that a hop that divides the usual
        one only adds windows between the usual ones, and going back finds the usual grid
        again: what a replay detects does not hang on when the change came."""
        if not 0 < hop <= self.size:
            raise ValueError(f"need 0 < hop <= size, got hop={hop} size={self.size}")
        self.hop = hop
        if self._last_start is not None:
            self._next_start = (self._last_start // hop + 1) * hop

    def push(self, block: np.ndarray) -> Iterator[Window]:
        """Add samples; yield every window they complete."""
        block = np.asarray(block, dtype=np.float32).reshape(-1)
        self.samples_in += len(block)
        self._buf = np.concatenate([self._buf, block]) if len(self._buf) else block.copy()
        while self._next_start + self.size <= self._buf_start + len(self._buf):
            off = self._next_start - self._buf_start
            yield Window(self._next_start, self._buf[off: off + self.size].copy(), self.size)
            self._last_start = self._next_start
            self._next_start += self.hop
        self._trim()

    def flush(self) -> Iterator[Window]:
        """At end of stream: the windows that cover the remaining tail, zero-padded."""
        end = self._buf_start + len(self._buf)
        # A tail is only worth a window if it holds samples no earlier window covered.
        covered = self._last_start + self.size if self._last_start is not None else 0
        while self._next_start < end and end > covered:
            off = self._next_start - self._buf_start
            audio = np.zeros(self.size, dtype=np.float32)
            part = self._buf[off: off + self.size]
            audio[: len(part)] = part
            yield Window(self._next_start, audio, len(part))
            covered = self._next_start + self.size
            self._last_start = self._next_start
            self._next_start += self.hop
        self._buf = np.zeros(0, dtype=np.float32)
        self._buf_start = end

    def _trim(self) -> None:
        # Kept from just after the last window's start, for set_hop.
        keep = self._next_start if self._last_start is None else min(self._next_start,
                                                                       self._last_start + 1)
        drop = keep - self._buf_start
        if drop > 0:
            self._buf = self._buf[drop:]
            self._buf_start = keep


class StreamWindower:
    """Native-rate blocks in, 16 kHz windows out: the resampler and chunker in one.

    Shared by the recorder and `beepnet detect` so that both cut audio identically.
    """

    def __init__(self, in_rate: int, chunk_seconds: float, hop_seconds: float,
                 rate: int = SAMPLE_RATE):
        from .resample import Resampler

        self.rate = rate
        self.resampler = Resampler(in_rate, rate)
        self.chunker = Chunker(int(round(chunk_seconds * rate)), int(round(hop_seconds * rate)))

    @property
    def samples(self) -> int:
        """16 kHz samples produced so far."""
        return self.chunker.samples_in

    def push(self, block: np.ndarray) -> tuple[np.ndarray, list[Window]]:
        """Returns the block at 16 kHz (for level meters) and the windows it completed."""
        out = self.resampler.process(block)
        return out, list(self.chunker.push(out))

    def finish(self) -> list[Window]:
        """End of stream: the resampler's last samples, then the zero-padded tail windows."""
        return list(self.chunker.push(self.resampler.flush())) + list(self.chunker.flush())
