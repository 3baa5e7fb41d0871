"""Retraining from the owner's corrections (issue 15): `beepnet train --feedback` as a user
runs it, the never-worse check with real model files, and how corrections are split and
weighted. The bot's /retrain is in test_bot.py."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from beepnet.config import DetectorConfig
from beepnet.model.modelfile import read_header, read_model_file, write_model_file
from beepnet.model.preflight import find_default_model
from beepnet.notify.feedback import RETRAIN_REPORT, summary
from beepnet.training import corrections
from beepnet.training.train import _save_unless_worse, rejected_path
from signals import appliance_feedback, appliance_window, labelled_set, make_feedback

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.fixture(scope="module")
def replay(tmp_path_factory) -> Path:
    """A small generated set: what DATA_DIR / retrain.data_dir would hold."""
    return labelled_set(tmp_path_factory.mktemp("replay"))


def beepnet(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "beepnet", *args], cwd=cwd, text=True,
                          capture_output=True, timeout=300, env={"PATH": "/usr/bin:/bin",
                                                                 "HOME": str(cwd)})


def test_train_feedback_learns_the_corrections_and_puts_the_model_in_use(tmp_path, replay):
    storage = tmp_path / "store"
    make_feedback(storage / "feedback", replay)
    cfg = tmp_path / "beepnet.toml"
    cfg.write_text(f'# mine\n[storage]\ndir = "{storage}"\n\n[retrain]\n'
                   f'data_dir = "{replay}"\nepochs = 2\n')
    r = beepnet("train", "--feedback", "--config", str(cfg), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr
    assert "corrections in" in r.stdout and "beep 12 windows of 3 alerts" in r.stdout
    # Both comparisons, side by side; one held-out alert of each label is the owner's.
    assert "your held-out alerts: 4 beep(s), 4 other(s)" in r.stdout, r.stdout
    assert "held-out other clips:" in r.stdout
    (model,) = (storage / "models").glob("retrained-*.safetensors")
    assert f'detector.model = "{model}"' in r.stdout
    text = cfg.read_text()
    assert text.startswith("# mine") and f'model = "{model}"' in text  # comments kept
    # The start model's threshold; the corrections' own class beside the shipped ones.
    shipped = read_header(find_default_model())
    mf = read_model_file(model)
    assert mf.threshold == pytest.approx(shipped.threshold)
    assert set(mf.labels) == set(shipped.labels) | {"not_beep"}
    assert mf.meta["metrics"]["corrections"]["windows"] == 28
    assert mf.meta["metrics"]["corrections"]["held_out_alerts"] == 2
    report = json.loads((storage / "feedback" / RETRAIN_REPORT).read_text())
    assert report["status"] == "in use" and report["model"] == str(model)
    assert [c["title"] for c in report["comparisons"]] == ["your held-out alerts",
                                                          "held-out other clips"]
    assert report["comparisons"][0]["new"]["beeps"] == 4
    # Nothing of /missed's unlabelled folder was taken for a label.
    assert "unsure" not in mf.labels


def test_train_feedback_bad_input_is_one_line(tmp_path, replay):
    cfg = tmp_path / "beepnet.toml"
    cfg.write_text(f'[storage]\ndir = "{tmp_path / "empty"}"\n')
    r = beepnet("train", "--feedback", "--config", str(cfg), cwd=tmp_path)
    assert r.returncode == 1
    assert r.stderr.startswith("beepnet: train: no corrections in ") and \
        len(r.stderr.strip().splitlines()) == 1, r.stderr
    r = beepnet("train", "--feedback", "--init", "default", "--config", str(cfg), cwd=tmp_path)
    assert r.returncode == 2 and "takes no --init" in r.stderr
    r = beepnet("train", "--config", str(cfg), cwd=tmp_path)
    assert r.returncode == 2 and "give DATA_DIR and --out MODEL" in r.stderr


def test_a_worse_model_is_never_put_in_use(tmp_path, replay):
    """Real model files: the shipped model, and a copy that can no longer say beep."""
    mf = read_model_file(find_default_model())
    tensors = dict(mf.tensors)
    bias = tensors["classifier.bias"].copy()
    bias[mf.labels.index("beep")] = -40.0
    tensors["classifier.bias"] = bias

    def write(path: Path) -> None:
        write_model_file(path, tensors, mf.arch, list(mf.labels), mf.threshold)

    beeps = np.stack([(sf.read(f, dtype="float32")[0] * 32767).astype(np.int16)
                      for f in sorted((replay / "beep").glob("*.wav"))[:12]])
    others = np.stack([(sf.read(f, dtype="float32")[0] * 32767).astype(np.int16)
                       for f in sorted((replay / "washer").glob("*.wav"))[:12]])
    clips = np.concatenate([beeps, others])
    is_beep = np.r_[np.ones(12, bool), np.zeros(12, bool)]
    out = tmp_path / "retrained.safetensors"
    sets = [("your held-out alerts", clips, is_beep, 0)]
    dest, scores, _ = _save_unless_worse(write, out, sets, DetectorConfig(), force=False,
                                         always_guard=True)
    assert dest == rejected_path(out) and dest.is_file() and not out.exists()
    (c,) = scores
    assert c.worse and c.new.caught == 0 and c.current.caught > 0
    # Within a tolerance as large as the difference, it is not worse.
    sets = [("held-out other clips", clips, is_beep, c.new.errors - c.current.errors)]
    dest, scores, _ = _save_unless_worse(write, out, sets, DetectorConfig(), force=False,
                                         always_guard=True)
    assert dest == out and not scores[0].worse
    out.unlink()
    # --force puts it in use anyway.
    dest, _, _ = _save_unless_worse(write, out, [("x", clips, is_beep, 0)], DetectorConfig(),
                                    force=True, always_guard=True)
    assert dest == out and out.is_file()


def test_owner_split_holds_out_whole_alerts_per_label():
    alerts = np.array(["a"] * 4 + ["b"] * 4 + ["c"] * 4 + ["d"] * 4 + ["e"] * 3 + ["f"] * 2)
    labels = np.array(["beep"] * 8 + ["not_beep"] * 11 + ["other"] * 2)
    tr, va = corrections.owner_split(alerts, labels, seed=0)
    assert sorted(np.r_[tr, va].tolist()) == list(range(len(alerts)))
    held = set(alerts[va].tolist())
    assert not held & set(alerts[tr].tolist())           # an alert never on both sides
    assert len(held & {"a", "b"}) == 1                    # one of the two beep alerts
    assert len(held & {"c", "d", "e"}) == 1               # about a quarter of three
    assert "f" not in held                                # a lone alert stays in training


def test_corrections_repeat_to_a_share_of_the_epoch_and_counts_come_from_names(tmp_path):
    assert corrections.repeats(0, 1000) == 0
    assert corrections.repeats(100, 300) == 1
    assert corrections.repeats(30, 1200) == 14            # 0.25 / 0.75 * 1200 / 30
    assert corrections.repeats(2, 1200) == corrections.MAX_REPEAT
    for name in ("20261205-100000_0000000000", "20261205-100000_0000024000",
                 "20261205-110000_0000000000"):
        (tmp_path / "not_beep").mkdir(exist_ok=True)
        (tmp_path / "not_beep" / f"{name}.wav").write_bytes(b"")
    (tmp_path / "unsure" / "x").mkdir(parents=True)
    (tmp_path / "unsure" / "loose.wav").write_bytes(b"")
    assert summary(tmp_path) == {"not_beep": (3, 2)}


def test_where_the_config_is_not_ours_the_model_is_put_in_use_through_the_state_folder(replay):
    """The service's /retrain: its config file is root's and read-only to it, its state folder
    its own. As root, the command runs as nobody (as the service runs as its own user)."""
    from beepnet import config

    with tempfile.TemporaryDirectory(dir="/tmp") as public:
        top = Path(public)
        top.chmod(0o755)
        etc, state = top / "etc", top / "state"
        data = shutil.copytree(replay, top / "replay")
        for p in [data, *data.rglob("*")]:
            p.chmod(0o755 if p.is_dir() else 0o644)
        make_feedback(state / "feedback", data)
        etc.mkdir()
        cfg = etc / "beepnet.toml"
        text = f'[storage]\ndir = "{state}"\n\n[retrain]\ndata_dir = "{data}"\nepochs = 1\n'
        cfg.write_text(text)
        cfg.chmod(0o444)
        etc.chmod(0o555)
        if os.geteuid() == 0:
            for p in [state, *state.rglob("*")]:
                os.chown(p, 65534, 65534)
            run_as = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
        else:
            run_as = []

        def as_service(*args: str) -> subprocess.CompletedProcess:
            return subprocess.run([*run_as, sys.executable, "-m", "beepnet", *args,
                                   "--config", str(cfg)], cwd=top, text=True,
                                  capture_output=True, timeout=300,
                                  env={"PATH": "/usr/bin:/bin", "HOME": str(state)})

        r = as_service("train", "--feedback")
        assert r.returncode == 0, r.stdout + r.stderr
        (model,) = (state / "models").glob("retrained-*.safetensors")
        choice = state / "models" / "in-use.json"
        assert f"config file {cfg} cannot be changed" in r.stdout, r.stdout
        assert f"through {choice}" in r.stdout
        assert cfg.read_text() == text
        # Every command that reads this config now runs the new model ...
        environ = {"HOME": str(state)}
        loaded = config.load(cfg, environ=environ)
        assert loaded.detector.model == str(model) and loaded.origin.chosen is not None
        # ... until the config file says otherwise (--set counts as the config too).
        assert config.load(cfg, ["detector.model=/x.safetensors"], environ).detector.model \
            == "/x.safetensors"
        assert config.load(cfg, ["detector.kind=tone"], environ).origin.chosen is None
        # Back to the shipped model: the choice is removed.
        r = as_service("enroll", "--use-shipped")
        assert r.returncode == 0, r.stdout + r.stderr
        assert "the config file's model is in use again" in r.stdout
        assert not choice.exists()
        assert config.load(cfg, environ=environ).detector.model == ""
        etc.chmod(0o755)


# -- without PyTorch: the beep output refitted (beepnet.enroll.answers) ---------------------

def without_torch(tmp_path: Path) -> dict:
    """The environment of a machine without the training extra: Python's own way to make a
    module absent (None in sys.modules: import fails, find_spec finds nothing)."""
    hide = tmp_path / "site"
    hide.mkdir(exist_ok=True)
    (hide / "sitecustomize.py").write_text("import sys\nsys.modules['torch'] = None\n")
    return {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "PYTHONPATH": str(hide)}


def caught(model: Path, kind: str, n: int = 20) -> int:
    """How many of ``n`` new windows of an appliance (seeds training never used) the model
    alerts on, as the daemon's detector scores them."""
    from beepnet.detectors.beepnet import BeepNetDetector

    d = BeepNetDetector(str(model))
    return sum(d.score(appliance_window(kind, 100 + i)).score >= d.threshold for i in range(n))


def test_without_pytorch_feedback_refits_the_beep_output_on_the_answers(tmp_path):
    """The microwave's beeps raised alerts the owner answered ❌: on a machine without
    PyTorch, `beepnet train --feedback` refits the model's beep output on the answers, the
    microwave stops alerting and the washer still does."""
    storage = tmp_path / "store"
    appliance_feedback(storage / "feedback")
    cfg = tmp_path / "beepnet.toml"
    cfg.write_text(f'[storage]\ndir = "{storage}"\n')
    r = subprocess.run([sys.executable, "-m", "beepnet", "train", "--feedback", "--config",
                        str(cfg)], cwd=tmp_path, text=True, capture_output=True, timeout=300,
                       env=without_torch(tmp_path))
    # Any import of torch would have failed the command.
    assert r.returncode == 0, r.stdout + r.stderr
    assert "the training extra is not installed here (torch missing)" in r.stdout
    assert "refitting the beep output of beepnet-default.safetensors" in r.stdout
    # The ✅ windows are one machine's: the new model checks the washer's pitch too.
    assert "the beep clips are one machine's (a tone at " in r.stdout, r.stdout
    assert "your held-out alerts: 4 beep(s), 4 other(s)" in r.stdout, r.stdout
    (model,) = (storage / "models").glob("retrained-*.safetensors")
    assert f'model = "{model}"' in cfg.read_text()
    report = json.loads((storage / "feedback" / RETRAIN_REPORT).read_text())
    assert report["status"] == "in use" and report["model"] == str(model)
    assert report["comparisons"][0]["title"] == "your held-out alerts"
    # The body and the other classes' rows are the shipped model's; the beep row is new.
    shipped, mf = read_model_file(find_default_model()), read_model_file(model)
    assert mf.labels == shipped.labels
    (pitch,) = mf.meta["beep_pitches_hz"]
    assert 2650 < pitch < 2750
    for name, tensor in shipped.tensors.items():
        if not name.startswith("classifier."):
            assert np.array_equal(mf.tensors[name], tensor), name
    beep = shipped.labels.index("beep")
    rows = mf.tensors["classifier.weight"][:, :, 0]
    old = shipped.tensors["classifier.weight"][:, :, 0]
    assert not np.allclose(rows[beep], old[beep])
    assert np.array_equal(np.delete(rows, beep, 0), np.delete(old, beep, 0))
    # What it is for: the shipped model alerts on both appliances, the new one on the washer;
    # its beep output alone (the pitch check taken out) already tells them apart.
    assert caught(find_default_model(), "microwave") >= 18
    assert caught(model, "microwave") <= 2
    assert caught(model, "washer") >= 18
    unchecked = tmp_path / "unchecked.safetensors"
    write_model_file(unchecked, mf.tensors, mf.arch, list(mf.labels), mf.threshold)
    assert caught(unchecked, "microwave") <= 2 and caught(unchecked, "washer") >= 18


def test_the_refit_keeps_an_enrolled_models_checks_and_needs_a_yes(tmp_path):
    """Refitted from an enrolled model, the new one checks the same beep pitches and wobble;
    with no ✅ answer there is no beep to learn: one line, exit status 1; --head options."""
    shipped = read_model_file(find_default_model())
    enrolled = tmp_path / "enrolled.safetensors"
    write_model_file(enrolled, shipped.tensors, shipped.arch, list(shipped.labels), 0.6,
                     beep_pitches_hz=(2700.0,), beep_wobble_hz=14.0)
    storage = tmp_path / "store"
    appliance_feedback(storage / "feedback")
    cfg = tmp_path / "beepnet.toml"
    cfg.write_text(f'[storage]\ndir = "{storage}"\n\n[detector]\nmodel = "{enrolled}"\n')
    r = beepnet("train", "--feedback", "--head", "--config", str(cfg), cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "refitting the beep output of enrolled.safetensors" in r.stdout
    assert "training extra is not installed" not in r.stdout  # --head chose it here
    (model,) = (storage / "models").glob("retrained-*.safetensors")
    mf = read_model_file(model)
    assert mf.meta["beep_pitches_hz"] == [2700.0] and mf.meta["beep_wobble_hz"] == 14.0
    assert mf.threshold >= 0.6

    shutil.rmtree(storage / "feedback" / "beep")
    r = beepnet("train", "--feedback", "--head", "--config", str(cfg), cwd=tmp_path)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert r.stderr.startswith("beepnet: train: no ✅ answer to learn the beep from") and \
        len(r.stderr.strip().splitlines()) == 1, r.stderr
    r = beepnet("train", "--feedback", "--head", str(tmp_path), "--config", str(cfg),
                cwd=tmp_path)
    assert r.returncode == 2 and "--head learns from your answers alone" in r.stderr
    r = beepnet("train", "--head", "--config", str(cfg), cwd=tmp_path)
    assert r.returncode == 2 and "--head only goes with --feedback" in r.stderr
