"""Training pieces made of real recordings (beepnet.training.realsounds).

`RealPool` hands the generator (beepnet.training.dataset) 3-s backgrounds of real talk,
music, TV and clatter, and beep patterns built from real sounds: the note bank's sampled
mallets, bells and leads played as chimes, tunes and piezo-like beeps, and the few real
UI beeps and jingles. The training split's files are divided once more, by file: about
one in ten is kept out of training ("calib") so that the operating threshold is set on
real audio the model never learned from.
"""

from __future__ import annotations

import hashlib
import logging
from functools import lru_cache
from pathlib import Path

import numpy as np
import soundfile as sf

from . import synth
from .realsounds import KINDS_BEEP, Library, Note

log = logging.getLogger(__name__)

SR = synth.SR
CALIB_SHARE = 0.1
BACKGROUNDS = ("speech", "music", "tv", "kitchen")
"""Real background kinds: talk, music, talk over music (TV, radio), clatter over a quiet room."""
BEEP_KINDS = ("chime", "melody", "piezo", "single", "file")
# Real files get a quarter: sound themes' chimes and jingles are what the note bank
# imitates least well (bell partials, mixed timbres), and what many appliances play.
BEEP_P = (0.25, 0.2, 0.15, 0.15, 0.25)

# Note-bank instruments by what they can stand for.
_MALLETS = ("celesta", "glockenspiel", "music box", "marimba", "xylophone", "tinkle bell",
            "electric piano", "crystal", "piano", "vibraphone", "tubular bells", "kalimba",
            "steel drums", "electric piano 2", "dulcimer", "harp", "harpsichord", "agogo")
_LEADS = ("square lead", "ocarina", "piccolo", "sawtooth lead", "flute", "calliope",
          "recorder", "whistle")


def part_of(member: str) -> str:
    """"calib" for about CALIB_SHARE of files (fixed by the file's name), else "fit"."""
    h = int(hashlib.sha256(member.encode()).hexdigest()[:8], 16)
    return "calib" if h % 1000 < CALIB_SHARE * 1000 else "fit"


class RealPool:
    """The real pieces of one split (and part: "fit", "calib" or None for both)."""

    def __init__(self, root: str | Path, split: str = "train", part: str | None = "fit"):
        lib = Library(root)
        self.root = Path(root)

        def keep(member: str) -> bool:
            return part is None or part_of(member) == part

        self.backgrounds = {k: [s.path for s in lib.sounds(split, k) if keep(s.member)]
                            for k in ("speech", "music", "kitchen")}
        self.beep_files = [s.path for s in lib.sounds(split, KINDS_BEEP) if keep(s.member)]
        notes = lib.notes(split)
        self.mallets = [n for n in notes if n.instrument in _MALLETS]
        self.leads = [n for n in notes if n.instrument in _LEADS]
        missing = [k for k, v in self.backgrounds.items() if not v]
        if missing or not self.mallets or not self.leads:
            raise ValueError(f"{root}: no real {', '.join(missing) or 'notes'} in split {split}")

    # -- backgrounds ---------------------------------------------------------------------
    def background(self, rng: np.random.Generator, kind: str, n: int) -> np.ndarray:
        if kind == "speech":
            x = self._talk(rng, n)
        elif kind == "music":
            x = self._crop(rng, self.backgrounds["music"], n)
        elif kind == "tv":
            x = synth.mix(self._crop(rng, self.backgrounds["music"], n), self._talk(rng, n),
                          0.0, rng.uniform(6, 15))
        elif kind == "kitchen":
            x = synth.room(rng, n / SR, level=rng.uniform(0.0005, 0.003))
            for _ in range(int(rng.integers(1, 5))):
                ev = _read(self._pick(rng, self.backgrounds["kitchen"]))
                x = synth.mix(x, ev[: 2 * SR], rng.uniform(-0.3, n / SR - 0.1),
                              rng.uniform(5, 35))
        else:
            raise ValueError(f"unknown real background {kind!r}")
        return np.asarray(x[:n], np.float32)

    def _talk(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """Prompts one after another with short pauses, entered at a random point: talk."""
        parts, total = [], 0
        while total < n + SR:
            clip = _trim(_read(self._pick(rng, self.backgrounds["speech"])))
            pause = np.zeros(int(rng.uniform(0.05, 0.8) * SR), np.float32)
            clip = synth.set_rms(clip, rng.uniform(0.5, 2.0) * 0.05)
            parts += [clip, pause]
            total += len(clip) + len(pause)
        # a faint room under the talk: real pauses are never digital silence
        x = np.concatenate(parts)
        x = x + synth.room(rng, len(x) / SR, level=rng.uniform(0.0003, 0.002))[: len(x)]
        start = int(rng.integers(0, max(1, len(x) - n)))
        out = x[start:start + n]
        if rng.random() < 0.25:  # a second voice: a conversation or a radio host and guest
            other = self._talk_once(rng, n)
            out = out + other * rng.uniform(0.3, 1.0)
        return out.astype(np.float32)

    def _talk_once(self, rng: np.random.Generator, n: int) -> np.ndarray:
        clip = synth.set_rms(_trim(_read(self._pick(rng, self.backgrounds["speech"]))), 0.05)
        out = np.zeros(n, np.float32)
        at = int(rng.integers(0, n))
        seg = clip[: n - at]
        out[at:at + len(seg)] = seg
        return out

    def _crop(self, rng: np.random.Generator, files: list[Path], n: int) -> np.ndarray:
        path = self._pick(rng, files)
        frames = _frames(path)
        start = int(rng.integers(0, max(1, frames - n)))
        x, _ = sf.read(path, start=start, frames=n, dtype="float32")
        return np.pad(x, (0, n - len(x))) if len(x) < n else x

    @staticmethod
    def _pick(rng: np.random.Generator, items: list):
        return items[int(rng.integers(len(items)))]

    # -- beeps ---------------------------------------------------------------------------
    def beeps(self, rng: np.random.Generator) -> tuple[np.ndarray, list[tuple[float, float]], str]:
        """A real-sounding beep pattern: audio, the times of its sounding parts, its kind."""
        kind = str(rng.choice(BEEP_KINDS, p=BEEP_P))
        if kind == "file" and not self.beep_files:
            kind = "chime"
        if kind == "file":
            x = _trim(_read(self._pick(rng, self.beep_files)), keep_db=-35)
            if rng.random() < 0.5:  # up to 4 semitones up or down: the file as another make
                x = _resample(x, 2 ** (rng.uniform(-4, 4) / 12))
            x = x[: 3 * SR]
            return x, [(0.0, _sounding(x))], "real-file"
        if kind == "chime":  # one to three bell notes, each left to ring: ding, ding-dong
            inst = self._instrument(rng, self.mallets)
            steps = [0] + list(rng.choice([-4, -3, -5, 3, 4, 5, 7, -7, 0],
                                          size=int(rng.integers(0, 3))))
            gap = rng.uniform(0.25, 0.7)
            notes = [(i * gap, self._note(inst, rng, step=int(sum(steps[:i + 1]))), None)
                     for i in range(len(steps))]
        elif kind == "melody":  # a tune of 3-8 notes on a scale
            inst = self._instrument(rng, self.mallets + self.leads)
            beat = rng.uniform(0.12, 0.4)
            scale = (0, 2, 4, 5, 7, 9, 11, 12)
            degrees = np.cumsum(rng.integers(-2, 3, size=int(rng.integers(3, 9))))
            degrees = np.clip(degrees - degrees.min(), 0, len(scale) - 1)
            held = None if inst[0].instrument in _MALLETS else beat * rng.uniform(0.6, 0.95)
            notes = [(i * beat, self._note(inst, rng, step=int(scale[d])), held)
                     for i, d in enumerate(degrees)]
        elif kind == "piezo":  # a lead cut short and repeated: a synthetic beep, real timbre
            inst = self._instrument(rng, self.leads)
            dur, gap = rng.uniform(0.06, 0.5), rng.uniform(0.08, 0.6)
            note = self._note(inst, rng, low=1000)
            notes = [(i * (dur + gap), note, dur) for i in range(int(rng.integers(2, 6)))]
        else:  # single: one note, short or held
            inst = self._instrument(rng, self.mallets + self.leads)
            dur = rng.uniform(0.08, 0.8) if inst[0].instrument in _LEADS else None
            notes = [(0.0, self._note(inst, rng, low=700), dur)]
        segs = []
        for at, audio, held in notes:
            if held is not None:
                m = max(int(held * SR), 64)
                audio = audio[:m] * synth.envelope(min(m, len(audio)), SR, 0.003,
                                                   min(0.03, held / 3))
            segs.append((at, audio.astype(np.float32)))
        x = synth._place(segs, SR)[: 3 * SR]
        times = [(at, min(at + _sounding(a), 3.0)) for at, a in segs if at < 3.0]
        return x, times, f"real-{kind}"

    @staticmethod
    def _instrument(rng: np.random.Generator, notes: list[Note]) -> list[Note]:
        programs = sorted({n.program for n in notes})
        p = programs[int(rng.integers(len(programs)))]
        return sorted((n for n in notes if n.program == p), key=lambda n: n.pitch)

    @staticmethod
    def _note(inst: list[Note], rng: np.random.Generator, step: int = 0,
              low: float = 400.0) -> np.ndarray:
        """A note of the instrument: a random base pitch (>= ``low`` Hz), ``step``
        semitones up or down, the nearest rendered pitch moved the rest of the way by
        resampling."""
        usable = [n for n in inst if n.hz >= low] or inst[-1:]
        base = usable[int(rng.integers(len(usable)))]
        want = base.pitch + step
        near = min(inst, key=lambda n: abs(n.pitch - want))
        return _resample(_read(near.path), 2 ** ((want - near.pitch) / 12))


@lru_cache(maxsize=4096)
def _frames(path: Path) -> int:
    return sf.info(path).frames


@lru_cache(maxsize=2048)
def _read_cached(path: Path) -> np.ndarray:
    x, _ = sf.read(path, dtype="float32")
    return x if x.ndim == 1 else x.mean(axis=1)


def _read(path: Path) -> np.ndarray:
    return _read_cached(path).copy()


def _resample(x: np.ndarray, ratio: float) -> np.ndarray:
    """``x`` played ``ratio`` times faster: pitch up by that ratio, shorter by it."""
    if abs(ratio - 1) <= 1e-3:
        return x
    idx = np.arange(0, len(x) - 1, ratio)
    return np.interp(idx, np.arange(len(x)), x).astype(np.float32)


def _trim(x: np.ndarray, keep_db: float = -40.0) -> np.ndarray:
    """Without the leading and trailing near-silence (below ``keep_db`` of the peak)."""
    if not len(x):
        return x
    loud = np.flatnonzero(np.abs(x) > np.abs(x).max() * 10 ** (keep_db / 20))
    return x[loud[0]:loud[-1] + 1] if len(loud) else x[:0]


def _sounding(x: np.ndarray, floor_db: float = -25.0) -> float:
    """Seconds until the sound last stands within ``floor_db`` of its loudest 10 ms."""
    frame = SR // 100
    n = len(x) // frame
    if n == 0:
        return len(x) / SR
    e = np.sqrt(np.mean(x[: n * frame].reshape(n, frame) ** 2, axis=1)) + 1e-12
    on = np.flatnonzero(20 * np.log10(e / e.max()) > floor_db)
    return float((on[-1] + 1) * frame / SR)
