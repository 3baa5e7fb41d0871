"""Generated audio for tests, demos and training: beeps, appliance noise, hard negatives.

The repository must not carry recordings of unknown licence, so everything the
tests and the demo need is synthesised here from first principles. The sounds
are not meant to fool a listener; they are meant to have the *properties* a
detector cares about:

* appliance beeps are narrow-band, stable-frequency tones (with the odd
  harmonics a square-driven piezo produces) lasting a few hundred ms;
* washing-machine noise is loud, modulated and mostly low-frequency, with
  broadband energy in the beep band but no sustained narrow-band tone there;
* the hard negatives (speech, music, knocks, doors, fans) each stress one way a
  naive tone detector can be fooled.

Everything random takes a ``numpy.random.Generator`` so results are reproducible.
All functions return float32 mono arrays (in [-1, 1] at their default levels;
`mix` clips). Only numpy is used
(the runtime targets a Raspberry Pi); soundfile is imported lazily by the CLI.

Command line: ``python -m beepnet.training.synth demo OUT_PATH`` writes the demo recording.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from ..audio import SAMPLE_RATE

log = logging.getLogger(__name__)

SR = SAMPLE_RATE
"""Default sample rate (Hz) of everything generated here."""

BEEP_BAND_HZ = (1000.0, 6000.0)
"""Where appliance beeps live; backgrounds must keep sustained tones out of it."""

# Highest frequency a *sustained* harmonic of a background tone (motor hum,
# spin whine, fan blade pass) may reach, so backgrounds stay clear of the beep band.
_BG_TONE_MAX_HZ = 950.0


# --------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------


def _n(duration_s: float, sr: int) -> int:
    """Number of samples in ``duration_s`` seconds (at least one)."""
    return max(1, int(round(duration_s * sr)))


def rms(x: np.ndarray) -> float:
    """Root-mean-square of ``x`` (0.0 for an empty array)."""
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64)))) if len(x) else 0.0


def db_to_amp(db: float) -> float:
    """Amplitude ratio for a level in dB."""
    return float(10.0 ** (db / 20.0))


def set_rms(x: np.ndarray, target: float) -> np.ndarray:
    """Scale ``x`` so its RMS is ``target`` (silence stays silence)."""
    r = rms(x)
    return (x * (target / r)).astype(np.float32) if r > 0 else x.astype(np.float32)


def set_peak_dbfs(x: np.ndarray, peak_dbfs: float) -> np.ndarray:
    """Scale ``x`` so its absolute peak sits at ``peak_dbfs`` (0 dBFS = 1.0)."""
    peak = float(np.max(np.abs(x))) if len(x) else 0.0
    if peak == 0:
        return x.astype(np.float32)
    return (x * (db_to_amp(peak_dbfs) / peak)).astype(np.float32)


def envelope(n: int, sr: int, attack_s: float, release_s: float) -> np.ndarray:
    """A flat envelope with raised-cosine attack and release ramps.

    Raised-cosine ramps avoid the clicks (broadband splatter) a hard-edged
    tone would have; real piezo drivers ramp in a few ms too.
    """
    env = np.ones(n, dtype=np.float64)
    attack = min(_n(attack_s, sr), n // 2)
    release = min(_n(release_s, sr), n // 2)
    env[:attack] = 0.5 - 0.5 * np.cos(np.pi * np.arange(attack) / attack)
    env[n - release:] = 0.5 + 0.5 * np.cos(np.pi * np.arange(release) / release)
    return env


def shaped_noise(rng: np.random.Generator, n: int, sr: int,
                 gain: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """White Gaussian noise filtered by a magnitude response ``gain(freqs_hz)``.

    Filtering in the frequency domain (one rfft/irfft of the whole signal)
    gives arbitrary smooth responses without scipy; the result is circular,
    which is harmless for stationary noise. Output is normalised to unit RMS.
    """
    spec = np.fft.rfft(rng.standard_normal(n))
    spec *= gain(np.fft.rfftfreq(n, 1.0 / sr))
    out = np.fft.irfft(spec, n)
    r = rms(out)
    return out / r if r > 0 else out


def band(lo_hz: float, hi_hz: float, edge_octaves: float = 0.5) -> Callable[[np.ndarray], np.ndarray]:
    """A band-pass magnitude response with smooth (raised-cosine in log-f) skirts."""

    def gain(f: np.ndarray) -> np.ndarray:
        logf = np.log2(np.maximum(f, 1.0))
        below = np.clip((logf - (np.log2(lo_hz) - edge_octaves)) / edge_octaves, 0, 1)
        above = np.clip(((np.log2(hi_hz) + edge_octaves) - logf) / edge_octaves, 0, 1)
        return (0.5 - 0.5 * np.cos(np.pi * below)) * (0.5 - 0.5 * np.cos(np.pi * above))

    return gain


def pink(f: np.ndarray) -> np.ndarray:
    """1/f power (pink) magnitude response, flattened below 20 Hz."""
    return 1.0 / np.sqrt(np.maximum(f, 20.0))


def smooth_random(rng: np.random.Generator, n: int, sr: int, rate_hz: float) -> np.ndarray:
    """A slowly wandering random curve (zero mean, unit RMS) varying at about ``rate_hz``."""
    return shaped_noise(rng, n, sr, lambda f: np.exp(-0.5 * (f / rate_hz) ** 2))


def _harmonic_tone(freq_hz: np.ndarray | float, n: int, sr: int, amps: Sequence[float],
                   max_hz: float, rng: np.random.Generator | None = None) -> np.ndarray:
    """A sum of harmonics of a (possibly time-varying) fundamental.

    Each harmonic fades out smoothly as its instantaneous frequency approaches
    ``max_hz``; that is how backgrounds keep their tonal parts out of the
    beep band (and how aliasing is avoided for beeps).
    """
    f0 = np.broadcast_to(np.asarray(freq_hz, dtype=np.float64), (n,))
    phase = 2 * np.pi * np.cumsum(f0) / sr
    out = np.zeros(n)
    for k, a in enumerate(amps, start=1):
        if a == 0:
            continue
        fk = k * f0
        fade = np.clip((max_hz - fk) / (0.1 * max_hz), 0.0, 1.0)
        if not fade.any():
            continue
        offset = rng.uniform(0, 2 * np.pi) if rng is not None else 0.0
        out += a * fade * np.sin(k * phase + offset)
    return out


# --------------------------------------------------------------------------
# Beeps
# --------------------------------------------------------------------------

# Piezo buzzers are usually driven by a square wave, so odd harmonics dominate;
# the small even ones come from the asymmetric mechanical response.
PIEZO_HARMONICS = (1.0, 0.08, 0.3, 0.05, 0.15)


def beep(freq_hz: float, duration_s: float, sr: int = SR,
         harmonics: Sequence[float] = PIEZO_HARMONICS,
         attack_s: float = 0.004, release_s: float = 0.015, level: float = 0.5) -> np.ndarray:
    """One appliance piezo beep: a squareish tone with a short attack/release.

    ``harmonics`` are the amplitudes of harmonics 1, 2, 3, ... (those above
    Nyquist are dropped); ``level`` is the peak amplitude of the result.
    """
    n = _n(duration_s, sr)
    tone = _harmonic_tone(freq_hz, n, sr, harmonics, max_hz=0.95 * sr / 2)
    return set_peak_dbfs(tone * envelope(n, sr, attack_s, release_s), 20 * np.log10(level))


def _place(segments: list[tuple[float, np.ndarray]], sr: int) -> np.ndarray:
    """Sum (start_s, audio) segments into one array long enough for all of them."""
    starts = [max(0, int(round(start * sr))) for start, _ in segments]
    out = np.zeros(max(i + len(seg) for i, (_, seg) in zip(starts, segments)), dtype=np.float32)
    for i, (_, seg) in zip(starts, segments):
        out[i:i + len(seg)] += seg
    return out


def _beep_frequency(rng: np.random.Generator) -> float:
    """A piezo frequency drawn log-uniformly from the beep band (most are 2-4 kHz,
    but the band's edges must be covered too)."""
    lo, hi = BEEP_BAND_HZ
    return float(np.exp(rng.uniform(np.log(lo), np.log(hi))))


def _repeated_beeps(rng: np.random.Generator) -> list[tuple[float, float, float]]:
    """The classic end-of-cycle signal: 3-5 equal beeps at one frequency.

    Like the other pattern makers it returns (start_s, freq_hz, duration_s) notes.
    """
    freq = _beep_frequency(rng)
    on = rng.uniform(0.3, 1.0)
    gap = rng.uniform(0.3, 1.0)
    count = int(rng.integers(3, 6))
    return [(i * (on + gap), freq, on) for i in range(count)]


def _long_beep(rng: np.random.Generator) -> list[tuple[float, float, float]]:
    """A single long beep (shorter than a 3 s analysis window, as on real machines)."""
    return [(0.0, _beep_frequency(rng), rng.uniform(1.0, 2.5))]


# Major-pentatonic steps (semitones) give "jingle"-like melodies without
# borrowing any manufacturer's actual tune.
_PENTATONIC = np.array([0, 2, 4, 7, 9, 12, 14, 16])


def _melody(rng: np.random.Generator) -> list[tuple[float, float, float]]:
    """A short 3-4 note jingle (as on Samsung/Bosch-style machines), notes in 1-6 kHz."""
    count = int(rng.integers(3, 5))
    steps = np.sort(rng.choice(_PENTATONIC, size=count, replace=False))
    base = rng.uniform(1000.0, min(2500.0, 6000.0 / 2 ** (steps[-1] / 12)))  # top note <= 6 kHz
    if rng.random() < 0.5:
        steps = steps[::-1]  # falling jingle
    notes, t = [], 0.0
    for step in steps:
        dur = rng.uniform(0.12, 0.4)
        notes.append((t, float(base * 2 ** (step / 12)), dur))
        t += dur + rng.uniform(0.0, 0.08)
    return notes


_PATTERNS = {"repeat": _repeated_beeps, "long": _long_beep, "melody": _melody}


def beep_pattern(rng: np.random.Generator, sr: int = SR, kind: str | None = None,
                 level: float = 0.5) -> tuple[np.ndarray, list[tuple[float, float]]]:
    """An end-of-cycle beep pattern and the (start_s, end_s) of each beep in it.

    ``kind`` is "repeat" (3-5 beeps of 0.3-1 s, 0.3-1 s apart, one frequency in
    1-6 kHz), "long" (one 1-2.5 s beep) or "melody" (3-4 short notes); random
    (50/20/30 %) when None. The audio starts with the first beep; ``level``
    is the peak amplitude of each beep.
    """
    if kind is None:
        kind = str(rng.choice(list(_PATTERNS), p=[0.5, 0.2, 0.3]))
    if kind not in _PATTERNS:
        raise ValueError(f"unknown beep pattern {kind!r} (one of {', '.join(_PATTERNS)})")
    # Snap starts to whole samples so the reported times are exact.
    segments = [(round(start * sr) / sr, beep(freq, dur, sr, level=level))
                for start, freq, dur in _PATTERNS[kind](rng)]
    times = [(start, start + len(seg) / sr) for start, seg in segments]
    return _place(segments, sr), times


# --------------------------------------------------------------------------
# Washing machine
# --------------------------------------------------------------------------


def _drum_cycle(rng: np.random.Generator, n: int, sr: int) -> np.ndarray:
    """Wash-phase drum motion: turns at 0.5-1.5 rev/s for a few s, pauses, reverses.

    Returns a 0..1 "activity" curve that peaks once per revolution (the clothes
    are lifted and dropped once per turn) and drops during the pauses.
    """
    t = np.arange(n) / sr
    rev_hz = rng.uniform(0.5, 1.5)
    turning = np.zeros(n)
    start = -rng.uniform(0, 3)
    while start < t[-1]:
        run, pause = rng.uniform(3.0, 6.0), rng.uniform(0.6, 1.5)
        on = (t >= start) & (t < start + run)
        turning[on] = 1.0
        start += run + pause
    turning = np.convolve(turning, np.hanning(_n(0.4, sr)) / (_n(0.4, sr) / 2), "same")
    per_turn = 0.5 + 0.5 * np.cos(2 * np.pi * rev_hz * t + rng.uniform(0, 2 * np.pi))
    return np.clip(turning, 0, 1) * (0.35 + 0.65 * per_turn ** 2)


def _thuds(rng: np.random.Generator, n: int, sr: int, rate_hz: float,
           activity: np.ndarray | None = None) -> np.ndarray:
    """Clothes dropping / drum knocks: low-pass noise bursts with a fast decay."""
    out = np.zeros(n)
    count = rng.poisson(rate_hz * n / sr)
    burst_len = _n(0.12, sr)
    burst_env = np.exp(-np.arange(burst_len) / (0.025 * sr))
    for i in rng.integers(0, n, size=count):
        w = 1.0 if activity is None else activity[i]
        seg = min(burst_len, n - i)
        out[i:i + seg] += w * rng.uniform(0.3, 1.0) * burst_env[:seg] * rng.standard_normal(seg)
    # Low-pass the sum: thuds are dull, most energy below ~300 Hz.
    spec = np.fft.rfft(out) * band(40, 300, 1.0)(np.fft.rfftfreq(n, 1 / sr))
    return np.fft.irfft(spec, n)


def _hum(n: int, sr: int, rng: np.random.Generator, mains_hz: float = 50.0) -> np.ndarray:
    """Motor/transformer hum: mains harmonics (mostly 100 Hz), all kept below 1 kHz."""
    amps = [0.6, 1.0, 0.3, 0.4, 0.1, 0.15, 0.05, 0.08]
    return _harmonic_tone(mains_hz, n, sr, amps, _BG_TONE_MAX_HZ, rng)


def _wash(rng: np.random.Generator, n: int, sr: int) -> np.ndarray:
    """Wash phase: tumbling drum, water sloshing, clothes thuds, quiet motor."""
    act = _drum_cycle(rng, n, sr)
    rumble = shaped_noise(rng, n, sr, band(30, 200, 1.0)) * (0.3 + 0.7 * act)
    # Water falling off the lifters: band-passed noise bursts following the drum.
    slosh_gate = np.clip(act + 0.3 * smooth_random(rng, n, sr, 3.0), 0, None) ** 2
    slosh = shaped_noise(rng, n, sr, band(250, 2500, 1.0)) * slosh_gate
    hiss = shaped_noise(rng, n, sr, band(1500, 7000, 0.7))  # broadband splashing
    return (1.0 * rumble + 0.6 * slosh + 0.12 * hiss * (0.5 + act)
            + 0.8 * _thuds(rng, n, sr, 2.0, act) + 0.05 * _hum(n, sr, rng))


def _drain(rng: np.random.Generator, n: int, sr: int) -> np.ndarray:
    """Drain phase: pump buzz, gurgling water, a still drum."""
    pump_hz = 50.0 * (1 + 0.01 * smooth_random(rng, n, sr, 0.5))
    pump = _harmonic_tone(pump_hz, n, sr, [0.3, 1.0, 0.5, 0.5, 0.3, 0.3, 0.2, 0.2, 0.1, 0.1, 0.1],
                          _BG_TONE_MAX_HZ, rng)
    gurgle_gate = np.clip(smooth_random(rng, n, sr, 6.0), 0, None) ** 1.5
    gurgle = shaped_noise(rng, n, sr, band(200, 1500, 0.8)) * gurgle_gate
    flow = shaped_noise(rng, n, sr, band(100, 4000, 1.0))
    return 0.5 * pump + 0.7 * gurgle + 0.3 * flow + 0.2 * _bubbles(rng, n, sr, 8.0)


def _bubbles(rng: np.random.Generator, n: int, sr: int, rate_hz: float) -> np.ndarray:
    """Bubble pops: very short (~5 ms) rising chirps, 400-2500 Hz.

    They are tonal but far shorter than any beep: a realistic trap for a
    detector whose minimum duration is too short.
    """
    out = np.zeros(n)
    length = _n(0.03, sr)
    t = np.arange(length) / sr
    for i in rng.integers(0, max(1, n - length), size=rng.poisson(rate_hz * n / sr)):
        f0 = rng.uniform(400, 2500)
        chirp = np.sin(2 * np.pi * f0 * (t + 0.5 * 8.0 * t ** 2))  # ~+8 %/10 ms rise
        out[i:i + length] += rng.uniform(0.2, 1.0) * np.exp(-t / 0.005) * chirp
    return out


def _spin(rng: np.random.Generator, n: int, sr: int, rev_start_hz: float,
          rev_end_hz: float) -> np.ndarray:
    """Spin phase with the drum speed gliding from ``rev_start_hz`` to ``rev_end_hz``.

    Unbalance makes the whole machine thump once per revolution; the motor
    whines at a few hundred Hz proportional to speed; air rushes past the drum.
    """
    t = np.arange(n) / sr
    progress = t / max(t[-1], 1e-9)
    rev_hz = rev_start_hz + (rev_end_hz - rev_start_hz) * progress ** 0.7
    speed = rev_hz / 16.0  # 16 rev/s ~ 1000 rpm, a brisk spin
    rev_phase = 2 * np.pi * np.cumsum(rev_hz) / sr
    unbalance = 1.0 + 0.6 * np.sin(rev_phase) ** 2
    rumble = shaped_noise(rng, n, sr, band(25, 250, 1.0)) * unbalance * (0.3 + speed)
    whine_hz = 120.0 + 330.0 * np.clip(speed, 0, 1.2)  # ~120 -> ~450 Hz
    whine = _harmonic_tone(whine_hz, n, sr, [1.0, 0.35, 0.15], _BG_TONE_MAX_HZ, rng)
    air = shaped_noise(rng, n, sr, band(300, 6000, 1.0)) * speed
    return (rumble + 0.12 * whine * speed + 0.35 * air
            + 0.3 * _thuds(rng, n, sr, 1.0) + 0.05 * _hum(n, sr, rng))


_PHASE_RMS = {"wash": 0.05, "drain": 0.035, "spin": 0.09}


def washer(rng: np.random.Generator, duration_s: float, sr: int = SR, phase: str = "wash",
           level: float | None = None) -> np.ndarray:
    """A plausible washing-machine background for one phase of the cycle.

    ``phase`` is "wash" (tumbling and sloshing), "drain" (pump and gurgle) or
    "spin" (speed ramping up: thumping, rising motor whine, air noise).
    ``level`` is the RMS of the result (phase-typical when None). Tonal parts
    (hum, whine) stay below ~950 Hz, so nothing sustained and narrow-band
    reaches the 1-6 kHz beep band; splashing and air noise are broadband there.
    """
    n = _n(duration_s, sr)
    if phase == "wash":
        x = _wash(rng, n, sr)
    elif phase == "drain":
        x = _drain(rng, n, sr)
    elif phase == "spin":
        start = rng.uniform(2.0, 6.0)
        x = _spin(rng, n, sr, start, start + rng.uniform(6.0, 12.0))
    else:
        raise ValueError(f"unknown washer phase {phase!r} (wash, drain or spin)")
    return set_rms(x, _PHASE_RMS[phase] if level is None else level)


def room(rng: np.random.Generator, duration_s: float, sr: int = SR, level: float = 0.001) -> np.ndarray:
    """Quiet room tone: faint pinkish noise (microphone self-noise, distant traffic)."""
    return set_rms(shaped_noise(rng, _n(duration_s, sr), sr, pink), level)


# --------------------------------------------------------------------------
# Mixing
# --------------------------------------------------------------------------


def active_mask(x: np.ndarray, sr: int = SR, frame_s: float = 0.01,
                rel_db: float = -30.0) -> np.ndarray:
    """Samples belonging to 10 ms frames within ``rel_db`` of the loudest frame.

    Used to measure a foreground's level on its *active* part only, so a beep
    pattern's silent gaps don't dilute its SNR.
    """
    hop = _n(frame_s, sr)
    pad = (-len(x)) % hop
    frames = np.pad(np.asarray(x, np.float64), (0, pad)).reshape(-1, hop)
    energy = np.mean(frames ** 2, axis=1)
    if energy.max() <= 0:
        return np.zeros(len(x), dtype=bool)
    active = energy >= energy.max() * 10 ** (rel_db / 10)
    return np.repeat(active, hop)[:len(x)]


def mix(background: np.ndarray, foreground: np.ndarray, at_s: float, snr_db: float,
        sr: int = SR) -> np.ndarray:
    """Add ``foreground`` to ``background`` starting at ``at_s`` seconds, at ``snr_db``.

    The SNR compares the foreground's power over its active part (see
    `active_mask`) with the background's power over the same samples. ``at_s``
    may be negative or run past the end: the foreground is then cropped, which
    is how beeps straddling a window edge are made. If the background is
    digitally silent there the foreground is added unscaled. The result is
    clipped to [-1, 1].
    """
    out = np.array(background, dtype=np.float32, copy=True)
    fg = np.asarray(foreground, dtype=np.float64)
    idx = int(round(at_s * sr)) + np.arange(len(fg))
    inside = (idx >= 0) & (idx < len(out))
    measured = inside & active_mask(fg, sr)
    if not measured.any():
        return out
    p_fg = np.mean(fg[measured] ** 2)
    p_bg = np.mean(np.asarray(out[idx[measured]], np.float64) ** 2)
    gain = np.sqrt(p_bg / p_fg * 10 ** (snr_db / 10)) if p_bg > 0 else 1.0
    out[idx[inside]] += (gain * fg[inside]).astype(np.float32)
    clipped = int(np.count_nonzero(np.abs(out) > 1.0))
    if clipped:
        # Clipping is rarely wanted: it adds harmonics and intermodulation
        # products a real (unclipped) recording would not have.
        log.debug("mix: %d samples clipped; use a quieter background", clipped)
    return np.clip(out, -1.0, 1.0)


def _crossfade(parts: Sequence[np.ndarray], sr: int, fade_s: float = 0.8) -> np.ndarray:
    """Join segments end to start with equal-power crossfades of ``fade_s``."""
    fade = _n(fade_s, sr)
    ramp = np.sin(0.5 * np.pi * np.arange(fade) / fade)
    out = np.asarray(parts[0], np.float64).copy()
    for part in parts[1:]:
        part = np.asarray(part, np.float64).copy()
        out[-fade:] *= ramp[::-1]
        part[:fade] *= ramp
        out = np.concatenate([out[:-fade], out[-fade:] + part[:fade], part[fade:]])
    return out


# --------------------------------------------------------------------------
# The demo recording
# --------------------------------------------------------------------------


def demo_recording(seed: int = 0, sr: int = SR) -> tuple[np.ndarray, list[tuple[float, float]]]:
    """A 45 s washing-machine cycle, compressed in time, ending with its beeps.

    Wash (14 s), drain (6 s), spin up (12 s), spin down (5 s), then a quiet
    room in which the machine beeps three times at 2.5-3.5 kHz, followed by
    ~4 s of room noise. Returns the audio and the (start_s, end_s) of each beep.
    """
    rng = np.random.default_rng(seed)
    fade = 0.8  # each crossfade overlaps neighbouring segments by this much
    wash = washer(rng, 14.0 + fade, sr, "wash", level=0.05)
    drain = washer(rng, 6.0 + fade, sr, "drain", level=0.035)
    spin_up = set_rms(_spin(rng, _n(12.0 + fade, sr), sr, 2.0, 16.0), 0.09)
    # Spin down: the drum coasts from full speed to a stop and the sound dies away.
    n_down = _n(5.0 + fade, sr)
    spin_down = set_rms(_spin(rng, n_down, sr, 16.0, 0.5), 0.09)
    spin_down *= np.exp(-np.arange(n_down) / (1.3 * sr))
    quiet = np.zeros(_n(8.0, sr))  # ends the recording at 45.0 s
    machine = _crossfade([wash, drain, spin_up, spin_down, quiet], sr, fade)

    audio = machine + room(rng, len(machine) / sr, sr, level=0.001)
    freq, on, gap, first = rng.uniform(2500, 3500), 0.5, 0.5, 38.5
    times = []
    for i in range(3):
        start = first + i * (on + gap)
        tone = beep(freq, on, sr, level=db_to_amp(-12.0))
        j = _n(start, sr)
        audio[j:j + len(tone)] += tone
        times.append((round(start, 3), round(start + len(tone) / sr, 3)))
    return np.clip(audio, -1, 1).astype(np.float32), times


# --------------------------------------------------------------------------
# Hard negatives: sounds a beep detector must learn to ignore
# --------------------------------------------------------------------------

# (F1, F2, F3) in Hz for a handful of vowels: the formant peaks that give speech
# its strong, slowly-moving harmonics in the 0.3-3 kHz region.
_VOWELS = np.array([[730, 1090, 2440], [270, 2290, 3010], [300, 870, 2240],
                    [530, 1840, 2480], [570, 840, 2410], [660, 1720, 2410]], dtype=float)


def _formant_gain(f: np.ndarray, formants: np.ndarray, bandwidths: np.ndarray) -> np.ndarray:
    """Magnitude response of a cascade of second-order resonators (a vocal tract)."""
    g = np.ones_like(f)
    for fk, bk in zip(formants, bandwidths):
        g *= fk ** 2 / np.sqrt((fk ** 2 - f ** 2) ** 2 + (bk * f) ** 2)
    return g


def _syllable(rng: np.random.Generator, sr: int, f0: float) -> np.ndarray:
    """One voiced syllable: glottal pulses plus breath noise through vowel formants,
    maybe with a fricative onset.

    Natural pitch is never level for long: it glides over the syllable (3-25 %,
    up or down) and wanders by a couple of percent on top, and the voice is
    breathy (harmonics-to-noise ratio 10-20 dB), which fills the valleys
    between harmonics, above all at high frequencies.
    """
    n = _n(rng.uniform(0.12, 0.3), sr)
    t = np.arange(n) / sr
    glide = rng.choice([-1.0, 1.0]) * rng.uniform(0.03, 0.25)
    wander = 0.02 * smooth_random(rng, n, sr, 4.0)
    f0_t = f0 * (1 + glide * t / t[-1]) * (1 + wander)
    phase = np.cumsum(f0_t) / sr
    pulses = np.diff(np.floor(phase), prepend=0.0)  # one impulse per glottal cycle
    pad = _n(0.03, sr)  # room for the resonances to ring without wrapping around
    f = np.fft.rfftfreq(n + pad, 1 / sr)
    tilt = 1 / np.maximum(f / 200.0, 1.0)  # glottal source rolls off ~ -6 dB/oct
    source = np.fft.rfft(np.pad(pulses, (0, pad))) * tilt
    hnr_db = rng.uniform(10.0, 20.0)
    breath = rng.standard_normal(n) * np.sqrt(np.mean(pulses ** 2) * 10 ** (-hnr_db / 10))
    source += np.fft.rfft(np.pad(breath, (0, pad))) * np.sqrt(tilt)  # breath noise is flatter
    vowel = _VOWELS[rng.integers(len(_VOWELS))] * rng.uniform(0.9, 1.15)
    voiced = np.fft.irfft(source * _formant_gain(f, vowel, np.array([80, 100, 150])), n + pad)
    voiced[:n] *= envelope(n, sr, 0.02, 0.04)
    voiced[n:] *= np.exp(-np.arange(pad) / (0.005 * sr))
    voiced = set_rms(voiced, 1.0)
    if rng.random() < 0.4:  # "s", "sh", "f": a noisy consonant before the vowel
        fric = shaped_noise(rng, _n(rng.uniform(0.04, 0.12), sr), sr,
                            band(rng.uniform(2500, 4500), 7000, 0.5))
        fric *= 0.4 * envelope(len(fric), sr, 0.01, 0.01)
        voiced = np.concatenate([fric, voiced])
    return voiced


def speech_like(rng: np.random.Generator, duration_s: float, sr: int = SR,
                level: float = 0.05) -> np.ndarray:
    """Babble with speech's structure: 3-6 syllables/s, pitch 90-240 Hz, pauses.

    Not intelligible, but it has what matters to a tone detector: dense harmonics
    under formant peaks that glide in frequency, and hissy fricatives.
    """
    n = _n(duration_s, sr)
    f0 = rng.uniform(90, 240)  # the "speaker"
    segments, t = [], 0.0
    while t < duration_s:
        if rng.random() < 0.12:  # a breath between phrases
            t += rng.uniform(0.2, 0.5)
            continue
        syl = _syllable(rng, sr, f0 * (1 - 0.1 * (t % 2.0)))  # declination per phrase
        segments.append((t, syl))
        t += len(syl) / sr + rng.uniform(0.0, 0.08)
    out = _place(segments, sr) if segments else np.zeros(n, np.float32)
    out = np.pad(out, (0, max(0, n - len(out))))[:n]
    return set_rms(out, level)


def music_like(rng: np.random.Generator, duration_s: float, sr: int = SR,
               level: float = 0.05) -> np.ndarray:
    """A few notes and chords with harmonic overtones (radio/TV in the room).

    Melody notes range G3-F#6 (196-1480 Hz) so some fundamentals and many
    overtones are stable tones inside the beep band: a hard, *tonal* negative.
    """
    n = _n(duration_s, sr)
    segments, t = [], 0.0
    while t < duration_s:
        dur = rng.uniform(0.25, 0.8)
        root = rng.integers(55, 91)  # MIDI note number
        chord = [root] + ([root - 4, root - 7] if rng.random() < 0.4 else [])
        m = _n(dur + 0.2, sr)
        note = np.zeros(m)
        decay = rng.uniform(0.2, 1.0)  # plucked/piano-like vs. organ-like
        for midi in chord:
            f0 = 440.0 * 2 ** ((midi - 69) / 12)
            amps = [1.0 / k for k in range(1, 9)]
            note += _harmonic_tone(f0, m, sr, amps, 0.95 * sr / 2, rng)
        note *= envelope(m, sr, 0.01, 0.1) * np.exp(-np.arange(m) / (decay * sr))
        segments.append((t, note.astype(np.float32)))
        t += dur
    out = np.pad(_place(segments, sr), (0, n))[:n]
    return set_rms(out, level)


def _damped_modes(rng: np.random.Generator, n: int, sr: int, freqs: Sequence[float],
                  decays_s: Sequence[float]) -> np.ndarray:
    """A struck object: a sum of exponentially decaying sinusoids."""
    t = np.arange(n) / sr
    out = np.zeros(n)
    for f, d in zip(freqs, decays_s):
        out += rng.uniform(0.3, 1.0) * np.exp(-t / d) * np.sin(2 * np.pi * f * t + rng.uniform(0, 6.3))
    return out


def knock(rng: np.random.Generator, sr: int = SR, level: float = 0.3) -> np.ndarray:
    """Knocking on a door or cupboard: 2-4 knocks, each a click plus dull wood modes.

    The wood modes sit at 100-700 Hz with 10-40 ms decay; one faint upper mode
    (1-2.5 kHz) rings for only a few ms, shorter than any beep.
    """
    count = int(rng.integers(2, 5))
    spacing = rng.uniform(0.12, 0.3)
    modes = rng.uniform(100, 700, size=3)
    upper = rng.uniform(1000, 2500)
    length = _n(0.15, sr)
    segments = []
    for i in range(count):
        hit = _damped_modes(rng, length, sr, [*modes, upper], [*rng.uniform(0.01, 0.04, 3), 0.003])
        click = rng.standard_normal(length) * np.exp(-np.arange(length) / (0.001 * sr))
        segments.append((i * spacing * rng.uniform(0.9, 1.1), (hit + 0.5 * click).astype(np.float32)))
    return set_peak_dbfs(_place(segments, sr), 20 * np.log10(level))


def door(rng: np.random.Generator, sr: int = SR, level: float = 0.5) -> np.ndarray:
    """A door closing: latch click, low slam thump, a little rattle, decaying room tail."""
    n = _n(1.0, sr)
    t = np.arange(n) / sr
    thump = _damped_modes(rng, n, sr, rng.uniform(50, 180, size=3), rng.uniform(0.03, 0.08, 3))
    tail = shaped_noise(rng, n, sr, band(80, 4000, 1.0)) * np.exp(-t / 0.12) * 0.3
    rattle = np.zeros(n)
    for i in rng.integers(_n(0.02, sr), _n(0.2, sr), size=int(rng.integers(2, 6))):
        m = min(_n(0.01, sr), n - i)
        rattle[i:i + m] += rng.standard_normal(m) * np.exp(-np.arange(m) / (0.002 * sr))
    latch = np.zeros(n)
    j = _n(rng.uniform(0.0, 0.02), sr)
    latch[j:j + _n(0.005, sr)] = rng.standard_normal(_n(0.005, sr))[: n - j]
    return set_peak_dbfs(thump + tail + 0.3 * rattle + 0.4 * latch, 20 * np.log10(level))


def fan(rng: np.random.Generator, duration_s: float, sr: int = SR, level: float = 0.03) -> np.ndarray:
    """A fan or extractor hood: broadband air noise, motor hum, blade-pass thrum."""
    n = _n(duration_s, sr)
    air = shaped_noise(rng, n, sr, lambda f: pink(f) * band(60, 6000, 1.5)(f))
    flutter = 1 + 0.1 * smooth_random(rng, n, sr, 0.7)
    blade_hz = rng.uniform(40, 120)  # blades x rev/s
    thrum = _harmonic_tone(blade_hz, n, sr, [1.0, 0.5, 0.25, 0.12], _BG_TONE_MAX_HZ, rng)
    return set_rms(air * flutter + 0.3 * thrum + 0.1 * _hum(n, sr, rng), level)


# --------------------------------------------------------------------------
# Room and microphone (numpy only; used to vary generated training data)
# --------------------------------------------------------------------------


def reverb(x: np.ndarray, rng: np.random.Generator, sr: int = SR, rt60_s: float = 0.3,
           wet: float = 0.3) -> np.ndarray:
    """Simple room reverberation: convolve with exponentially decaying noise.

    The impulse response is white noise whose level falls by 60 dB in ``rt60_s``;
    ``wet`` is the reverberant part's share of the output power-ish mix. The
    result has the input's length (the tail past the end is cut).
    """
    n_ir = max(1, _n(rt60_s, sr))
    t = np.arange(n_ir) / sr
    ir = rng.standard_normal(n_ir) * 10 ** (-3 * t / rt60_s)  # -60 dB at rt60
    ir /= np.sqrt(np.sum(ir ** 2)) + 1e-12
    x = np.asarray(x, np.float64)
    m = len(x) + n_ir - 1
    size = 1 << (m - 1).bit_length()
    tail = np.fft.irfft(np.fft.rfft(x, size) * np.fft.rfft(ir, size), size)[:len(x)]
    return ((1 - wet) * x + wet * tail).astype(np.float32)


def mic_eq(x: np.ndarray, rng: np.random.Generator, sr: int = SR) -> np.ndarray:
    """A random gentle microphone colouring: a high-pass at 50-300 Hz and a smooth
    +-6 dB tilt/bump over frequency, applied in the frequency domain."""
    x = np.asarray(x, np.float64)
    spec = np.fft.rfft(x)
    f = np.fft.rfftfreq(len(x), 1 / sr)
    hp = rng.uniform(50, 300)
    gain = 1 / np.sqrt(1 + (hp / np.maximum(f, 1.0)) ** 4)  # 2nd-order high-pass magnitude
    octave = np.log2(np.maximum(f, 20.0) / 1000.0)
    tilt_db = rng.uniform(-3, 3) * octave / 3
    bump_db = rng.uniform(-6, 6) * np.exp(-0.5 * ((octave - rng.uniform(-1, 2.5)) / 0.7) ** 2)
    gain *= 10 ** ((tilt_db + bump_db) / 20)
    return np.fft.irfft(spec * gain, len(x)).astype(np.float32)


# --------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------


def write_demo(path: str | Path, seed: int = 0, sr: int = SR) -> list[tuple[float, float]]:
    """Write `demo_recording` to ``path`` (format from the extension) and return beep times."""
    import soundfile as sf  # only the CLI needs it

    audio, times = demo_recording(seed, sr)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fmt = path.suffix.lstrip(".").upper()
    # FLAC: 16-bit is plenty for a microphone recording. OGG: Vorbis at a
    # modest quality; it keeps the beeps' narrow tones intact.
    if fmt == "FLAC":
        sf.write(path, audio, sr, subtype="PCM_16")
    elif fmt == "OGG":
        sf.write(path, audio, sr, subtype="VORBIS", compression_level=0.6)
    else:
        sf.write(path, audio, sr)
    return times


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m beepnet.training.synth demo OUT_PATH [--seed N]``."""
    parser = argparse.ArgumentParser(prog="python -m beepnet.training.synth", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="write the synthetic washing-machine cycle with beeps")
    demo.add_argument("out_path", help="output file; .flac, .ogg or .wav")
    demo.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    times = write_demo(args.out_path, args.seed)
    print(f"wrote {args.out_path}; beeps at " + ", ".join(f"{s:.2f}-{e:.2f} s" for s, e in times))
    return 0


if __name__ == "__main__":
    sys.exit(main())
