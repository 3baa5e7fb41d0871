"""Running for months: systemd notify/watchdog, kept-clip limits, disk-full reporting."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

import numpy as np

from beepnet.config import Config, StorageConfig
from beepnet.daemon.retention import prune
from beepnet.daemon.supervisor import Supervisor
from beepnet.messages import Heartbeat
from procs import beepnet_children
from signals import convert, washer_with_beeps


class Datagrams:
    """A fake $NOTIFY_SOCKET: collects what the daemon sends, with arrival times."""

    def __init__(self, path):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.1)
        self.got: list[tuple[float, str]] = []

    def collect(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            try:
                self.got.append((time.monotonic(), self.sock.recv(4096).decode()))
            except socket.timeout:
                pass

    def times(self, field: str, since: float = 0.0) -> list[float]:
        return [t for t, msg in self.got if field in msg.split("\n") and t >= since]


def test_ready_then_watchdog_only_while_audio_flows(tmp_path):
    notify = Datagrams(tmp_path / "notify.sock")
    src = convert(np.tile(washer_with_beeps([], 6.0, seed=2), 10), tmp_path / "long.wav")
    env = dict(os.environ, NOTIFY_SOCKET=str(tmp_path / "notify.sock"), WATCHDOG_USEC="1000000")
    p = subprocess.Popen([sys.executable, "-m", "beepnet", "run", "--source", str(src),
                          "--set", f"storage.dir={tmp_path / 's'}"], env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        notify.collect(8.0)
        ready = notify.times("READY=1")
        assert len(ready) == 1, notify.got
        beats = notify.times("WATCHDOG=1", since=ready[0])
        assert len(beats) >= 8, notify.got          # every 0.5 s: half of WATCHDOG_USEC
        rec = beepnet_children(p.pid)["beepnet-rec"]
        os.kill(rec, signal.SIGSTOP)                # the recorder hangs
        stalled = time.monotonic()
        notify.collect(14.0)
        late = notify.times("WATCHDOG=1", since=stalled + 11.0)
        assert late == [], "watchdog kept pinging for a stalled recorder"
        os.kill(rec, signal.SIGCONT)
        resumed = time.monotonic()
        notify.collect(3.0)
        assert notify.times("WATCHDOG=1", since=resumed), "no ping after the recorder resumed"
        p.send_signal(signal.SIGTERM)
        out, err = p.communicate(timeout=20)
        notify.collect(0.5)
        assert p.returncode == 0, err
        assert notify.times("STOPPING=1")
    finally:
        if p.poll() is None:
            p.kill()


def test_alert_clips_are_capped_by_age_and_size(tmp_path):
    now = time.time()
    for i in range(10):  # ten alerts, one a day, 100 kB clip + record each
        for suffix, size in ((".wav", 100_000), (".json", 200)):
            f = tmp_path / f"alert{i:02d}{suffix}"
            f.write_bytes(b"x" * size)
            os.utime(f, (now - (10 - i) * 86400, now - (10 - i) * 86400))
    removed, freed = prune(tmp_path, max_age_days=7.5, max_mb=0.5, now=now)
    left = sorted(p.name for p in tmp_path.iterdir())
    # Three are older than 7.5 days; of the seven left, the two oldest go to fit in 0.5 MB.
    assert removed == 5 and freed == 5 * 100_200
    assert left == sorted(f"alert{i:02d}{s}" for i in range(5, 10) for s in (".wav", ".json"))


class Recorded:
    def __init__(self):
        self.messages: list[tuple[str, str]] = []

    def message(self, kind, text, emptied=None):
        self.messages.append((kind, text))


def test_a_full_disk_is_reported_once_and_its_end_once(tmp_path):
    n = Recorded()
    sup = Supervisor(Config(storage=StorageConfig(dir=str(tmp_path))), notifier=n)

    def beat(written, errors):
        sup._check_disk(Heartbeat(0, -30.0, written, 0, errors, 0))

    beat(10, 0)
    for errors in (1, 1, 2, 3, 3, 4):   # the disk is full: writes keep failing
        beat(10, errors)
    beat(11, 4)                          # space again
    beat(12, 4)
    assert [k for k, _ in n.messages] == ["disk", "disk"]
    assert "disk full" in n.messages[0][1] and "works again" in n.messages[1][1]


def _mount_tmpfs(path, size: str) -> bool:
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                       capture_output=True)
    return r.returncode == 0


def test_a_really_full_disk_keeps_the_daemon_listening(tmp_path):
    tiny = tmp_path / "tiny"
    tiny.mkdir()
    if not _mount_tmpfs(tiny, "64k"):   # needs root; test_recorder.py covers ENOSPC otherwise
        import pytest

        pytest.skip("cannot mount a tmpfs here")
    try:
        x = washer_with_beeps([(14.0, 0.6, 3000.0)], 18.0, seed=6)
        src = convert(x, tmp_path / "w.wav")
        p = subprocess.Popen([sys.executable, "-m", "beepnet", "run", "--source", str(src),
                              "--set", f"storage.dir={tmp_path / 's'}",
                              "--set", f"storage.runtime_dir={tiny}"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        time.sleep(7)   # a 3-s chunk (96 kB) cannot fit in 64 kB: every write fails
        subprocess.run(["mount", "-o", "remount,size=4m", str(tiny)], check=True)
        out, err = p.communicate(timeout=60)
        assert p.returncode == 0, err
        assert err.count("[disk] cannot write audio chunks") == 1, err
        assert err.count("[disk] writing audio chunks works again") == 1, err
        assert "1 beep alert(s)" in out, out + err   # it kept listening and caught the beep
        assert "Traceback" not in err
    finally:
        subprocess.run(["umount", "-l", str(tiny)], capture_output=True)
