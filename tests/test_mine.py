"""Hard-negative mining (beepnet.training.mine): the windows a model scores highest on real
training audio become negatives of their kind in a training folder, one take per piece."""

from __future__ import annotations

import csv
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from beepnet.model.preflight import find_default_model
from beepnet.training import dataset, mine, train
from procs import REPO
from reallib import SR, make_library


def test_pick_takes_the_highest_windows_within_its_limits():
    # hop 0.5 s, 30-s pieces: 60 windows a piece, a 3-s window spans 6 of them
    music = np.zeros(240)
    music[[10, 11, 12, 30, 70, 100, 130, 170, 200, 230]] = \
        [0.99, 0.98, 0.97, 0.9, 0.8, 0.7, 0.6, 0.5, 0.45, 0.4]
    music[57] = 1.0  # straddles two pieces: a splice, never taken
    speech = np.zeros(240)
    speech[[5, 50]] = [0.3, 0.01]
    chosen = mine.pick({"music": music, "speech": speech}, keep=10, min_score=0.05,
                       hop_s=0.5, piece_s=30.0)
    by_kind = {k: sorted(m.start for m in chosen if m.kind == k) for k in ("music", "speech")}
    # at most 40 % from one kind: the four best music windows that are 1.5 s apart
    assert by_kind["music"] == [10, 30, 70, 100]
    assert by_kind["speech"] == [5]  # 0.01 is below min_score
    assert [m.score for m in chosen] == sorted((m.score for m in chosen), reverse=True)
    assert {(m.kind, m.start // 60) for m in chosen} == {(m.kind, m.piece) for m in chosen}
    assert len(mine.pick({"music": music}, keep=2, min_score=0.0, hop_s=0.5,
                         piece_s=30.0)) == 1  # 40 % of 2


@pytest.fixture(scope="module")
def library(tmp_path_factory) -> Path:
    return make_library(tmp_path_factory.mktemp("real"))


def _mine(*args: str) -> subprocess.CompletedProcess:
    # A process of its own, as users run it: torch stays out of this test worker.
    return subprocess.run([sys.executable, "-m", "beepnet.training.mine", *args],
                          capture_output=True, text=True, cwd=REPO)


def test_mine_adds_negatives_that_training_reads_as_one_take_a_piece(library, tmp_path):
    data = tmp_path / "set"
    dataset.generate(data, 80, seed=3, preset="real", real=library, workers=1)
    before = list(csv.DictReader(open(data / "manifest.csv")))
    r = _mine(str(find_default_model()), str(data), "--real", str(library), "--minutes", "1",
              "--keep", "40", "--min-score", "0")
    assert r.returncode == 0, r.stderr
    rows = list(csv.DictReader(open(data / "manifest.csv")))
    assert rows[:len(before)] == before  # the generated clips' rows are untouched
    added = rows[len(before):]
    assert 0 < len(added) <= 40
    assert f"added {len(added)} hard negative(s)" in r.stdout
    scores = [float(a["foreground"].removeprefix("p=")) for a in added]
    assert scores == sorted(scores, reverse=True)  # the hardest first
    for a in added:
        kind = a["background"].removeprefix("mined-")
        assert a["label"] == mine.LABEL_OF[kind]
        x, sr = sf.read(data / a["file"])
        assert sr == SR and len(x) == 3 * SR
        assert np.abs(x).max() > 0  # the gate would have dropped a silent window
    df, clips = train.scan(data)
    assert len(df) == len(rows)
    mined = df[df.rel.isin([a["file"] for a in added])]
    # windows of one 30-s piece are one take, so they stay on one side of the split
    groups = {a["file"]: a["group"] for a in added}
    assert (mined.session == mined.rel.map(groups)).all()

    # A second round (make model mines twice) gets names of its own; the first round's
    # again is refused instead of overwriting it.
    again = _mine(str(find_default_model()), str(data), "--real", str(library), "--minutes",
                  "1", "--keep", "40", "--min-score", "0")
    assert again.returncode == 2 and "next --round" in again.stderr, again.stderr
    assert len(again.stderr.strip().splitlines()) == 1
    assert len(list(csv.DictReader(open(data / "manifest.csv")))) == len(rows)
    second = _mine(str(find_default_model()), str(data), "--real", str(library), "--minutes",
                   "1", "--keep", "40", "--min-score", "0", "--seed", "12", "--round", "2")
    assert second.returncode == 0, second.stderr
    more = list(csv.DictReader(open(data / "manifest.csv")))[len(rows):]
    assert more and not {m["file"] for m in more} & {a["file"] for a in added}
    assert all(m["group"].startswith("s91g") for m in more)
    assert all(a["group"].startswith("s90g") for a in added)


def test_mine_command_with_a_bad_model_is_one_line(library, tmp_path):
    data = tmp_path / "set"
    data.mkdir()
    shutil.copy(REPO / "README.md", tmp_path / "bad.safetensors")
    r = _mine(str(tmp_path / "bad.safetensors"), str(data), "--real", str(library))
    assert r.returncode == 2
    assert "Traceback" not in r.stderr
    assert r.stderr.startswith("beepnet: ") and len(r.stderr.strip().splitlines()) == 1, r.stderr
