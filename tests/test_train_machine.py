"""`beepnet train` on one machine's chunks learns its beep's pitch and timbre, as `beepnet
enroll` does, and the detector then checks them; a set of many machines gets no such check.

Real parts: clips of the real generator's sounds in the folders a user labels, `beepnet
train --init default` run as users run it, the model file it writes (`beepnet model info`),
and the daemon's numpy detector.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from procs import run_beepnet

from beepnet.detectors.beepnet import BeepNetDetector, has_pitch, pitch_tracker
from beepnet.model.modelfile import read_model_file, write_model_file
from beepnet.model.preflight import find_default_model
from beepnet.training import machinebeep, synth
from beepnet.training.dataset import make_clip
from beepnet.training.machinebeep import cut_by_edge

SR = 16000
PITCH = 2000.0
"""Its third harmonic (where the generated piezo's timbre is: -10.5 dB) is measured."""


def _beeps(harmonics=synth.PIEZO_HARMONICS) -> np.ndarray:
    """The machine's beep: three 250-ms beeps of its piezo."""
    one = synth.beep(PITCH, 0.25, harmonics=harmonics)
    return synth._place([(0.0, one), (0.45, one), (0.9, one)], SR)


def _background(rng: np.random.Generator, i: int) -> np.ndarray:
    kind = i % 3
    if kind == 0:
        return synth.room(rng, 3.0)
    if kind == 1:
        return synth.washer(rng, 3.0, phase=str(rng.choice(["wash", "drain", "spin"])))
    return synth.speech_like(rng, 3.0)


def _write(root: Path, label: str, name: str, x: np.ndarray) -> None:
    (root / label).mkdir(parents=True, exist_ok=True)
    sf.write(root / label / f"{name}.wav", synth.set_peak_dbfs(x, -12.0), SR, subtype="PCM_16")


def _one_machine(root: Path, beep: np.ndarray | None = None, seed: int = 7) -> None:
    """40 beep chunks of one machine in one home (``beep``, by default `_beeps`) and 80 of
    its other sounds (music among them), each chunk a take of its own."""
    rng = np.random.default_rng(seed)
    beep = _beeps() if beep is None else beep
    for i in range(40):
        x = synth.mix(_background(rng, i), beep, float(rng.uniform(0.1, 1.5)),
                      float(rng.uniform(8, 20)))
        _write(root, "beep", f"beep{i:03d}_0", x)
    for i in range(80):
        x = synth.music_like(rng, 3.0) if i % 4 == 3 else _background(rng, i)
        _write(root, "not_beep", f"other{i:03d}_0", x)


def _moved(info) -> tuple[dict[str, float], float]:
    """How far each conv layer's weights and the classifier's beep row moved from the
    shipped model's (mean absolute change)."""
    start = read_model_file(find_default_model()).tensors
    moved = {k: float(np.abs(v - start[k]).mean()) for k, v in info.tensors.items()
             if k == "frontend.weight" or (k.startswith("body.") and v.ndim == 3)}
    beep_row = float(np.abs(info.tensors["classifier.weight"][0]
                            - start["classifier.weight"][0]).mean())
    return moved, beep_row


def test_one_machines_chunks_teach_its_pitch_and_timbre(tmp_path):
    data, model = tmp_path / "washer", tmp_path / "washer.safetensors"
    _one_machine(data)
    r = run_beepnet("train", str(data), "--init", "default", "--out", str(model),
                    "--epochs", "2", "--threads", "2")
    assert r.returncode == 0, r.stderr
    assert "the beep clips are one machine's (a tone at 20" in r.stdout, r.stdout
    assert "also checks the beep's pitch and timbre" in r.stdout, r.stdout
    assert "a tune" not in r.stdout, r.stdout  # its harmonics are not other notes
    assert "fine-tuning: the classifier at rate" in r.stderr + r.stdout
    info = read_model_file(model)
    assert "beep_min_notes" not in info.meta
    pitches = info.meta["beep_pitches_hz"]
    assert any(abs(f - PITCH) < 0.03 * PITCH for f in pitches), pitches
    assert info.meta["beep_timbre"] and all(t is not None for t in info.meta["beep_timbre"])
    assert info.threshold <= 0.7
    r = run_beepnet("model", "info", str(model))
    assert r.returncode == 0 and "beep pitches" in r.stdout and "beep timbre" in r.stdout

    # What the shipped model learnt from thousands of clips is kept: the layers before the
    # classifier moved far less than its beep output (0.2 as far; at one rate, 0.6-0.75).
    moved, beep_row = _moved(info)
    assert beep_row > 0 and max(moved.values()) < 0.45 * beep_row, (moved, beep_row)

    # New recordings: the machine's beep is heard; a pure tone at its pitch (a music note,
    # a TV jingle) is not, though the same net without the check takes it for a beep.
    rng = np.random.default_rng(99)
    quiet = synth.room(rng, 3.0)
    beep = synth.mix(quiet, _beeps(), 1.0, 15.0).astype(np.float32)
    note = synth.mix(quiet, _beeps(harmonics=(1.0,)), 1.0, 15.0).astype(np.float32)
    plain = tmp_path / "plain.safetensors"
    write_model_file(plain, info.tensors, info.arch, list(info.labels), info.threshold)
    checked, unchecked = BeepNetDetector(model), BeepNetDetector(plain)
    assert checked.score(beep).score >= checked.threshold
    assert unchecked.score(note).score >= unchecked.threshold, "the net alone rejects it"
    assert checked.score(note).score < checked.threshold


TUNE = (1200.0, 1500.0, 1800.0)


def _tune(notes=TUNE) -> np.ndarray:
    """A machine's end-of-cycle tune: 250-ms piezo notes, 0.35 s apart."""
    return synth._place([(0.35 * i, synth.beep(f, 0.25)) for i, f in enumerate(notes)], SR)


def test_a_tune_machines_chunks_teach_it_to_want_two_notes(tmp_path):
    data, model = tmp_path / "dryer", tmp_path / "dryer.safetensors"
    _one_machine(data, _tune(), seed=8)
    r = run_beepnet("train", str(data), "--init", "default", "--out", str(model),
                    "--epochs", "2", "--threads", "2")
    assert r.returncode == 0, r.stderr
    assert "(a tune: 2 of its notes a window)" in r.stdout, r.stdout
    info = read_model_file(model)
    assert info.meta["beep_min_notes"] == 2
    assert all(any(abs(f - g) < 0.03 * g for f in info.meta["beep_pitches_hz"]) for g in TUNE)
    # The daemon's detector: the tune passes the check, one of its notes alone does not
    # (it would with the one-note check of the same pitches and timbres).
    quiet = synth.room(np.random.default_rng(99), 3.0)
    tune = synth.mix(quiet, _tune(), 1.0, 15.0).astype(np.float32)
    note = synth.mix(quiet, _tune(TUNE[1:2]), 1.0, 15.0).astype(np.float32)
    one = tmp_path / "one-note.safetensors"
    write_model_file(one, info.tensors, info.arch, list(info.labels), info.threshold,
                     beep_pitches_hz=info.meta["beep_pitches_hz"],
                     beep_timbre=info.meta["beep_timbre"])
    checked, loose = BeepNetDetector(model), BeepNetDetector(one)
    assert checked.min_notes == 2 and loose.min_notes == 1
    assert checked._has_pitch(tune) and loose._has_pitch(note)
    assert not checked._has_pitch(note)


def test_a_set_of_many_machines_gets_no_pitch_check(tmp_path):
    data, model = tmp_path / "many", tmp_path / "many.safetensors"
    for i in range(60):
        label = "beep" if i < 30 else ["washer", "other", "speech"][i % 3]
        audio, info = make_clip(5, i, label)
        _write(data, label, f"{info.group}_{i:06d}", audio)
    r = run_beepnet("train", str(data), "--out", str(model), "--epochs", "1", "--threads", "2")
    assert r.returncode == 0, r.stderr
    assert "one machine's" not in r.stdout, r.stdout
    assert read_model_file(model).meta.get("beep_pitches_hz") in (None, [])


def test_features_share_one_trains_every_layer_at_one_rate(tmp_path):
    """`make model`'s rounds of mining start from its own first model with `--features-share
    1`, as the shipped weights were trained: the layers before the classifier move as the
    classifier does (0.6-0.75 as far as its beep row; at the default 0.3, 0.2)."""
    data, model = tmp_path / "washer", tmp_path / "washer.safetensors"
    _one_machine(data)
    r = run_beepnet("train", str(data), "--init", "default", "--out", str(model),
                    "--epochs", "2", "--threads", "2", "--features-share", "1")
    assert r.returncode == 0, r.stderr
    assert "fine-tuning: the classifier at rate" not in r.stderr + r.stdout
    moved, beep_row = _moved(read_model_file(model))
    assert beep_row > 0 and max(moved.values()) > 0.45 * beep_row, (moved, beep_row)


def test_features_share_is_checked(tmp_path):
    for args, says in ((("--init", "default", "--features-share", "2"), "between 0 and 1"),
                       (("--features-share", "0.5"), "only goes with --init")):
        r = run_beepnet("train", str(tmp_path), "--out", str(tmp_path / "m.safetensors"),
                        *args)
        assert r.returncode == 2 and says in r.stderr, r.stderr
        assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr
        assert not (tmp_path / "m.safetensors").exists()


def _cut_beeps(rng: np.random.Generator, n: int, timbres: tuple) -> list[np.ndarray]:
    """``n`` beep chunks that end 60 ms into the machine's first beep, under talk: the tone
    tracker hears a tone at the pitch with the beep's ``timbres`` cut by the window's end,
    too short for the pitch check (the daemon's next window holds the rest of the beep)."""
    tones = pitch_tracker((PITCH,), SR)
    out = []
    for _ in range(100 * n):  # about 1 in 30 is such a chunk
        x = synth.mix(synth.speech_like(rng, 3.0), _beeps(), 2.94, float(rng.uniform(0, 8)))
        x = synth.set_peak_dbfs(x, -12.0).astype(np.float32)
        if not has_pitch(tones, x, (PITCH,), timbres) and cut_by_edge(tones, x, (PITCH,),
                                                                       timbres):
            out.append(x)
            if len(out) == n:
                return out
    raise AssertionError(f"only {len(out)} of {n} chunks with a cut beep the check drops")


def test_beep_clips_cut_by_the_windows_edge_are_still_the_machines():
    """A labeller calls a chunk a beep when it ends as the beep starts; the pitch check
    cannot score so little of it, but the daemon's next window, 1.5 s later, holds the
    beep whole. Such chunks count for the one-machine rule; chunks with no tone at the
    pitch (mislabelled, or the beep drowned) do not."""
    rng = np.random.default_rng(21)
    whole = [synth.set_peak_dbfs(synth.mix(_background(rng, i), _beeps(),
                                           float(rng.uniform(0.1, 1.5)),
                                           float(rng.uniform(8, 20))), -12.0
                                 ).astype(np.float32) for i in range(34)]
    alone = machinebeep.learn(whole, SR)
    assert alone is not None and alone.kept == 1.0 and alone.cut == 0.0
    pitches, timbres = alone.pitches, alone.timbres
    assert len(pitches) == 1 and abs(pitches[0] - PITCH) < 0.03 * PITCH
    tones = pitch_tracker(pitches, SR)
    # Talk has harmonics near the pitch at the edges too: not with the beep's timbre.
    assert [cut_by_edge(tones, x, pitches) for x in whole].count(True) > 0
    assert not any(cut_by_edge(tones, x, pitches, timbres) for x in whole)

    cut = _cut_beeps(rng, 6, timbres)
    assert not any(cut_by_edge(tones, x, (PITCH * 1.1,)) for x in cut)  # another pitch
    beep = machinebeep.learn(whole + cut, SR)
    assert beep is not None and beep.pitches == pitches
    assert beep.kept == pytest.approx(34 / 40) and beep.cut == pytest.approx(6 / 40)
    assert "in 85% of them, cut by the window's edge in 15% more" in beep.describe()

    # The same 6 chunks without the beep: 85 % is not one machine's.
    unheard = [synth.set_peak_dbfs(synth.speech_like(rng, 3.0), -12.0).astype(np.float32)
               for _ in range(6)]
    assert machinebeep.learn(whole + unheard, SR) is None


def test_a_tone_through_the_whole_window_is_not_cut_by_its_edge():
    """A whine at the pitch reaches both edges: it is no beep the next window completes."""
    whine = synth.set_peak_dbfs(synth.beep(PITCH, 3.0), -12.0).astype(np.float32)
    tones = pitch_tracker((PITCH,), SR)
    assert [r.whole_window for r in tones.runs(whine)] == [True]
    assert not cut_by_edge(tones, whine, (PITCH,))
