"""Never worse (issue 14, item 5): a new model is scored beside the detector in use on the
same held-out clips, and a worse one does not replace it without --force.

beepnet.model.compare is runtime code (`beepnet enroll` uses it on a Raspberry Pi), so its
own checks run in a fresh interpreter that must not import torch, pandas or scikit-learn.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from beepnet.config import DetectorConfig
from beepnet.model.compare import Score, is_worse, side_by_side
from beepnet.model.preflight import in_use_path
from beepnet.model.modelfile import read_header
from beepnet.model.preflight import find_default_model

REPO = Path(__file__).resolve().parents[1]

SCORE_WITHOUT_TORCH = r"""
import json, sys
import numpy as np
from beepnet.config import DetectorConfig
from beepnet.model import compare
from beepnet.detectors.beepnet import BeepNetDetector
from beepnet.model.preflight import find_default_model

SR = 16000
rng = np.random.default_rng(0)
clips, is_beep = [], []
for i in range(8):
    x = rng.normal(0, 0.01, 3 * SR).astype(np.float32)
    if i % 2 == 0:  # a clean 0.5-s beep, 25 dB above the hiss
        t = np.arange(SR // 2) / SR
        x[SR:SR + SR // 2] += 0.2 * np.sin(2 * np.pi * (2600 + 100 * i) * t)
    clips.append(x)
    is_beep.append(i % 2 == 0)
tone = compare.score_detector(compare.load_in_use(DetectorConfig(kind="tone")), clips,
                              is_beep, "in use")
shipped = compare.score_detector(compare.load_in_use(DetectorConfig()), clips, is_beep, "in use")
by_file = compare.score_model(find_default_model(), clips, is_beep, "new")
strict = compare.score_model(find_default_model(), clips, is_beep, "new", threshold=0.999999)
det = BeepNetDetector(find_default_model())
hits = [det.score(c).score >= det.threshold for c in clips]
by_hand = [sum(h and b for h, b in zip(hits, is_beep)),
           sum(h and not b for h, b in zip(hits, is_beep))]
heavy = sorted({"torch", "pandas", "sklearn"} & set(sys.modules))
print(json.dumps({"tone": tone.__dict__, "shipped": shipped.__dict__,
                  "by_file": by_file.__dict__, "by_hand": by_hand, "threshold": det.threshold,
                  "strict": strict.__dict__,
                  "heavy": heavy, "table": compare.side_by_side(by_file, tone)}))
"""


def test_scores_through_the_runtime_detectors_without_torch():
    r = subprocess.run([sys.executable, "-c", SCORE_WITHOUT_TORCH], capture_output=True,
                       text=True, timeout=120, cwd=REPO, check=False)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["heavy"] == [], out["heavy"]
    # The tone detector hears every clean beep and nothing in plain hiss.
    tone = out["tone"]
    assert (tone["beeps"], tone["caught"], tone["negatives"], tone["false_positives"]) \
        == (4, 4, 4, 0), tone
    assert tone["model"] == "tone detector"
    # The model in use by default is the shipped file, at its own threshold, and its
    # figures are what its detector says clip by clip.
    shipped, by_file = out["shipped"], out["by_file"]
    assert shipped["model"] == by_file["model"] == find_default_model().name
    assert shipped["threshold"] == by_file["threshold"] == pytest.approx(out["threshold"])
    assert [by_file["caught"], by_file["false_positives"]] == out["by_hand"]
    assert [shipped["caught"], shipped["false_positives"]] == out["by_hand"]
    # A config's detector.threshold replaces the model's own, as in the daemon.
    assert out["strict"]["threshold"] == 0.999999
    assert out["strict"]["caught"] <= by_file["caught"]
    lines = out["table"].splitlines()
    assert lines[0].startswith("held-out clips: 4 beep(s), 4 other(s)")
    assert lines[2].startswith("new") and lines[3].startswith("in use")
    assert "tone detector" in lines[3] and find_default_model().name in lines[2]


def _score(name: str, caught: int, fps: int, beeps: int = 10, negatives: int = 200) -> Score:
    return Score(name=name, model=f"{name}.safetensors", threshold=0.5, beeps=beeps,
                 caught=caught, negatives=negatives, false_positives=fps)


def test_worse_means_more_mistakes_and_the_table_lines_up():
    cur = _score("in use", caught=9, fps=2)  # 3 errors
    assert cur.errors == 3 and cur.recall == pytest.approx(0.9)
    assert cur.fa_per_hour == pytest.approx(2 / (200 * 1.5 / 3600))
    assert is_worse(_score("new", caught=8, fps=2), cur)
    assert not is_worse(_score("new", caught=10, fps=3), cur)  # a tie
    assert not is_worse(_score("new", caught=10, fps=0), cur)
    with pytest.raises(ValueError, match="same clips"):
        is_worse(_score("new", 5, 0, beeps=5), cur)
    lines = side_by_side(_score("new", caught=10, fps=12), cur).splitlines()
    assert len(lines) == 4
    head, new, old = lines[1:]
    assert new.split()[:2] == ["new", "new.safetensors"]
    assert "10 of 10" in new and "12 of 200" in new and "9 of 10" in old
    # Right-aligned numbers: each column ends where its heading ends.
    for heading, cell_new, cell_old in (("errors", "12", "3"), ("recall", "1.000", "0.900")):
        end = head.index(heading) + len(heading)
        assert new[:end].endswith(cell_new) and old[:end].endswith(cell_old), lines


def test_the_model_in_use_follows_the_config(tmp_path):
    assert in_use_path(DetectorConfig()) == find_default_model()
    assert in_use_path(DetectorConfig(model=str(tmp_path / "m.safetensors"))) \
        == tmp_path / "m.safetensors"
    assert in_use_path(DetectorConfig(kind="tone")) is None


def _beepnet(tmp: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items()
           if k not in ("BEEPNET_CONFIG", "XDG_CONFIG_HOME", "XDG_DATA_HOME")}
    env["HOME"] = str(tmp / "home")  # no user config: the shipped model is in use
    env["OMP_NUM_THREADS"] = "1"
    os.makedirs(env["HOME"], exist_ok=True)
    return subprocess.run([sys.executable, "-m", "beepnet", *args], capture_output=True,
                          text=True, timeout=240, cwd=REPO, env=env, check=False)


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _row(stdout: str, name: str) -> list[str]:
    rows = [ln for ln in stdout.splitlines() if ln.startswith(name)]
    assert len(rows) == 1, stdout
    return rows[0].split()


def _errors(stdout: str, name: str) -> int:
    """The errors cell of a table row (numbers are right-aligned under their heading)."""
    lines = stdout.splitlines()
    head = next(ln for ln in lines if "errors" in ln and "threshold" in ln)
    row = next(ln for ln in lines if ln.startswith(name + " "))
    return int(row[:head.index("errors") + len("errors")].split()[-1])


def test_a_worse_model_does_not_replace_the_one_in_use_unless_forced(tmp_path):
    data = tmp_path / "user"
    r = _beepnet(tmp_path, "synth", str(data), "--preset", "user", "--n", "200", "--seed", "3")
    assert r.returncode == 0, r.stderr
    shipped = _sha(find_default_model())

    # A fresh path is written whatever the comparison says, but the comparison is shown:
    # here against the shipped model, in use with the default config.
    good = tmp_path / "models" / "washer.safetensors"
    r = _beepnet(tmp_path, "train", str(data), "--out", str(good), "--epochs", "4",
                 "--threads", "1")
    assert r.returncode == 0, r.stderr
    assert "held-out clips:" in r.stdout and "saved" in r.stdout, r.stdout
    assert _row(r.stdout, "new")[1] == good.name
    assert _row(r.stdout, "in use")[2] == find_default_model().name
    assert good.is_file() and _sha(find_default_model()) == shipped
    good_sha = _sha(good)

    # With it in use, one epoch at a learning rate too small to learn anything makes a
    # model that is worse on the same held-out clips: it goes beside it, not over it.
    in_use = ("--set", f"detector.model={good}")
    worse = ("train", str(data), "--out", str(good), "--epochs", "1", "--lr", "1e-7",
             "--threads", "1", *in_use)
    r = _beepnet(tmp_path, *worse)
    assert r.returncode == 3, (r.stdout, r.stderr)
    assert _errors(r.stdout, "new") > _errors(r.stdout, "in use"), r.stdout
    rejected = good.with_name("washer.rejected.safetensors")
    assert _sha(good) == good_sha and rejected.is_file()
    assert read_header(rejected).labels == read_header(good).labels
    last = r.stderr.strip().splitlines()[-1]
    assert "makes more mistakes" in last and str(rejected) in last and "--force" in last
    assert "Traceback" not in r.stderr

    r = _beepnet(tmp_path, *worse, "--force")
    assert r.returncode == 0, r.stderr
    assert "written because of --force" in r.stdout, r.stdout
    assert _sha(good) != good_sha
    assert read_header(good).threshold == read_header(rejected).threshold  # the same model
    assert sorted(p.name for p in good.parent.iterdir()) == [rejected.name, good.name]
    assert _sha(find_default_model()) == shipped
