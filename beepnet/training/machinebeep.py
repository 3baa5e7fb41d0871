"""Whether a training set's beeps are one machine's, and that machine's pitches and timbres.

`beepnet enroll` learns the pitches and timbre of the owner's beep and the detector then
wants a tone at one of those pitches, with that timbre, before it alerts
(`beepnet.detectors.beepnet.has_pitch`): music notes and TV jingles the net takes for a
beep rarely sit at the machine's pitch with its harmonics. `beepnet train` on the chunks
of one machine and room (the README's `train --init default` path) learns the same from
its beep clips, so that a model trained on ~40 beep and ~600 other chunks checks its beep
as an enrolled one does.

A set is one machine's when the pitch check would let through at least `ONE_MACHINE_SHARE`
of its own beep clips, counting as heard a clip whose tone at the pitch the window's edge
cuts: the daemon's windows overlap by half, so the window before or after it holds what
the edge cut off (`cut_by_edge`). A set of many machines (`beepnet synth`'s, for the
shipped model) has no pitch shared by enough of its beeps and gets no check.
"""

from __future__ import annotations

import itertools
import logging
from dataclasses import dataclass

import numpy as np

from ..detectors import timbre
from ..detectors.beepnet import has_pitch, pitch_tracker, tone_fits
from ..detectors.tone import ToneDetector
from ..enroll.find import beep_pitches, beep_timbres, find_machine_beeps, min_notes
from ..model.modelfile import STEADY_WOBBLE_HZ

log = logging.getLogger(__name__)

ONE_MACHINE_SHARE = 0.9
"""The share of a set's beep clips the learned pitch check must keep (or find cut by the
window's edge) for it to be used: on
`make bench-realuser`'s machines of seeds 1400 and 1410 it keeps all 40 of each machine's
beep chunks, and 37 of the seed-1420 melody's (its notes ring into each other; 0.95 left
that machine without a check: 5 false alarms in 4 h, where enroll's model with it had
none); in the 2,560 beep clips of many makes that `make model` trains on (200 searched,
three samples tried) no pitch is common enough to be found at all; in `beepnet synth
--preset user`'s one generated appliance, beeps under a loud washer often go unfound and
the check would keep 89 % (seed 3), so that set gets none. 0.9 is a judgement, not a fit.
Before edge-cut tones counted, the seed-1430 chime's check kept 88 % of its training clips
and was dropped (11 false alarms on music in 4 h; with the check, 6): every clip it
dropped held the chime's strike in its last 0.3-1.4 s, under talk, which the next window
holds whole."""

MAX_CLIPS = 200
"""At most this many beep clips are searched for the pitch (a random sample of a larger
set): one machine's pitch shows in any 200 of its clips, and a set of many makes is not
searched clip by clip for long."""


@dataclass(frozen=True)
class MachineBeep:
    """The beep of a one-machine set: its pitches (Hz), their timbres (or None each), the
    share of the set's beep clips that the check keeps, the share more whose tone at the
    pitch the window's edge cuts (`cut_by_edge`), how many of its notes a window
    must hold (2 for a tune: `beepnet.enroll.find.min_notes`) and how much wobble of its
    pitch the check allows (`beepnet.enroll.find.beep_wobble`)."""

    pitches: tuple[float, ...]
    timbres: tuple[dict | None, ...]
    kept: float
    cut: float = 0.0
    min_notes: int = 1
    wobble_hz: float = STEADY_WOBBLE_HZ

    @property
    def timbre_checked(self) -> bool:
        return timbre.every_pitch_has_one(self.timbres)

    def describe(self) -> str:
        hz = ", ".join(f"{f:.0f}" for f in self.pitches)
        what = "pitch and timbre" if self.timbre_checked else "pitch"
        tune = (f" (a tune: {self.min_notes} of its notes a window)" if self.min_notes > 1
                else "")
        if self.wobble_hz != STEADY_WOBBLE_HZ:
            tune += f" (its pitch wobbling: {self.wobble_hz:.0f} Hz allowed)"
        cut = f", cut by the window's edge in {self.cut:.0%} more" if self.cut else ""
        return (f"the beep clips are one machine's (a tone at {hz} Hz in "
                f"{self.kept:.0%} of them{cut}): the model also checks the beep's {what}{tune}")


def learn(clips: list[np.ndarray], rate: int, seed: int = 0) -> MachineBeep | None:
    """The machine's beep if ``clips`` (beep windows, int16 or float) are one machine's,
    else None. Only the sampled clips are converted: `make model`'s 2,560 beep clips as
    floats would be 490 MB."""
    if len(clips) > MAX_CLIPS:
        pick = np.random.default_rng(seed).choice(len(clips), MAX_CLIPS, replace=False)
        clips = [clips[i] for i in sorted(pick)]
    clips = [_float(x) for x in clips]
    beeps, wobble = find_machine_beeps(clips, rate=rate)
    pitches = tuple(beep_pitches(beeps))
    if not pitches:
        log.info("no beep pitch common to the beep clips: no pitch check")
        return None
    timbres = tuple(beep_timbres(clips, beeps, rate))
    # One machine's or not is judged on one note: a tune's clips that hold only its last
    # note are still its clips.
    kept = _kept(clips, pitches, timbres, rate, wobble_hz=wobble)
    tones = pitch_tracker(pitches, rate, wobble)
    cut = np.array([not k and cut_by_edge(tones, x, pitches, timbres)
                    for k, x in zip(kept, clips)])
    if np.mean(kept | cut) < ONE_MACHINE_SHARE:
        log.info("a tone at %s Hz in only %.0f%% of the beep clips: not one machine's "
                 "beep, no pitch check", ", ".join(f"{f:.0f}" for f in pitches),
                 100 * np.mean(kept | cut))
        return None
    return MachineBeep(pitches, timbres, float(np.mean(kept)), float(np.mean(cut)),
                       min_notes(beeps), wobble)


def cut_by_edge(tones: ToneDetector, x: np.ndarray, pitches: tuple[float, ...],
                timbres: tuple[dict | None, ...] = ()) -> bool:
    """Whether ``x`` holds a tone at one of ``pitches`` (fitting that pitch's timbre, if
    ``timbres`` has one) that a window edge cuts, as ``tones`` tracks them. The check
    may well drop such a window, the tone too short in it to score, but the daemon's next
    or previous window, half a window away, holds the part the edge cut: the beep is still
    heard. A tone through the whole window is a whine."""
    end = len(x) / tones.sample_rate - 1e-6
    return any(tone_fits(x, r, f, ref, tones.sample_rate)
               for r in tones.runs(x) if not r.whole_window and (r.start <= 0.0 or r.end >= end)
               for f, ref in itertools.zip_longest(pitches, timbres[:len(pitches)]))


def gated(p_beep: np.ndarray, clips: list[np.ndarray], beep: MachineBeep, rate: int
          ) -> np.ndarray:
    """P(beep) of ``clips`` (int16 or float) as the detector scores them with the pitch
    check: 0 where the clip holds no tone at the machine's pitches and timbres (for
    choosing a threshold)."""
    return np.where(_kept([_float(x) for x in clips], beep.pitches, beep.timbres, rate,
                          beep.min_notes, beep.wobble_hz), p_beep, 0.0)


def _float(x: np.ndarray) -> np.ndarray:
    """A 16-bit window as float32 in -1..1, as the detector hears it; floats unchanged."""
    return x.astype(np.float32) / 32767 if x.dtype == np.int16 else x


def _kept(clips: list[np.ndarray], pitches: tuple[float, ...], timbres: tuple, rate: int,
          notes: int = 1, wobble_hz: float = STEADY_WOBBLE_HZ) -> np.ndarray:
    """Which clips hold a tone at ``pitches`` fitting ``timbres`` (and ``notes`` of a
    tune's; its pitch wobbling by up to ``wobble_hz``: the detector's check)."""
    tones = pitch_tracker(pitches, rate, wobble_hz)
    return np.array([has_pitch(tones, x, pitches, timbres, notes) for x in clips], bool)
