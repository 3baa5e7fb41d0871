"""A classic DSP beep detector: finds sustained, stable, narrow-band tones in 1-6 kHz.

This is the baseline the neural detector has to beat. It needs no training and
only numpy, so it runs anywhere (including a Raspberry Pi) in a couple of
milliseconds per 3 s window.

How it decides, per window:

1. Short-time spectrum: Hann frames of ~32 ms every ~8 ms (one batched rfft).
2. In every frame the strongest bin inside [min_hz, max_hz] is the candidate.
   Its *prominence* is its level minus the median level of the spectrum
   within about +-500 Hz (the main lobe excluded). A frame is *tonal* when the
   prominence is well above the background and the peak is above an absolute
   floor (so digital silence and faint hiss never count).
3. Consecutive tonal frames whose peak stays within a couple of bins form a
   *run*; runs at the same frequency less than ``max_gap_ms`` apart are joined
   (a splash can take over a few frames of a beep at low SNR). A run lasting
   at least ``min_ms`` is a beep candidate. A frame sees
   a tone for its whole 32 ms, so a run overhangs its tone a little at each
   end; times and durations are corrected for that, which also stops the
   few-ms "ping" of a knock from passing as a 40 ms beep.
4. Each candidate is checked for *rivals*: other peaks in the +-500 Hz
   neighbourhood, averaged over the run, that stand clearly above the local
   background (a straight line fitted through the neighbourhood) and come
   within ``rival_db`` of the candidate. A piezo's harmonics
   are >= 1 kHz apart, but a voice or an instrument packs harmonics a few
   hundred Hz apart, so a candidate with rivals is one harmonic of a richer
   sound. Averaging over the run lets random noise peaks cancel out while
   real harmonics, which move together with the candidate, stay.
5. Frequency steadiness: the peak frequency is refined per frame (parabolic
   interpolation between bins) and its spread over the run measured. A piezo
   driven by a microcontroller holds its pitch to a fraction of a Hz; a
   voice's harmonics wander and glide by tens of Hz even in a "steady" vowel.
6. Score: a logistic of the run's mean prominence plus a bonus for duration
   minus penalties for wobble and rivals, scaled down when the run touches
   both window edges (a tone through a whole 3 s window is more likely a
   whine from a fridge, charger or TV than a beep). The window's score is the
   best run's.

Everything except the absolute floor is a level *ratio*, so the verdict does
not depend on the input level.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from beepnet.audio import SAMPLE_RATE
from beepnet.detectors.base import WindowScore

log = logging.getLogger(__name__)

_TINY = 1e-10  # keeps log10 finite on digital silence (-200 dB, far below any floor)
# numpy >= 2 can write an FFT into a preallocated array; reusing buffers matters
# because fresh multi-MB arrays cost more in page faults than the FFT itself.
_RFFT_HAS_OUT = np.lib.NumpyVersion(np.__version__) >= "2.0.0"


@dataclass(frozen=True)
class ToneFrames:
    """Per-frame measurements of one window (for scoring, debugging and plots)."""

    times: np.ndarray
    """Frame centres, seconds from the window start."""
    peak_bin: np.ndarray
    """FFT bin of the strongest in-band peak."""
    peak_hz: np.ndarray
    """Its frequency, refined between bins by parabolic interpolation."""
    peak_db: np.ndarray
    """Its level in dB relative to a full-scale sine."""
    prominence_db: np.ndarray
    """Peak level minus the median level of its +-context_hz neighbourhood."""
    context_db: np.ndarray
    """(frames, bins) levels around the peak, relative to it; used to find rivals."""
    tonal: np.ndarray
    """Frames with a prominent peak above the absolute floor."""


@dataclass(frozen=True)
class ToneRun:
    """A beep candidate: a stretch of tonal frames at a stable frequency."""

    first: int
    """Index of the first frame."""
    last: int
    """Index of the last frame (inclusive)."""
    freq_hz: float
    mean_prominence_db: float
    wobble_hz: float
    """Standard deviation of the peak frequency over the run."""
    rivals: int
    """Neighbouring peaks that look like fellow harmonics (0 for a clean beep)."""
    start: float
    """Estimated tone start, seconds from the window start (0 if before the window)."""
    end: float
    """Estimated tone end, seconds from the window start (window length if after it)."""
    whole_window: bool
    """True when the run touches both window edges (probably a whine, not a beep)."""
    score: float


class ToneDetector:
    """Scores windows by their most beep-like sustained tone in [min_hz, max_hz]."""

    name = "tone"

    def __init__(self, sample_rate: int = SAMPLE_RATE, min_hz: float = 1000.0, max_hz: float = 6000.0,
                 min_ms: float = 40.0, threshold: float = 0.5, *,
                 frame_ms: float = 32.0, hop_ms: float = 8.0, context_hz: float = 500.0,
                 min_prominence_db: float = 10.0, floor_db: float = -90.0,
                 max_step_bins: int = 1, max_spread_bins: int = 2,
                 rival_db: float = 25.0, rival_margin_db: float = 6.0, rival_penalty: float = 3.0,
                 wobble_hz: float = 5.0,
                 mid_prominence_db: float = 15.0, prominence_scale_db: float = 2.0,
                 max_gap_ms: float = 40.0, max_beep_s: float = 2.5,
                 whole_window_factor: float = 0.3) -> None:
        """Set up the analysis; every tuning knob after ``threshold`` has a tested default.

        Frames: ``min_prominence_db`` and ``floor_db`` (dB relative to a
        full-scale sine) decide whether a frame is tonal.
        Runs: the peak may move ``max_step_bins`` between consecutive frames and
        stray ``max_spread_bins`` from the run's median; gaps up to
        ``max_gap_ms`` inside a tone are bridged.
        Score: a clean, steady run lasting exactly ``min_ms`` with mean
        prominence ``mid_prominence_db`` scores 0.5; ``prominence_scale_db`` more
        prominence, or each doubling of the duration (up to 8x), adds one logit
        unit. A frequency wobble (standard deviation) of ``wobble_hz`` costs one
        unit, twice that four units. Each rival (a neighbouring peak at least
        ``rival_margin_db`` above the local background and within ``rival_db``
        of the candidate) costs ``rival_penalty`` units: one or two still let a
        strong beep through, a voice has many. A run touching both edges of a
        window at least ``max_beep_s`` long (longer than any real beep) has its
        score multiplied by ``whole_window_factor``.
        """
        if not 0 < min_hz < max_hz < sample_rate / 2:
            raise ValueError(f"need 0 < min_hz < max_hz < {sample_rate / 2}, got {min_hz}, {max_hz}")
        self.sample_rate = int(sample_rate)
        self.min_hz, self.max_hz = float(min_hz), float(max_hz)
        self.min_ms = float(min_ms)
        self.threshold = float(threshold)
        self.min_prominence_db = min_prominence_db
        self.floor_db = floor_db
        self.max_step_bins = max_step_bins
        self.max_spread_bins = max_spread_bins
        self.rival_db = rival_db
        self.rival_margin_db = rival_margin_db
        self.rival_penalty = rival_penalty
        self.wobble_hz = wobble_hz
        self.mid_prominence_db = mid_prominence_db
        self.prominence_scale_db = prominence_scale_db
        self.max_beep_s = max_beep_s
        self.whole_window_factor = whole_window_factor
        self._setup_frames(frame_ms, hop_ms, context_hz)
        self._max_gap_frames = int(round(max_gap_ms * self.sample_rate / 1000 / self.hop))

    def _setup_frames(self, frame_ms: float, hop_ms: float, context_hz: float) -> None:
        """Precompute the STFT window, band limits and neighbourhood layout."""
        sr = self.sample_rate
        self.n_fft = int(round(frame_ms * sr / 1000))
        self.hop = max(1, int(round(hop_ms * sr / 1000)))
        self.bin_hz = sr / self.n_fft
        # Periodic Hann, scaled so a full-scale sine peaks at 0 dB in its bin.
        n = np.arange(self.n_fft)
        self._window = 0.5 - 0.5 * np.cos(2 * np.pi * n / self.n_fft)
        self._amplitude_scale = 2.0 / self._window.sum()
        self._local = threading.local()  # per-thread scratch buffers, see _buffers()
        self._band = (int(np.ceil(self.min_hz / self.bin_hz)), int(np.floor(self.max_hz / self.bin_hz)))

        # Neighbourhood: +-context_hz around the peak without the Hann main lobe
        # (+-2 bins; from 3 bins out a pure tone's leakage is below -30 dB). The
        # block is one bin wider each side so every neighbour can be tested for
        # being a local maximum.
        reach = max(5, int(round(context_hz / self.bin_hz)))
        self._block = np.arange(-reach - 1, reach + 2)
        self._outside = (np.abs(self._block) > 2) & (np.abs(self._block) <= reach)
        # Least-squares line through the neighbourhood: (slope, intercept) = _line_fit @ levels,
        # i.e. pinv(A) = (A'A)^-1 A' with the 2x2 inverse written out: np.linalg.pinv would
        # page in LAPACK's SVD, 2 MB of the classifier's memory, for one 2-column matrix.
        k = self._block[self._outside].astype(float)
        a = np.column_stack([k, np.ones_like(k)])
        (p, q), (_, r) = a.T @ a
        self._line_fit = np.array([[r, -q], [-q, p]]) / (p * r - q * q) @ a.T
        # Only this slice of the spectrum is ever looked at.
        self._lo = max(0, self._band[0] - reach - 1)
        self._hi = min(self.n_fft // 2, self._band[1] + reach + 1)

        # A frame sees a tone once the tone reaches ~10 ms into it, so the first
        # and last tonal frame centres lie ~6 ms (for 32 ms frames) outside the
        # tone. Fitted on synthetic beeps at 0-30 dB SNR; used to correct times.
        self._inset_s = max(0.0, 0.3 * self.n_fft - 0.5 * self.hop) / sr
        hop_ms_exact = 1000 * self.hop / sr
        self._min_frames = max(2, int(np.ceil((self.min_ms + 2000 * self._inset_s) / hop_ms_exact
                                              + 1 - 1e-9)))

    def describe(self) -> str:
        """One line for logs, e.g. "tone detector 1000-6000 Hz, >= 40 ms"."""
        return f"tone detector {self.min_hz:.0f}-{self.max_hz:.0f} Hz, >= {self.min_ms:.0f} ms"

    # ------------------------------------------------------------------ frames

    def analyse(self, window: np.ndarray) -> ToneFrames:
        """Per-frame peak, prominence, neighbourhood and tonal flag for ``window``."""
        x = np.asarray(window, dtype=np.float32).reshape(-1)
        if len(x) < self.n_fft:
            x = np.pad(x, (0, self.n_fft - len(x)))
        view = sliding_window_view(x, self.n_fft)[:: self.hop]
        frames, spec, magnitude = self._buffers(len(view))
        np.multiply(view, self._window, out=frames)  # float64: numpy's float32 FFT is slower
        if _RFFT_HAS_OUT:
            np.fft.rfft(frames, axis=1, out=spec)
        else:
            spec[...] = np.fft.rfft(frames, axis=1)
        np.abs(spec[:, self._lo:self._hi + 1], out=magnitude)

        # Find peaks on linear magnitudes; take logs only of the few bins needed.
        band = magnitude[:, self._band[0] - self._lo:self._band[1] - self._lo + 1]
        peak = np.argmax(band, axis=1) + (self._band[0] - self._lo)  # index into `magnitude`
        rows = np.arange(len(magnitude))
        cols = np.clip(peak[:, None] + self._block, 0, magnitude.shape[1] - 1)
        level = 20 * np.log10(magnitude[rows[:, None], cols] * self._amplitude_scale + _TINY)
        peak_db = level[:, len(self._block) // 2]
        context = level - peak_db[:, None]
        prominence = -np.median(context[:, self._outside], axis=1)
        tonal = (prominence >= self.min_prominence_db) & (peak_db >= self.floor_db)
        times = (rows * self.hop + self.n_fft / 2) / self.sample_rate
        peak_bin = peak + self._lo
        peak_hz = (peak_bin + self._fraction(context)) * self.bin_hz
        return ToneFrames(times, peak_bin, peak_hz, peak_db, prominence, context, tonal)

    def _buffers(self, n_frames: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Scratch arrays for frames, spectrum and magnitudes, reused between calls.

        Kept per thread, so one detector may be shared by several threads.
        """
        buffers = getattr(self._local, "buffers", None)
        if buffers is None or len(buffers[0]) != n_frames:
            buffers = (np.empty((n_frames, self.n_fft)),
                       np.empty((n_frames, self.n_fft // 2 + 1), dtype=np.complex128),
                       np.empty((n_frames, self._hi - self._lo + 1)))
            self._local.buffers = buffers
        return buffers

    def _fraction(self, context: np.ndarray) -> np.ndarray:
        """Sub-bin offset of each frame's peak: vertex of the parabola through the dB
        levels of the peak bin and its two neighbours (good to a few Hz here)."""
        centre = len(self._block) // 2
        left, right = context[:, centre - 1], context[:, centre + 1]  # the peak itself is 0 dB
        curvature = left + right  # = left - 2*peak + right, negative for a true maximum
        with np.errstate(divide="ignore", invalid="ignore"):
            delta = np.where(curvature < 0, 0.5 * (left - right) / curvature, 0.0)
        return np.clip(delta, -0.5, 0.5)

    # -------------------------------------------------------------------- runs

    def _segments(self, tonal: np.ndarray, peak: np.ndarray) -> list[tuple[int, int, float]]:
        """(first, last, mean bin) of every stretch of >= 2 linked tonal frames,
        cut to its steady part."""
        linked = tonal[:-1] & tonal[1:] & (np.abs(np.diff(peak)) <= self.max_step_bins)
        # A stretch of k frames is k-1 consecutive links; find the link stretches.
        edges = np.diff(linked.astype(np.int8), prepend=0, append=0)
        starts, stops = np.flatnonzero(edges == 1).tolist(), np.flatnonzero(edges == -1).tolist()
        bins = peak.tolist()  # plain Python from here: a few dozen short segments at most
        out = []
        for first, last in zip(starts, stops):
            first, last = self._steady_part(first, last, bins)
            seg = bins[first:last + 1]
            out.append((first, last, sum(seg) / len(seg)))
        return out

    def _steady_part(self, first: int, last: int, bins: list[int]) -> tuple[int, int]:
        """The longest stretch of frames staying within max_spread_bins of their median.

        Step-by-step linking lets a slow glide (a voice's harmonic, a siren)
        through; a beep holds its frequency, so only the steady part counts.
        """
        seg = bins[first:last + 1]
        if max(seg) - min(seg) <= self.max_spread_bins:
            return first, last  # the usual case: steady throughout
        median = float(np.median(seg))
        best, run_start = (first, first), None
        for i, b in enumerate(seg + [None]):  # None closes the last stretch
            if b is not None and abs(b - median) <= self.max_spread_bins:
                run_start = i if run_start is None else run_start
            elif run_start is not None:
                if i - 1 - run_start > best[1] - best[0]:
                    best = (first + run_start, first + i - 1)
                run_start = None
        return best

    def _group(self, segments: list[tuple[int, int, float]]) -> list[np.ndarray]:
        """Join segments at the same frequency separated by at most max_gap frames.

        A splash, a thud or a bubble can take over the strongest bin for a few
        frames in the middle of a beep at low SNR; the pieces on either side
        are still one beep. Returns the member frame indices of each group.
        """
        groups: list[list] = []  # [mean bin, last frame, [(first, last), ...]]
        for first, last, freq_bin in segments:  # in time order
            for g in reversed(groups):
                if (first - g[1] - 1 <= self._max_gap_frames
                        and abs(freq_bin - g[0]) <= self.max_spread_bins):
                    g[1] = last
                    g[2].append((first, last))
                    break
            else:
                groups.append([freq_bin, last, [(first, last)]])
        return [np.concatenate([np.arange(a, b + 1) for a, b in g[2]]) for g in groups]

    def _rivals(self, context_db: np.ndarray) -> int:
        """Count fellow-harmonic peaks in a run's neighbourhood, averaged over the run.

        ``context_db`` holds the run's frames (levels relative to each frame's
        peak), already without the onset and offset frames.
        """
        # Average in dB, not power: one loud splash or bubble frame must not
        # plant a fake rival; real harmonics are there in every frame anyway.
        profile = np.mean(context_db, axis=0)
        # The background is often sloped (washer noise falls with frequency), so
        # measure "clearly above" against a straight-line fit, not a flat median.
        outside = profile[self._outside]
        slope, intercept = self._line_fit @ outside
        baseline = slope * self._block + intercept
        baseline += np.median(outside - baseline[self._outside])
        above = (profile - baseline)[1:-1]
        inner = profile[1:-1]
        local_max = (inner > profile[:-2]) & (inner >= profile[2:]) & self._outside[1:-1]
        return int(np.count_nonzero(local_max & (above >= self.rival_margin_db)
                                    & (inner >= -self.rival_db)))

    def _wobble(self, peak_hz: np.ndarray) -> float:
        """Standard deviation of a run's peak frequency (onset/offset frames already dropped)."""
        return float(np.std(peak_hz))

    def score_run(self, prominence: float, duration_ms: float, wobble_hz: float, rivals: int,
                  whole_window: bool = False) -> float:
        """Logistic score from prominence, duration, wobble and rivals; scaled down for whines.
        (Public so that a run measured by one tracker can be judged by another's knobs.)"""
        bonus = np.log2(np.clip(duration_ms / self.min_ms, 1.0, 8.0))
        logit = ((prominence - self.mid_prominence_db) / self.prominence_scale_db + bonus
                 - (wobble_hz / self.wobble_hz) ** 2)
        logit -= self.rival_penalty * rivals
        score = 1.0 / (1.0 + np.exp(-logit))
        return float(score * (self.whole_window_factor if whole_window else 1.0))

    def runs(self, window: np.ndarray) -> list[ToneRun]:
        """Every beep candidate in ``window``, in time order."""
        return self._runs(self.analyse(window), max(len(window), self.n_fft) / self.sample_rate)

    def _runs(self, fr: ToneFrames, duration_s: float) -> list[ToneRun]:
        """Beep candidates from per-frame measurements of a window ``duration_s`` long."""
        n_frames = len(fr.tonal)
        out = []
        for members in self._group(self._segments(fr.tonal, fr.peak_bin)):
            first, last = int(members[0]), int(members[-1])
            span = last - first + 1
            if span < self._min_frames or len(members) < 0.5 * span:
                continue
            # Runs overhang the tone by about the same amount at both ends; a run
            # reaching a window edge is clipped there (the tone may go on beyond).
            start = 0.0 if first == 0 else float(fr.times[first] + self._inset_s)
            end = duration_s if last == n_frames - 1 else float(fr.times[last] - self._inset_s)
            whole = first == 0 and last == n_frames - 1 and duration_s >= self.max_beep_s
            # Switching a tone on or off splatters energy around it and bends its
            # apparent frequency: judge purity and steadiness without those frames.
            core = members[2:-2] if len(members) >= 8 else members
            mean_prom = float(np.mean(np.maximum(fr.prominence_db[members], 0.0)))
            rivals = self._rivals(fr.context_db[core])
            wobble = self._wobble(fr.peak_hz[core])
            score = self.score_run(mean_prom, 1000 * (end - start), wobble, rivals, whole)
            out.append(ToneRun(first, last, float(np.median(fr.peak_hz[members])), mean_prom, wobble,
                               rivals, start, end, whole, score))
        return sorted(out, key=lambda r: r.first)

    # ------------------------------------------------------------------- score

    def score(self, window: np.ndarray) -> WindowScore:
        """The window's beep score (0..1) and the time span of the beep(s) found.

        ``start``/``end`` cover every run scoring at least ``threshold`` (the
        best run's span when none does); both are None when there is no
        candidate at all.
        """
        candidates = self.runs(window)
        if not candidates:
            return WindowScore(0.0, {"beep": 0.0, "other": 1.0})
        best = max(candidates, key=lambda r: r.score)
        hits = [r for r in candidates if r.score >= self.threshold] or [best]
        s = best.score
        log.debug("best tone %.0f Hz, %.1f dB prominence, %.1f Hz wobble, %d rivals, %.2f-%.2f s: "
                  "score %.3f", best.freq_hz, best.mean_prominence_db, best.wobble_hz, best.rivals,
                  best.start, best.end, s)
        return WindowScore(s, {"beep": s, "other": 1.0 - s},
                           min(r.start for r in hits), max(r.end for r in hits))
