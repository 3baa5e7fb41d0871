"""Finding the owner's beeps in a recording: the tone detector's spectral-peak runs.

An appliance beep is a steady narrow-band tone of a few hundred ms; the tone detector
(`beepnet.detectors.tone`) tracks exactly those. A recording is looked at in overlapping
blocks (its analysis holds a spectrum per 8 ms frame, too much for a 10-minute file at
once), and a run counts when it scores as a beep there and stands above the recording's
usual level. Two runs closer than `MERGE_GAP_S` at the same pitch are one beep.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from ..audio import SAMPLE_RATE
from ..audio.gate import frame_levels
from ..detectors import timbre
from ..detectors.beepnet import pitch_notes
from ..detectors.tone import ToneDetector

log = logging.getLogger(__name__)

BLOCK_S = 10.0
STEP_S = 8.0
"""Blocks overlap by 2 s: a beep (at most ~2 s) that a block edge cuts is whole in the next."""
MIN_LEVEL_DB = 3.0
"""A run must be at least this much louder than the recording's median 20-ms frame."""
MERGE_GAP_S = 0.03


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

    @property
    def length(self) -> float:
        return self.end - self.start


def find_beeps(x: np.ndarray, recording: int = 0, min_hz: float = 1000.0,
               max_hz: float = 6000.0, rate: int = SAMPLE_RATE) -> list[FoundBeep]:
    """The beeps in one 16 kHz recording, in time order."""
    x = np.asarray(x, np.float32)
    tone = ToneDetector(rate, min_hz=min_hz, max_hz=max_hz)
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
            runs.append((start, off / rate + r.end, r.freq_hz, r.score))
        if last:
            break
    merged: list[list] = []
    for start, end, freq, score in sorted(runs):
        prev = merged[-1] if merged else None
        if (prev and start - prev[1] <= MERGE_GAP_S
                and abs(freq - prev[2]) <= 0.03 * prev[2]):
            prev[1], prev[3] = max(prev[1], end), max(prev[3], score)
        else:
            merged.append([start, end, freq, score])
    out = []
    for start, end, freq, score in merged:
        a = int(start * rate) // frame
        seg = levels[a:max(a + 1, int(end * rate) // frame)]
        loud = float(10 * np.log10(np.mean(10 ** (seg / 10)))) if len(seg) else background
        if loud - background < MIN_LEVEL_DB:
            log.debug("tone at %.2f s, %.0f Hz: only %.1f dB above the room", start, freq,
                      loud - background)
            continue
        out.append(FoundBeep(recording, start, end, freq, loud - background, score))
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
