"""`beepnet train` with any file names (issue 14, item 6): the takes behind the split.

Chunks come from the real recorder (`beepnet record --source FILE`), whose 3-s windows
every 1.5 s overlap, and are then sorted and renamed by hand as people do
(``beep/beep_000.wav``, ``other/other_000.wav``): no session is left in the names, so the
takes must be found from the audio itself, else from file times, else file by file.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from procs import run_beepnet

from beepnet.training.takes import find_takes, named_session
from beepnet.training.train import TrainError, scan, session_of, split

SR = 16000
REPO = Path(__file__).resolve().parents[1]
TAKE_S, GAP_S = 12.0, 6.0  # a gap longer than a chunk: no window holds two takes
BEEPS_AT = (1.0, 4.0, 7.0, 10.0)  # every 3-s window of a beep take holds a whole beep
BEEP_S = 0.4


def _take_audio(rng: np.random.Generator, with_beeps: bool) -> np.ndarray:
    """12 s of a noisy machine (well above the recorder's gate), beeping or not."""
    n = int(TAKE_S * SR)
    noise = np.convolve(rng.normal(0, 0.05, n), np.ones(4) / 4, mode="same")
    t = np.arange(n) / SR
    x = noise * (1 + 0.5 * np.sin(2 * np.pi * 0.7 * t)) + 0.02 * np.sin(2 * np.pi * 100 * t)
    if with_beeps:
        f = rng.uniform(2500, 3500)
        tone = 0.25 * np.sin(2 * np.pi * f * np.arange(int(BEEP_S * SR)) / SR)
        for at in BEEPS_AT:
            x[int(at * SR):int(at * SR) + len(tone)] += tone
    return x.astype(np.float32)


def _recorded_then_renamed(tmp: Path, beep_takes: int, other_takes: int, seed: int = 1
                           ) -> tuple[Path, dict[str, int]]:
    """Record takes (separated by silence) with `beepnet record`, then sort the chunks
    into beep/ and other/ under names without sessions, in shuffled order, all with one
    file time (as a copy leaves them). Returns the data folder and each file's take."""
    rng = np.random.default_rng(seed)
    kinds = [True] * beep_takes + [False] * other_takes
    parts = []
    for with_beeps in kinds:
        parts += [_take_audio(rng, with_beeps), np.zeros(int(GAP_S * SR), np.float32)]
    src = tmp / "takes.wav"
    sf.write(src, np.concatenate(parts), SR, subtype="PCM_16")
    rec = tmp / "rec"
    r = run_beepnet("record", "--source", str(src), "--speed", "50", "--out", str(rec),
                    timeout=60)
    assert r.returncode == 0, r.stderr
    chunks = sorted(rec.glob("*.wav"))
    assert chunks and all(named_session(c.stem) for c in chunks)
    data = tmp / "data"
    (data / "beep").mkdir(parents=True)
    (data / "other").mkdir()
    truth: dict[str, int] = {}
    period = TAKE_S + GAP_S
    counts = {"beep": 0, "other": 0}
    for c in rng.permutation(chunks):
        start = int(c.stem.split("_")[1]) / SR
        take = int((start + 3.0) // period)  # a chunk starts at most 1.5 s before its take
        local = start - take * period
        beep = kinds[take] and any(local <= at and at + BEEP_S <= local + 3.0
                                   for at in BEEPS_AT)
        label = "beep" if beep else "other"
        dest = data / label / f"{label}_{counts[label]:03d}.wav"
        counts[label] += 1
        shutil.copy(c, dest)
        os.utime(dest, (1_700_000_000, 1_700_000_000))
        truth[f"{label}/{dest.name}"] = take
    return data, truth


def _env(tmp: Path) -> dict:
    e = {k: v for k, v in os.environ.items()
         if k not in ("BEEPNET_CONFIG", "XDG_CONFIG_HOME", "XDG_DATA_HOME")}
    e["HOME"] = str(tmp / "home")
    e["OMP_NUM_THREADS"] = "1"
    os.makedirs(e["HOME"], exist_ok=True)
    return e


def _train(tmp: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "beepnet", "train", *args, "--threads", "1"],
                          capture_output=True, text=True, timeout=240, cwd=REPO,
                          env=_env(tmp), check=False)


def test_known_name_schemes_are_sessions_and_others_are_not():
    assert named_session("20261121-073138_0000024000") == "20261121-073138"
    assert named_session("s0g00012_000061") == "s0g00012"
    for stem in ("beep_000", "beep", "other_012", "kitchen-2026_1", "s0g12"):
        assert named_session(stem) is None, stem
    # `beepnet label` still orders clips by the name before the last "_".
    assert session_of("beep_003") == "beep"


def test_renamed_recorder_chunks_are_grouped_by_shared_audio(tmp_path):
    data, truth = _recorded_then_renamed(tmp_path, beep_takes=3, other_takes=3)
    df, _ = scan(data)
    assert df.attrs["grouping"] == f"grouped {len(df)} clips into 6 takes by shared audio"
    take = df.rel.map(truth)
    # Every found take is one recorded take, and no recorded take is cut in two.
    assert (df.groupby("session").apply(lambda g: take[g.index].nunique()) == 1).all()
    assert df.session.nunique() == take.nunique() == 6
    for seed in range(3):
        tr, va = split(df, seed)
        assert not set(take.iloc[tr]) & set(take.iloc[va]), seed
        assert (df.label.iloc[va] == "beep").any() and (df.label.iloc[tr] == "beep").any()


def test_beeps_from_one_take_are_refused_with_a_reason(tmp_path):
    data, _ = _recorded_then_renamed(tmp_path, beep_takes=2, other_takes=1)
    # Keep only the first take's beeps: 9 overlapping chunks are not 9 examples.
    df, _ = scan(data)
    one = df[df.label == "beep"].session.iloc[0]
    for rel in df.rel[(df.label == "beep") & (df.session != one)]:
        (data / rel).unlink()
    # Pad with copies' worth of other beeps from the same take so that the count rule
    # passes and only the take rule can refuse.
    kept = sorted((data / "beep").glob("*.wav"))
    for i, f in enumerate(kept * 2):
        shutil.copy(f, data / "beep" / f"extra_{i:03d}.wav")
    df, _ = scan(data)
    assert df.session[df.label == "beep"].nunique() == 1
    with pytest.raises(TrainError, match="come from one take .*shared audio.*record the beep"):
        split(df, 0)


def test_file_times_group_clips_without_shared_audio_else_each_file_alone():
    rng = np.random.default_rng(3)
    clips = (rng.normal(0, 3000, (12, 3 * SR))).astype(np.int16)  # no two share samples
    stems = [f"beep_{i:03d}" for i in range(6)] + [f"other_{i:03d}" for i in range(6)]
    is_beep = np.array([True] * 6 + [False] * 6)
    # Three sittings an hour apart, a few seconds between files within each.
    mtimes = np.array([3600.0 * (i % 3) + 2 * i for i in range(12)])
    t = find_takes(stems, clips, mtimes, is_beep)
    assert t.count == 3 and "by file times" in t.how, t
    assert len({t.ids[i] for i in range(12) if i % 3 == 0}) == 1
    # Copied in one go: the times say nothing, every file is its own take.
    t = find_takes(stems, clips, np.full(12, 1e9), is_beep)
    assert t.count == 12 and t.how.endswith("split by file (12 clips)"), t
    # Recorder and generator names are trusted as they are.
    named = [f"20261121-07313{i % 2}_{i * 24000:010d}" for i in range(12)]
    t = find_takes(named, clips, np.full(12, 1e9), is_beep)
    assert t.count == 2 and "named in the file names" in t.how


def test_train_on_hand_named_files_says_how_it_grouped(tmp_path):
    data, _ = _recorded_then_renamed(tmp_path, beep_takes=3, other_takes=3, seed=2)
    model = tmp_path / "m.safetensors"
    r = _train(tmp_path, str(data), "--out", str(model), "--epochs", "1")
    assert r.returncode == 0, r.stderr
    assert "into 6 takes by shared audio" in r.stderr, r.stderr
    assert model.is_file() and "saved" in r.stdout


def test_too_few_beeps_after_grouping_is_one_clear_line(tmp_path):
    rng = np.random.default_rng(5)
    data = tmp_path / "data"
    for label, n in (("beep", 4), ("other", 20)):
        (data / label).mkdir(parents=True)
        for i in range(n):
            sf.write(data / label / f"{label}_{i:03d}.wav",
                     rng.normal(0, 0.1, 3 * SR).astype(np.float32), SR)
    r = _train(tmp_path, str(data), "--out", str(tmp_path / "m.safetensors"), "--epochs", "1")
    assert r.returncode == 1, r.stderr
    line = r.stderr.strip().splitlines()[-1]
    assert "4 usable beep clip(s)" in line and "at least 10" in line, r.stderr
    assert "Traceback" not in r.stderr and not (tmp_path / "m.safetensors").exists()
