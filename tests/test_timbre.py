"""An enrolled model knows its beep's timbre, and the detector tells it from a note at the
same pitch.

Real parts: the shipped model file, its head rewritten by `enroll.head.write_enrolled` with
the pitches and timbres `enroll.find` measures in a recording (as `beepnet enroll` does),
scored by the daemon's numpy detector.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from safetensors import safe_open
from safetensors.numpy import save_file

from beepnet.detectors import timbre
from beepnet.detectors.beepnet import BeepNetDetector
from beepnet.enroll.find import beep_pitches, beep_timbres, find_beeps
from beepnet.enroll.head import Head, old_head, write_enrolled
from beepnet.model.modelfile import METADATA_KEY, ModelFileError, read_model_file
from beepnet.model.preflight import find_default_model
from beepnet.training import synth

SR = 16000
PITCH = 2000.0
"""Its third harmonic (where the generated piezo's timbre is: -10.5 dB) is measured."""
SINE = (1.0,)


def _tone(freq: float, seconds: float, harmonics=synth.PIEZO_HARMONICS) -> np.ndarray:
    return synth.beep(freq, seconds, harmonics=harmonics)


def _over(bg: np.ndarray, tone: np.ndarray, at: float, snr_db: float) -> np.ndarray:
    return synth.mix(bg, tone, at, snr_db).astype(np.float32)


def test_the_levels_are_measured_next_to_the_pitch():
    quiet = synth.room(np.random.default_rng(1), 3.0, level=0.0005)
    x = _over(quiet, _tone(1500.0, 0.4, (1.0, 0.5, 0.25)), 1.0, 30.0)
    lv = timbre.measure(x, 1.0, 1.4, 1500.0)
    assert lv["second"] == pytest.approx(-6.0, abs=1.0)
    assert lv["third"] == pytest.approx(-12.0, abs=1.0)
    assert lv["below"] < -30
    # A note an octave lower whose second harmonic is the pitch: loud at half the pitch.
    low = _over(quiet, _tone(750.0, 0.4, (1.0, 0.7)), 1.0, 30.0)
    assert timbre.measure(low, 1.0, 1.4, 1500.0)["below"] == pytest.approx(3.0, abs=1.0)
    # Three times 2.7 kHz is too near the Nyquist limit to measure.
    assert timbre.measure(x, 1.0, 1.4, 2700.0)["third"] is None
    # Digital silence around a pure tone reads as the floor, not as -inf.
    assert timbre.measure(_tone(1500.0, 1.0, SINE), 0.2, 0.8, 1500.0)["second"] == \
        timbre.FLOOR_DB


def test_a_tone_fits_a_timbre_within_the_margins():
    assert timbre.ranges([{"below": -40.0, "second": -8.0, "third": None}] * 2) is None
    ref = timbre.ranges([{"below": -40.0, "second": -8.0, "third": None},
                         {"below": -35.0, "second": -5.0, "third": None},
                         {"below": -50.0, "second": -6.0, "third": None}])
    assert ref == {"beeps": 3, "below": [-50.0, -35.0], "second": [-8.0, -5.0],
                   "third": None}
    assert timbre.check_reference(ref) and timbre.check_reference(None)
    assert "at twice -8 to -5 dB (over 3 beeps)" in timbre.describe(ref)
    fits = {"below": -45.0, "second": -6.0, "third": -30.0}
    assert timbre.matches(fits, ref) and timbre.matches(fits, None)
    # The second harmonic is the beep's: a note without it is not the beep ...
    assert not timbre.matches(dict(fits, second=-8.0 - timbre.MARGIN_LOWER_DB - 1), ref)
    # ... but a level the beep lacks (half the pitch, under -20 dB) has no lower bound,
    assert timbre.matches(dict(fits, below=timbre.FLOOR_DB), ref)
    # and may read as loud as the room makes it, to ALWAYS_ALLOWED_DB; a strong tone at
    # half the pitch is an octave-lower note.
    assert timbre.matches(dict(fits, below=timbre.ALWAYS_ALLOWED_DB), ref)
    assert not timbre.matches(dict(fits, below=0.0), ref)
    assert not timbre.matches(dict(fits, second=-5.0 + timbre.MARGIN_UPPER_DB + 1), ref)


def _enrolled(tmp_path, harmonics, name: str, with_timbre: bool = True):
    """The shipped model with its own head and threshold, enrolled on a recording of five
    beeps of ``harmonics`` in a quiet room, as `beepnet enroll --beeps FILE` finds them."""
    rng = np.random.default_rng(11)
    x = synth.room(rng, 12.0, level=0.001)
    for t in (1.0, 3.0, 5.0, 7.0, 9.0):
        x = _over(x, _tone(PITCH, 0.3, harmonics), t, 25.0)
    found = find_beeps(x)
    assert len(found) == 5
    pitches = beep_pitches(found)
    timbres = beep_timbres([x], found)
    assert len(pitches) == 1 and timbres[0]["beeps"] == 5
    base = read_model_file(find_default_model())
    w, b, beep = old_head(base)
    path = tmp_path / f"{name}.safetensors"
    write_enrolled(path, base, Head(w, b, beep, base.threshold), metrics={},
                   data_sha256="test", beep_pitches_hz=pitches,
                   beep_timbre=timbres if with_timbre else ())
    return BeepNetDetector(path)


def test_a_note_at_the_machines_pitch_is_not_its_beep(tmp_path):
    shipped = BeepNetDetector(find_default_model())
    det = _enrolled(tmp_path, synth.PIEZO_HARMONICS, "piezo")
    plain = _enrolled(tmp_path, synth.PIEZO_HARMONICS, "pitch-only", with_timbre=False)
    assert det.timbres[0] is not None and "and its timbre" in det.describe()
    assert plain.timbres == () and "timbre" not in plain.describe()
    for seed in range(3):
        washer = synth.washer(np.random.default_rng(seed), 3.0, phase="wash")
        beep = _over(washer, _tone(PITCH, 0.5), 1.2, 12.0)
        s = det.score(beep)
        assert s.score >= det.threshold and s.start is not None
        # A pure tone at the same pitch: the shipped model and the pitch check take it for
        # the beep; its missing third harmonic tells it apart.
        note = _over(washer, _tone(PITCH, 0.5, SINE), 1.2, 12.0)
        assert shipped.score(note).score >= shipped.threshold
        assert plain.score(note).score >= plain.threshold
        s = det.score(note)
        assert s.score < det.threshold and s.start is None
        assert s.labels["beep"] == pytest.approx(shipped.score(note).labels["beep"])


def test_a_pure_beep_enrolled_in_a_quiet_room_is_heard_over_talk_and_music(tmp_path):
    """Its harmonics read as the room's noise, louder over a TV than where it was enrolled:
    that must not veto it."""
    det = _enrolled(tmp_path, SINE, "sine")
    ref = det.timbres[0]
    assert ref["second"][1] < -40, ref  # enrolled: nothing at twice the pitch
    rng = np.random.default_rng(5)
    for make in (synth.speech_like, synth.music_like):
        for _ in range(4):
            bg = make(rng, 3.0).astype(np.float32)
            x = _over(bg, _tone(PITCH, 0.4, SINE), float(rng.uniform(0.3, 2.2)), 6.0)
            assert det._has_pitch(x)


def test_a_model_file_with_a_bad_timbre_is_refused(tmp_path):
    det = _enrolled(tmp_path, synth.PIEZO_HARMONICS, "good")
    path = tmp_path / "good.safetensors"
    with safe_open(str(path), "np") as f:
        meta = json.loads(f.metadata()[METADATA_KEY])
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    assert meta["beep_timbre"] == [det.timbres[0]]
    for bad in ([{"beeps": 3, "second": [0, "loud"]}], [None, None], "dull"):
        meta["beep_timbre"] = bad
        save_file(tensors, str(path), metadata={METADATA_KEY: json.dumps(meta)})
        with pytest.raises(ModelFileError, match="beep_timbre must hold one timbre"):
            BeepNetDetector(path)
    base = read_model_file(find_default_model())
    w, b, beep = old_head(base)
    with pytest.raises(ValueError, match="one entry per beep pitch"):
        write_enrolled(tmp_path / "x.safetensors", base, Head(w, b, beep, 0.5), metrics={},
                       data_sha256="test", beep_pitches_hz=[2000.0], beep_timbre=[None, None])
