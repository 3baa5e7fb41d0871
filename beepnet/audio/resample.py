"""Streaming sample-rate conversion to 16 kHz, in numpy only.

The recorder must not import torch (or scipy) and must convert block by block with no seam
between blocks, so this is a small polyphase FIR resampler that carries its filter history
from one call to the next: feeding a signal in any block sizes gives the same output as
feeding it whole.
"""

from __future__ import annotations

from math import gcd

import numpy as np

from . import SAMPLE_RATE


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

    def __init__(self, in_rate: int, out_rate: int = SAMPLE_RATE, span: float = 48.0):
        if in_rate <= 0 or out_rate <= 0:
            raise ValueError(f"sample rates must be positive, got {in_rate} -> {out_rate}")
        g = gcd(int(in_rate), int(out_rate))
        self.in_rate, self.out_rate = int(in_rate), int(out_rate)
        self.up, self.down = self.out_rate // g, self.in_rate // g
        self.identity = self.up == self.down
        # The filter spans ``span`` samples of the lower rate whatever the ratio, which keeps
        # the transition band (about 7-8 kHz at 16 kHz out) equally sharp for 44.1 and 96 kHz.
        self.taps = max(16, int(np.ceil(span * max(self.up, self.down) / self.up)))
        self.n_in = self.n_out = 0
        # The FIR delays its output; that many leading samples are dropped (and flushed at
        # the end) so output sample k is input time k/out_rate, exactly.
        self._skip = 0 if self.identity else int(round(self.delay_samples))
        if not self.identity:
            self._bank = _design_bank(self.up, self.down, self.taps)
            # History of the last `taps` input samples (zeros before the stream starts).
            self._hist = np.zeros(self.taps, dtype=np.float64)
            # Position of the next output sample on the upsampled grid (1/up input samples),
            # counted from the first sample of the next block.
            self._next = 0

    @property
    def delay_samples(self) -> float:
        """Group delay the filter adds, in output samples (constant; callers may subtract it)."""
        if self.identity:
            return 0.0
        return (self.up * self.taps - 1) / 2.0 / self.down

    def process(self, x: np.ndarray) -> np.ndarray:
        """Feed the next block; returns all output samples that block completes."""
        x = np.asarray(x, dtype=np.float64).reshape(-1)
        self.n_in += len(x)
        y = self._filter(x)
        if self._skip:
            cut = min(self._skip, len(y))
            y, self._skip = y[cut:], self._skip - cut
        self.n_out += len(y)
        return y

    def flush(self) -> np.ndarray:
        """At end of stream: the delayed last samples, so the total is in_len * out/in."""
        want = int(round(self.n_in * self.up / self.down)) - self.n_out
        if want <= 0 or self.identity:
            return np.zeros(0, np.float32)
        y = self._filter(np.zeros(self.taps + self.down, np.float64))
        if self._skip:
            y = y[self._skip:]
            self._skip = 0
        y = y[:want]
        self.n_out += len(y)
        return y

    def _filter(self, x: np.ndarray) -> np.ndarray:
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
        # Row r of `win` is buf[r : r+taps]; the window ending at x[newest] is row newest+1.
        win = np.lib.stride_tricks.sliding_window_view(buf, self.taps)
        y = np.empty(n_out, dtype=np.float64)
        # Outputs k and k+up share a filter phase and their windows are `down` samples apart,
        # so each phase is one strided view times one filter: a BLAS product, no gather.
        for g in range(min(self.up, n_out)):
            pos = self._next + g * self.down
            first = pos // self.up + 1
            count = (n_out - g + self.up - 1) // self.up
            step = self.down  # (k+up)*down/up - k*down/up input samples
            rows = win[first: first + (count - 1) * step + 1: step]
            y[g::self.up] = rows @ self._bank[pos % self.up]
        self._next = int(self._next + n_out * self.down - total_up)
        self._hist = buf[-self.taps:].copy()
        return y.astype(np.float32)


def resample(x: np.ndarray, in_rate: int, out_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Resample a whole signal (same filter as the streaming path)."""
    rs = Resampler(in_rate, out_rate)
    return np.concatenate([rs.process(x), rs.flush()])
