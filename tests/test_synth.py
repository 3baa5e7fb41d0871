"""Tests for beepnet.training.synth: the generated audio has the properties detectors rely on."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from beepnet.training import synth as S

SR = 16000
DEMO = Path(__file__).resolve().parents[1] / "data" / "demo" / "washer-cycle.ogg"


# ----------------------------------------------------------------- helpers


def frame_rms_db(x: np.ndarray, frame_s: float = 0.005) -> tuple[np.ndarray, np.ndarray]:
    """(frame centre times, frame RMS in dBFS) over non-overlapping frames."""
    hop = int(frame_s * SR)
    frames = x[: len(x) // hop * hop].reshape(-1, hop).astype(np.float64)
    level = 10 * np.log10(np.mean(frames ** 2, axis=1) + 1e-20)
    return (np.arange(len(frames)) + 0.5) * frame_s, level


def dominant_hz(x: np.ndarray) -> float:
    """Frequency of the strongest spectral peak of ``x`` (zero-padded, Hann)."""
    n = 1 << 16
    spec = np.abs(np.fft.rfft(x * np.hanning(len(x)), n))
    return float(np.argmax(spec) * SR / n)


def max_tonal_excess_db(x: np.ndarray, lo: float = 1000.0, hi: float = 6000.0,
                        nfft: int = 2048, context_hz: float = 300.0) -> float:
    """How far the long-term spectrum pokes above its local median anywhere in [lo, hi].

    The spectrum is the per-bin *median* over frames (in dB), so short bursts
    (splashes, bubbles) don't count but anything sustained does: a stationary
    tone shows up as a sharp peak, broadband noise as a smooth curve (~1-2 dB).
    """
    frames = np.lib.stride_tricks.sliding_window_view(x, nfft)[:: nfft // 2] * np.hanning(nfft)
    db = np.median(10 * np.log10(np.abs(np.fft.rfft(frames, axis=1)) ** 2 + 1e-30), axis=0)
    freqs = np.fft.rfftfreq(nfft, 1 / SR)
    k = int(context_hz / (SR / nfft))
    return max(db[i] - np.median(db[i - k:i + k + 1])
               for i in np.flatnonzero((freqs >= lo) & (freqs <= hi)))


# -------------------------------------------------------------------- beeps


def test_beep_is_a_squareish_tone_at_the_requested_level():
    x = S.beep(2000.0, 0.5, level=0.25)
    assert x.dtype == np.float32 and len(x) == 8000
    assert np.max(np.abs(x)) == pytest.approx(0.25, rel=1e-4)
    assert dominant_hz(x) == pytest.approx(2000.0, abs=2.0)
    spec = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    level = lambda f: spec[int(round(f * len(x) / SR))]  # noqa: E731
    # Odd harmonics dominate (square drive), the 3rd well above the 2nd.
    assert level(6000) > 2 * level(4000) > 0
    # Short ramps, not hard edges: starts and ends near zero.
    assert abs(x[0]) < 1e-3 and abs(x[-1]) < 0.02


def test_beep_drops_harmonics_above_nyquist():
    x = S.beep(5000.0, 0.2)  # 3rd harmonic would be 15 kHz
    spec = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    assert np.argmax(spec) * SR / len(x) == pytest.approx(5000, abs=10)
    assert np.all(np.isfinite(x))


@pytest.mark.parametrize("kind", ["repeat", "long", "melody"])
@pytest.mark.parametrize("seed", range(6))
def test_pattern_times_match_where_the_energy_is(kind, seed):
    audio, times = S.beep_pattern(np.random.default_rng(seed), kind=kind)
    t, level = frame_rms_db(audio)
    inside = np.zeros(len(t), dtype=bool)
    for start, end in times:
        core = (t > start + 0.01) & (t < end - 0.02)  # away from the ramps
        assert core.any()
        assert level[core].min() > -20, f"quiet frame inside beep {start:.2f}-{end:.2f}"
        inside |= (t > start - 0.005) & (t < end + 0.005)
    assert level[~inside].max(initial=-200) < -80, "energy outside the reported beeps"
    assert times[-1][1] == pytest.approx(len(audio) / SR, abs=1 / SR)


@pytest.mark.parametrize("seed", range(10))
def test_repeat_pattern_is_realistic(seed):
    audio, times = S.beep_pattern(np.random.default_rng(seed), kind="repeat")
    assert 3 <= len(times) <= 5
    durations = [e - s for s, e in times]
    gaps = [s2 - e1 for (_, e1), (s2, _) in zip(times, times[1:])]
    assert all(0.3 <= d <= 1.0 + 1e-3 for d in durations)
    assert all(0.3 - 1e-3 <= g <= 1.0 for g in gaps)
    freqs = [dominant_hz(audio[int(s * SR):int(e * SR)]) for s, e in times]
    assert 1000 <= freqs[0] <= 6000
    assert np.ptp(freqs) < 2.0, "all beeps of a repeat pattern share one frequency"


@pytest.mark.parametrize("seed", range(10))
def test_long_and_melody_patterns(seed):
    rng = np.random.default_rng(seed)
    audio, times = S.beep_pattern(rng, kind="long")
    assert len(times) == 1 and 1.0 <= times[0][1] - times[0][0] <= 2.5
    audio, times = S.beep_pattern(rng, kind="melody")
    assert 3 <= len(times) <= 4
    freqs = [dominant_hz(audio[int(s * SR):int(e * SR)]) for s, e in times]
    assert all(1000 <= f <= 6000 for f in freqs)
    assert len({round(f) for f in freqs}) == len(freqs), "a melody has distinct notes"


def test_pattern_rejects_unknown_kind():
    with pytest.raises(ValueError):
        S.beep_pattern(np.random.default_rng(0), kind="siren")


# ------------------------------------------------------------------- washer


@pytest.mark.parametrize("phase", ["wash", "drain", "spin"])
def test_washer_has_no_sustained_tone_in_the_beep_band(phase):
    x = S.washer(np.random.default_rng(3), 20.0, phase=phase)
    assert max_tonal_excess_db(x) < 4.0


@pytest.mark.parametrize("phase", ["wash", "drain", "spin"])
def test_tonal_excess_check_would_catch_a_faint_tone(phase):
    """The check above has teeth: a tone 30 dB below the washer is caught."""
    x = S.washer(np.random.default_rng(3), 20.0, phase=phase)
    t = np.arange(len(x)) / SR
    tone = S.rms(x) * 10 ** (-30 / 20) * np.sqrt(2) * np.sin(2 * np.pi * 2500 * t)
    assert max_tonal_excess_db(x + tone) > 6.0


@pytest.mark.parametrize("phase", ["wash", "drain", "spin"])
def test_washer_is_loud_low_and_broadband(phase):
    x = S.washer(np.random.default_rng(4), 5.0, phase=phase, level=0.05)
    assert x.dtype == np.float32 and len(x) == 5 * SR
    assert S.rms(x) == pytest.approx(0.05, rel=1e-3)
    assert np.max(np.abs(x)) < 1.0
    power = np.abs(np.fft.rfft(x)) ** 2
    freqs = np.fft.rfftfreq(len(x), 1 / SR)
    low = power[freqs < 1000].sum() / power.sum()
    beep_band = power[(freqs >= 1000) & (freqs <= 6000)].sum() / power.sum()
    assert low > 0.5, "most of a washer's energy is below 1 kHz"
    assert beep_band > 1e-3, "but it has broadband energy in the beep band too"


def test_washer_wash_phase_is_modulated_by_the_drum():
    """Drum rotation: the level swings over ~0.5-1.5 s, unlike stationary noise."""
    x = S.washer(np.random.default_rng(5), 10.0, phase="wash")
    _, level = frame_rms_db(x, 0.1)
    assert np.ptp(level) > 6.0


def test_washer_is_reproducible_and_validates_phase():
    a = S.washer(np.random.default_rng(7), 1.0, phase="spin")
    b = S.washer(np.random.default_rng(7), 1.0, phase="spin")
    assert np.array_equal(a, b)
    with pytest.raises(ValueError):
        S.washer(np.random.default_rng(7), 1.0, phase="rinse")


# ---------------------------------------------------------------------- mix


@pytest.mark.parametrize("snr_db", [-5.0, 0.0, 12.0, 30.0])
def test_mix_hits_the_requested_snr_on_the_active_part(snr_db):
    rng = np.random.default_rng(8)
    bg = S.washer(rng, 6.0, level=0.01)  # quiet enough that +30 dB doesn't clip
    fg, _ = S.beep_pattern(rng, kind="repeat")
    fg = fg[: int(4.0 * SR)]
    out = S.mix(bg, fg, 1.0, snr_db)
    added = (out - bg).astype(np.float64)
    active = np.zeros(len(out), dtype=bool)
    active[SR:SR + len(fg)] = S.active_mask(fg)
    measured = 10 * np.log10(np.mean(added[active] ** 2) / np.mean(bg[active].astype(np.float64) ** 2))
    assert measured == pytest.approx(snr_db, abs=0.05)
    assert np.array_equal(out[:SR], bg[:SR]), "nothing added before the foreground starts"


def test_mix_crops_a_foreground_that_straddles_the_edges():
    bg = S.room(np.random.default_rng(9), 3.0, level=0.01)
    fg = S.beep(3000, 1.0)
    for at in (-0.6, 2.5):
        out = S.mix(bg, fg, at, 10.0)
        assert len(out) == len(bg)
        assert S.rms(out - bg) > 0
    assert np.array_equal(S.mix(bg, fg, 5.0, 10.0), bg), "entirely outside: unchanged"


def test_mix_over_digital_silence_adds_the_foreground_as_is():
    fg = S.beep(3000, 0.5, level=0.3)
    out = S.mix(np.zeros(SR, np.float32), fg, 0.25, 10.0)
    assert np.max(np.abs(out)) == pytest.approx(0.3, rel=1e-4)


# --------------------------------------------------------------------- demo


def test_demo_recording_is_a_cycle_ending_in_three_beeps():
    audio, times = S.demo_recording()
    assert audio.dtype == np.float32 and len(audio) == 45 * SR
    assert len(times) == 3
    assert audio.max() <= 1.0 and audio.min() >= -1.0
    for start, end in times:
        f = dominant_hz(audio[int(start * SR) + 400:int(end * SR) - 400])
        assert 2500 <= f <= 3500
    assert len(audio) / SR - times[-1][1] >= 3.0, "a few seconds of quiet after the beeps"
    _, level = frame_rms_db(audio, 1.0)
    assert level[2:30].min() > level[-3:].max() + 15, "machine running >> quiet room after"


def test_demo_recording_is_reproducible():
    a, ta = S.demo_recording(seed=0)
    b, tb = S.demo_recording(seed=0)
    assert np.array_equal(a, b) and ta == tb


def test_shipped_demo_file():
    assert DEMO.exists(), "data/demo/washer-cycle.ogg is missing"
    assert DEMO.stat().st_size < 600_000
    audio, sr = sf.read(DEMO, dtype="float32")
    assert sr == SR and audio.ndim == 1
    assert abs(len(audio) / sr - 45.0) < 0.1
    _, times = S.demo_recording()
    for start, end in times:  # the beeps survived the lossy encoding
        assert dominant_hz(audio[int(start * SR) + 400:int(end * SR) - 400]) == pytest.approx(
            dominant_hz(S.demo_recording()[0][int(start * SR) + 400:int(end * SR) - 400]), abs=3)


@pytest.mark.parametrize("ext", ["flac", "ogg", "wav"])
def test_cli_writes_the_demo(tmp_path, ext, capsys):
    out = tmp_path / f"demo.{ext}"
    assert S.main(["demo", str(out)]) == 0
    info = sf.info(out)
    assert info.samplerate == SR and info.channels == 1
    assert abs(info.duration - 45.0) < 0.1
    assert "38.50-39.00" in capsys.readouterr().out


# ----------------------------------------------------------- hard negatives


def test_hard_negatives_are_valid_audio():
    rng = np.random.default_rng(10)
    sounds = {
        "speech": S.speech_like(rng, 3.0), "music": S.music_like(rng, 3.0),
        "knock": S.knock(rng), "door": S.door(rng), "fan": S.fan(rng, 3.0),
        "room": S.room(rng, 3.0),
    }
    for name, x in sounds.items():
        assert x.dtype == np.float32, name
        assert np.all(np.isfinite(x)) and np.max(np.abs(x)) <= 1.0, name
        assert S.rms(x) > 0, name
    for name in ("speech", "music", "fan", "room"):
        assert len(sounds[name]) == 3 * SR, name


def test_speech_like_has_syllable_rhythm():
    """Energy comes and goes at syllable rate (3-6 Hz), unlike a fan."""
    x = S.speech_like(np.random.default_rng(11), 8.0)
    _, level = frame_rms_db(x, 0.02)
    env = np.maximum(level, level.max() - 40)
    spec = np.abs(np.fft.rfft(env - env.mean()))
    rate = np.fft.rfftfreq(len(env), 0.02)
    syllabic = spec[(rate >= 2) & (rate <= 8)].sum()
    assert syllabic > spec[rate > 10].sum() * 0.5
    _, fan_level = frame_rms_db(S.fan(np.random.default_rng(11), 8.0), 0.02)
    assert np.ptp(level) > np.ptp(fan_level) + 20


def test_knock_and_door_are_impulsive():
    rng = np.random.default_rng(12)
    for x in (S.knock(rng), S.door(rng)):
        crest = np.max(np.abs(x)) / S.rms(x)
        assert crest > 6
        _, level = frame_rms_db(x, 0.01)
        assert level.max() - np.median(level) > 10


def test_music_like_is_tonal():
    """Music is the tonal hard negative: its long-term spectrum has sharp peaks."""
    x = S.music_like(np.random.default_rng(13), 6.0)
    assert max_tonal_excess_db(x) > 10
