"""The runtime commands (run, detect, doctor, monitor) never import the training stack --
torch, pandas, scikit-learn, matplotlib -- in any of their processes: those come only with
the ``[train]`` extra, and a Raspberry Pi install does not have them.

No hook in the package: each command runs as a user starts it (the console script) with
PYTHONPROFILEIMPORTTIME=1. Every Python process inherits that variable, the daemon's
spawned recorder and classifier included, and prints one ``import time: ... | module``
line to its stderr for each module it loads, nested by indentation, after a header line
of its own (so the headers count the processes that reported). A control case runs the
torch runtime and must see torch, which proves the detection itself works.
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from procs import wait_for
from signals import convert, washer_with_beeps

from beepnet.monitor.app import LOG_NAME
from beepnet.daemon.status import STATUS_NAME, read_status

FORBIDDEN = ("torch", "pandas", "sklearn", "matplotlib")
BEEPNET = Path(sys.executable).with_name("beepnet")
"""The console script next to this interpreter: what a user of the venv types."""
HEADER = "import time: self [us] | cumulative | imported package"
LINE = re.compile(r"^import time:\s+\d+ \|\s+\d+ \| ( *)(\S+)\s*$")


class Imports:
    """What the processes that wrote ``texts`` (their stderr) imported."""

    def __init__(self, *texts: str):
        lines = "\n".join(texts).splitlines()
        self.processes = sum(ln.strip() == HEADER for ln in lines)
        self.rows = [(len(m.group(1)) // 2, m.group(2))
                     for m in map(LINE.match, lines) if m]

    def count(self, module: str) -> int:
        """How many processes loaded ``module`` (each reports a module once)."""
        return sum(name == module for _, name in self.rows)

    def chain(self, i: int) -> str:
        """"a > b > c": who imported row ``i``. A module's line follows those of what it
        imported, one level deeper, so its importers are the next lines less indented (a
        hint for the failure message: processes writing at once can interleave lines). An
        import inside a function starts a chain of its own."""
        depth, name = self.rows[i]
        path = [name]
        for d, n in self.rows[i + 1:]:
            if d < depth:
                path.append(n)
                depth = d
            if depth == 0:
                break
        return " > ".join(reversed(path))

    def forbidden(self) -> list[str]:
        """The import chain of each forbidden package loaded, by any process. Packages, not
        submodules: ``torch.nn`` cannot load without ``torch`` loading first."""
        return [self.chain(i) for i, (_, name) in enumerate(self.rows)
                if name in FORBIDDEN]


def profiled_env(env: dict) -> dict:
    return dict(env, PYTHONPROFILEIMPORTTIME="1")


def beepnet(env: dict, *args: str) -> subprocess.CompletedProcess:
    assert BEEPNET.is_file(), f"no console script {BEEPNET} (pip install -e .)"
    return subprocess.run([str(BEEPNET), *args], env=profiled_env(env), capture_output=True,
                          text=True, timeout=120, check=False)


def assert_runtime_only(imports: Imports, output: str) -> None:
    assert imports.processes >= 1, "no import profile at all:\n" + output[-2000:]
    assert not imports.forbidden(), "\n".join(imports.forbidden())
    # The numpy net and its model file format really loaded: the clean result is not one
    # of a command that never got as far as the model.
    assert imports.count("beepnet.model.npnet") >= 1
    assert imports.count("safetensors") >= 1


@pytest.fixture(scope="module")
def recording(tmp_path_factory) -> Path:
    """6 s of a washer with one beep at 2 s: scored in well under a second at --speed 20."""
    x = washer_with_beeps([(2.0, 0.5, 2900.0)], 6.0, seed=1)
    return convert(x, tmp_path_factory.mktemp("rec") / "beep.wav")


def test_detect(env, recording):
    r = beepnet(env, "detect", str(recording))
    assert r.returncode == 0, r.stderr[-2000:]
    assert "beep 2.0" in r.stdout, r.stdout
    assert_runtime_only(Imports(r.stderr), r.stderr)


def test_control_the_torch_runtime_is_seen(env, recording):
    r = beepnet(env, "detect", "--set", "detector.runtime=torch", str(recording))
    assert r.returncode == 0, r.stderr[-2000:]
    # The very check the other tests rely on, seeing what it must.
    assert "torch" in [chain.split(" > ")[-1] for chain in Imports(r.stderr).forbidden()]


def test_doctor(env, tmp_path):
    # Exit 1 is fine here (no Telegram configured): only the imports matter, and that the
    # detector check really loaded the model.
    r = beepnet(env, "doctor", "--no-mic", "--set", f"storage.dir={tmp_path / 'store'}")
    assert "detector: beepnet model" in r.stdout, r.stdout + r.stderr[-2000:]
    assert_runtime_only(Imports(r.stderr), r.stderr)


def test_run_and_its_children(env, recording, tmp_path):
    r = beepnet(env, "run", "--source", str(recording), "--speed", "20",
                "--set", f"storage.dir={tmp_path / 'store'}")
    assert r.returncode == 0, r.stderr[-2000:]
    assert "1 beep alert(s)" in r.stdout, r.stdout
    imports = Imports(r.stderr)
    # The supervisor, its recorder and classifier (and multiprocessing's resource tracker).
    assert imports.processes >= 3
    # Each spawned child loads its own module (the supervisor names them only, through
    # beepnet.daemon.child): the children's imports are in the profile.
    assert imports.count("beepnet.daemon.recorder") >= 1
    assert imports.count("beepnet.daemon.classifier") >= 1
    assert_runtime_only(imports, r.stderr)


def test_monitor_standalone_and_its_children(env, recording, tmp_path):
    """Without a terminal the monitor reads no keys and draws to /dev/null; it still runs the
    pipeline, and SIGTERM ends it as q does."""
    store = tmp_path / "store"
    err = tmp_path / "monitor.err"  # a file, not a pipe nobody drains while it runs
    with err.open("w") as f:
        p = subprocess.Popen([str(BEEPNET), "monitor", "--source", str(recording), "--speed",
                              "20", "--set", f"storage.dir={store}"],
                             env=profiled_env(env), stdin=subprocess.DEVNULL,
                             stdout=subprocess.DEVNULL, stderr=f)
        try:
            def replayed() -> bool:
                s = read_status(store / STATUS_NAME) or {}
                return s.get("state") == "stopped" and bool(s.get("detections"))

            assert wait_for(replayed, 30), err.read_text()[-2000:]
            p.send_signal(signal.SIGTERM)
            assert p.wait(timeout=20) == 0
        finally:
            if p.poll() is None:
                p.kill()
                p.wait()
    # The pipeline process sends its output, and so its children's, to monitor.log.
    log = (store / LOG_NAME).read_text()
    imports = Imports(err.read_text(), log)
    # The monitor, the pipeline, its recorder and classifier.
    assert imports.processes >= 4
    child_imports = Imports(log)
    assert child_imports.count("beepnet.daemon.classifier") >= 1
    assert child_imports.count("beepnet.model.npnet") >= 1
    assert_runtime_only(imports, log)

