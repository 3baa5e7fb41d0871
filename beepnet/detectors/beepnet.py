"""The BeepNet detector: the trained 1D-conv network (beepnet.model) scoring windows.

One CPU thread (the daemon's classifier is a process of its own). The score is P(beep)
from the clip output. The net runs in one of two runtimes (``detector.runtime``): numpy
(``numpy``, the default: `beepnet.model.npnet`), or PyTorch (``torch``, inference mode;
for parity checks and for the original net, which only torch runs; it needs the train
extra). They give the same scores; this module imports torch only for the torch runtime.

Where the beep is (start/end) is only worked out for windows that score as beeps. The
network's frame outputs give a coarse region (20 ms frames whose edges are vague: a model
trained on hand-labelled clips learns them through the clip label only, and even the
shipped model's frame targets leave out a beep's first and last 40 ms); inside it, the
tone detector's spectral-peak tracking finds the tones themselves to about 10 ms. A beep the tracker cannot follow (heavy
harmonics, a glide) keeps the coarse region.

A model made for one machine (`beepnet enroll`) stores that machine's beep pitches. A
window it scores as a beep then also needs a tone at one of those pitches (within
`PITCH_TOLERANCE`, and at least a little beep-like to the tone tracker: `PITCH_MIN_SCORE`):
a machine always beeps at its own pitches, and most of what a general model confuses with
beeps (a flute, a chime on the TV, a spoon on a glass) is at some other pitch, or is a
note inside a chord. When enroll found enough beeps at a pitch it also keeps their timbre
(`beepnet.detectors.timbre`: the levels of the harmonics next to the pitch), and the tone
must then fit it too: that tells a music note at the machine's very pitch from the beep.
The tracker allows the pitch to wobble as much as the machine's own beep did when it was
found (a real piezo's short blips shake by 20 Hz; most beeps hold their pitch within 5).
When the machine's beep is a tune (enroll or train found its notes one after another, see
`beepnet.enroll.find.min_notes`), the window must hold two of its notes: one note of the
radio at one of the tune's pitches is not the tune. A window without such a tone scores
just under the threshold (its class probabilities stay as the net gave them).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np

from beepnet.detectors import timbre
from beepnet.detectors.base import WindowScore
from beepnet.detectors.tone import ToneDetector, ToneRun
from beepnet.model.modelfile import STEADY_WOBBLE_HZ, ModelFileError
from beepnet.model.npnet import limit_blas_threads, load_numpy_model, softmax
from beepnet.model.preflight import RUNTIMES, TORCH_MISSING, find_default_model

log = logging.getLogger(__name__)

PITCH_TOLERANCE = 0.04
"""How far (relative) a window's tone may be from an enrolled pitch: the tone tracker's
estimate wobbles by about 1 %, a piezo's pitch drifts a little with temperature, and 4 %
is still under a semitone (6 %), so a tune a step away does not pass."""
PITCH_MIN_SCORE = 0.3
"""The tone tracker's score the tone at the pitch needs (its own threshold is 0.5). On the
real-sound machines of `make bench-realuser` (where it was chosen, among 0-0.5) the check
took enroll's false alarms from 62 to 16 in 12 hours (at any score: 48), and lost one beep
window in 1,200."""


def pitch_tracker(pitches: tuple[float, ...], rate: int = 16000,
                  wobble_hz: float = STEADY_WOBBLE_HZ) -> ToneDetector:
    """The tone tracker `has_pitch` looks with: the tone detector's usual band, widened to
    take in every enrolled pitch (enroll may have searched a wider `detector.tone_*_hz`),
    and as tolerant of a wobbling pitch as the machine's own beep needs (``wobble_hz``)."""
    lo = min([1000.0, *(f / (1 + 2 * PITCH_TOLERANCE) for f in pitches)])
    hi = max([6000.0, *(f * (1 + 2 * PITCH_TOLERANCE) for f in pitches)])
    return ToneDetector(rate, min_hz=max(20.0, lo), max_hz=min(hi, 0.48 * rate),
                        wobble_hz=wobble_hz)


def pitch_notes(pitches: tuple[float, ...] | list[float]) -> list[int]:
    """Which note of the machine each of ``pitches`` (lowest first) is: its own index, or
    the lowest pitch's whose whole multiple (2x, 3x, ...) it is within `PITCH_TOLERANCE`. A
    loud beep's harmonics are found as pitches of their own, but sound with it: they are not
    another note of a tune. (Two notes an octave apart count as one: the check is then the
    looser one.)"""
    out = list(range(len(pitches)))
    for j, f in enumerate(pitches):
        for i in range(j):
            n = round(f / pitches[i])
            if n >= 2 and abs(f - n * pitches[i]) <= PITCH_TOLERANCE * n * pitches[i]:
                out[j] = out[i]
                break
    return out


def has_pitch(tones: ToneDetector, x: np.ndarray, pitches: tuple[float, ...],
              timbres: tuple[dict | None, ...] = (), min_notes: int = 1) -> bool:
    """Whether the window holds a tone at one of ``pitches`` (`PITCH_MIN_SCORE` or more)
    that fits that pitch's timbre, if ``timbres`` has one for it; with ``min_notes`` 2,
    such tones of two different notes (`pitch_notes`) of a tune."""
    notes = pitch_notes(pitches)
    need = min(min_notes, len(set(notes)))
    heard: set[int] = set()
    for r in tones.runs(x):
        if r.score < PITCH_MIN_SCORE:
            continue
        for i, f in enumerate(pitches):
            if notes[i] not in heard and tone_fits(
                    x, r, f, timbres[i] if i < len(timbres) else None, tones.sample_rate):
                heard.add(notes[i])
                if len(heard) >= need:
                    return True
    return False


def tone_fits(x: np.ndarray, run: ToneRun, pitch: float, timbre_ref: dict | None,
              rate: int) -> bool:
    """Whether the tracker's ``run`` in ``x`` is at ``pitch`` (within `PITCH_TOLERANCE`)
    with the harmonics of ``timbre_ref`` (any, when None)."""
    return abs(run.freq_hz - pitch) <= PITCH_TOLERANCE * pitch and (
        timbre_ref is None or timbre.matches(
            timbre.measure(x, run.start, run.end, run.freq_hz, rate), timbre_ref))


def pitch_checked(score: float, threshold: float, tones: ToneDetector, x: np.ndarray,
                  pitches: tuple[float, ...], timbres: tuple[dict | None, ...] = (),
                  min_notes: int = 1) -> float:
    """``score`` as an enrolled model gives it: just under ``threshold`` when it passes but
    the window holds no tone at ``pitches`` (fitting ``timbres``; ``min_notes`` of a tune's;
    the tracker runs only on such windows)."""
    if score >= threshold and pitches and not has_pitch(tones, x, pitches, timbres,
                                                        min_notes):
        return 0.999 * threshold  # under it in float32 too
    return score


class BeepNetDetector:
    """Scores 16 kHz mono windows with a BeepNet model file."""

    name = "beepnet"

    def __init__(self, model_path: str | os.PathLike | None = None, runtime: str = "numpy"
                 ) -> None:
        if runtime not in RUNTIMES:
            raise ValueError(f"unknown BeepNet runtime {runtime!r} (one of "
                             f"{', '.join(RUNTIMES)})")
        path = Path(model_path).expanduser() if model_path else find_default_model()
        self.runtime = runtime
        if runtime == "numpy":
            limit_blas_threads(1)
            self.info = load_numpy_model(path)
            self._probs = self._numpy_probs
        else:
            try:
                import torch
            except ImportError:
                raise ModelFileError(TORCH_MISSING) from None

            from beepnet.training.torchmodel import load_model

            torch.set_num_threads(1)
            self._torch = torch
            self.info = load_model(path)
            self._probs = self._torch_probs
        self.net = self.info.net
        self.sample_rate = self.info.sample_rate
        self.threshold = self.info.threshold
        self.labels = list(self.info.labels)
        self._beep = self.info.beep_index
        self._frame_s = self.net.frame_seconds
        self._tones = ToneDetector(self.sample_rate)
        self.pitches = tuple(self.info.beep_pitches_hz)
        self.timbres = tuple(self.info.beep_timbre)
        self.min_notes = self.info.beep_min_notes
        self.wobble_hz = self.info.beep_wobble_hz
        self._pitch_tones = (pitch_tracker(self.pitches, self.sample_rate, self.wobble_hz)
                             if self.pitches else None)
        # Warm-up: the first call pays the runtime's one-off setup (torch's, BLAS buffers).
        self._probs(np.zeros(int(self.info.window_seconds * self.sample_rate), np.float32))
        log.debug("loaded %s", self.describe())

    def describe(self) -> str:
        runtime = f"; {self.runtime} runtime"
        pitches = (f"; beep at {', '.join(f'{f:.0f}' for f in self.pitches)} Hz"
                   if self.pitches else "")
        if any(t is not None for t in self.timbres):
            pitches += " and its timbre"
        if self.pitches and self.min_notes > 1:
            pitches += f", {self.min_notes} notes of its tune a window"
        if self.pitches and self.wobble_hz != STEADY_WOBBLE_HZ:
            pitches += f", a tone wobbling up to {self.wobble_hz:.0f} Hz"
        return (f"beepnet model {Path(self.info.path).name} ({', '.join(self.labels)}; "
                f"threshold {self.threshold:.2f}{pitches}{runtime})")

    def score(self, window: np.ndarray) -> WindowScore:
        x = np.asarray(window, dtype=np.float32).reshape(-1)
        n = len(x)
        min_len = self.net.cfg.kernel  # shorter than one filter: pad (silence adds nothing)
        if len(x) < min_len:
            x = np.pad(x, (0, min_len - len(x)))
        probs, frame_p = self._probs(x)
        labels = {name: float(p) for name, p in zip(self.labels, probs)}
        score = labels["beep"]
        start = end = None
        score = pitch_checked(score, self.threshold, self._pitch_tones, x[:n], self.pitches,
                              self.timbres, self.min_notes)
        if score >= self.threshold:
            start, end = self._locate(x[:n], frame_p, n / self.sample_rate)
        return WindowScore(score=score, labels=labels, start=start, end=end)

    def _has_pitch(self, x: np.ndarray) -> bool:
        return has_pitch(self._pitch_tones, x, self.pitches, self.timbres, self.min_notes)

    def _torch_probs(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Class probabilities of the window and P(beep) per frame, by torch."""
        torch = self._torch
        with torch.inference_mode():
            clip, frames = self.net(torch.from_numpy(x).unsqueeze(0))
            return (torch.softmax(clip[0], dim=0).numpy(),
                    torch.softmax(frames[0], dim=0)[self._beep].numpy())

    def _numpy_probs(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The same by the numpy runtime."""
        clip, frames = self.net.forward_one(x)
        return softmax(clip), softmax(frames, axis=0)[self._beep]

    def _locate(self, x: np.ndarray, frame_p: np.ndarray, duration: float
                ) -> tuple[float, float]:
        """The beep's span: tone runs inside the frames' coarse region, else that region."""
        on = np.flatnonzero(frame_p >= 0.5 * frame_p.max())
        start = max(0.0, on[0] * self._frame_s - 0.5 * self._frame_s)
        end = min(duration, (on[-1] + 1) * self._frame_s)
        margin = 0.25  # the coarse edges are vague by about this much
        runs = [r for r in self._tones.runs(x) if r.score >= self._tones.threshold
                and r.end > start - margin and r.start < end + margin]
        if runs:
            start, end = min(r.start for r in runs), min(duration, max(r.end for r in runs))
        return float(start), float(max(end, start))
