"""Generated continuous recordings with beep events at known times, for event-level evaluation.

A clip set (``dataset.py``) asks "is there a beep in this window?"; a user asks "did I get
one alert per end-of-cycle beep, and none otherwise?". These streams answer the second:
minutes of household sound (washer phases, fan, room tone, speech, music, knocks, a door,
near-silence) in segments of 8-25 s joined by crossfades, with tonal hard negatives
(whistles, warbles, pings, whines) sprinkled in and, in positive streams, beep patterns at
known times. The pieces come from ``dataset.py`` and ``synth.py``; the preset's SNR, reverb
and microphone settings apply as for clips.

``generate(out_dir, ...)`` writes ``out_dir/s<seed>_<index>.wav`` (16 kHz, 16-bit) and
``out_dir/streams.json``: per stream its length and the (start, end) of every beep pattern,
from its first note's start to its last note's end (one true event).
Stream i depends only on (seed, i).
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict, dataclass, field
from multiprocessing import get_context
from pathlib import Path

import numpy as np
import soundfile as sf

from . import synth
from . import dataset

log = logging.getLogger(__name__)

SR = synth.SR
SEGMENT_S = (8.0, 25.0)
"""Length range of one background segment."""
# Washer phases make up half of the background: these are streams from beside a machine.
_BG_WEIGHTS = {"wash": 0.2, "drain": 0.12, "spin": 0.18, "fan": 0.08, "room": 0.1,
               "speech": 0.1, "music": 0.08, "knock": 0.05, "door": 0.04, "silence": 0.05}
TONAL_PER_MINUTE = 1.5
"""Mean number of tonal hard negatives (whistle, warble, ping, whine) per minute."""
BEEP_MARGIN_S = 5.0
"""Beep patterns keep this far from each other and from the stream's ends, so the windows
that hear one pattern never touch those that hear the next (events stay separate)."""
MIN_BEEP_RMS = 0.03
"""A beep's (and a tonal negative's) loudness floor, on the scale where washer phases have
RMS 0.035-0.09. SNR is measured against the local background, so without a floor a beep over
near-silence would be as faint as the silence; an appliance's beep is made to be heard."""


@dataclass
class StreamInfo:
    """One stream: its file, length, true beep events and what it is made of."""

    file: str
    seconds: float
    events: list[tuple[float, float]] = field(default_factory=list)
    """(start, end) seconds of each beep pattern: first note start to last note end."""
    backgrounds: list[tuple[str, float, float]] = field(default_factory=list)
    """(kind, start, end) of each background segment (neighbours overlap by the crossfade)."""
    tonal: list[tuple[str, float, float]] = field(default_factory=list)
    """(kind, start, end) of each tonal hard negative mixed in."""
    beep_kinds: list[str] = field(default_factory=list)
    snr_db: list[float] = field(default_factory=list)
    reverb_rt60: float = 0.0
    level_dbfs: float = float("nan")


def _background(rng: np.random.Generator, seconds: float
                ) -> tuple[np.ndarray, list[tuple[str, float, float]]]:
    """Segments of household sound joined by crossfades, cut to ``seconds``."""
    kinds, weights = list(_BG_WEIGHTS), np.array(list(_BG_WEIGHTS.values()))
    fade = 0.8
    parts, names, total = [], [], 0.0
    while total + fade < seconds:
        kind = str(rng.choice(kinds, p=weights / weights.sum()))
        # Whole half-seconds: synth filters by FFT over the whole segment, and numpy's FFT
        # is several times slower on lengths with large prime factors.
        n = round(rng.uniform(*SEGMENT_S) * 2) * SR // 2
        parts.append(dataset._background(rng, kind, n))
        names.append((kind, round(total, 2), round(min(seconds, total + n / SR), 2)))
        total += n / SR - fade
    x = synth._crossfade(parts, SR, fade) if len(parts) > 1 else parts[0]
    return np.asarray(x[: int(seconds * SR)], np.float32), names


def _mix_audible(x: np.ndarray, fg: np.ndarray, at: float, snr_db: float
                 ) -> tuple[np.ndarray, float]:
    """synth.mix at ``snr_db``, but never quieter than MIN_BEEP_RMS; returns the SNR used."""
    idx = int(round(at * SR)) + np.arange(len(fg))
    active = synth.active_mask(fg, SR) & (idx >= 0) & (idx < len(x))
    if not active.any():
        return x, snr_db
    # The same samples synth.mix measures the background on.
    p_bg = float(np.mean(np.asarray(x[idx[active]], np.float64) ** 2))
    snr_db = max(snr_db, 10 * np.log10(MIN_BEEP_RMS ** 2 / max(p_bg, 1e-20)))
    return synth.mix(x, fg, at, snr_db), float(snr_db)


def make_stream(seed: int, index: int, seconds: float, n_beeps: int,
                preset: str = "heldout") -> tuple[np.ndarray, StreamInfo]:
    """Stream ``index`` of the set made with ``seed``: audio and its description."""
    p = dataset.PRESETS[preset]
    rng = np.random.default_rng([seed, 5_000_000 + index])
    x, names = _background(rng, seconds)
    info = StreamInfo(file="", seconds=float(seconds), backgrounds=names)

    beeps = []
    if n_beeps:
        # One pattern per equal slot, placed at random inside it with the margins kept.
        slot = seconds / n_beeps
        for k in range(n_beeps):
            fg, times, kind = dataset._random_beeps(rng)
            length = times[-1][1]
            lo = k * slot + BEEP_MARGIN_S
            hi = (k + 1) * slot - BEEP_MARGIN_S - length
            if hi < lo:
                raise ValueError(f"{seconds:.0f} s is too short for {n_beeps} beep patterns")
            at = round(float(rng.uniform(lo, hi)) * SR) / SR
            beeps.append((at, fg, times, kind))

    # Tonal hard negatives anywhere but over a beep pattern (the truth must stay unambiguous).
    busy = [(at - 1.0, at + times[-1][1] + 1.0) for at, _, times, _ in beeps]
    for _ in range(int(rng.poisson(TONAL_PER_MINUTE * seconds / 60))):
        fg, _, kind = dataset._tonal_negative(rng, int(dataset.CLIP_S * SR))
        at = float(rng.uniform(0, seconds - len(fg) / SR))
        if any(at < e and at + len(fg) / SR > s for s, e in busy):
            continue
        x, _ = _mix_audible(x, fg, at, float(rng.uniform(*p["snr_db"])))
        info.tonal.append((kind, round(at, 2), round(at + len(fg) / SR, 2)))

    for at, fg, times, kind in beeps:
        x, snr = _mix_audible(x, fg, at, float(rng.uniform(*p["snr_db"])))
        info.events.append((round(at + times[0][0], 3), round(at + times[-1][1], 3)))
        info.beep_kinds.append(kind)
        info.snr_db.append(round(snr, 1))

    if rng.random() < p["reverb_p"]:
        info.reverb_rt60 = round(float(rng.uniform(*p["rt60_s"])), 2)
        x = synth.reverb(x, rng, SR, info.reverb_rt60, float(rng.uniform(0.1, 0.5)))
    if rng.random() < 0.7:
        x = synth.mic_eq(x, rng, SR)
    # Peak level of a microphone set up as the README says: beeps and the running machine
    # well above the default -50 dBFS gate, a quiet room below it.
    level = float(rng.uniform(-20.0, -3.0))
    if np.any(x):
        info.level_dbfs = round(level, 1)
    x = synth.set_peak_dbfs(x, level)
    return np.clip(x, -1, 1).astype(np.float32), info


def _write_one(job: tuple[str, int, int, float, int, str]) -> dict:
    out_dir, seed, index, seconds, n_beeps, preset = job
    audio, info = make_stream(seed, index, seconds, n_beeps, preset)
    info.file = f"s{seed}_{index:04d}.wav"
    sf.write(os.path.join(out_dir, info.file), audio, SR, subtype="PCM_16")
    return asdict(info)


def generate(out_dir: str | os.PathLike, n_positive: int, n_negative: int, seconds: float,
             beeps_per_stream: int, seed: int = 0, preset: str = "heldout",
             workers: int = 2) -> list[StreamInfo]:
    """Write the positive streams, then the beep-free ones, and ``streams.json``."""
    if preset not in dataset.PRESETS:
        raise ValueError(f"unknown preset {preset!r} ({', '.join(dataset.PRESETS)})")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    jobs = [(str(out), seed, i, float(seconds), beeps_per_stream if i < n_positive else 0,
             preset) for i in range(n_positive + n_negative)]
    if workers > 1 and len(jobs) > 2:
        with get_context("spawn").Pool(workers) as pool:
            rows = pool.map(_write_one, jobs, chunksize=1)
    else:
        rows = [_write_one(j) for j in jobs]
    (out / "streams.json").write_text(json.dumps(rows, indent=1))
    log.info("wrote %d streams (%d with beeps) into %s", len(rows), n_positive, out)
    return [_info(r) for r in rows]


def _info(row: dict) -> StreamInfo:
    """A StreamInfo from its JSON form (lists back to tuples)."""
    return StreamInfo(**{**row, **{k: [tuple(v) for v in row[k]]
                                   for k in ("events", "backgrounds", "tonal")}})


def load(out_dir: str | os.PathLike) -> list[StreamInfo]:
    """The streams ``generate`` wrote into ``out_dir``."""
    return [_info(r) for r in json.loads((Path(out_dir) / "streams.json").read_text())]
