"""SIGHUP reloads a running `beepnet run`, and `beepnet enroll` sends it: real daemons, real
config and model files, real signals."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from beepnet.daemon import running
from beepnet.daemon.status import STATUS_NAME
from beepnet.model.modelfile import read_model_file, write_model_file
from beepnet.model.preflight import find_default_model
from procs import REPO, LogReader, beepnet_children, run_beepnet, wait_for
from signals import convert, washer_with_beeps

BEEPS = [(4.0, 0.6, 2800.0), (13.6, 0.4, 3600.0), (24.0, 1.5, 2000.0)]


@pytest.fixture(scope="module")
def cycle(tmp_path_factory) -> Path:
    x = washer_with_beeps(BEEPS, 30.0, seed=11, snr_db=6.0)
    return convert(x, tmp_path_factory.mktemp("rec") / "cycle.flac", 44100, 2)


def write_config(path: Path, storage: Path, model: str = "", extra: str = "") -> None:
    path.write_text(f'# mine\n[storage]\ndir = "{storage}"\n\n[notify]\ncooldown_minutes = 0\n'
                    f'{extra}\n[detector]\nkind = "beepnet"\nmodel = "{model}"\n',
                    encoding="utf-8")


def start(config: Path, source: Path, speed: float) -> tuple[subprocess.Popen, LogReader]:
    p = subprocess.Popen([sys.executable, "-m", "beepnet", "run", "--config", str(config),
                          "--source", str(source), "--speed", str(speed)], cwd=REPO,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return p, LogReader(p)


def status(storage: Path) -> dict:
    try:
        return json.loads((storage / STATUS_NAME).read_text())
    except (OSError, ValueError):
        return {}


def finish(p: subprocess.Popen, log: LogReader) -> str:
    out = p.stdout.read()
    p.wait(60)
    log.join()
    assert p.returncode == 0, log.text
    assert "Traceback" not in log.text, log.text
    # The old classifier stopped as asked: not a crash.
    assert "process died" not in log.text, log.text
    return out


def test_enroll_use_shipped_switches_a_running_daemon_without_losing_a_chunk(tmp_path, cycle):
    storage = tmp_path / "s"
    copy = tmp_path / "copy-of-default.safetensors"
    shutil.copyfile(find_default_model(), copy)
    cfg = tmp_path / "beepnet.toml"
    write_config(cfg, storage, model=str(copy))
    p, log = start(cfg, cycle, speed=2.0)
    try:
        assert log.wait_for("[start] listening", 30), log.text
        assert wait_for(lambda: status(storage).get("model") == str(copy), 5), status(storage)
        assert wait_for(lambda: status(storage)["stats"]["scored"] >= 2, 10), log.text
        r = run_beepnet("enroll", "--use-shipped", "--config", str(cfg), timeout=60)
        assert r.returncode == 0, r.stderr
        assert f"told the running beepnet (pid {p.pid}) to load the shipped model" in r.stdout
        assert log.wait_for("reload: now using", 30), log.text
        at_switch = status(storage)["stats"]["scored"]
        out = finish(p, log)
    finally:
        if p.poll() is None:
            p.kill()
    shipped = str(find_default_model())
    now_using = next(ln for ln in log.lines if "reload: now using" in ln)
    assert "beepnet-default.safetensors" in now_using and shipped in now_using, now_using
    assert "detector.model changed" in log.text, log.text
    # Scoring went on through the switch: every chunk classified, none failed or left.
    final = status(storage)
    assert final["model"] == shipped, final["model"]
    assert final["stats"]["failed"] == 0 and final["stats"]["dropped"] == 0, final["stats"]
    assert final["stats"]["scored"] > at_switch, (at_switch, final["stats"])
    assert f"{final['stats']['scored']} chunk(s) classified, 3 beep alert(s)" in out, out
    assert "unclassified" not in log.text
    assert list((storage / "chunks").iterdir()) == []


def nan_model(path: Path) -> Path:
    """A model whose header is fine and whose weights are not: only loading it fails."""
    m = read_model_file(find_default_model())
    tensors = dict(m.tensors)
    name = next(iter(tensors))
    tensors[name] = np.full_like(tensors[name], np.nan)
    write_model_file(path, tensors, m.arch, m.labels, m.threshold)
    return path


def rewrite_with_threshold(path: Path, threshold: float) -> None:
    """The shipped model saved over ``path`` with another operating threshold."""
    m = read_model_file(find_default_model())
    write_model_file(path, m.tensors, m.arch, m.labels, threshold)


def test_bad_reloads_are_one_line_each_and_the_daemon_keeps_detecting(tmp_path, cycle):
    storage = tmp_path / "s"
    cfg = tmp_path / "beepnet.toml"
    mine = tmp_path / "mine.safetensors"
    shutil.copyfile(find_default_model(), mine)
    write_config(cfg, storage, model=str(mine))
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"\x00" * 64)
    broken = nan_model(tmp_path / "nan.safetensors")
    p, log = start(cfg, cycle, speed=3.0)

    def hup_and_wait(text: str) -> str:
        n = len(log.lines)
        p.send_signal(signal.SIGHUP)
        assert wait_for(lambda: text in "".join(log.lines[n:]), 30), log.text
        time.sleep(0.3)  # anything said with it
        return "".join(log.lines[n:])

    try:
        assert log.wait_for("[start] listening", 30), log.text
        assert wait_for(lambda: status(storage).get("detector"), 5), status(storage)
        described = status(storage)["detector"]
        # A closed terminal sends SIGHUP to the whole process group: the children leave it
        # to the supervisor (`finish` checks that none died).
        for pid in beepnet_children(p.pid).values():
            os.kill(pid, signal.SIGHUP)

        cfg.write_text("[detector\nkind = beepnet\n", encoding="utf-8")
        said = hup_and_wait("reload refused")
        assert said.count("reload refused") == 1 and str(cfg) in said, said

        write_config(cfg, storage, model=str(garbage))
        said = hup_and_wait("reload refused")
        assert said.count("reload refused") == 1 and str(garbage) in said, said

        write_config(cfg, storage, model=str(broken))
        said = hup_and_wait("the reloaded detector did not load")
        assert "not finite" in said and f"still listening with {described}" in said, said

        # Back to the first model, with a setting that needs a restart.
        write_config(cfg, storage, model=str(mine), extra="retry_max_seconds = 60\n")
        said = hup_and_wait("nothing changed for the detector")
        assert "notify.retry_max_seconds changed: restart beepnet to use it" in said, said
        assert "now using" not in said and "beside the detector" not in said, said

        # The same file, rewritten (an enrolment saved over it): loaded again.
        threshold = round(read_model_file(mine).threshold - 0.02, 2)
        rewrite_with_threshold(mine, threshold)
        said = hup_and_wait("reload: now using")
        assert "the model file itself changed" in said, said
        assert f"threshold {threshold:.2f}" in said and str(mine) in said, said
        scored = status(storage)["stats"]["scored"]
        out = finish(p, log)
    finally:
        if p.poll() is None:
            p.kill()
    assert log.text.count("reload: now using") == 1, log.text
    final = status(storage)
    assert final["detector"] != described and final["model"] == str(mine), final
    assert final["stats"]["scored"] > scored and final["stats"]["failed"] == 0, final["stats"]
    assert "3 beep alert(s)" in out, out + log.text
    # The new classifier's own line (as at start) is the only error.
    errors = [ln for ln in log.lines if " ERROR " in ln]
    assert len(errors) == 1 and str(broken) in errors[0], errors


# -- finding the daemon --------------------------------------------------------------------

HUP_RECORDER = """
import pathlib, signal, sys, time
signal.signal(signal.SIGHUP, lambda *_: pathlib.Path(sys.argv[1]).write_text("hup"))
time.sleep(30)
"""


def live_status(path: Path, pid: int, config: Path | None, age: float = 0.0) -> Path:
    path.write_text(json.dumps({"pid": pid, "state": "running", "time": time.time() - age,
                                "config": str(config) if config else None}))
    return path


def test_only_a_live_beepnet_run_is_signalled(tmp_path, monkeypatch):
    cfg = tmp_path / "beepnet.toml"
    cfg.write_text("")
    st = tmp_path / "status.json"
    tell = lambda: running.tell_daemon(None, cfg, "the new model", paths=[st])  # noqa: E731

    assert tell() == "beepnet is not running: it will use the new model when it starts"
    # A pid from the status file that is no `beepnet run` (a reused pid): left alone.
    other = subprocess.Popen(["sleep", "30"])
    # A process whose command line is `... beepnet run` and that notes a SIGHUP.
    got = tmp_path / "hup.txt"
    fake = subprocess.Popen([sys.executable, "-c", HUP_RECORDER, str(got), "beepnet", "run"])
    try:
        live_status(st, other.pid, cfg)
        assert tell().startswith("beepnet is not running")
        live_status(st, fake.pid, cfg, age=60.0)  # a stale status: that daemon stopped
        assert tell().startswith("beepnet is not running")
        live_status(st, fake.pid, tmp_path / "elsewhere.toml")
        assert tell() == (f"beepnet (pid {fake.pid}) runs with another config file, "
                          f"{tmp_path / 'elsewhere.toml'}: it keeps its model")
        assert not got.exists() and other.poll() is None

        live_status(st, fake.pid, cfg)
        time.sleep(0.3)  # its handler is installed
        assert tell() == f"told the running beepnet (pid {fake.pid}) to load the new model"
        assert wait_for(got.exists, 5) and fake.poll() is None

        def eperm(pid, sig):
            raise PermissionError(1, "Operation not permitted")

        # No second user to run a daemon as here: the kernel's answer is simulated.
        with monkeypatch.context() as m:
            m.setattr(running.os, "kill", eperm)
            line = tell()
        assert line == (f"beepnet (pid {fake.pid}) runs as another user: `sudo systemctl "
                        "reload beepnet` to load the new model")
    finally:
        for proc in (other, fake):
            proc.kill()
            proc.wait()


class Alerts:
    """The notifier's side the supervisor uses for a detection."""

    def __init__(self):
        self.alerted: list[float] = []

    def alert(self, det, caption=None, emptied=None) -> bool:
        self.alerted.append(det.offset)
        return True

    def delivery_of(self, det):
        return None


def test_a_classifier_taking_over_mid_beep_does_not_alert_it_again(tmp_path):
    """Chunks overlap (3 s every 1.5 s): a new classifier's first chunk may hold the end of a
    beep its predecessor alerted; its fresh event tracker opens an event there."""
    import queue

    from beepnet.config import Config, StorageConfig
    from beepnet.daemon.supervisor import Supervisor
    from beepnet.messages import BeepStarted, Chunk, Detection, DetectorReady, Scored

    alerts = Alerts()
    sup = Supervisor(Config(storage=StorageConfig(dir=str(tmp_path))), alerts, source="x.wav")
    sup._detector = DetectorReady("test", 0.5)
    sup.results_q = queue.Queue()
    chunk = [Chunk(str(tmp_path / f"{i}.wav"), i * 24000, 100.0 + i * 1.5, 3.0, -20.0)
             for i in range(6)]

    def detection(i: int) -> Detection:
        return Detection(chunk[i], 0.9, chunk[i].start_time, i * 1.5, "", "test")

    def heard(i: int, score: float, *before) -> None:
        for msg in before:
            sup.results_q.put(msg)
        sup.results_q.put(Scored(chunk[i], score))
        sup._drain_results()

    start = [BeepStarted(chunk[i], 0.9, chunk[i].start_time, i * 1.5) for i in range(6)]
    heard(0, 0.9, start[0])                 # the old classifier opens the event
    sup.results_q.put(detection(0))         # and ends its pattern as it stops: alerted
    heard(1, 0.9, start[1])                 # the new one, mid-beep: the same event
    heard(2, 0.9)
    heard(3, 0.1, detection(1))             # the event ends: its pattern is not alerted
    heard(4, 0.9, start[4])                 # a new beep, overlapping the quiet chunk
    heard(5, 0.1, detection(4))             # alerted when its pattern ends
    assert alerts.alerted == [0.0, 6.0]
    assert sup.stats.detections == 2
