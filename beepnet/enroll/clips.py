"""The 3-s clips an enrolment learns from and is judged on, made from the owner's recordings.

A handful of beeps and a couple of minutes of room sound are far too few clips to learn
from as they are, so each found beep (with a little of its surroundings: onset and room
echo) is laid over crops of the room recording at many positions and levels. The room
alone gives the "other" clips, and a few generated hard negatives (speech and TV-like
babble, music, knocks, doors, `beepnet.training.synth`, numpy only) laid over the room teach
the new head what it will hear in a home but the owner may not have recorded.

Held out from all that, for the comparison with the model in use: every fifth beep found
(the last one when there are fewer than five) and the last quarter of the room recording.
The held-out "other" clips are that room audio cut into windows exactly as the daemon cuts
it; the held-out beep clips are each held-out beep's own window in its recording, plus the
beep laid over held-out room windows as far above them as it was above its own recording.

Clips are generated one at a time (a clip is 190 kB; a thousand of them would not fit a
small Pi's memory) and turned into features by the caller.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Iterator

import numpy as np

from ..audio import SAMPLE_RATE
from ..audio.gate import frame_levels, level_dbfs
from .find import FoundBeep

log = logging.getLogger(__name__)

BEFORE_S = 0.03
AFTER_S = 0.15
"""Around a found beep: its onset (the tracker starts a few ms late) and the room's echo."""
FADE_S = 0.005
HELDOUT_ROOM_SHARE = 0.25
MIN_ROOM_S = 12.0
"""At least this much room sound: 9 s to learn from and 3 s (one window) held out."""
LOWEST_ABOVE_ROOM_DB = 4.0
LOUDER_THAN_RECORDED_DB = 4.0
"""How loud a training beep is laid over a room crop, in dB above the crop's median 20-ms
frame: from `LOWEST_ABOVE_ROOM_DB` (the machine beeping behind a door; a little above the
level at which beeps are found at all) to as loud as it was recorded plus
`LOUDER_THAN_RECORDED_DB`. Relative to each crop, not to the recording: a beep recorded
next to the microphone in a quiet room, laid at that gain over a spinning drum, would be
buried and teach the head that the drum is a beep."""
QUIETEST_ROOM_DBFS = -80.0
"""A digitally silent room (a microphone with a noise gate) counts as this loud: the beeps
laid over it must still be heard."""
LEAST_RANGE_DB = 8.0
"""The span of levels is at least this wide, even for a beep recorded faintly."""
HELDOUT_PLACEMENTS = 8
"""Held-out beep clips laid over held-out room windows (at least 2 per held-out beep)."""
HELD_EVERY = 5
"""Every fifth beep found is held out."""
PIECES = 8
"""Generated speakers and tunes among the hard negatives."""


@dataclass(frozen=True)
class Split:
    """The owner's audio, split into what the head learns from and what judges it."""

    snippets: list[np.ndarray]
    """The training beeps, each with a little of its surroundings."""
    levels_db: list[float]
    """How far above the room each was recorded (`FoundBeep.level_db`)."""
    beep_dbfs: list[float]
    """Each one's own level (its frames' mean power)."""
    room: np.ndarray
    """Room audio to learn from."""
    heldout_room: np.ndarray
    heldout_snippets: list[np.ndarray]
    heldout_levels_db: list[float]
    heldout_dbfs: list[float]
    heldout_windows: list[np.ndarray]
    """Each held-out beep's own 3-s window in its recording."""


def snippet(x: np.ndarray, beep: FoundBeep, rate: int = SAMPLE_RATE) -> np.ndarray:
    a = max(0, int((beep.start - BEFORE_S) * rate))
    b = min(len(x), int((beep.end + AFTER_S) * rate))
    s = np.array(x[a:b], np.float32)
    n = min(int(FADE_S * rate), len(s) // 2)
    if n:
        ramp = np.linspace(0.0, 1.0, n, dtype=np.float32)
        s[:n] *= ramp
        s[-n:] *= ramp[::-1]
    return s


def own_window(x: np.ndarray, beep: FoundBeep, size: int, filler: np.ndarray,
               rate: int = SAMPLE_RATE) -> np.ndarray:
    """The window of ``size`` samples around a beep in its recording, as the daemon could
    have cut it (the beep in the middle); a recording shorter than that is laid over
    ``filler`` room audio."""
    centre = int((beep.start + beep.end) / 2 * rate)
    if len(x) >= size:
        a = min(max(0, centre - size // 2), len(x) - size)
        return np.array(x[a:a + size], np.float32)
    out = room_crop(filler, size, np.random.default_rng(0))
    at = max(0, min(size - len(x), size // 2 - centre))
    out[at:at + len(x)] += x
    return np.clip(out, -1.0, 1.0)


def held_out(n: int) -> list[int]:
    """Which of ``n`` found beeps judge the new model: every fifth (spread over the
    recordings), or the last one of fewer than five."""
    return list(range(HELD_EVERY - 1, n, HELD_EVERY)) if n >= HELD_EVERY else [n - 1]


def split(recordings: list[np.ndarray], beeps: list[FoundBeep], room: np.ndarray,
          window: int, rate: int = SAMPLE_RATE) -> Split:
    """Hold out some beeps (`held_out`) and the last quarter of the room (see the module
    docstring). Needs at least two beeps and `MIN_ROOM_S` of room audio (the caller
    checks)."""
    cut = len(room) - max(window, int(len(room) * HELDOUT_ROOM_SHARE))
    train_room, test_room = room[:cut], room[cut:]
    chosen = set(held_out(len(beeps)))
    held = [b for i, b in enumerate(beeps) if i in chosen]
    learn = [b for i, b in enumerate(beeps) if i not in chosen]

    def dbfs(b: FoundBeep) -> float:
        x = recordings[b.recording][int(b.start * rate):max(int(b.end * rate),
                                                            int(b.start * rate) + 1)]
        return level_dbfs(x)

    return Split(snippets=[snippet(recordings[b.recording], b, rate) for b in learn],
                 levels_db=[b.level_db for b in learn], beep_dbfs=[dbfs(b) for b in learn],
                 room=train_room, heldout_room=test_room,
                 heldout_snippets=[snippet(recordings[b.recording], b, rate) for b in held],
                 heldout_levels_db=[b.level_db for b in held],
                 heldout_dbfs=[dbfs(b) for b in held],
                 heldout_windows=[own_window(recordings[b.recording], b, window, test_room,
                                             rate) for b in held])


def median_dbfs(x: np.ndarray, rate: int = SAMPLE_RATE) -> float:
    return float(np.median(frame_levels(x, int(0.02 * rate))))


def gain_for(bg: np.ndarray, beep_dbfs: float, above_db: float, fg: np.ndarray) -> float:
    """The gain that puts a beep of ``beep_dbfs`` ``above_db`` over ``bg``'s median frame,
    short of clipping."""
    gain = 10 ** ((max(median_dbfs(bg), QUIETEST_ROOM_DBFS) + above_db - beep_dbfs) / 20)
    return min(gain, 0.9 / max(float(np.abs(fg).max()), 1e-6))


def room_crop(room: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """A random ``size``-sample stretch of the room (repeated if the room is shorter)."""
    if len(room) < size:
        room = np.tile(room, size // max(1, len(room)) + 1)
    a = int(rng.integers(0, len(room) - size + 1))
    return np.array(room[a:a + size], np.float32)


def lay(background: np.ndarray, fg: np.ndarray, at: int, gain: float) -> np.ndarray:
    """``fg`` times ``gain`` added to ``background`` from sample ``at`` (cropped at its end)."""
    out = np.array(background, np.float32)
    n = min(len(fg), len(out) - at)
    out[at:at + n] += gain * fg[:n]
    return np.clip(out, -1.0, 1.0)


def _random_place(bg: np.ndarray, fg: np.ndarray, gain: float, rng: np.random.Generator
                  ) -> np.ndarray:
    at = int(rng.integers(0, max(1, len(bg) - len(fg)) + 1))
    return lay(bg, fg, at, gain)


def beep_clips(s: Split, n: int, size: int, rng: np.random.Generator
               ) -> Iterator[np.ndarray]:
    """``n`` clips of the training beeps over the training room, at random places and levels
    (`LOWEST_ABOVE_ROOM_DB`)."""
    for i in range(n):
        k = i % len(s.snippets)
        fg = s.snippets[k]
        lo = LOWEST_ABOVE_ROOM_DB
        hi = max(s.levels_db[k], lo + LEAST_RANGE_DB) + LOUDER_THAN_RECORDED_DB
        bg = room_crop(s.room, size, rng)
        gain = gain_for(bg, s.beep_dbfs[k], rng.uniform(lo, hi), fg)
        clip = _random_place(bg, fg, gain, rng)
        if rng.random() < 0.2:  # machines that beep twice, or a press that made two
            clip = _random_place(clip, fg, gain, rng)
        yield clip


def room_clips(s: Split, n: int, size: int, rng: np.random.Generator) -> Iterator[np.ndarray]:
    for _ in range(n):
        yield room_crop(s.room, size, rng)


def hard_negatives(room: np.ndarray, n: int, size: int, rng: np.random.Generator,
                   rate: int = SAMPLE_RATE) -> Iterator[np.ndarray]:
    """Speech, TV-like music, knocks and doors over crops of ``room`` (the training room;
    for `answers`, the owner's ❌ windows), from quiet to loud."""
    from ..training import synth

    # Several speakers and tunes: one long piece of each would teach one voice and one song.
    pieces = [[make(rng, 2 * size / rate, rate) for _ in range(PIECES)]
              for make in (synth.speech_like, synth.music_like)]
    room_rms = max(float(np.sqrt(np.mean(np.square(room, dtype=np.float64)))), 1e-4)
    for i in range(n):
        kind = i % 4
        if kind < 2:
            fg = room_crop(pieces[kind][(i // 4) % PIECES], size, rng)
        else:
            fg = (synth.knock(rng, rate) if kind == 2 else synth.door(rng, rate))
        fg_rms = max(float(np.sqrt(np.mean(np.square(fg, dtype=np.float64)))), 1e-6)
        gain = room_rms / fg_rms * 10 ** (rng.uniform(0.0, 25.0) / 20)
        gain = min(gain, 0.9 / max(float(np.abs(fg).max()), 1e-6))
        yield _random_place(room_crop(room, size, rng), fg, gain, rng)


def windows(x: np.ndarray, size: int, hop: int) -> list[np.ndarray]:
    """``x`` cut into windows of ``size`` samples every ``hop``, as the daemon cuts it
    (views, not copies; one shorter window when ``x`` is shorter than ``size``)."""
    return [x[a:a + size] for a in range(0, max(1, len(x) - size + 1), hop)]


def heldout_clips(s: Split, size: int, hop: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """(beep clips, other clips) held out: see the module docstring."""
    others = [np.array(w, np.float32) for w in windows(s.heldout_room, size, hop)]
    beeps = list(s.heldout_windows)
    per_beep = max(2, HELDOUT_PLACEMENTS // len(s.heldout_snippets))
    k = 0
    for fg, level, dbfs in zip(s.heldout_snippets, s.heldout_levels_db, s.heldout_dbfs):
        span = max(1, size - len(fg))
        for j in range(per_beep):
            bg = others[k % len(others)]
            k += 1
            # As far above each window's room as it was above its own recording's.
            beeps.append(lay(bg, fg, int(span * (j + 0.5) / per_beep),
                             gain_for(bg, dbfs, level, fg)))
    return beeps, others
