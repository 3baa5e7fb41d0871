"""Starting up: a detector that loads slowly is not a stall, and one that will not load is
reported to the owner, retried when that may help, and stops the service when it cannot.

Real `beepnet run` processes; a `sitecustomize.py` on PYTHONPATH (spawned children inherit
it) makes loading the detector slow or fail, or points the shipped model at a bad file.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from beepnet.testing.fake_telegram import DEFAULT_CHAT_ID, DEFAULT_TOKEN, FakeTelegram
from procs import REPO, beepnet_children
from signals import convert, washer_with_beeps
from test_supervision import Datagrams as _Datagrams

TOKEN_SECRET = DEFAULT_TOKEN.split(":", 1)[1]

SITECUSTOMIZE = """
import os, time

_env = os.environ.get

if _env("STARTUP_TEST_DEFAULT_MODEL"):
    import beepnet.model.preflight as _preflight
    from pathlib import Path as _Path

    _preflight.default_model_candidates = lambda: [_Path(_env("STARTUP_TEST_DEFAULT_MODEL"))]

if _env("STARTUP_TEST_SLEEP") or _env("STARTUP_TEST_FAIL"):
    import beepnet.detectors as _detectors

    _real = _detectors.load_detector

    def _attempt():
        path = _env("STARTUP_TEST_LOG")
        with open(path, "a") as f:
            f.write("start %r\\n" % time.monotonic())
        with open(path) as f:
            return sum(line.startswith("start") for line in f)

    def load_detector(cfg):
        n = _attempt()
        time.sleep(float(_env("STARTUP_TEST_SLEEP") or 0))
        fail = _env("STARTUP_TEST_FAIL")
        if fail and n <= int(_env("STARTUP_TEST_FAIL_TIMES") or 1000):
            if fail == "ModelFileError":
                from beepnet.model.modelfile import ModelFileError
                raise ModelFileError("model file /srv/beep.safetensors: weights are not finite")
            raise MemoryError()
        det = _real(cfg)
        with open(_env("STARTUP_TEST_LOG"), "a") as f:
            f.write("loaded %r\\n" % time.monotonic())
        return det

    _detectors.load_detector = load_detector
"""


@pytest.fixture
def tg():
    with FakeTelegram(token=DEFAULT_TOKEN, chats={DEFAULT_CHAT_ID}) as fake:
        yield fake


def daemon_env(env: dict, tmp_path: Path, **test_settings: str) -> dict:
    site = tmp_path / "site"
    site.mkdir(exist_ok=True)
    (site / "sitecustomize.py").write_text(SITECUSTOMIZE)
    # The repository too: sitecustomize imports beepnet before `-m` puts it on sys.path.
    return dict(env, PYTHONPATH=os.pathsep.join([str(site), str(REPO)]),
                STARTUP_TEST_LOG=str(tmp_path / "loads.log"),
                BEEPNET_TELEGRAM_TOKEN=DEFAULT_TOKEN,
                BEEPNET_TELEGRAM_CHAT_ID=str(DEFAULT_CHAT_ID),
                **{f"STARTUP_TEST_{k.upper()}": v for k, v in test_settings.items()})


def beepnet_run(tg: FakeTelegram, tmp_path: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "beepnet", "run", "--set", f"storage.dir={tmp_path / 's'}",
            "--set", f"telegram.api_url={tg.url}", "--set", "notify.retry_initial_seconds=0.1",
            *args]


def loads(tmp_path: Path, what: str) -> list[float]:
    """Monotonic times at which the classifier began or finished loading its detector."""
    log = tmp_path / "loads.log"
    lines = log.read_text().splitlines() if log.exists() else []
    return [float(line.split()[1]) for line in lines if line.startswith(what)]


def texts(tg: FakeTelegram) -> list[str]:
    return [r.fields.get("text", "") for r in tg.requests("sendMessage") if r.status == 200]


def gaps(times: list[float]) -> list[float]:
    return [b - a for a, b in zip(times, times[1:])]


class Datagrams(_Datagrams):
    """test_supervision's fake $NOTIFY_SOCKET, with each datagram timed when it arrived
    (not when the wait for it began): READY is compared with other processes' clocks."""

    def collect(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            try:
                msg = self.sock.recv(4096).decode()
            except socket.timeout:
                continue
            self.got.append((time.monotonic(), msg))


SLOW_LOAD = 10.0
WATCHDOG = 4.0


def test_a_slow_detector_is_start_up_not_a_stall(tmp_path, env, tg):
    notify = Datagrams(tmp_path / "notify.sock")
    src = convert(washer_with_beeps([], 60.0, seed=3), tmp_path / "long.wav")
    e = daemon_env(env, tmp_path, sleep=str(SLOW_LOAD))
    e.update(NOTIFY_SOCKET=str(tmp_path / "notify.sock"), WATCHDOG_USEC=str(int(WATCHDOG * 1e6)))
    with open(tmp_path / "stderr", "w+") as err:
        began = time.monotonic()
        p = subprocess.Popen(beepnet_run(tg, tmp_path, "--source", str(src)), env=e,
                             stdout=subprocess.DEVNULL, stderr=err, text=True)
        try:
            while not notify.times("READY=1") and time.monotonic() < began + SLOW_LOAD + 30:
                notify.collect(0.5)
            assert notify.times("READY=1"), notify.got
            notify.collect(2.0)
            # After READY, the classifier dies: its successor's loading is no stall either.
            os.kill(beepnet_children(p.pid)["beepnet-clf"], signal.SIGKILL)
            killed = time.monotonic()
            while len(loads(tmp_path, "loaded")) < 2 and time.monotonic() < killed + 40:
                notify.collect(0.5)
            notify.collect(WATCHDOG + 1)   # and after it: pings go on
            p.send_signal(signal.SIGTERM)
            p.wait(20)
        finally:
            if p.poll() is None:
                p.kill()
        err.seek(0)
        log = err.read()
    assert p.returncode == 0, log
    assert "Traceback" not in log
    loaded = loads(tmp_path, "loaded")
    assert len(loaded) == 2 and loaded[1] > killed + SLOW_LOAD - 1, (loaded, killed)
    ready = notify.times("READY=1")
    assert len(ready) == 1, notify.got
    # Ready means listening: audio flows and the detector is loaded.
    assert loaded[0] <= ready[0] < loaded[0] + 2, (loaded, ready)
    extended = notify.times("EXTEND_TIMEOUT_USEC=60000000")
    assert extended and extended[0] < loaded[0], notify.got
    pings = notify.times("WATCHDOG=1")
    # Pinged from the start, through both loads, to the end: never a gap that would make
    # systemd (WatchdogSec=4 here) kill it.
    assert pings and pings[0] - began < WATCHDOG, (pings[:3], began)
    assert max(gaps(pings)) < WATCHDOG, gaps(pings)
    assert pings[-1] > loaded[1] + 2, (pings[-1], loaded)
    assert "[start] listening" in log and "classifier process died" in log, log


def test_a_detector_that_cannot_load_says_why_and_stops(tmp_path, env, tg):
    src = convert(washer_with_beeps([], 10.0, seed=3), tmp_path / "w.wav")
    r = subprocess.run(beepnet_run(tg, tmp_path, "--source", str(src)),
                       env=daemon_env(env, tmp_path, fail="ModelFileError"),
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 78, r.stderr
    assert "Traceback" not in r.stderr and TOKEN_SECRET not in r.stderr
    said = [t for t in texts(tg) if "detector" in t]
    assert said == ["beepnet stopped: cannot load the detector: model file "
                    "/srv/beep.safetensors: weights are not finite. Fix the model file or "
                    "detector.* in the config, then start beepnet again."], texts(tg)
    assert len(loads(tmp_path, "start")) == 1   # not tried again: it cannot work


def test_a_passing_load_failure_is_retried_and_said_once(tmp_path, env, tg):
    # Out of memory four times (a busy board), then the detector loads.
    src = convert(washer_with_beeps([(3.0, 0.6, 3000.0)], 8.0, seed=5), tmp_path / "b.wav")
    r = subprocess.run(beepnet_run(tg, tmp_path, "--source", str(src), "--speed", "2"),
                       env=daemon_env(env, tmp_path, fail="MemoryError", fail_times="4"),
                       capture_output=True, text=True, timeout=90)
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr
    assert len(loads(tmp_path, "start")) == 5 and len(loads(tmp_path, "loaded")) == 1
    starts = loads(tmp_path, "start")
    assert gaps(starts)[-1] > gaps(starts)[0] + 1, starts     # backing off
    said = [t for t in texts(tg) if "detector" in t and not t.startswith("listening")]
    assert len(said) == 2, texts(tg)
    assert said[0].startswith("cannot load the detector (MemoryError: out of memory), "
                              "3 times in a row; trying again"), said
    assert said[1].startswith("the detector loaded after all: beepnet model"), said
    # Nothing was lost meanwhile: the beep heard while it could not load is alerted.
    assert "1 beep alert(s)" in r.stdout, r.stdout + r.stderr
    assert any(t.startswith("listening on") for t in texts(tg)), texts(tg)


def test_a_bad_shipped_model_is_refused_at_start_with_a_message(tmp_path, env, tg):
    bad = tmp_path / "beepnet-default.safetensors"
    bad.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all}")
    r = subprocess.run(beepnet_run(tg, tmp_path), env=daemon_env(env, tmp_path,
                                                                 default_model=str(bad)),
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 78, r.stderr
    assert "Traceback" not in r.stderr and TOKEN_SECRET not in r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(
        f"beepnet: config error: model file {bad}: not a readable BeepNet model"), r.stderr
    said = texts(tg)
    assert len(said) == 1 and said[0].startswith(
        f"beepnet stopped: cannot load the detector: model file {bad}: not a readable "
        "BeepNet model"), said
    assert not loads(tmp_path, "start")   # refused before any process started


def test_which_load_failures_are_worth_retrying():
    from beepnet.config import ConfigError
    from beepnet.daemon.classifier import load_failure
    from beepnet.model.modelfile import ModelFileError

    permanent = [ModelFileError("model file m: empty file"), ConfigError("bad"),
                 ValueError("unknown BeepNet runtime 'x'"),
                 FileNotFoundError(2, "No such file or directory", "m"),
                 PermissionError(13, "Permission denied", "m")]
    passing = [MemoryError(), OSError(5, "Input/output error"),
               ImportError("cannot import name 'x' from partially initialized module"),
               RuntimeError("a bug, maybe fixed by a restart")]
    assert [load_failure(e).permanent for e in permanent] == [True] * len(permanent)
    assert [load_failure(e).permanent for e in passing] == [False] * len(passing)
    assert load_failure(permanent[0]).reason == "model file m: empty file"
    assert load_failure(passing[0]).reason == "MemoryError: out of memory"
    assert load_failure(passing[1]).reason == "OSError: [Errno 5] Input/output error"
