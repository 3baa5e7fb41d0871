"""Generated washing-machine cycles, start to beep, for the tests and the benchmark.

`programme` lays out a cycle the way a front-loader runs one, compressed into ``minutes``:
water coming in ("fill"), the drum turning with rests ("washing", with "rest" stretches of a
few seconds where it stands still), "drain" (pump and gurgle), "spinning" (a short spin
after the wash and each rinse, a long final one that winds up, holds and coasts down),
optionally a long "pause" (a soak), then quiet and the end beep. Before it and after it,
someone talks and a radio plays ("speech", "music"), so a test also sees what must not
count as the machine. `render` writes it as a 16-bit WAV, block by block (a 15-min file:
under 100 MB of memory for the whole process, where synthesising it in one piece would take
about 1 GB), with room tone under everything and the whole file through one room
(reverberation and microphone colouring). A 12-minute cycle (a 15-min file, 29 MB) takes
about 15 s on one core: tests keep it with `cached`.

The sounds come from `beepnet.training.synth`, at its scale: washing RMS 0.05, spinning up
to 0.09 (at full speed), draining 0.035, filling 0.03, each times the script's ``gain_db``
(the microphone's distance and gain). `render` depends only on the script and the seed; every piece of sound draws from a
generator seeded by (seed, piece), so the same call writes the same file.

``python -m beepnet.testing.cycles OUT.wav [--minutes M] [--seed N]`` writes one cycle and
prints its script.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import sys
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from ..training import dataset, synth

log = logging.getLogger(__name__)

MACHINE = ("fill", "washing", "drain", "spinning")
"""Segment kinds that are the machine making sound (a "rest" or "pause" is the machine
standing still: no sound of its own)."""
OTHERS = ("speech", "music")
"""Segment kinds that are sound in the room, not the machine."""
QUIET = ("quiet", "rest", "pause")

# One cycle's steps as shares of its sound (a 90-min cotton programme has about this shape:
# a long wash, two rinses each ending in a short spin, a long final spin).
_STEPS = (("fill", 0.02), ("washing", 0.33), ("drain", 0.03), ("spinning", 0.05),
          ("fill", 0.02), ("washing", 0.13), ("drain", 0.03), ("spinning", 0.04),
          ("fill", 0.02), ("washing", 0.10), ("drain", 0.03), ("spinning", 0.20))
_PAUSE_AFTER = 1
"""A long pause (a soak) goes into the middle of the first washing step."""

REST_S = (3.0, 12.0)
"""The drum standing still inside a washing step, between turning stretches: shorter than
a pause (the cycle machine's ``pause_minutes``, 0.3 min in scaled tests), long enough that
a window or more hears nothing of the machine."""
RESTS_PER_MINUTE = 0.8
BEEP_GAP_S = (5.0, 20.0)
"""From the machine's last sound to the end beep (the door lock lets go, then it beeps)."""

PIECE_S = 15.0
"""Longest stretch synthesised in one go: synth filters by FFT over a whole piece."""
FADE_S = 0.5
"""Neighbouring pieces cross-fade over this much (equal power)."""
BLOCK_S = 10.0
"""Audio is written in blocks of about this much."""
ROOM_LEVEL = 0.001
"""RMS of the room tone under everything (-60 dBFS, below the daemon's -50 dBFS gate)."""
DELAY = 2048
"""Samples the room filter is centred on: the microphone colouring is zero-phase (it rings
both ways), so the filter is built around a delay and the output shifted back by it."""
VERSION = 1
"""Part of `cached`'s key: bump when what `render` writes for a script changes."""


@dataclass(frozen=True)
class CycleScript:
    """What happens when, in seconds from the file's start."""

    segments: tuple[tuple[str, float, float], ...]
    """(kind, start, end), in order, covering the file without overlaps: "quiet", "fill",
    "washing", "rest" (the drum still within washing), "pause", "drain", "spinning",
    "speech", "music", "beep" (the end beep pattern's quiet stretch; see ``beep_at``)."""
    beep_at: float | None
    """The end-of-cycle beep pattern's start (None: a cycle that stops without a beep)."""
    machine_start: float
    machine_end: float
    """First and last machine sound."""
    gain_db: float = 0.0
    """Everything (machine, voices, music, beep; not the room tone) this much louder than
    synth's scale."""
    rt60_s: float = 0.0
    """The room's reverberation (0: none)."""
    wet: float = 0.0
    mic_seed: int | None = None
    """Seeds the microphone colouring (None: a flat microphone)."""

    @property
    def seconds(self) -> float:
        return self.segments[-1][2]

    def kind_at(self, t: float) -> str:
        """The segment kind at ``t`` ("quiet" outside the file)."""
        for kind, start, end in self.segments:
            if start <= t < end:
                return kind
        return "quiet"

    def phase_at(self, t: float) -> str | None:
        """The phase the daemon should tell at ``t``: "spinning" in a spin, "washing" in
        fill, washing, rests and drain (draining is part of the water phases: see
        `beepnet.cycle.ear`); None where the machine is not running."""
        kind = self.kind_at(t)
        if kind == "spinning":
            return "spinning"
        if kind in ("fill", "washing", "rest", "drain"):
            return "washing"
        return None


def programme(rng: np.random.Generator, *, minutes: float, beep: bool = True,
              long_pause_minutes: float = 0.0, lead_in_s: float = 60.0,
              tail_s: float = 120.0, talk: bool = True, room: bool = True) -> CycleScript:
    """A cycle whose machine sound spans ``minutes`` (a long pause included), its steps
    jittered by ±20 %, after ``lead_in_s`` and before ``tail_s`` (counted from the beep,
    or from the machine's last sound without one).

    ``talk``: someone talks in the lead-in and a radio plays in the tail (after a quiet
    stretch long enough for the beep); otherwise both are quiet. ``room``: a random room
    and microphone, and a gain of -10..+6 dB; otherwise dry at synth's scale.

    The steps scale with ``minutes``; what has a length of its own on a real machine keeps
    it: the drum's rests (`REST_S`), a spin's wind-up (up to 40 s) and coast-down (up to
    15 s), the wait for the beep (`BEEP_GAP_S`).
    """
    if minutes <= 0 or long_pause_minutes < 0 or long_pause_minutes >= minutes:
        raise ValueError(f"minutes = {minutes}, long_pause_minutes = {long_pause_minutes}: "
                         "expected 0 <= long_pause_minutes < minutes")
    segs: list[tuple[str, float, float]] = []

    def add(kind: str, seconds: float) -> None:
        t = segs[-1][2] if segs else 0.0
        if seconds > 0:
            segs.append((kind, round(float(t), 3), round(float(t + seconds), 3)))

    # The lead-in: room, someone talking (loading the machine), room.
    if talk and lead_in_s >= 20:
        talk_s = rng.uniform(0.3, 0.5) * lead_in_s
        add("quiet", rng.uniform(0.1, 0.3) * lead_in_s)
        add("speech", talk_s)
        add("quiet", lead_in_s - segs[-1][2])
    else:
        add("quiet", lead_in_s)

    sound_s = (minutes - long_pause_minutes) * 60
    shares = np.array([s for _, s in _STEPS]) * rng.uniform(0.8, 1.2, len(_STEPS))
    shares *= sound_s / shares.sum()
    for i, ((kind, _), seconds) in enumerate(zip(_STEPS, shares)):
        if kind == "washing":
            if i == _PAUSE_AFTER and long_pause_minutes > 0:
                _washing(rng, add, seconds / 2)
                add("pause", long_pause_minutes * 60)
                _washing(rng, add, seconds / 2)
            else:
                _washing(rng, add, seconds)
        else:
            add(kind, seconds)
    machine_start = next(start for kind, start, _ in segs if kind in MACHINE)
    machine_end = segs[-1][2]

    beep_at = None
    if beep:
        beep_at = machine_end + rng.uniform(*BEEP_GAP_S)
        add("quiet", beep_at - machine_end)
        add("beep", 10.0)  # the pattern and its echo; room tone around it
        end = beep_at + tail_s
    else:
        end = machine_end + tail_s
    if talk and end - segs[-1][2] >= 40:
        rest = end - segs[-1][2]
        add("quiet", 0.25 * rest)
        add("music", 0.5 * rest)
    add("quiet", end - segs[-1][2])

    gain_db, rt60, wet, mic = 0.0, 0.0, 0.0, None
    if room:
        gain_db = round(float(rng.uniform(-10.0, 6.0)), 1)
        rt60 = round(float(rng.uniform(0.2, 0.8)), 2)
        wet = round(float(rng.uniform(0.1, 0.4)), 2)
        mic = int(rng.integers(2 ** 31))
    return CycleScript(tuple(segs), None if beep_at is None else round(float(beep_at), 3),
                       float(machine_start), float(machine_end), gain_db, rt60, wet, mic)


def _washing(rng: np.random.Generator, add, seconds: float) -> None:
    """A washing step: the drum turning, with rests of `REST_S` now and then (never first
    or last: a step starts and ends with the drum turning)."""
    rests = int(rng.poisson(RESTS_PER_MINUTE * seconds / 60))
    lengths = rng.uniform(*REST_S, size=rests)
    turning = seconds - lengths.sum()
    if rests == 0 or turning < 20.0 * (rests + 1):
        add("washing", seconds)
        return
    cuts = np.sort(rng.uniform(0, 1, rests + 1))
    stretches = np.diff(np.concatenate([[0.0], cuts[:-1], [1.0]]))
    stretches = 10.0 + stretches / stretches.sum() * (turning - 10.0 * (rests + 1))
    for k in range(rests + 1):
        add("washing", float(stretches[k]))
        if k < rests:
            add("rest", float(lengths[k]))


# --- Rendering ----------------------------------------------------------------------------

@dataclass(frozen=True)
class _Piece:
    kind: str
    start: float
    end: float
    """Its own stretch; the audio reaches `FADE_S`/2 beyond both ends, faded."""
    index: int
    """Seeds its generator."""
    speed: tuple[float, float] = (0.0, 0.0)
    """Spinning: the drum's revolutions per second at its start and end."""


def _spin_speed(t: float, length: float, final: bool) -> float:
    """Drum speed (rev/s) ``t`` s into a spin of ``length`` s: wind up over the first
    quarter (at most 40 s), hold, coast down over the last 10 % (at most 15 s)."""
    top = 17.0 if final else 11.0  # about 1000 rpm, about 650 rpm
    up, down = min(0.25 * length, 40.0), min(0.1 * length, 15.0)
    if t < up:
        return 2.0 + (top - 2.0) * t / up
    if t > length - down:
        return max(0.5, top * (length - t) / down)
    return top


def _pieces(script: CycleScript) -> list[_Piece]:
    out: list[_Piece] = []
    spins = [i for i, s in enumerate(script.segments) if s[0] == "spinning"]
    for i, (kind, start, end) in enumerate(script.segments):
        if kind in QUIET or kind == "beep":
            continue
        n = max(1, int(np.ceil((end - start) / PIECE_S)))
        step = (end - start) / n
        for k in range(n):
            a, b = start + k * step, start + (k + 1) * step
            speed = (0.0, 0.0)
            if kind == "spinning":
                final = bool(spins) and i == spins[-1]
                speed = (_spin_speed(a - start, end - start, final),
                         _spin_speed(b - start, end - start, final))
            out.append(_Piece(kind, a, b, len(out), speed))
    return out


def _sound(piece: _Piece, rng: np.random.Generator, n: int, gain: float) -> np.ndarray:
    """``n`` samples of one piece at its level."""
    seconds = n / synth.SR
    if piece.kind == "washing":
        return synth.washer(rng, seconds, phase="wash", level=0.05 * gain)
    if piece.kind == "drain":
        return synth.washer(rng, seconds, phase="drain", level=0.035 * gain)
    if piece.kind == "fill":
        # Water rushing in through the valve, the drum turning now and then to soak it up.
        hiss = synth.shaped_noise(rng, n, synth.SR, synth.band(300, 5000, 1.0))
        drum = synth.washer(rng, seconds, phase="wash", level=1.0)
        return synth.set_rms(0.6 * hiss + drum, 0.03 * gain)
    if piece.kind == "spinning":
        r0, r1 = piece.speed
        x = synth._spin(rng, n, synth.SR, r0, r1)
        # Louder as it speeds up: full level (synth's 0.09) at 16 rev/s.
        speed = min(1.0, 0.5 * (r0 + r1) / 16.0)
        return synth.set_rms(x, 0.09 * gain * (0.3 + 0.7 * speed))
    if piece.kind == "speech":
        return synth.speech_like(rng, seconds, level=0.05 * gain)
    if piece.kind == "music":
        return synth.music_like(rng, seconds, level=0.04 * gain)
    raise ValueError(f"no sound for a {piece.kind!r} segment")


def _room_filter(script: CycleScript) -> np.ndarray | None:
    """The room's impulse response: the dry sound, the reverberant tail (synth.reverb's,
    as a filter) and the microphone's colouring (synth.mic_eq's), centred on `DELAY`."""
    if script.rt60_s <= 0 and script.mic_seed is None:
        return None
    n_ir = int(script.rt60_s * synth.SR)
    h = np.zeros(2 * DELAY + n_ir + 1)
    h[DELAY] = 1.0 - script.wet
    if n_ir:
        rng = np.random.default_rng([script.mic_seed or 0, 1])
        t = np.arange(n_ir) / synth.SR
        ir = rng.standard_normal(n_ir) * 10 ** (-3 * t / script.rt60_s)
        h[DELAY:DELAY + n_ir] += script.wet * ir / np.sqrt(np.sum(ir ** 2))
    if script.mic_seed is not None:
        h = synth.mic_eq(h, np.random.default_rng(script.mic_seed), synth.SR)
    return np.asarray(h, np.float64)


class _Convolver:
    """Streaming convolution (overlap-add) with ``h``, ``delay`` samples early."""

    def __init__(self, h: np.ndarray | None, delay: int):
        self.h = h
        self.delay = delay if h is not None else 0
        self.skip = self.delay
        self.tail = np.zeros(0)

    def push(self, x: np.ndarray) -> np.ndarray:
        if self.h is None:
            return x
        m = len(x) + len(self.h) - 1
        size = 1 << (m - 1).bit_length()
        y = np.fft.irfft(np.fft.rfft(x, size) * np.fft.rfft(self.h, size), size)[:m]
        y[:len(self.tail)] += self.tail
        out, self.tail = y[:len(x)], y[len(x):]
        if self.skip:
            cut = min(self.skip, len(out))
            out, self.skip = out[cut:], self.skip - cut
        return out

    def finish(self) -> np.ndarray:
        """The end of the output, which the delay held back."""
        return self.push(np.zeros(self.delay)) if self.delay else np.zeros(0)


def _blocks(script: CycleScript, seed: int, sr: int) -> Iterator[np.ndarray]:
    """The file's audio before the room filter, in order, in blocks."""
    gain = 10 ** (script.gain_db / 20)
    fade = int(FADE_S * sr)
    half = fade // 2
    ramp = np.sin(0.5 * np.pi * (np.arange(fade) + 0.5) / fade)
    total = int(round(script.seconds * sr))
    pieces = _pieces(script)
    # Additions as (first sample, audio), made lazily in order of their first sample.
    beep: tuple[int, np.ndarray] | None = None
    if script.beep_at is not None:
        rng = np.random.default_rng([seed, 2])
        pattern, _, _ = dataset._random_beeps(rng, end_of_cycle=True)
        # Made to be heard: an active-part RMS of 0.05-0.15 at synth's scale.
        active = synth.active_mask(pattern, sr)
        level = float(np.sqrt(np.mean(pattern[active] ** 2.0))) if active.any() else 1.0
        beep = (int(round(script.beep_at * sr)),
                pattern * (rng.uniform(0.05, 0.15) * gain / level))
    buf = np.zeros(0)
    buf_start = 0  # the file sample buf[0] stands for
    p = 0
    block = int(BLOCK_S * sr)
    while buf_start < total:
        done = min(total, buf_start + block)
        # Every piece that reaches into [buf_start, done) is added before it is given out.
        while p < len(pieces) and int(pieces[p].start * sr) - half < done:
            piece = pieces[p]
            first = int(round(piece.start * sr)) - half
            n = int(round(piece.end * sr)) + half - first
            # Made in whole half-seconds, then cut: synth filters by FFT over the whole
            # piece, and numpy's FFT is several times slower on lengths with large primes.
            whole = -(-n // (sr // 2)) * (sr // 2)
            x = np.asarray(_sound(piece, np.random.default_rng([seed, 1000 + piece.index]),
                                  whole, gain)[:n], np.float64)
            x[:fade] *= ramp
            x[-fade:] *= ramp[::-1]
            buf = _add(buf, buf_start, first, x)
            p += 1
        if beep is not None and beep[0] < done:
            buf = _add(buf, buf_start, *beep)
            beep = None
        rng = np.random.default_rng([seed, 3, buf_start])
        out = np.zeros(done - buf_start)
        out[:min(len(buf), len(out))] = buf[:len(out)]
        out += synth.room(rng, len(out) / sr, sr, ROOM_LEVEL)[:len(out)]
        buf = buf[len(out):]
        buf_start = done
        yield out


def _add(buf: np.ndarray, buf_start: int, first: int, x: np.ndarray) -> np.ndarray:
    """``x`` added at file sample ``first`` into ``buf`` (which starts at ``buf_start``);
    the part before ``buf_start`` (a fade-in before the file's start) is dropped."""
    if first < buf_start:
        x, first = x[buf_start - first:], buf_start
    end = first - buf_start + len(x)
    if end > len(buf):
        buf = np.concatenate([buf, np.zeros(end - len(buf))])
    buf[first - buf_start:end] += x
    return buf


def render(script: CycleScript, path: Path, *, seed: int, sr: int = 16000) -> None:
    """Write ``script`` as a 16-bit mono WAV at ``path`` (written whole or not at all)."""
    if sr != synth.SR:
        raise ValueError(f"cycles are rendered at {synth.SR} Hz, not {sr}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    room = _Convolver(_room_filter(script), DELAY)
    clipped = 0
    try:
        with sf.SoundFile(tmp, "w", sr, 1, "PCM_16", format="WAV") as f:
            def write(y: np.ndarray) -> None:
                nonlocal clipped
                clipped += int(np.count_nonzero(np.abs(y) > 1.0))
                f.write(np.clip(y, -1.0, 1.0).astype(np.float32))

            for x in _blocks(script, seed, sr):
                write(room.push(x))
            write(room.finish())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    if clipped:
        log.warning("%s: %d samples clipped (gain %+.1f dB)", path, clipped, script.gain_db)


def cached(script: CycleScript, folder: Path, *, seed: int) -> Path:
    """The rendered file of (``script``, ``seed``) in ``folder``, rendered on first use."""
    key = json.dumps([VERSION, seed, asdict(script)], sort_keys=True)
    path = Path(folder) / f"cycle-{hashlib.sha256(key.encode()).hexdigest()[:16]}.wav"
    if not path.exists():
        render(script, path, seed=seed)
    return path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m beepnet.testing.cycles",
                                description="write one generated washer cycle")
    p.add_argument("out", type=Path)
    p.add_argument("--minutes", type=float, default=12.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-beep", action="store_true")
    p.add_argument("--pause", type=float, default=0.0, help="a long pause, minutes")
    args = p.parse_args(argv)
    script = programme(np.random.default_rng(args.seed), minutes=args.minutes,
                       beep=not args.no_beep, long_pause_minutes=args.pause)
    render(script, args.out, seed=args.seed)
    json.dump(asdict(script), sys.stdout, indent=1)
    print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
