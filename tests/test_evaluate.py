"""`beepnet evaluate`, run as a real process on a tiny model trained for the purpose.

Everything that imports torch runs in `beepnet` child processes, never in the pytest
process (test_detect measures that process's peak RSS through its children).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from pngs import check_png

REPO = Path(__file__).resolve().parents[1]
CLASSES = ["beep", "music", "other", "speech", "tonal", "washer"]
FIGURES = ("pr_curve.png", "score_histogram.png", "confusion.png")


def beepnet(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "beepnet", *args], capture_output=True,
                          text=True, timeout=180, cwd=cwd, check=False)


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, Path]:
    """(data dir, model file): 80 generated clips and a model trained on them for 1 epoch."""
    root = tmp_path_factory.mktemp("evaluate")
    data, model = root / "data", root / "model.safetensors"
    r = beepnet("synth", str(data), "--n", "80", "--seed", "5")
    assert r.returncode == 0, r.stderr
    r = beepnet("train", str(data), "--out", str(model), "--epochs", "1")
    assert r.returncode == 0, r.stderr
    (data / "manifest.csv").unlink()  # evaluate reads the folders, not the manifest
    return data, model


def _copy(data: Path, dest: Path) -> Path:
    shutil.copytree(data, dest)
    return dest


def _beep_vs_rest(stdout: str) -> dict:
    m = re.search(r"precision ([\d.]+), recall ([\d.]+), F1 ([\d.]+) \((\d+) beeps found, "
                  r"(\d+) missed, (\d+) false alarm", stdout)
    f = re.search(r"false alarms: (\d+) of (\d+) negative clips = ([\d.]+) per 1000 windows, "
                  r"([\d.]+) per hour", stdout)
    assert m and f, stdout
    return {"precision": float(m[1]), "recall": float(m[2]), "f1": float(m[3]),
            "tp": int(m[4]), "fn": int(m[5]), "fp": int(m[6]), "negatives": int(f[2]),
            "fa_per_1000": float(f[3]), "fa_per_hour": float(f[4])}


def test_report_figures_and_files(trained, tmp_path):
    data, model = trained
    r = beepnet("evaluate", str(data), "--model", str(model), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    out = r.stdout
    # The default report folder: evaluation/<model>_<data>/ in the current directory.
    report_dir = tmp_path / "evaluation" / "model_data"
    assert "wrote evaluation/model_data/pr_curve.png" in out
    report = json.loads((report_dir / "report.json").read_text())
    for png in FIGURES:
        check_png(report_dir / png)

    # The per-class table: every model class, figures as in report.json.
    assert "Per class (the model's classes):" in out
    for name in CLASSES:
        row = re.search(rf"^\s+{name}\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+(\d+)$", out, re.M)
        assert row, f"no row for {name}:\n{out}"
        c = report["per_class"][name]
        assert float(row[1]) == pytest.approx(c["precision"], abs=5e-4)
        assert float(row[2]) == pytest.approx(c["recall"], abs=5e-4)
        assert int(row[4]) == c["support"]

    # The confusion matrix: rows true, columns predicted, the same counts as the JSON.
    conf = report["confusion"]
    assert conf["rows_true"] == CLASSES and conf["columns_predicted"] == CLASSES
    text = out.split("Confusion matrix (rows: true label, columns: predicted):\n")[1]
    lines = text.splitlines()
    assert lines[0].split()[-len(CLASSES):] == CLASSES
    for name, counts, line in zip(CLASSES, conf["counts"], lines[1:1 + len(CLASSES)],
                                  strict=True):
        assert line.split() == [name] + [str(n) for n in counts]
    counts = report["clips_per_label"]
    assert [sum(row) for row in conf["counts"]] == [counts[k] for k in CLASSES]
    assert report["clips"] == sum(counts.values()) == 80

    # Beep vs rest at the model's threshold, as printed and as saved.
    printed, saved = _beep_vs_rest(out), report["beep_vs_rest"]
    for key, value in printed.items():  # printed with 3 decimals, the rates with 1
        assert value == pytest.approx(saved[key], abs=0.05 if key.startswith("fa_") else 5e-4)
    assert saved["tp"] + saved["fn"] == counts["beep"] == conf["counts"][0][0] + saved["fn"]
    assert saved["fp"] == sum(row[0] for row in conf["counts"][1:])
    assert report["threshold_source"] == "model file"
    assert f"threshold {report['threshold']:.3f} (from the model file)" in out
    # Nothing from beepnet on stderr (a fresh matplotlib may note its font cache there).
    assert "beepnet" not in r.stderr and "Traceback" not in r.stderr, r.stderr


def test_unknown_folder_unusable_file_and_threshold(trained, tmp_path):
    data = _copy(trained[0], tmp_path / "data")
    (data / "washer").rename(data / "dishwasher")  # a class the model does not know
    (data / "beep" / "notes.wav").write_text("not audio")
    (data / "other" / "README.txt").write_text("ignored: not an audio file name")
    r = beepnet("evaluate", str(data), "--model", str(trained[1]), "--out",
                str(tmp_path / "rep"), "--threshold", "0.5")
    assert r.returncode == 0, r.stderr
    ours = [ln for ln in r.stderr.splitlines() if ln.startswith("beepnet:")]
    assert len(ours) == 2, r.stderr
    assert ours[0].startswith(f"beepnet: skipped {data / 'beep' / 'notes.wav'}: ")
    assert ours[1] == "beepnet: skipped 1 unusable file(s)"
    assert "1 unusable file(s) skipped" in r.stdout
    report = json.loads((tmp_path / "rep" / "report.json").read_text())
    assert report["files_skipped"] == 1 and report["clips"] == 80
    assert report["threshold"] == 0.5 and report["threshold_source"] == "--threshold"
    assert "threshold 0.500 (from the --threshold)" in r.stdout
    # Reported, not hidden: a note, a starred confusion row, negatives for beep vs rest.
    n = report["clips_per_label"]["dishwasher"]
    assert report["labels_not_in_model"]["dishwasher"]["clips"] == n
    assert "note: 'dishwasher' is not a class of this model" in r.stdout
    assert re.search(r"^dishwasher\*(\s+\d+){6}$", r.stdout, re.M)
    assert report["confusion"]["rows_true"][-1] == "dishwasher"
    assert "dishwasher" not in report["per_class"]
    assert report["beep_vs_rest"]["negatives"] == 80 - report["clips_per_label"]["beep"]
    for png in FIGURES:
        check_png(tmp_path / "rep" / png)


def _empty(tmp: Path, data: Path) -> list[str]:
    (tmp / "empty" / "beep").mkdir(parents=True)
    return [str(tmp / "empty")]


def _no_negatives(tmp: Path, data: Path) -> list[str]:
    shutil.copytree(data / "beep", tmp / "only" / "beep")
    return [str(tmp / "only")]


def _corrupt_model(tmp: Path, data: Path) -> list[str]:
    bad = tmp / "bad.safetensors"
    bad.write_bytes(b"this is not a model" * 40)
    return [str(data), "--model", str(bad)]


@pytest.mark.parametrize("make_args, status, message", [
    (lambda tmp, data: [str(tmp / "nowhere")], 1, "no such directory"),
    (_empty, 1, "no audio clips in"),
    (_no_negatives, 1, "clips of at least one negative class"),
    (lambda tmp, data: [str(data), "--model", str(tmp / "missing.safetensors")], 1, "no such file"),
    (_corrupt_model, 1, "not a readable BeepNet model"),
    (lambda tmp, data: [str(data), "--threshold", "1.5"], 2, "not in 0..1"),
], ids=["missing-dir", "empty-dir", "no-negatives", "missing-model", "corrupt-model",
        "bad-threshold"])
def test_bad_input_one_line_no_traceback(trained, tmp_path, make_args, status, message):
    data, model = trained
    args = make_args(tmp_path, data)
    if "--model" not in args:
        args += ["--model", str(model)]
    r = beepnet("evaluate", *args, "--out", str(tmp_path / "rep"))
    assert r.returncode == status, (r.stdout, r.stderr)
    lines = r.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("beepnet: evaluate: "), r.stderr
    assert message in lines[0]
    assert r.stdout == "" and not (tmp_path / "rep").exists()
