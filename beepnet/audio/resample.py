"""Streaming sample-rate conversion to 16 kHz, in numpy only.

The recorder must not import torch (or scipy) and must convert block by block with no seam
between blocks, so this is a small polyphase FIR resampler that carries its filter history
from one call to the next: feeding a signal in any block sizes gives the same output as
feeding it whole.
"""

from __future__ import annotations

from math import gcd

import numpy as np


def _design_bank(up: int, down: int, taps_per_phase: int) -> np.ndarray:
    """Kaiser-windowed sinc low-pass split into ``up`` phases, each ``taps_per_phase`` long."""
    n = up * taps_per_phase
    # Cut off a little below the lower Nyquist so the transition band stays clear of aliasing.
    cutoff = 0.94 / max(up, down)
    t = np.arange(n) - (n - 1) / 2.0
    h = cutoff * np.sinc(cutoff * t) * np.kaiser(n, 8.0)
    h *= up / h.sum()  # unity gain at DC after zero-stuffing by `up`
    # Phase p holds taps p, p+up, p+2up, ... reversed so a dot product with the newest-last
    # history window applies the filter.
    return np.ascontiguousarray(h.reshape(taps_per_phase, up).T[:, ::-1]).astype(np.float64)


class Resampler:
    """Converts mono float audio from ``in_rate`` to ``out_rate`` across successive calls."""

    def __init__(self, in_rate: int, out_rate: int = 16000, taps_per_phase: int = 32):
        if in_rate <= 0 or out_rate <= 0:
            raise ValueError(f"sample rates must be positive, got {in_rate} -> {out_rate}")
        g = gcd(int(in_rate), int(out_rate))
        self.in_rate, self.out_rate = int(in_rate), int(out_rate)
        self.up, self.down = self.out_rate // g, self.in_rate // g
        self.identity = self.up == self.down
        self.taps = taps_per_phase
        if not self.identity:
            self._bank = _design_bank(self.up, self.down, taps_per_phase)
            # History of the last `taps` input samples (zeros before the stream starts).
            self._hist = np.zeros(taps_per_phase, dtype=np.float64)
            # Position, in input samples of the upsampled grid, of the next output sample
            # relative to the start of the history buffer.
            self._next = 0  # in units of 1/up input samples, counted from history end

    @property
    def delay_samples(self) -> float:
        """Group delay the filter adds, in output samples (constant; callers may subtract it)."""
        if self.identity:
            return 0.0
        return (self.up * self.taps - 1) / 2.0 / self.down

    def process(self, x: np.ndarray) -> np.ndarray:
        """Feed the next block; returns all output samples that block completes."""
        x = np.asarray(x, dtype=np.float64).reshape(-1)
        if self.identity:
            return x.astype(np.float32)
        buf = np.concatenate([self._hist, x])
        n_in = len(x)
        # Output k sits at upsampled position self._next + k*down, measured from the first
        # new input sample (position 0 = x[0]); it needs inputs up to floor(pos/up).
        total_up = n_in * self.up
        if self._next >= total_up:
            n_out = 0
        else:
            n_out = (total_up - 1 - self._next) // self.down + 1
        pos = self._next + np.arange(n_out, dtype=np.int64) * self.down
        newest = pos // self.up            # index into x of the newest input sample used
        phase = pos % self.up
        # Window of `taps` samples ending at x[newest], i.e. buf[newest+1 : newest+1+taps].
        idx = newest[:, None] + 1 + np.arange(self.taps)[None, :]
        y = np.einsum("ij,ij->i", buf[idx], self._bank[phase])
        self._next = int(self._next + n_out * self.down - total_up)
        self._hist = buf[-self.taps:].copy()
        return y.astype(np.float32)


def resample(x: np.ndarray, in_rate: int, out_rate: int = 16000) -> np.ndarray:
    """Resample a whole signal (same filter as the streaming path)."""
    return Resampler(in_rate, out_rate).process(x)
