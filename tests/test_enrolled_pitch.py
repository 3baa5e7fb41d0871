"""An enrolled model knows its machine's beep pitches, and the detector checks for them.

Real parts: the shipped model file, its head rewritten by `enroll.head.write_enrolled` as
`beepnet enroll` writes it, scored by the daemon's numpy detector on generated beeps.
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from safetensors import safe_open
from safetensors.numpy import save_file

from beepnet.detectors.beepnet import BeepNetDetector
from beepnet.enroll.find import FoundBeep, beep_pitches
from beepnet.enroll.head import Head, old_head, write_enrolled
from beepnet.model.modelfile import (METADATA_KEY, ModelFileError, read_model_file,
                                     write_model_file)
from beepnet.model.preflight import find_default_model
from beepnet.training import synth
from signals import shaky_blips

SR = 16000


def _found(*freqs: float) -> list[FoundBeep]:
    return [FoundBeep(0, i, i + 0.2, f, 20.0, 0.9) for i, f in enumerate(freqs)]


def test_beep_pitches_group_the_found_beeps():
    # a piezo at 2.7 kHz as the tracker measures it (a little wobble), twice a two-note
    # chime, and one stray tone of the room among many beeps
    assert beep_pitches(_found(2690, 2710, 2700, 2705)) == [pytest.approx(2702.5)]
    assert beep_pitches(_found(1318, 1047, 1320, 1046)) == [pytest.approx(1046.5),
                                                            pytest.approx(1319)]
    assert beep_pitches(_found(*[3000] * 12, 4400)) == [3000.0]
    assert beep_pitches([]) == []


def test_the_check_allows_a_wobble_only_when_most_beeps_need_it():
    from beepnet.detectors.beepnet import STEADY_WOBBLE_HZ
    from beepnet.enroll.find import WOBBLE_STEPS_HZ, beep_wobble, machine_beeps

    def beeps(freq: float, wobble: float, n: int, length: float = 0.08,
              prominence: float = 35.0) -> list[FoundBeep]:
        return [FoundBeep(0, i, i + length, freq, 20.0, 0.9, prominence, wobble, 1)
                for i in range(n)]

    # A steady piezo whose third harmonic shakes: the steady check, and only the beeps
    # the steady tracker scores as beeps.
    steady = beeps(2000.0, 2.0, 10) + beeps(6000.0, 20.0, 3)
    assert beep_wobble(steady) == STEADY_WOBBLE_HZ
    kept, wobble = machine_beeps(steady)
    assert wobble == STEADY_WOBBLE_HZ and {b.freq_hz for b in kept} == {2000.0}
    # Blips that shake by 22 Hz: the least wobble that passes 90 % of them.
    shaky = beeps(3721.0, 22.0, 10)
    assert STEADY_WOBBLE_HZ < beep_wobble(shaky) <= WOBBLE_STEPS_HZ[-1]
    kept, wobble = machine_beeps(shaky)
    assert wobble == beep_wobble(shaky) and len(kept) == 10
    # Some a little shakier still: one step looser.
    assert beep_wobble(shaky + beeps(3721.0, 30.0, 5)) > beep_wobble(shaky)
    assert beep_wobble([]) == STEADY_WOBBLE_HZ


@pytest.fixture(scope="module")
def enrolled(tmp_path_factory):
    """The shipped model with its own head, enrolled for a 2-kHz beep."""
    base = read_model_file(find_default_model())
    w, b, beep = old_head(base)
    path = tmp_path_factory.mktemp("enrolled") / "enrolled.safetensors"
    write_enrolled(path, base, Head(w, b, beep, base.threshold), metrics={},
                   data_sha256="test", beep_pitches_hz=[2000.0])
    return path


def _beep_over_washer(freq: float, seed: int = 3) -> np.ndarray:
    rng = np.random.default_rng(seed)
    bg = synth.washer(rng, 3.0, phase="wash")
    return synth.mix(bg, synth.beep(freq, 0.6), 1.2, 12.0).astype(np.float32)


def test_the_detector_wants_a_tone_at_an_enrolled_pitch(enrolled):
    shipped = BeepNetDetector(find_default_model())
    det = BeepNetDetector(enrolled)
    assert det.pitches == (2000.0,) and "beep at 2000 Hz" in det.describe()
    # The same net and threshold: only the pitch check differs.
    assert det.threshold == pytest.approx(shipped.threshold)
    at_pitch = _beep_over_washer(2000.0)
    s = det.score(at_pitch)
    assert s.score >= det.threshold and s.start is not None
    assert s.score == pytest.approx(shipped.score(at_pitch).score)
    # A beep the shipped model catches, at another pitch: not this machine's.
    other = _beep_over_washer(3100.0)
    assert shipped.score(other).score >= shipped.threshold
    s = det.score(other)
    assert s.score < det.threshold and s.start is None
    assert np.float32(s.score) < np.float32(det.threshold)
    assert s.labels["beep"] == pytest.approx(shipped.score(other).labels["beep"])
    # 4 % off (a warm piezo, the tracker's wobble) is still the machine's pitch.
    assert det.score(_beep_over_washer(2070.0)).score >= det.threshold


def test_a_pitch_outside_the_tone_detectors_band_is_still_heard(tmp_path):
    """A machine enrolled with `detector.tone_min_hz` lowered (a 700-Hz beep): the check
    looks there too, instead of vetoing every beep."""
    base = read_model_file(find_default_model())
    w, b, beep = old_head(base)
    path = tmp_path / "low.safetensors"
    write_enrolled(path, base, Head(w, b, beep, 0.2), metrics={}, data_sha256="test",
                   beep_pitches_hz=[700.0])
    det = BeepNetDetector(path)
    x = synth.mix(synth.room(np.random.default_rng(5), 3.0, level=0.002),
                  synth.beep(700.0, 0.6), 1.2, 15.0).astype(np.float32)
    assert det._has_pitch(x)
    assert not det._has_pitch(synth.mix(synth.room(np.random.default_rng(5), 3.0,
                                                   level=0.002),
                                        synth.beep(900.0, 0.6), 1.2, 15.0))


def test_a_general_model_has_no_pitch_check_and_bad_pitches_are_refused(tmp_path):
    shipped = BeepNetDetector(find_default_model())
    assert shipped.pitches == () and "beep at" not in shipped.describe()
    base = read_model_file(find_default_model())
    path = tmp_path / "bad.safetensors"
    write_model_file(path, base.tensors, base.arch, list(base.labels), base.threshold,
                     beep_pitches_hz=[2000.0])
    assert BeepNetDetector(path).pitches == (2000.0,)
    import json

    from safetensors import safe_open
    from safetensors.numpy import save_file

    from beepnet.model.modelfile import METADATA_KEY

    with safe_open(str(path), "np") as f:
        meta = json.loads(f.metadata()[METADATA_KEY])
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    meta["beep_pitches_hz"] = ["loud"]
    save_file(tensors, str(path), metadata={METADATA_KEY: json.dumps(meta)})
    with pytest.raises(ModelFileError, match="beep_pitches_hz must be a list"):
        BeepNetDetector(path)


def _shaky_blips(seed: int) -> np.ndarray:
    """A 3-s recording of five shaky piezo blips (`signals.shaky_blips`) in a noisy room."""
    noise = np.random.default_rng(seed).normal(0.0, 0.03, 3 * SR)
    return shaky_blips(noise, 0.5, seed=seed)


def test_short_shaky_blips_are_found_and_the_check_allows_their_wobble(tmp_path):
    from beepnet.detectors.beepnet import STEADY_WOBBLE_HZ, has_pitch, pitch_tracker
    from beepnet.detectors.tone import ToneDetector
    from beepnet.enroll.find import find_beeps, machine_beeps
    from beepnet.training.machinebeep import learn

    clips = [_shaky_blips(s) for s in range(12)]
    # The tone detector's own tracker (a beep alone, no pitch known) finds them too shaky.
    assert all(r.score < 0.3 for x in clips[:3] for r in ToneDetector(SR).runs(x))
    found, wobble = machine_beeps([b for i, x in enumerate(clips) for b in find_beeps(x, i)])
    assert len(found) >= 5 * 10
    assert beep_pitches(found) == [pytest.approx(3721.0, rel=0.01)]
    assert wobble > STEADY_WOBBLE_HZ
    pitches = (3721.0,)
    assert all(has_pitch(pitch_tracker(pitches, SR, wobble), x, pitches) for x in clips)
    assert not any(has_pitch(pitch_tracker(pitches, SR), x, pitches) for x in clips)
    # A steady beep keeps the tracker's own 5 Hz: looser lets more music through.
    steady = [_beep_over_washer(2000.0, seed) for seed in range(6)]
    found, steady_wobble = machine_beeps([b for i, x in enumerate(steady)
                                          for b in find_beeps(x, i)])
    assert steady_wobble == STEADY_WOBBLE_HZ and len(found) == 6
    # train's check of one machine's set learns the pitch and the wobble from them ...
    beep = learn([(x * 32767).astype(np.int16) for x in clips], SR)
    assert beep is not None and beep.pitches == (pytest.approx(3721.0, rel=0.01),)
    assert beep.kept == 1.0 and beep.wobble_hz == wobble
    # ... and a model file carries it to the daemon's detector.
    base = read_model_file(find_default_model())
    w, b, row = old_head(base)
    path = tmp_path / "shaky.safetensors"
    write_enrolled(path, base, Head(w, b, row, base.threshold), metrics={},
                   data_sha256="test", beep_pitches_hz=list(pitches), beep_wobble_hz=wobble)
    det = BeepNetDetector(path)
    assert det.wobble_hz == wobble and f"wobbling up to {wobble:.0f} Hz" in det.describe()
    assert all(det._has_pitch(x) for x in clips)
    r = subprocess.run([sys.executable, "-m", "beepnet", "model", "info", str(path)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert f"the pitch check allows {wobble:g} Hz of wobble" in r.stdout
    with safe_open(str(path), "np") as f:
        meta = json.loads(f.metadata()[METADATA_KEY])
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    assert meta["beep_wobble_hz"] == wobble
    for bad in (0, 500, "14", True):
        save_file(tensors, str(path), metadata={METADATA_KEY: json.dumps(
            dict(meta, beep_wobble_hz=bad))})
        with pytest.raises(ModelFileError, match="beep_wobble_hz must be a number"):
            BeepNetDetector(path)
