"""`beepnet run` as users start it: real processes, real files, real signals."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from procs import alive, beepnet_children, children, wait_for
from signals import convert, washer_with_beeps

from beepnet.config import Config, StorageConfig
from beepnet.daemon.supervisor import Supervisor
from beepnet.messages import Chunk

BEEPS = [(4.0, 0.6, 2800.0), (13.6, 0.4, 3600.0), (24.0, 1.5, 2000.0)]


def start(args: list[str], storage: Path, **kw) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "beepnet", "run", "--set", f"storage.dir={storage}", *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


@pytest.fixture(scope="module")
def cycle(tmp_path_factory) -> Path:
    x = washer_with_beeps(BEEPS, 30.0, seed=11, snr_db=6.0)
    return convert(x, tmp_path_factory.mktemp("rec") / "cycle.flac", 44100, 2)


def test_replay_alerts_once_per_beep_with_a_clip(tmp_path, cycle):
    p = start(["--source", str(cycle), "--speed", "15", "--set", "notify.cooldown_minutes=0"],
              tmp_path)
    out, err = p.communicate(timeout=120)
    assert p.returncode == 0, err
    assert "Traceback" not in err
    assert "3 beep alert(s)" in out, out + err
    records = sorted((tmp_path / "alerts").glob("*.json"))
    assert len(records) == 3
    for rec, (at, length, freq) in zip(records, BEEPS):
        r = json.loads(rec.read_text())
        # The default detector; its score is P(beep), above the model's own threshold.
        assert r["detector"].startswith("beepnet") and 0.0 < r["score"] <= 1.0
        clip, rate = sf.read(r["clip"])
        assert rate == 16000 and 3.0 <= len(clip) / rate <= 10.0
        # The clip holds the beep: its spectrum peaks at the beep's frequency.
        spec = np.abs(np.fft.rfft(clip))
        band = (np.fft.rfftfreq(len(clip), 1 / rate) > 1000)
        peak = np.fft.rfftfreq(len(clip), 1 / rate)[band][np.argmax(spec[band])]
        assert abs(peak - freq) < 30, (peak, freq)
    # Every live chunk was deleted once classified.
    assert list((tmp_path / "chunks").iterdir()) == []
    assert "[start] listening" in err


def test_cooldown_keeps_one_alert_per_cycle(tmp_path, cycle):
    # Beeps 10 s apart, cooldown 0.25 min (15 s, on the recording's clock even at --speed 15).
    p = start(["--source", str(cycle), "--speed", "15", "--set", "notify.cooldown_minutes=0.25"],
              tmp_path)
    out, err = p.communicate(timeout=120)
    assert p.returncode == 0, err
    assert "2 beep alert(s) (1 more beep(s) within the cooldown)" in out, out + err
    assert len(list((tmp_path / "alerts").glob("*.json"))) == 2


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_stops_cleanly_without_orphans(tmp_path, cycle, sig):
    p = start(["--source", str(cycle)], tmp_path)  # real time: 30 s, we stop it early
    kids = beepnet_children(p.pid)
    assert wait_for(lambda: any((tmp_path / "alerts").glob("*.json")) or
                    p.poll() is not None, 20)  # first beep at 4 s: it is really running
    t = time.monotonic()
    p.send_signal(sig)
    out, err = p.communicate(timeout=10)
    assert p.returncode == 0, err
    assert time.monotonic() - t < 6
    assert "Traceback" not in err and "KeyboardInterrupt" not in err
    assert "[stop] stopped listening" in err
    assert wait_for(lambda: not any(alive(k) for k in kids.values()), 3), kids
    assert list((tmp_path / "chunks").iterdir()) == []


def test_children_die_with_a_killed_supervisor(tmp_path, cycle):
    p = start(["--source", str(cycle)], tmp_path)
    kids = beepnet_children(p.pid)
    p.kill()
    p.wait(5)
    assert wait_for(lambda: not any(alive(k) for k in kids.values()), 5), kids


def test_killed_classifier_is_restarted_and_nothing_is_lost(tmp_path, cycle):
    p = start(["--source", str(cycle), "--speed", "3", "--set", "notify.cooldown_minutes=0"],
              tmp_path)
    kids = beepnet_children(p.pid)
    time.sleep(1.0)
    os.kill(kids["beepnet-clf"], signal.SIGKILL)
    assert wait_for(lambda: "beepnet-clf" in {open(f"/proc/{c}/comm").read().strip()
                                             for c in children(p.pid) if alive(c)}, 10)
    out, err = p.communicate(timeout=60)
    assert p.returncode == 0, err
    assert "classifier process died" in err
    assert "3 beep alert(s)" in out, out + err
    assert list((tmp_path / "chunks").iterdir()) == []


def test_unreadable_source_is_one_line_and_status_1(tmp_path):
    bad = tmp_path / "bad.wav"
    bad.write_text("not audio")
    p = start(["--source", str(bad)], tmp_path)
    out, err = p.communicate(timeout=60)
    assert p.returncode == 1
    assert "Traceback" not in err
    assert f"{bad}: not an audio file" in err


def test_backlog_is_bounded_dropping_the_oldest(tmp_path):
    cfg = Config(storage=StorageConfig(dir=str(tmp_path), max_backlog_chunks=3))
    sup = Supervisor(cfg, notifier=None, source="x.wav")
    sup.chunk_dir.mkdir(parents=True)
    chunks = []
    for i in range(5):
        path = sup.chunk_dir / f"c{i}.wav"
        path.write_bytes(b"x")
        chunks.append(Chunk(str(path), i * 24000, time.time(), 3.0, -20.0))
        sup._on_recorder(chunks[-1])
    assert list(sup.pending) == chunks[2:]
    assert sup.stats.chunks_dropped == 2
    assert sorted(p.name for p in sup.chunk_dir.iterdir()) == ["c2.wav", "c3.wav", "c4.wav"]
