"""Finding the owner's beeps in a recording: the tone detector's spectral-peak runs.

An appliance beep is a steady narrow-band tone of a few hundred ms; the tone detector
(`beepnet.detectors.tone`) tracks exactly those. A recording is looked at in overlapping
blocks (its analysis holds a spectrum per 8 ms frame, too much for a 10-minute file at
once), and a run counts when it scores as a beep there and stands above the recording's
usual level. Two runs closer than `MERGE_GAP_S` at the same pitch are one beep.

The finder's tracker allows more wobble of the pitch than the tone detector's own (a real
piezo's short blips shake by 20 Hz); `machine_beeps` then decides how much the machine's
beep needs, and keeps the beeps that pass with that: for a steady beep, the same beeps the
tone detector's tracker finds.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from ..audio import SAMPLE_RATE
from ..audio.gate import frame_levels
from ..detectors import timbre
from ..detectors.beepnet import PITCH_MIN_SCORE, pitch_notes
from ..detectors.tone import ToneDetector
from ..model.modelfile import STEADY_WOBBLE_HZ

log = logging.getLogger(__name__)

BLOCK_S = 10.0
STEP_S = 8.0
"""Blocks overlap by 2 s: a beep (at most ~2 s) that a block edge cuts is whole in the next."""
MIN_LEVEL_DB = 3.0
"""A run must be at least this much louder than the recording's median 20-ms frame."""
MERGE_GAP_S = 0.03
WOBBLE_STEPS_HZ = (STEADY_WOBBLE_HZ, 7.0, 10.0, 14.0)
"""The wobbles the pitch check's tracker may allow, a step of sqrt(2) apart (`beep_wobble`
picks one); the finder looks with the last, so that it finds every beep the check could
pass."""


@dataclass(frozen=True)
class FoundBeep:
    recording: int
    """Index of the recording it is in."""
    start: float
    end: float
    freq_hz: float
    level_db: float
    """Loudness over the beep minus the recording's median frame level."""
    score: float
    """The tone tracker's, as the finder's loose tracker scores it (`WOBBLE_STEPS_HZ`)."""
    prominence_db: float = 40.0
    wobble_hz: float = 0.0
    rivals: int = 0
    """What the tracker measured of the beep's best-scoring run, for judging it with other
    knobs (`beep_wobble`); the defaults are a clean steady tone."""

    @property
    def length(self) -> float:
        return self.end - self.start


def find_beeps(x: np.ndarray, recording: int = 0, min_hz: float = 1000.0,
               max_hz: float = 6000.0, rate: int = SAMPLE_RATE) -> list[FoundBeep]:
    """The beeps in one 16 kHz recording, in time order."""
    x = np.asarray(x, np.float32)
    tone = ToneDetector(rate, min_hz=min_hz, max_hz=max_hz, wobble_hz=WOBBLE_STEPS_HZ[-1])
    frame = int(0.02 * rate)
    levels = frame_levels(x, frame)
    background = float(np.median(levels))
    block, step = int(BLOCK_S * rate), int(STEP_S * rate)
    runs = []
    for off in range(0, max(1, len(x) - (block - step)), step):
        last = off + block >= len(x)
        for r in tone.runs(x[off:off + block]):
            start = off / rate + r.start
            # Each block reports the runs starting in its own first 8 s; the overlap is the
            # next block's.
            if r.score < tone.threshold or (not last and r.start >= STEP_S):
                continue
            runs.append((start, off / rate + r.end, r.freq_hz, r))
        if last:
            break
    merged: list[list] = []
    for start, end, freq, run in sorted(runs, key=lambda r: r[:3]):
        prev = merged[-1] if merged else None
        if (prev and start - prev[1] <= MERGE_GAP_S
                and abs(freq - prev[2]) <= 0.03 * prev[2]):
            prev[1] = max(prev[1], end)
            prev[3] = max(prev[3], run, key=lambda r: r.score)
        else:
            merged.append([start, end, freq, run])
    out = []
    for start, end, freq, run in merged:
        a = int(start * rate) // frame
        seg = levels[a:max(a + 1, int(end * rate) // frame)]
        loud = float(10 * np.log10(np.mean(10 ** (seg / 10)))) if len(seg) else background
        if loud - background < MIN_LEVEL_DB:
            log.debug("tone at %.2f s, %.0f Hz: only %.1f dB above the room", start, freq,
                      loud - background)
            continue
        out.append(FoundBeep(recording, start, end, freq, loud - background, run.score,
                             run.mean_prominence_db, run.wobble_hz, run.rivals))
    return out


PITCH_GROUP = 0.03
"""Found beeps within this (relative) of each other are one pitch of the machine."""


def pitch_groups(beeps: list[FoundBeep], min_share: float = 0.1) -> list[list[FoundBeep]]:
    """The found beeps grouped by pitch (within `PITCH_GROUP` of a group's lowest), lowest
    first; a group of less than ``min_share`` of the beeps (a tone of the room that passed
    for one) is left out."""
    groups: list[list[FoundBeep]] = []
    for b in sorted(beeps, key=lambda b: b.freq_hz):
        if groups and b.freq_hz - groups[-1][0].freq_hz <= PITCH_GROUP * groups[-1][0].freq_hz:
            groups[-1].append(b)
        else:
            groups.append([b])
    return [g for g in groups if len(g) >= max(1, min_share * len(beeps))]


def beep_pitches(beeps: list[FoundBeep], min_share: float = 0.1) -> list[float]:
    """The machine's beep pitches: each `pitch_groups` group's median frequency, in Hz."""
    return [float(np.median([b.freq_hz for b in g])) for g in pitch_groups(beeps, min_share)]


def beep_timbres(recordings: list[np.ndarray], beeps: list[FoundBeep],
                 rate: int = SAMPLE_RATE) -> list[dict | None]:
    """The timbre of the machine's beep at each of its `beep_pitches`
    (`detectors.timbre.ranges` over the found beeps of that pitch, measured in their
    recordings), None where too few beeps were found at it."""
    return [timbre.ranges(timbre.measure(recordings[b.recording], b.start, b.end, b.freq_hz,
                                         rate) for b in g)
            for g in pitch_groups(beeps)]


SHAKY_SHARE = 0.5
"""A machine's beep is shaky when less than this share of its found beeps pass the pitch
check's tracker with a steady beep's wobble (`beep_wobble`)."""
PASS_SHARE = 0.9
"""A shaky beep's check allows the least wobble under which this share of its found beeps
pass."""


def beep_wobble(beeps: list[FoundBeep], min_share: float = 0.1) -> float:
    """How much wobble the pitch check's tracker must allow (its ``wobble_hz``) for the
    machine's beep: a steady beep's (`STEADY_WOBBLE_HZ`) when `SHAKY_SHARE` of the found
    beeps at its `beep_pitches` score `PITCH_MIN_SCORE` or more with it, else the least of
    `WOBBLE_STEPS_HZ` under which `PASS_SHARE` of them do. On `make bench-realuser`'s
    twelve machines 88-100 % of eleven machines' beeps pass with 5 Hz (a chime's shaky
    high partial, found only by the loose finder, is most of the 12 % that do not: a
    looser check for it gave that machine a false alarm more); the twelfth's 90-ms piezo
    blips wobble by 20-27 Hz (the tone shakes as the disc rings): 1 % pass at 5 Hz, 64 %
    at 10, all at 14. A looser tracker than the beep needs lets more music through (12 Hz
    on every machine: 5 false alarms in 4 h on the seed-1430 chime's enroll model, at 5 Hz
    none)."""
    found = [b for g in pitch_groups(beeps, min_share) for b in g]
    if not found:
        return STEADY_WOBBLE_HZ

    def passing(wobble: float) -> float:
        return float(np.mean(_scores(found, wobble) >= PITCH_MIN_SCORE))

    if passing(STEADY_WOBBLE_HZ) >= SHAKY_SHARE:
        return STEADY_WOBBLE_HZ
    return next((w for w in WOBBLE_STEPS_HZ[1:] if passing(w) >= PASS_SHARE),
                WOBBLE_STEPS_HZ[-1])


def _scores(beeps: list[FoundBeep], wobble: float) -> np.ndarray:
    """The tone tracker's scores of ``beeps`` as a tracker allowing ``wobble`` gives them."""
    tracker = ToneDetector(wobble_hz=wobble)
    return np.array([tracker.score_run(b.prominence_db, 1000 * b.length, b.wobble_hz,
                                       b.rivals) for b in beeps])


def machine_beeps(beeps: list[FoundBeep], min_share: float = 0.1
                  ) -> tuple[list[FoundBeep], float]:
    """The machine's beeps among the found ones, and the wobble its pitch check allows
    (`beep_wobble`): the found beeps that a tracker allowing that wobble scores as beeps
    (the tone detector's threshold). For a steady beep they are the beeps the tone
    detector's own tracker finds: the looser finder changes nothing for it."""
    wobble = beep_wobble(beeps, min_share)
    beep_like = _scores(beeps, wobble) >= ToneDetector(wobble_hz=wobble).threshold
    return [b for b, ok in zip(beeps, beep_like) if ok], wobble


def find_machine_beeps(recordings: list[np.ndarray], min_hz: float = 1000.0,
                       max_hz: float = 6000.0, rate: int = SAMPLE_RATE
                       ) -> tuple[list[FoundBeep], float]:
    """`machine_beeps` of the beeps `find_beeps` finds in each of ``recordings``."""
    return machine_beeps([b for i, x in enumerate(recordings)
                          for b in find_beeps(x, i, min_hz, max_hz, rate)])


TUNE_SPAN_S = 1.5
"""Two notes at most this far apart (start to start) belong to one tune: a daemon window
(3 s every 1.5 s) then holds both."""
TUNE_SHARE = 0.5
"""A machine's beep is a tune when at least this share of the found beeps (at its pitches)
have a beep of another note within `TUNE_SPAN_S`. On `make bench-realuser`'s six machines
the two melodies have 0.87 and 0.90, the repeats and chimes 0 (their second and third
pitches are harmonics of the first, sounding with it: one note)."""


def min_notes(beeps: list[FoundBeep], min_share: float = 0.1) -> int:
    """How many different notes of the machine's `beep_pitches` a beep window must hold
    (`detectors.beepnet.has_pitch`): 2 for a tune (`TUNE_SHARE`), else 1. A radio's note at
    one of a tune's pitches is the false alarm this stops; the tune itself comes in windows
    holding two of its notes (a window holding only its last note is a miss, but the
    window before it has the rest)."""
    groups = pitch_groups(beeps, min_share)
    notes = pitch_notes(beep_pitches(beeps, min_share))
    if len(set(notes)) < 2:
        return 1
    note = {id(b): notes[k] for k, g in enumerate(groups) for b in g}
    found = [b for b in beeps if id(b) in note]
    paired = sum(any(o.recording == b.recording and note[id(o)] != note[id(b)]
                     and abs(o.start - b.start) <= TUNE_SPAN_S for o in found) for b in found)
    return 2 if paired >= TUNE_SHARE * len(found) else 1


def beep_table(beeps: list[FoundBeep], names: list[str]) -> str:
    """The found beeps as a small table, one line each."""
    lines = [f"  {'#':>2}  {'recording':<18} {'time':>7}  {'pitch':>8}  {'length':>7}  "
             f"{'above room':>10}"]
    for i, b in enumerate(beeps, 1):
        lines.append(f"  {i:>2}  {names[b.recording][:18]:<18} {b.start:>6.2f}s  "
                     f"{b.freq_hz:>6.0f}Hz  {1000 * b.length:>5.0f}ms  {b.level_db:>8.1f}dB")
    return "\n".join(lines)
