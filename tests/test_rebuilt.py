"""`make model`'s last step (beepnet.training.rebuilt): did it rebuild the model file it
replaced, and if not, why not? Run as make runs it, a `python -m` process, on copies of the
shipped model changed the ways a rebuild can differ."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from beepnet.model.modelfile import read_model_file, write_model_file

REPO = Path(__file__).resolve().parents[1]
SHIPPED = REPO / "models" / "beepnet-default.safetensors"
XEON = "Intel(R) Xeon(R) Processor (x86_64), torch 2.13.0+cpu, AVX512 kernels"
EPYC = "AMD EPYC (x86_64), torch 2.13.0+cpu, AVX2 kernels"


def _copy(out: Path, *, nudge: str = "", threshold: float | None = None,
          data: str | None = None, trained_on: str = "") -> Path:
    """The shipped file written again, one weight of tensor ``nudge`` changed."""
    mf = read_model_file(SHIPPED)
    tensors = {k: v.copy() for k, v in mf.tensors.items()}
    if nudge:
        tensors[nudge].flat[0] += 0.25
    meta = mf.meta
    write_model_file(out, tensors, mf.arch, mf.labels,
                     mf.threshold if threshold is None else threshold,
                     metrics=meta.get("metrics"), created=meta["created"],
                     data_sha256=meta["data_sha256"] if data is None else data,
                     trained_on=trained_on)
    return out


def _rebuilt(new: Path, old: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "beepnet.training.rebuilt", str(new),
                           str(old)], capture_output=True, text=True, timeout=60, cwd=REPO)


def test_the_same_weights_are_a_rebuild(tmp_path):
    r = _rebuilt(_copy(tmp_path / "new.safetensors", trained_on=XEON), SHIPPED)
    assert r.returncode == 0, r.stderr
    assert "has the same weights (26 tensors) and threshold (0.509)" in r.stdout
    assert "rebuilt exactly" in r.stdout


def test_another_cpu_is_another_run_of_the_recipe(tmp_path):
    """The same clips, other weights, and the CPUs differ (or the old file never said)."""
    new = _copy(tmp_path / "new.safetensors", nudge="classifier.bias", threshold=0.401,
                trained_on=XEON)
    for old, old_cpu in ((SHIPPED, "not recorded"),
                         (_copy(tmp_path / "old.safetensors", trained_on=EPYC), EPYC)):
        r = _rebuilt(new, old)
        assert r.returncode == 0, r.stderr
        out = r.stdout
        assert "is not" in out and "1 of 26 tensors differ (largest difference 0.25)" in out
        assert "threshold 0.401 against 0.509" in out
        assert "another run of the same recipe" in out
        assert ("One file does not record its CPU" if old == SHIPPED
                else "The CPUs differ") in out
        assert "the training clips are the same" in out
        assert f"trained on (new): {XEON}" in out and f"trained on (old): {old_cpu}" in out


def test_other_clips_or_other_code(tmp_path):
    old = _copy(tmp_path / "old.safetensors", trained_on=XEON)
    clips = _copy(tmp_path / "clips.safetensors", nudge="frontend.weight", data="cd" * 32,
                  trained_on=XEON)
    r = _rebuilt(clips, old)
    assert "The same kind of CPU, other training clips" in r.stdout
    assert "another run" not in r.stdout
    r = _rebuilt(_copy(tmp_path / "code.safetensors", nudge="body.0.weight",
                       trained_on=XEON), old)
    assert "The same kind of CPU and the same training clips: the code changed" in r.stdout
    # On another CPU the mined negatives, and so the clips' hash, differ as well.
    r = _rebuilt(clips, _copy(tmp_path / "epyc.safetensors", trained_on=EPYC))
    assert "The CPUs differ; the training clips differ too" in r.stdout


def test_a_file_it_cannot_read_is_one_line(tmp_path):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not a model")
    for args in ((bad, SHIPPED), (SHIPPED, tmp_path / "gone.safetensors")):
        r = _rebuilt(*args)
        assert r.returncode == 2 and not r.stdout
        assert r.stderr.startswith("beepnet: rebuilt: ") and r.stderr.count("\n") == 1, \
            r.stderr
