"""A machine whose beep is a tune: the detector wants two of its notes in a window.

A melody machine's model knows the tune's pitches; a radio note at one of them passed the
pitch check alone (`make bench-realuser`'s melody machines: their last false alarms). Real
parts: the shipped model file rewritten as `beepnet enroll` writes it, the daemon's numpy
detector, enroll's beep finder on generated recordings.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from beepnet.detectors.beepnet import BeepNetDetector, has_pitch, pitch_notes, pitch_tracker
from beepnet.enroll.find import find_beeps, min_notes
from beepnet.enroll.head import Head, old_head, write_enrolled
from beepnet.model.modelfile import METADATA_KEY, ModelFileError, read_model_file
from beepnet.model.preflight import find_default_model
from beepnet.training import synth

SR = 16000
TUNE = (1200.0, 1500.0, 1800.0)


def _notes(freqs_at: list[tuple[float, float]], seed: int = 1, harmonics=(1.0,)
           ) -> np.ndarray:
    """A quiet room with 0.3-s notes (pitch, start s) in it."""
    x = synth.room(np.random.default_rng(seed), 3.0, level=0.002)
    for f, at in freqs_at:
        x = synth.mix(x, synth.beep(f, 0.3, harmonics=harmonics), at, 20.0)
    return x.astype(np.float32)


def test_harmonics_of_a_lower_pitch_are_its_note():
    # A melody machine of the bench: 4439 Hz is 3x 1481 (a harmonic of that note); the rest
    # are notes of their own.
    assert pitch_notes([1173, 1481, 1758, 3138, 4439]) == [0, 1, 2, 3, 1]
    # A piezo found at its pitch, 2x and 3x: one note.
    assert pitch_notes([1665, 3335, 4992]) == [0, 0, 0]
    # A fifth and a whole tone are not harmonics.
    assert pitch_notes([2000, 3000, 3320, 3726]) == [0, 1, 2, 3]
    assert pitch_notes([]) == []


def test_a_tune_needs_two_of_its_notes_in_the_window():
    tones = pitch_tracker(TUNE, SR)
    two = _notes([(1200.0, 0.8), (1500.0, 1.2), (1200.0, 1.6)])
    one = _notes([(1500.0, 1.2)])
    assert has_pitch(tones, two, TUNE, (), 2) and has_pitch(tones, two, TUNE, (), 1)
    # One note at one of the tune's pitches: the machine's pitch, not its tune.
    assert has_pitch(tones, one, TUNE, (), 1)
    assert not has_pitch(tones, one, TUNE, (), 2)
    # The same note twice is still one note.
    assert not has_pitch(tones, _notes([(1500.0, 0.5), (1500.0, 1.5)]), TUNE, (), 2)
    # A one-note machine asked for two (its second pitch a harmonic): one is all there is.
    piezo = (2000.0, 4000.0)
    x = _notes([(2000.0, 1.0)], harmonics=(1.0, 0.6))
    assert has_pitch(pitch_tracker(piezo, SR), x, piezo, (), 2)


def test_enroll_calls_a_beep_a_tune_only_when_its_notes_come_one_after_another():
    tune = [_notes([(1200.0, 0.3), (1500.0, 0.7), (1800.0, 1.1)], seed=s) for s in range(6)]
    found = [b for i, x in enumerate(tune) for b in find_beeps(x, i)]
    assert len({round(b.freq_hz, -2) for b in found}) == 3
    assert min_notes(found) == 2
    # A repeated beep with a loud third harmonic: its pitches are 1 note.
    rep = [_notes([(1300.0, 0.3), (1300.0, 1.0), (1300.0, 1.7)], seed=s,
                  harmonics=(1.0, 0.0, 0.8)) for s in range(6)]
    found = [b for i, x in enumerate(rep) for b in find_beeps(x, i)]
    assert min_notes(found) == 1
    # Two different beeps of a machine, never in one window (a button blip, the end beep
    # minutes later): not a tune.
    apart = [_notes([(1200.0 if i % 2 else 1800.0, 1.0)], seed=i) for i in range(8)]
    found = [b for i, x in enumerate(apart) for b in find_beeps(x, i)]
    assert len({round(b.freq_hz, -2) for b in found}) == 2
    assert min_notes(found) == 1
    assert min_notes([]) == 1


@pytest.fixture(scope="module")
def tune_model(tmp_path_factory):
    """The shipped net, enrolled as `beepnet enroll` writes a tune machine's model."""
    base = read_model_file(find_default_model())
    w, b, beep = old_head(base)
    path = tmp_path_factory.mktemp("tune") / "tune.safetensors"
    # A low threshold: this test is about the check, not the net.
    write_enrolled(path, base, Head(w, b, beep, 0.05), metrics={}, data_sha256="test",
                   beep_pitches_hz=list(TUNE), beep_min_notes=2)
    return path


def test_the_detector_checks_the_tune_and_says_so(tune_model):
    det = BeepNetDetector(tune_model)
    assert det.min_notes == 2 and "2 notes of its tune" in det.describe()
    tune = _notes([(1200.0, 0.8), (1500.0, 1.2), (1800.0, 1.6)])
    note = _notes([(1500.0, 1.2)])
    assert det.score(tune).score >= det.threshold
    s = det.score(note)
    # The net alone passes it; the check holds it just under the threshold.
    assert s.labels["beep"] >= det.threshold > s.score
    assert BeepNetDetector(find_default_model()).min_notes == 1


def test_model_info_shows_the_tune_and_a_bad_value_is_refused(tune_model, tmp_path):
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-m", "beepnet", "model", "info", str(tune_model)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "a beep window must hold 2 of its notes" in r.stdout
    from safetensors import safe_open
    from safetensors.numpy import save_file

    with safe_open(str(tune_model), "np") as f:
        meta = json.loads(f.metadata()[METADATA_KEY])
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    assert meta["beep_min_notes"] == 2
    for bad in (0, "2", True, 2.5):
        path = tmp_path / "bad.safetensors"
        save_file(tensors, str(path), metadata={METADATA_KEY: json.dumps(
            dict(meta, beep_min_notes=bad))})
        with pytest.raises(ModelFileError, match="beep_min_notes must be a whole number"):
            BeepNetDetector(path)
