"""Detection quality on real sounds: the figure the README quotes first.

The generated streams (`quality`) only ask whether a model learned the generator. Here the
beeps and most backgrounds are real recordings (`beepnet.training.realsounds`) from its
"eval" split: packages, folders and sampled instruments training never uses.

Backgrounds, one kind per stream (``BACKGROUNDS``):

- speech: real voices one after another with natural pauses (talk);
- music: real music tracks (half of these minutes), and TV: talk over music 6-15 dB down;
- kitchen: real clatter every 1-8 s over a quiet room;
- machine: a running washer, all phases (generated: `synth.washer`);
- quiet: room tone (generated: `synth.room`), often below the daemon's silence gate.

Beep events (``KINDS``), one every `RealSettings.slot_s` seconds, the kinds taking turns:
piezo (short sawtooth-lead or flute notes at 1-4 kHz, cut and repeated 2-5 times), chime
(one or two vibraphone, tubular bell, kalimba or steel drum notes ringing out, or a real
chime file), melody (a tune of 3-8 notes, or a real jingle), single (one short note, or
xboard's ding). Each is mixed in at 0-20 dB over the background where it plays (never
fainter than an appliance beep is made to be), half of them through a room's reverberation;
half the streams go through a random microphone colouring.

Every detector runs over every stream through `beepnet.detect.detect_file` with the
daemon's defaults; detections are matched to events by overlap (`quality.match`). A
detection on no event is a false alarm, counted per hour of background away from events
(`quality.negative_seconds`).

The streams depend only on the library, the settings and the seed; they are written once
into ``<work>/real-<key>/`` (WAVs and ``streams.json``) and reused. A library lacking the
pieces of a beep kind or background leaves it out and says so (`buildable`).

``python -m beepnet.bench.realsound [--real DIR] [--model PATH ...]`` prints the table alone.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import math
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from multiprocessing import get_context
from pathlib import Path

import numpy as np
import soundfile as sf

from ..config import AudioConfig, DetectorConfig
from ..detect import detect_file
from ..detectors import load_detector
from ..training import synth
from ..training.realsounds import FetchError, Library, fetch
from .quality import match, negative_seconds
from .report import REAL_FA_PER_HOUR, REAL_FA_VS_TONE, REAL_RECALL, Row

log = logging.getLogger(__name__)

SR = synth.SR
SECTION = "real sounds"
KINDS = ("piezo", "chime", "melody", "single")
BACKGROUNDS = ("speech", "music", "kitchen", "machine", "quiet")
LABELS = {"speech": "speech", "music": "music/TV", "kitchen": "kitchen", "machine": "machine",
          "quiet": "quiet"}
GENERATED = ("machine", "quiet")
"""Backgrounds made by the generator; every other one is real recordings."""
VERSION = 2
"""Part of the cache key: bump when the streams this module builds change."""

# Note-bank instruments (realsounds.NOTE_PROGRAMS "eval") by the beep they can play.
LEADS = ("sawtooth lead", "flute")
MALLETS = ("vibraphone", "tubular bells", "kalimba", "steel drums")
ANY_NOTE = LEADS + MALLETS + ("electric piano 2",)
LOWEST_PITCH = 72
"""MIDI C5, 523 Hz."""
FILE_SHARE = {"piezo": 0.25, "chime": 0.25, "melody": 0.25, "single": 0.2}
"""How often an event is a real beep file of its kind rather than built from notes."""

MIN_BEEP_RMS = 0.03
"""A beep is never mixed in fainter than this: on the scale where a running washer has RMS
0.035-0.09, an appliance's beep is made to be heard over a quiet room."""
MAX_BEEP_RMS = 0.25
"""Nor louder: 20 dB over loud music would clip."""


@dataclass(frozen=True)
class RealSettings:
    """Sizes and seed; the defaults take about a minute to build and seconds to score."""

    minutes: float = 225.0
    """Audio in all, split evenly over the five backgrounds. 225 min hold about 360 events,
    90 of each kind: with 120 the recall of one seed's streams moved by 3-5 points against
    another seed's, which was as much as the models being compared differed."""
    stream_s: float = 300.0
    slot_s: float = 35.0
    """One beep event per slot; each starts somewhere in its slot's first `jitter_s`, so
    events are at least slot_s - jitter_s apart."""
    jitter_s: float = 5.0
    lead_s: float = 4.0
    """Audio before a stream's first slot; an event ending less than half of it before the
    stream's end is left out."""
    seed: int = 14
    snr_db: tuple[float, float] = (0.0, 20.0)
    reverb_p: float = 0.5
    mic_p: float = 0.5
    tolerance_s: float = 0.25
    """A detection this close to an event (before or after) still counts as on it."""


QUICK = RealSettings(minutes=5.0, stream_s=60.0, slot_s=12.0, jitter_s=2.0)


@dataclass
class RealStream:
    """One stream: its file, background, and the truth."""

    file: str
    background: str
    variant: str
    """"music" or "tv" for music streams; the background otherwise."""
    seconds: float
    events: list[tuple[float, float]] = field(default_factory=list)
    """(start, end) of each beep event: its first to its last sounding 10 ms (within 30 dB
    of its loudest, `synth.active_mask`)."""
    beep_kinds: list[str] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)
    """What each event was made of (a file, or instrument and MIDI pitches)."""
    snr_db: list[float] = field(default_factory=list)
    rt60_s: list[float] = field(default_factory=list)
    """Reverberation each event went through (0: none)."""
    mic_eq: bool = False
    pieces: list[tuple[str, float, float]] = field(default_factory=list)
    """(file name, start, end) of every real recording in the background."""


class Unavailable(Exception):
    """The real recordings are not here and cannot be fetched; ``str()`` says why."""


# --------------------------------------------------------------------------------------
# What the library offers
# --------------------------------------------------------------------------------------


def pool_of(lib: Library) -> dict:
    """The eval split's recordings and notes as plain data (picklable for the workers)."""
    pool: dict = {k: [str(s.path) for s in lib.sounds("eval", k)]
                  for k in KINDS + ("speech", "music", "kitchen")}
    # A speaker is a folder of one package: talk keeps one voice for a while.
    pool["speakers"] = {}
    for s in lib.sounds("eval", "speech"):
        pool["speakers"].setdefault(f"{s.package}:{s.member.rsplit('/', 1)[0]}", []).append(
            str(s.path))
    notes: dict[str, dict[int, str]] = {}
    for n in lib.notes("eval"):
        notes.setdefault(n.instrument, {})[n.pitch] = str(n.path)
    pool["notes"] = notes
    return pool


def buildable(pool: dict) -> tuple[list[str], list[str], dict[str, str]]:
    """(beep kinds, backgrounds) the pool can make, and why each other one cannot."""
    notes = pool["notes"]
    why: dict[str, str] = {}
    kinds = []
    for kind in KINDS:
        wanted = LEADS if kind == "piezo" else MALLETS if kind == "chime" else ANY_NOTE
        if pool[kind] or any(i in notes for i in wanted):
            kinds.append(kind)
        else:
            why[kind] = f"no eval {kind} recordings and no eval notes of {', '.join(wanted)}"
    backgrounds = []
    for bg in BACKGROUNDS:
        if bg in GENERATED or pool[bg]:
            backgrounds.append(bg)
        else:
            why[bg] = f"no eval {bg} recordings"
    return kinds, backgrounds, why


# --------------------------------------------------------------------------------------
# Building the streams
# --------------------------------------------------------------------------------------


@lru_cache(maxsize=1024)
def _read(path: str) -> np.ndarray:
    """A short recording (a beep, an utterance, a clatter), kept for reuse."""
    return _read_part(path, 0, -1)


def _read_part(path: str, start: int, stop: int) -> np.ndarray:
    x, rate = sf.read(path, start=start, stop=stop if stop >= 0 else None, dtype="float32",
                      always_2d=True)
    if rate != SR:
        raise ValueError(f"{path}: {rate} Hz, not {SR} (fetch writes 16 kHz WAVs)")
    return x.mean(axis=1)


def _active_rms(x: np.ndarray) -> float:
    a = synth.active_mask(x, SR)
    return float(np.sqrt(np.mean(np.asarray(x[a], np.float64) ** 2))) if a.any() else 0.0


def _at_level(x: np.ndarray, level: float) -> np.ndarray:
    r = _active_rms(x)
    return (x * (level / r)).astype(np.float32) if r > 0 else x


def _db(rng: np.random.Generator, lo: float, hi: float) -> float:
    return 10 ** (rng.uniform(lo, hi) / 20)


def _join(parts: list[np.ndarray], fade_n: int) -> np.ndarray:
    """Segments end to start, with equal-power crossfades of ``fade_n`` samples."""
    out = parts[0]
    ramp = np.sin(np.linspace(0, np.pi / 2, fade_n)) ** 2
    for p in parts[1:]:
        k = min(fade_n, len(out), len(p))
        r = ramp[np.linspace(0, fade_n - 1, k).astype(int)] if k else ramp[:0]
        mid = out[len(out) - k:] * np.sqrt(1 - r) + p[:k] * np.sqrt(r)
        out = np.concatenate([out[:len(out) - k], mid, p[k:]])
    return out.astype(np.float32)


def _talk(rng: np.random.Generator, pool: dict, n: int, level: float, at: float,
          pieces: list) -> np.ndarray:
    """Voices one after another with 0.3-2 s pauses; one speaker for 3-12 utterances."""
    x = np.zeros(n, np.float32)
    speakers = sorted(pool["speakers"])
    i = int(rng.uniform(0, 1.5) * SR)
    while i < n:
        files = pool["speakers"][speakers[rng.integers(len(speakers))]]
        voice = level * _db(rng, -3, 3)
        for _ in range(int(rng.integers(3, 13))):
            path = files[rng.integers(len(files))]
            utt = _at_level(_read(path), voice * _db(rng, -2, 2))[: n - i]
            x[i:i + len(utt)] += utt
            pieces.append((Path(path).name, round(at + i / SR, 2),
                           round(at + (i + len(utt)) / SR, 2)))
            i += len(utt) + int(rng.uniform(0.3, 2.0) * SR)
            if i >= n:
                break
    return x


def _music(rng: np.random.Generator, pool: dict, n: int, level: float, at: float,
           pieces: list) -> np.ndarray:
    """Tracks from a random point, 30-120 s each, crossfaded (a radio, a playlist)."""
    parts, total, fade = [], 0, SR
    while total < n + fade:
        path = pool["music"][rng.integers(len(pool["music"]))]
        # Only the part that plays: whole tracks in every worker would take hundreds of MB.
        frames = sf.info(path).frames
        want = int(rng.uniform(30, 120) * SR)
        start = int(rng.integers(0, max(1, frames - want)))
        seg = _read_part(path, start, start + want)
        r = synth.rms(seg)
        if r <= 0:
            continue
        parts.append((seg * (level * _db(rng, -2, 2) / r)).astype(np.float32))
        pieces.append((Path(path).name, round(at + total / SR, 2),
                       round(at + (total + len(seg)) / SR, 2)))
        total += len(seg) - fade
    return _join(parts, fade)[:n]


def _kitchen(rng: np.random.Generator, pool: dict, n: int, level: float, at: float,
             pieces: list) -> np.ndarray:
    """Clatter every 1-8 s over a quiet room."""
    x = synth.room(rng, n / SR, SR, level=_db(rng, -65, -45)).astype(np.float32)
    i = int(rng.uniform(0.5, 4) * SR)
    while i < n:
        path = pool["kitchen"][rng.integers(len(pool["kitchen"]))]
        hit = _at_level(_read(path), level * _db(rng, -10, 0))[: n - i]
        x[i:i + len(hit)] += hit
        pieces.append((Path(path).name, round(at + i / SR, 2), round(at + (i + len(hit)) / SR, 2)))
        i += len(hit) + int(rng.uniform(1, 8) * SR)
    return x


def _machine(rng: np.random.Generator, n: int) -> np.ndarray:
    """A washer going through its phases, 20-60 s each."""
    parts, total, fade = [], 0, SR
    gain = _db(rng, -4, 4)
    phase = str(rng.choice(["wash", "drain", "spin"]))
    while total < n + fade:
        # Whole half-seconds: synth filters by FFT, slow on lengths with large prime factors.
        seconds = round(rng.uniform(20, 60) * 2) / 2
        parts.append(synth.washer(rng, seconds, SR, phase=phase) * gain)
        total += int(seconds * SR) - fade
        phase = {"wash": str(rng.choice(["wash", "drain"])), "drain": "spin",
                 "spin": "wash"}[phase]
    return _join(parts, fade)[:n]


def background(rng: np.random.Generator, pool: dict, kind: str, variant: str, n: int
               ) -> tuple[np.ndarray, list]:
    """``n`` samples of one background kind, and the real recordings in it."""
    pieces: list = []
    if kind == "speech":
        x = _talk(rng, pool, n, 0.05, 0.0, pieces)
    elif kind == "music" and variant == "tv":
        talk = _talk(rng, pool, n, 0.05, 0.0, pieces)
        x = talk + _music(rng, pool, n, 0.05 * _db(rng, -15, -6), 0.0, pieces)
    elif kind == "music":
        x = _music(rng, pool, n, 0.05 * _db(rng, -6, 3), 0.0, pieces)
    elif kind == "kitchen":
        x = _kitchen(rng, pool, n, _db(rng, -30, -15), 0.0, pieces)
    elif kind == "machine":
        x = _machine(rng, n)
    elif kind == "quiet":
        x = synth.room(rng, n / SR, SR, level=_db(rng, -65, -45))
    else:
        raise ValueError(f"unknown background {kind!r} ({', '.join(BACKGROUNDS)})")
    if kind in ("speech", "music"):
        # A microphone in a room never hears digital silence between words or tracks.
        x = x + synth.room(rng, n / SR, SR, level=_db(rng, -65, -50))
    return np.asarray(x, np.float32)[:n], pieces


def _cut(x: np.ndarray, seconds: float, fade_s: float = 0.005) -> np.ndarray:
    """The first ``seconds`` of a note, faded in and out (a driver switching a tone)."""
    y = np.array(x[: int(seconds * SR)], np.float32)
    f = min(int(fade_s * SR), len(y) // 2)
    if f:
        ramp = np.linspace(0, 1, f, dtype=np.float32)
        y[:f] *= ramp
        y[-f:] *= ramp[::-1]
    return y


def _note(pool: dict, instrument: str, pitch: int) -> np.ndarray:
    x = _read(pool["notes"][instrument][pitch])
    # The rendered note starts at its note-on; skip any leading silence all the same.
    loud = np.flatnonzero(np.abs(x) > 0.01 * (np.abs(x).max() + 1e-12))
    return x[loud[0]:] if len(loud) else x


def beep(rng: np.random.Generator, pool: dict, kind: str) -> tuple[np.ndarray, str]:
    """One beep event of ``kind`` and what it was made of."""
    notes = pool["notes"]
    files = pool[kind]
    wanted = LEADS if kind == "piezo" else MALLETS if kind == "chime" else ANY_NOTE
    have = [i for i in wanted if i in notes]
    if files and (not have or rng.random() < FILE_SHARE[kind]):
        path = files[rng.integers(len(files))]
        return _read(path), f"file {Path(path).name}"
    inst = have[rng.integers(len(have))]
    # Appliances chime and play tunes from about C5 up: a lower note is a doorbell's.
    pitches = sorted(p for p in notes[inst] if p >= LOWEST_PITCH) or sorted(notes[inst])
    if kind == "piezo":
        band = [p for p in pitches if 1000 <= 440 * 2 ** ((p - 69) / 12) <= 4000] or pitches
        p1 = int(rng.choice(band))
        p2 = int(rng.choice(band)) if rng.random() < 0.3 else p1
        on, off = rng.uniform(0.06, 0.4), rng.uniform(0.08, 0.5)
        count = int(rng.integers(2, 6))
        parts = [(k * (on + off), _cut(_note(pool, inst, p1 if k % 2 == 0 else p2), on))
                 for k in range(count)]
        return synth._place(parts, SR), f"{inst} {p1}/{p2} x{count} {on * 1000:.0f} ms"
    if kind == "chime":
        first = int(rng.integers(len(pitches)))
        ps = [pitches[first]]
        if rng.random() < 0.5:
            ps.append(pitches[int(np.clip(first + rng.choice([-4, -3, -2, 2, 3, 4]), 0,
                                          len(pitches) - 1))])
        gap = rng.uniform(0.2, 0.8)
        parts = [(k * gap, _note(pool, inst, p)) for k, p in enumerate(ps)]
        return synth._place(parts, SR), f"{inst} {'/'.join(map(str, ps))}"
    if kind == "melody":
        count = int(rng.integers(3, 9))
        step = rng.uniform(0.15, 0.45)
        i = int(rng.integers(len(pitches) // 4, max(1, 3 * len(pitches) // 4)))
        ps, parts = [], []
        for k in range(count):
            ps.append(pitches[i])
            last = k == count - 1
            # Each note stops when the next starts; the last one rings out.
            held = 1.0 if last else step * (2 if rng.random() < 0.2 else 1)
            parts.append((k * step, _cut(_note(pool, inst, pitches[i]), held, 0.01)))
            i = int(np.clip(i + rng.choice([-2, -1, -1, 1, 1, 2, 3]), 0, len(pitches) - 1))
        return synth._place(parts, SR), f"{inst} {'-'.join(map(str, ps))}"
    if kind == "single":
        high = [p for p in pitches if p >= 80] or pitches
        p = int(rng.choice(high))
        held = rng.uniform(0.15, 1.0)
        return _cut(_note(pool, inst, p), held, 0.01), f"{inst} {p} {held * 1000:.0f} ms"
    raise ValueError(f"unknown beep kind {kind!r} ({', '.join(KINDS)})")


def _insert(x: np.ndarray, fg: np.ndarray, at: float, snr_db: float) -> tuple[np.ndarray, float]:
    """Add ``fg`` at ``at`` s, ``snr_db`` over the background where it sounds (kept between
    MIN_BEEP_RMS and MAX_BEEP_RMS); returns the SNR it got."""
    i = int(round(at * SR))
    fg = fg[: len(x) - i]
    active = synth.active_mask(fg, SR)
    p_fg = float(np.mean(np.asarray(fg[active], np.float64) ** 2))
    p_bg = float(np.mean(np.asarray(x[i:i + len(fg)][active], np.float64) ** 2))
    p = min(max(p_bg * 10 ** (snr_db / 10), MIN_BEEP_RMS ** 2), MAX_BEEP_RMS ** 2)
    x[i:i + len(fg)] += (fg * math.sqrt(p / p_fg)).astype(np.float32)
    return x, (10 * math.log10(p / p_bg) if p_bg > 0 else math.inf)


def make_stream(pool: dict, settings: RealSettings, index: int, kind: str, variant: str,
                seconds: float, beep_kinds: list[str]) -> tuple[np.ndarray, RealStream]:
    """Stream ``index``: a background of ``kind`` with one event per slot."""
    s = settings
    rng = np.random.default_rng([s.seed, 14_000 + index])
    n = int(seconds * SR)
    x, pieces = background(rng, pool, kind, variant, n)
    info = RealStream(file=f"real_{index:03d}_{variant}.wav", background=kind, variant=variant,
                      seconds=seconds, pieces=pieces)
    for k, bk in enumerate(beep_kinds):
        fg, source = beep(rng, pool, bk)
        rt60 = 0.0
        if rng.random() < s.reverb_p:
            rt60 = round(float(rng.uniform(0.2, 0.7)), 2)
            fg = synth.reverb(np.concatenate([fg, np.zeros(int(rt60 * SR), np.float32)]), rng,
                              SR, rt60, float(rng.uniform(0.1, 0.4)))
        active = np.flatnonzero(synth.active_mask(fg, SR))
        fg = fg[active[0]:active[-1] + 1]
        at = round((s.lead_s + k * s.slot_s + rng.uniform(0, s.jitter_s)) * SR) / SR
        end = at + len(fg) / SR
        if end > seconds - s.lead_s / 2:
            log.debug("stream %d: event %d would run past the end; left out", index, k)
            continue
        x, snr = _insert(x, fg, at, float(rng.uniform(*s.snr_db)))
        info.events.append((round(at, 3), round(end, 3)))
        info.beep_kinds.append(bk)
        info.sources.append(source)
        info.snr_db.append(round(snr, 1))
        info.rt60_s.append(rt60)
    if rng.random() < s.mic_p:
        info.mic_eq = True
        x = synth.mic_eq(x, rng, SR)
    return np.clip(x, -1, 1).astype(np.float32), info


def plan(settings: RealSettings, kinds: list[str], backgrounds: list[str]
         ) -> list[tuple[int, str, str, float, list[str]]]:
    """(index, background, variant, seconds, beep kinds) of every stream: each background
    gets minutes / 5 of audio (music half as music, half as TV) in streams of at most
    stream_s, and the beep kinds take turns."""
    s = settings
    per_kind = s.minutes * 60 / len(BACKGROUNDS)
    rng = np.random.default_rng([s.seed, 14])
    jobs: list[tuple[int, str, str, float, list[str]]] = []
    turn = 0
    for bg in backgrounds:
        variants = [("music", per_kind / 2), ("tv", per_kind / 2)] if bg == "music" else \
            [(bg, per_kind)]
        for variant, total in variants:
            count = math.ceil(total / s.stream_s - 1e-9)
            seconds = float(round(total / count))
            for _ in range(count):
                slots = max(0, int((seconds - 1.5 * s.lead_s - s.jitter_s) // s.slot_s))
                order = [kinds[(turn + j) % len(kinds)] for j in range(slots)]
                turn += slots
                # Shuffled within each round of turns, so no kind always follows another.
                order = [k for i in range(0, slots, len(kinds))
                         for k in rng.permutation(order[i:i + len(kinds)]).tolist()]
                jobs.append((len(jobs), bg, variant, seconds, order))
    return jobs


def _write_one(job: tuple) -> dict:
    pool, settings, out, (index, bg, variant, seconds, kinds) = job
    audio, info = make_stream(pool, settings, index, bg, variant, seconds, kinds)
    sf.write(os.path.join(out, info.file), audio, SR, subtype="PCM_16")
    return asdict(info)


def cache_key(settings: RealSettings, lib: Library) -> str:
    """Seed, minutes and a digest of everything else the streams depend on."""
    s = asdict(settings)
    s.pop("tolerance_s")
    h = hashlib.sha256(json.dumps([VERSION, s], sort_keys=True).encode())
    h.update((lib.root / "index.csv").read_bytes())
    return f"seed{settings.seed}-{settings.minutes:g}min-{h.hexdigest()[:10]}"


def build(lib: Library, settings: RealSettings, work: Path, workers: int = 2
          ) -> tuple[Path, list[RealStream], dict]:
    """The streams (built, or read back from an earlier run): their folder, descriptions and
    what could not be built and why."""
    pool = pool_of(lib)
    kinds, backgrounds, missing = buildable(pool)
    for what, why in missing.items():
        log.warning("real sounds: no %s events or streams: %s", what, why)
    if not kinds:
        raise Unavailable(f"{lib.root}: no eval beeps or notes to build events from")
    out = Path(work) / f"real-{cache_key(settings, lib)}"
    index = out / "streams.json"
    if index.is_file():
        log.info("real sounds: streams from an earlier run in %s", out)
        return out, load(out), missing
    out.mkdir(parents=True, exist_ok=True)
    jobs = [(pool, settings, str(out), j) for j in plan(settings, kinds, backgrounds)]
    t = time.monotonic()
    if workers > 1 and len(jobs) > 2:
        with get_context("spawn").Pool(workers) as p:
            rows = p.map(_write_one, jobs, chunksize=1)
    else:
        rows = [_write_one(j) for j in jobs]
    # Written last: a folder without it is an interrupted build, made again next time.
    index.write_text(json.dumps(rows, indent=1))
    log.info("real sounds: %d streams, %d events, %.0f min in %.0f s into %s", len(rows),
             sum(len(r["events"]) for r in rows), sum(r["seconds"] for r in rows) / 60,
             time.monotonic() - t, out)
    return out, [_info(r) for r in rows], missing


def _info(row: dict) -> RealStream:
    return RealStream(**{**row, **{k: [tuple(v) for v in row[k]] for k in ("events", "pieces")}})


def load(folder: Path) -> list[RealStream]:
    return [_info(r) for r in json.loads((Path(folder) / "streams.json").read_text())]


# --------------------------------------------------------------------------------------
# Scoring
# --------------------------------------------------------------------------------------


def evaluate(detector, streams: list[RealStream], folder: Path, audio: AudioConfig,
             tolerance: float) -> dict:
    """Recall per beep kind and false alarms per hour per background for one detector."""
    t0 = time.monotonic()
    recall = {k: [0, 0] for k in KINDS}
    by_file: dict[str, list[int]] = {}
    by_bg = {b: [0, 0] for b in BACKGROUNDS}
    fa = {b: [0, 0.0] for b in BACKGROUNDS}
    windows = {b: [0, 0] for b in BACKGROUNDS}
    by_snr = {f"{lo}-{lo + 5} dB": [0, 0] for lo in (0, 5, 10, 15)}
    by_snr["20 dB and more"] = [0, 0]
    alarms = []
    for s in streams:
        result = detect_file(str(folder / s.file), detector, audio)
        hit, ok = match(s.events, result.events, tolerance)
        for kind, h, src in zip(s.beep_kinds, hit, s.sources or [""] * len(hit)):
            recall[kind][0] += int(h)
            recall[kind][1] += 1
            if source_of(src) == "file":
                n = by_file.setdefault(src.removeprefix("file "), [0, 0])
                n[0] += int(h)
                n[1] += 1
        for snr, h in zip(s.snr_db or [None] * len(hit), hit):
            if snr is not None:
                key = list(by_snr)[min(4, max(0, int(snr // 5)))]
                by_snr[key][0] += int(h)
                by_snr[key][1] += 1
        by_bg[s.background][0] += sum(hit)
        by_bg[s.background][1] += len(hit)
        fa[s.background][0] += ok.count(False)
        fa[s.background][1] += negative_seconds(result.duration, s.events, audio.chunk_seconds)
        windows[s.background][0] += result.windows_scored
        windows[s.background][1] += result.windows
        for ev, good in zip(result.events, ok):
            if not good:
                under = [p for p, a, b in s.pieces if a <= ev.end and b >= ev.start]
                alarms.append({"file": s.file, "start": round(ev.start, 2),
                               "end": round(ev.end, 2), "score": round(ev.score, 3),
                               "under": under})
    hits, events = sum(v[0] for v in recall.values()), sum(v[1] for v in recall.values())
    n_fa, neg_s = sum(v[0] for v in fa.values()), sum(v[1] for v in fa.values())
    files = [sum(v[0] for v in by_file.values()), sum(v[1] for v in by_file.values())]
    by_source = {"file": files, "instrument": [hits - files[0], events - files[1]]}
    return {
        "describe": detector.describe(), "threshold": detector.threshold,
        "recall": {k: _ratio(*v) for k, v in recall.items()},
        "recall_all": _ratio(hits, events),
        "recall_by_background": {b: _ratio(*v) for b, v in by_bg.items()},
        "recall_by_source": {k: _ratio(*v) for k, v in by_source.items()},
        "recall_by_file": {f: _ratio(*v) for f, v in sorted(by_file.items())},
        # Over the background where each beep sounds; those at the loudness floor count
        # as the SNR they got.
        "recall_by_snr": {k: _ratio(*v) for k, v in by_snr.items()},
        "false_alarms": {b: _rate(*v) for b, v in fa.items()},
        "everyday": _rate(n_fa, neg_s),
        # The rest never reached the detector: below the daemon's silence gate.
        "windows_scored": {b: v[0] / v[1] if v[1] else None for b, v in windows.items()},
        "false_alarm_list": alarms,
        "seconds": round(time.monotonic() - t0, 2),
    }


def source_of(source: str) -> str:
    """"file" for an event made of a real sound file (a sound theme's chime, a UI kit's
    jingle: the nearest to what appliances and the maintainers' acceptance set play, and
    the harder part), "instrument" for notes of the sampled instruments."""
    return "file" if source.startswith("file ") else "instrument"


def caught_least(details: dict, most: int = 8) -> str:
    """For each BeepNet model, the real sound files it caught least (under half of their
    events): which sounds to listen to first when the real-files figure falls short."""
    out = []
    for key, m in details["detectors"].items():
        if key == "tone":
            continue
        by_file = m.get("recall_by_file", {})
        low = sorted((r["recall"], -r["events"], name) for name, r in by_file.items()
                     if r["recall"] < 0.5)
        if not low:
            continue
        least = ", ".join(f"{_file_label(name)} ({by_file[name]['detected']} of "
                          f"{by_file[name]['events']})" for _, _, name in low[:most])
        more = f" and {len(low) - most} more" if len(low) > most else ""
        out.append(f"Real sound files {m['label']} caught in under half of their events: "
                   f"{least}{more}.")
    return " ".join(out)


_PATH_WORDS = frozenset({"usr", "share", "games", "package", "assets", "sounds", "sprite",
                         "themes"})


def _file_label(name: str) -> str:
    """A converted file's name (its path inside the package, "/" as "__") without the
    folders every package has: "kapman/life", "02/audioSprite/celebration"."""
    parts = [p for p in Path(name).stem.split("__") if p not in _PATH_WORDS]
    return "/".join(parts[-3:])


def _ratio(hit: int, n: int) -> dict:
    return {"detected": hit, "events": n, "recall": hit / n if n else None}


def _rate(count: int, seconds: float) -> dict:
    return {"false_alarms": count, "hours": seconds / 3600,
            "per_hour": count / (seconds / 3600) if seconds else None}


def detectors(models: list[str] | None, runtime: str = "numpy") -> list[tuple[str, str, object]]:
    """(key, label, detector): each BeepNet model ("default": the shipped one), then the tone
    detector. Raises ValueError (a ModelFileError) for a model that cannot be loaded."""
    out = []
    names = [Path(m).name for m in models or []]
    for m in models or ["default"]:
        if m == "default":
            out.append(("shipped", "BeepNet (shipped model)",
                        load_detector(DetectorConfig(kind="beepnet", runtime=runtime))))
            continue
        name = Path(m).name if names.count(Path(m).name) == 1 else m
        out.append((m, f"BeepNet ({name})",
                    load_detector(DetectorConfig(kind="beepnet", model=m, runtime=runtime))))
    return out + [("tone", "tone detector", load_detector(DetectorConfig(kind="tone")))]


def library(real: Path, fetch_missing: bool) -> Library:
    """The fetched recordings in ``real``, fetching them first when asked and missing."""
    try:
        return Library(real)
    except FetchError as e:
        if not fetch_missing:
            raise Unavailable(str(e)) from None
    log.info("real sounds: fetching the real recordings into %s (once; a few minutes)", real)
    try:
        fetch(real)
        return Library(real)
    except (FetchError, OSError) as e:
        raise Unavailable(f"cannot fetch the real recordings into {real}: {e}") from None


def run(settings: RealSettings, work: Path, real: Path, models: list[str] | None = None,
        runtime: str = "numpy", fetch_missing: bool = True) -> tuple[list[Row], dict]:
    """Build (or reuse) the streams, score every detector; the bench rows and details.
    Raises Unavailable when there are no real recordings to be had."""
    t0 = time.monotonic()
    lib = library(Path(real), fetch_missing)
    # Models first: a file that cannot be loaded should fail before minutes of building.
    dets = detectors(models, runtime)
    folder, streams, missing = build(lib, settings, Path(work))
    few = {k: n for k, n in describe_set(streams)["events"].items() if n < 30}
    if few:
        log.warning("real sounds: fewer than 30 events of %s: their recall is coarse "
                    "(more --minutes)", ", ".join(f"{k} ({n})" for k, n in few.items()))
    details: dict = {"settings": asdict(settings), "library": str(lib.root),
                     "streams": str(folder), "missing": missing,
                     "build_seconds": round(time.monotonic() - t0, 1),
                     "set": describe_set(streams), "detectors": {}}
    audio = AudioConfig()
    for key, label, det in dets:
        log.info("real sounds: %s over %d streams", label, len(streams))
        details["detectors"][key] = evaluate(det, streams, folder, audio, settings.tolerance_s)
        details["detectors"][key]["label"] = label
    details["seconds"] = round(time.monotonic() - t0, 1)
    return rows(details), details


def describe_set(streams: list[RealStream]) -> dict:
    ev = {k: sum(s.beep_kinds.count(k) for s in streams) for k in KINDS}
    minutes = {b: sum(s.seconds for s in streams if s.background == b) / 60 for b in BACKGROUNDS}
    return {"streams": len(streams), "events": ev, "minutes": minutes,
            "tv_minutes": sum(s.seconds for s in streams if s.variant == "tv") / 60,
            "reverberant_events": sum(bool(r) for s in streams for r in s.rt60_s),
            "file_events": sum(src.startswith("file ") for s in streams for src in s.sources)}


# --------------------------------------------------------------------------------------
# Rows and the table
# --------------------------------------------------------------------------------------


def _f(x: float | None, fmt: str) -> str:
    return "—" if x is None else format(x, fmt)


def _min(m: float) -> str:
    return f"{m:.0f}" if m >= 10 else f"{m:.1f}"


def rows(details: dict) -> list[Row]:
    """The bench rows: for each BeepNet, recall, everyday false alarms and how many times
    fewer than the tone detector's, each against its target; the tone detector's beside."""
    dets = details["detectors"]
    tone = dets.get("tone")
    out: list[Row] = []
    for key, m in dets.items():
        label = m["label"]
        is_net = key != "tone"
        r, e = m["recall_all"], m["everyday"]
        by_kind = ", ".join(f"{k} {_f(m['recall'][k]['recall'], '.2f')}" for k in KINDS)
        files = m.get("recall_by_source", {}).get("file")
        if files and files["events"]:
            by_kind += (f"; real sound files {_f(files['recall'], '.2f')} "
                        f"({files['detected']} of {files['events']})")
        out.append(Row(SECTION, f"event recall, {label}", r["recall"], fmt=".3f",
                       target=REAL_RECALL if is_net else None,
                       note=f"{r['detected']} of {r['events']}; {by_kind}"))
        by_bg = ", ".join(f"{LABELS[b]} {_f(m['false_alarms'][b]['per_hour'], '.1f')}"
                          for b in BACKGROUNDS)
        out.append(Row(SECTION, f"false alarms / hour of everyday audio, {label}",
                       e["per_hour"], unit="/ h", fmt=".1f",
                       target=REAL_FA_PER_HOUR if is_net else None,
                       note=f"{e['false_alarms']} in {e['hours']:.2f} h; {by_bg}"))
        if is_net and tone:
            ratio, note = fewer(tone["everyday"]["false_alarms"], e["false_alarms"])
            out.append(Row(SECTION, f"fewer false alarms than the tone detector, {label}",
                           ratio, unit="×", fmt=".1f", target=REAL_FA_VS_TONE, note=note))
    return out


def fewer(tone_count: int, count: int) -> tuple[float | None, str]:
    """How many times fewer false alarms than the tone detector over the same audio. With
    none at all, the figure counts one: a lower bound."""
    if tone_count == 0:
        return None, "the tone detector made none either"
    if count == 0:
        return float(tone_count), f"≥: {tone_count} against none (counted as 1)"
    return tone_count / count, f"{tone_count} against {count}"


def wide_table(details: dict, generated: dict | None = None) -> str:
    """One row per detector: recall per beep kind, false alarms per hour per background;
    with ``generated`` (the quality part's details) the generated streams' figures beside."""
    head = (["detector"] + [f"recall {k}" for k in KINDS] + ["recall real files", "recall all"]
            + [f"FA/h {LABELS[b]}" for b in BACKGROUNDS] + ["FA/h everyday"])
    gen = (generated or {}).get("detectors", {})
    if gen:
        head += ["generated streams: recall", "generated streams: FA/h"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for key, m in details["detectors"].items():
        cells = [m["label"]] + [_f(m["recall"][k]["recall"], ".2f") for k in KINDS]
        f = m.get("recall_by_source", {}).get("file")
        cells.append(f"{_f(f['recall'], '.2f')} ({f['detected']}/{f['events']})" if f else "—")
        r = m["recall_all"]
        cells.append(f"**{_f(r['recall'], '.3f')}** ({r['detected']}/{r['events']})")
        cells += [_f(m["false_alarms"][b]["per_hour"], ".1f") for b in BACKGROUNDS]
        e = m["everyday"]
        cells.append(f"**{_f(e['per_hour'], '.1f')}** ({e['false_alarms']})")
        if gen:
            g = gen.get(key)
            cells += ([_f(g["recall"], ".3f"), _f(g["fa_per_hour"], ".1f")] if g
                      else ["—", "—"])
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def summary(details: dict) -> str:
    """What the table was measured on, in a few sentences."""
    s = details["set"]
    ev = ", ".join(f"{n} {k}" for k, n in s["events"].items())
    mins = ", ".join(f"{LABELS[b]} {_min(m)}" for b, m in s["minutes"].items())
    snr = details["settings"]["snr_db"]
    text = (f"Real sounds (seed {details['settings']['seed']}): {sum(s['events'].values())} "
            f"beep events ({ev}; {s['file_events']} of them real beep files, the rest played "
            f"on real sampled instruments of the eval split; {snr[0]:g}-{snr[1]:g} dB over "
            f"the background where they sound, {s['reverberant_events']} through a room's "
            f"reverberation) in {_min(sum(s['minutes'].values()))} min of background "
            f"({mins}; {_min(s['tv_minutes'])} min of the music is TV: talk over music). "
            f"Speech, music/TV, kitchen and the beeps are real recordings training never "
            f"used; machine (a washer) and quiet (room tone) are generated. "
            f"Recall is per event; FA/h counts detections on no event, per hour of "
            f"background away from events; everyday = all five backgrounds")
    if details.get("missing"):
        text += " Not built: " + "; ".join(f"{k} ({v})" for k, v in details["missing"].items())
    return text + "."


# --------------------------------------------------------------------------------------
# The command
# --------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m beepnet.bench.realsound",
                                description="detection quality on real sounds (one table)")
    p.add_argument("--real", default="build/real", metavar="DIR",
                   help="the fetched real recordings (default: build/real; fetched when "
                   "missing)")
    p.add_argument("--model", action="append", metavar="PATH",
                   help="a BeepNet model file to score (repeatable; 'default' is the shipped "
                   "one, the default)")
    p.add_argument("--runtime", choices=("numpy", "torch"), default="numpy",
                   help="what runs the BeepNet models (default numpy)")
    p.add_argument("--minutes", type=float, default=RealSettings.minutes,
                   help=f"minutes of audio in all (default {RealSettings.minutes:g})")
    p.add_argument("--seed", type=int, default=RealSettings.seed,
                   help=f"what the streams are made with (default {RealSettings.seed})")
    p.add_argument("--work", default="build/bench-real", metavar="DIR",
                   help="where the streams are built and kept (default build/bench-real)")
    p.add_argument("--json", metavar="OUT", help="write every figure here")
    p.add_argument("--no-fetch", action="store_true", help="never fetch the recordings")
    args = p.parse_args(argv)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
    logging.getLogger().handlers[:] = [handler]
    logging.getLogger().setLevel(logging.WARNING)
    logging.getLogger("beepnet.bench").setLevel(logging.INFO)
    if not args.minutes > 0:
        print("beepnet: real-sound bench: --minutes must be positive", file=sys.stderr)
        return 2
    for m in args.model or []:
        if m != "default" and not Path(m).is_file():
            print(f"beepnet: real-sound bench: {m}: no such model file", file=sys.stderr)
            return 2
    settings = RealSettings(minutes=args.minutes, seed=args.seed)
    try:
        _, details = run(settings, Path(args.work), Path(args.real), args.model, args.runtime,
                         fetch_missing=not args.no_fetch)
    except Unavailable as e:
        print(f"beepnet: real-sound bench: {e}", file=sys.stderr)
        return 1
    except ValueError as e:  # a model file that cannot be loaded (ModelFileError)
        print(f"beepnet: real-sound bench: {str(e).splitlines()[0]}", file=sys.stderr)
        return 1
    print(wide_table(details))
    print()
    print(summary(details))
    least = caught_least(details)
    if least:
        print(least)
    print(f"Streams built (or reused) and scored in {details['seconds']:.0f} s; they are in "
          f"{details['streams']}.")
    if args.json:
        Path(args.json).write_text(json.dumps(details, indent=1, default=str) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
