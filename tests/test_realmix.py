"""Real recordings in training: the generator's real preset, and the threshold set on real
negatives (beepnet.training.realmix, beepnet.training.calibrate), on a small library of
sounds this test writes (no package is fetched here)."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from beepnet.model.modelfile import read_header, read_model_file, write_model_file
from beepnet.model.preflight import find_default_model
from beepnet.training import calibrate, dataset, realmix
from beepnet.training.realsounds import Library
from reallib import SR, make_library


@pytest.fixture(scope="module")
def library(tmp_path_factory) -> Path:
    return make_library(tmp_path_factory.mktemp("real"))


def test_real_preset_mixes_real_backgrounds_and_beeps(library, tmp_path):
    manifest = dataset.generate(tmp_path / "set", 120, seed=3, preset="real", real=library,
                                workers=1)
    rows = list(csv.DictReader(open(manifest)))
    backgrounds = {r["background"] for r in rows}
    assert {"real-speech", "real-kitchen"} <= backgrounds
    assert backgrounds & {"real-music", "real-tv"}
    assert any(b in backgrounds for b in ("wash", "drain", "spin", "fan", "room"))
    real_beeps = [r for r in rows if r["foreground"].startswith("real-")]
    assert real_beeps, "no beep pattern from the real pool"
    for r in real_beeps:
        assert r["label"] == "beep"
        assert 0.0 <= float(r["beep_start"]) < float(r["beep_end"]) <= 3.0
        x, sr = sf.read(tmp_path / "set" / r["file"])
        assert sr == SR and len(x) == 3 * SR and np.abs(x).max() > 0
    # only real backgrounds that belong to the clip's class
    for r in rows:
        if r["background"].startswith("real-") and r["label"] != "beep" and \
                r["label"] != "tonal":
            assert dataset._BG_CLASS[r["background"]] == r["label"]


def test_real_preset_needs_its_folder_and_leaves_other_presets_alone(library, tmp_path):
    with pytest.raises(ValueError, match="real preset"):
        dataset.generate(tmp_path / "a", 10, preset="real", workers=1)
    with pytest.raises(ValueError, match="real preset"):
        dataset.generate(tmp_path / "b", 10, preset="train", real=library, workers=1)
    a, _ = dataset.make_clip(5, 7, "speech", "train")
    b, _ = dataset.make_clip(5, 7, "speech", "train", real=None)
    assert np.array_equal(a, b)


def test_calibration_split_is_by_file_and_stable(library):
    fit = realmix.RealPool(library, "train", "fit")
    calib = realmix.RealPool(library, "train", "calib")
    both = realmix.RealPool(library, "train", None)
    for kind in ("speech", "kitchen"):
        assert not set(fit.backgrounds[kind]) & set(calib.backgrounds[kind])
        assert set(fit.backgrounds[kind]) | set(calib.backgrounds[kind]) == \
            set(both.backgrounds[kind])
    members = [f"usr/share/x/{i}.wav" for i in range(2000)]
    share = sum(realmix.part_of(m) == "calib" for m in members) / len(members)
    assert 0.07 < share < 0.13
    assert [realmix.part_of(m) for m in members] == [realmix.part_of(m) for m in members]


def test_beep_patterns_from_notes_have_their_times(library):
    pool = realmix.RealPool(library, "train", None)
    kinds = set()
    for i in range(60):
        x, times, kind = pool.beeps(np.random.default_rng(i))
        kinds.add(kind)
        assert len(x) <= 3 * SR and np.abs(x).max() > 0.01
        assert all(0 <= s < e <= 3.0 for s, e in times)
        # the loudest part lies inside the first..last sounding time
        peak = np.argmax(np.abs(x)) / SR
        assert times[0][0] - 0.01 <= peak <= times[-1][1] + 0.01
    assert {"real-chime", "real-melody", "real-piezo", "real-single"} <= kinds


def test_count_events_merges_runs_like_the_event_tracker():
    s = np.array([0.1, 0.9, 0.95, 0.2, 0.8, np.nan, 0.8, 0.8, 0.1])
    assert calibrate.count_events(s, 0.5) == 3
    assert calibrate.count_events(s, 0.85) == 1
    assert calibrate.count_events(s, 0.99) == 0
    assert calibrate.count_events(np.array([0.9]), 0.5) == 1


def test_pick_finds_the_lowest_threshold_within_the_rate():
    rng = np.random.default_rng(0)
    scores = {"speech": rng.uniform(0, 1, 2400) ** 20, "music": rng.uniform(0, 0.5, 2400)}
    hours = 4800 * 1.5 / 3600
    t, rate, by_kind = calibrate.pick(scores, fa_per_hour=5.0)
    assert rate <= 5.0
    assert sum(calibrate.count_events(s, t) for s in scores.values()) / hours == rate
    # the next score below the threshold breaks the rate
    below = max(v for v in scores["speech"] if v < t)
    assert sum(calibrate.count_events(s, below) for s in scores.values()) / hours > 5.0
    assert by_kind["music"] == 0.0


def test_calibrate_writes_the_threshold_into_the_model_file(library, tmp_path):
    model = tmp_path / "m.safetensors"
    mf = read_model_file(find_default_model())
    cpu = "Some CPU (x86_64), torch 2.13.0+cpu, AVX2 kernels"
    write_model_file(model, mf.tensors, mf.arch, mf.labels, mf.threshold,
                     metrics=mf.meta["metrics"], data_sha256=mf.meta["data_sha256"],
                     trained_on=cpu)
    before = read_header(model)
    cal = calibrate.calibrate(model, library, fa_per_hour=3.0, minutes_per_kind=1.0,
                              n_beeps=20)
    after = read_header(model)
    assert after.threshold == pytest.approx(cal.threshold)
    # within the rate, unless even the highest threshold allowed (0.99) cannot get there
    assert cal.fa_per_hour <= 3.0 or cal.threshold == 0.99
    assert 0.05 <= cal.threshold <= 0.99
    meta = after.meta["metrics"]
    assert meta["calibration"]["fa_per_hour_target"] == 3.0
    assert meta["threshold_rule"].startswith("<= 3 false alarms/hour")
    assert before.meta["data_sha256"] == after.meta["data_sha256"]
    assert after.meta["trained_on"] == cpu  # what `make model`'s rebuild check reads
    assert "threshold" in cal.summary()
    # the library is read, not changed
    assert Library(library).sounds("train", "speech")
