"""notebooks/train_beepnet.ipynb runs from top to bottom on a tiny generated set.

The notebook is executed by nbclient in a child process, with a kernel registered for
this test that runs this interpreter (the venv that has beepnet). Neither nbclient nor
torch (the kernel imports it) ever loads into the pytest process: test_detect measures
that process's peak RSS through its children.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from pngs import check_png

REPO = Path(__file__).resolve().parents[1]
NOTEBOOK = REPO / "notebooks" / "train_beepnet.ipynb"
KERNEL = "beepnet-test"
CLASSES = ["beep", "music", "other", "speech", "tonal", "washer"]

# Runs in the child: checks which interpreter the kernel name resolves to (the way
# nbclient will resolve it), executes every cell, writes the executed notebook.
_RUNNER = r"""
import sys
import nbformat
from jupyter_client.kernelspec import KernelSpecManager
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

src, dst, kernel, spec_dir = sys.argv[1:5]
spec = KernelSpecManager().get_kernel_spec(kernel)
if spec.argv[0] != sys.executable or spec.resource_dir != spec_dir:
    sys.exit(f"kernel {kernel!r} resolves to {spec.argv} in {spec.resource_dir}, "
             f"not {sys.executable} in {spec_dir}")
nb = nbformat.read(src, as_version=4)
client = NotebookClient(nb, kernel_name=kernel, timeout=150, allow_errors=False,
                        resources={"metadata": {"path": str(src).rsplit("/", 1)[0]}})
try:
    client.execute()
except CellExecutionError as e:
    sys.stderr.write(str(e)[-3000:] + "\n")
    sys.exit(1)
finally:
    nbformat.write(nb, dst)
"""


def _register_kernel(root: Path) -> Path:
    """A kernelspec in root/kernels/<KERNEL> whose command is this very interpreter.

    Found through JUPYTER_PATH, which Jupyter searches before the user's and the system's
    kernel folders, so a "python3" kernel registered elsewhere cannot be picked instead.
    """
    spec_dir = root / "kernels" / KERNEL
    spec_dir.mkdir(parents=True)
    (spec_dir / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "beepnet test venv", "language": "python"}))
    return spec_dir


def _outputs(nb: dict, kind: str) -> list:
    return [o for c in nb["cells"] if c["cell_type"] == "code" for o in c.get("outputs", [])
            if o["output_type"] == kind]


def _text(nb: dict) -> str:
    parts = []
    for o in _outputs(nb, "stream"):
        parts.append("".join(o["text"]))
    for o in _outputs(nb, "execute_result") + _outputs(nb, "display_data"):
        parts.append("".join(o.get("data", {}).get("text/plain", "")))
    return "\n".join(parts)


def test_committed_without_outputs():
    nb = json.loads(NOTEBOOK.read_text())
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert code, "no code cells"
    assert all(not c["outputs"] and c["execution_count"] is None for c in code), \
        "commit the notebook with outputs cleared"
    assert "N_CLIPS" in "".join(code[0]["source"]), "parameters belong in the first code cell"


def test_notebook_runs_on_a_tiny_set(tmp_path):
    spec_dir = _register_kernel(tmp_path / "jupyter")
    work = tmp_path / "work"
    executed = tmp_path / "executed.ipynb"
    env = dict(os.environ, JUPYTER_PATH=str(tmp_path / "jupyter"),
               JUPYTER_RUNTIME_DIR=str(tmp_path / "runtime"), JUPYTER_PLATFORM_DIRS="1",
               IPYTHONDIR=str(tmp_path / "ipython"), BEEPNET_NB_WORK=str(work),
               BEEPNET_NB_CLIPS="90", BEEPNET_NB_TEST_CLIPS="60", BEEPNET_NB_EPOCHS="1")
    for name in ("BEEPNET_NB_DATA", "BEEPNET_NB_TEST_DATA", "BEEPNET_NB_SEED"):
        env.pop(name, None)
    r = subprocess.run([sys.executable, "-c", _RUNNER, str(NOTEBOOK), str(executed), KERNEL,
                        str(spec_dir)], env=env, capture_output=True, text=True, timeout=240)
    assert r.returncode == 0, r.stderr[-4000:]

    nb = json.loads(executed.read_text())
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert all(c["execution_count"] for c in code), "a cell did not run"
    assert not _outputs(nb, "error")
    text = _text(nb)
    # The parameters came from the environment.
    assert "N_CLIPS=90 N_TEST_CLIPS=60 EPOCHS=1" in text

    # The model file exists and loads (in a child: torch stays out of this process).
    model = work / "model.safetensors"
    assert model.is_file()
    r = subprocess.run([sys.executable, "-c", (
        "import json, sys; from beepnet.training.torchmodel import load_model; "
        "m = load_model(sys.argv[1]);"
        "print(json.dumps([m.labels, m.threshold]))"), str(model)],
        capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    labels, threshold = json.loads(r.stdout)
    assert labels == CLASSES and 0 <= threshold <= 1

    # evaluate's report was printed, and its files written.
    assert "Per class (the model's classes):" in text
    assert "Confusion matrix (rows: true label, columns: predicted):" in text
    assert "Beep vs rest at threshold" in text
    for name in CLASSES:
        assert f"\n{name.rjust(12)} " in text, f"no per-class row for {name}"
    for png in ("pr_curve.png", "score_histogram.png", "confusion.png"):
        check_png(work / "evaluation" / png)
    report = json.loads((work / "evaluation" / "report.json").read_text())
    assert report["clips"] == 60 and report["model"] == str(model)
    # Inline figures: levels, waveforms/spectrograms, the three evaluation plots.
    images = [o for o in _outputs(nb, "display_data") if "image/png" in o.get("data", {})]
    assert len(images) >= 3
    # The detector ran on a clip and on the demo recording.
    assert "beepnet model model.safetensors" in text
    assert "washer-cycle.ogg: 45.0 s" in text
