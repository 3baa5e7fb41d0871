"""The recorder loop in-process: gate, chunk files, and a disk that fills up."""

from __future__ import annotations

import errno
import subprocess
import sys
import logging

import numpy as np
import soundfile as sf

from beepnet.audio.sources import FileSource
from beepnet.config import AudioConfig
from beepnet.daemon import recorder as recorder_mod
from beepnet.daemon.recorder import Recorder
from beepnet.messages import Chunk, Heartbeat, SourceEnded, Started
from signals import convert, washer_with_beeps


def _replay(path, audio: AudioConfig, out_dir, **kw):
    msgs: list[object] = []
    out_dir.mkdir()
    rec = Recorder(audio, out_dir, msgs.append)
    assert rec.run(FileSource(str(path), audio.block_ms, speed=1000.0), **kw)
    return rec, msgs


def test_quiet_windows_are_not_written(tmp_path):
    x = np.zeros(16000 * 12, np.float32)
    x[16000 * 7: 16000 * 7 + 1600] = 0.1 * np.sin(np.arange(1600) * 2 * np.pi * 3000 / 16000)
    path = convert(x, tmp_path / "quiet.wav", 48000)
    rec, msgs = _replay(path, AudioConfig(), tmp_path / "chunks")
    chunks = [m for m in msgs if isinstance(m, Chunk)]
    # Only the windows holding the 100 ms tone at 7 s: [4.5, 7.5) and [6, 9).
    assert [c.start_sample for c in chunks] == [72000, 96000]
    assert isinstance(msgs[0], Started) and isinstance(msgs[-1], SourceEnded)
    assert msgs[-1].samples == 12 * 16000
    assert rec.skipped == 5 and rec.written == 2  # 7 windows start in 0..9 s
    for c in chunks:
        data, rate = sf.read(c.path, dtype="int16")
        assert rate == 16000 and len(data) == 48000 and sf.info(c.path).subtype == "PCM_16"
    assert not list((tmp_path / "chunks").glob(".*.tmp"))


def test_a_full_disk_is_reported_once_and_recording_goes_on(tmp_path, monkeypatch, caplog):
    path = convert(washer_with_beeps([], 20.0), tmp_path / "w.wav")
    real_write = recorder_mod.write_wav_atomic
    calls = {"n": 0}

    def flaky_write(p, audio, rate=16000):
        calls["n"] += 1
        if 3 <= calls["n"] <= 7:  # the disk is full for a while, then space is freed
            raise OSError(errno.ENOSPC, "No space left on device")
        real_write(p, audio, rate)

    monkeypatch.setattr(recorder_mod, "write_wav_atomic", flaky_write)
    with caplog.at_level(logging.WARNING):
        rec, msgs = _replay(path, AudioConfig(gate_dbfs=-120), tmp_path / "chunks")
    assert rec.write_errors == 5
    assert rec.written == calls["n"] - 5 > 5
    errors = [r for r in caplog.records if "disk full" in r.getMessage()]
    assert len(errors) == 1
    assert any("works again" in r.getMessage() for r in caplog.records)
    beats = [m for m in msgs if isinstance(m, Heartbeat)]
    assert beats[-1].write_errors == 5
    assert isinstance(msgs[-1], SourceEnded)


def test_the_recorder_side_never_imports_torch():
    # What a spawned recorder child imports: its target's module and the CLI's entry module.
    code = ("import sys, beepnet.cli, beepnet.daemon.recorder, beepnet.daemon.supervisor;"
            "print('torch' in sys.modules)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stdout.strip() == "False", r.stderr


def test_record_command_collects_chunks_from_a_replay(tmp_path):
    src = convert(washer_with_beeps([(5.0, 0.5, 3000.0)], 12.0), tmp_path / "w.flac", 44100)
    out = tmp_path / "unlabelled"
    r = subprocess.run([sys.executable, "-m", "beepnet", "record", "--source", str(src),
                        "--speed", "50", "--out", str(out)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    files = sorted(out.glob("*.wav"))
    assert f"recorded {len(files)} chunk(s) into {out}" in r.stdout
    assert len(files) == 7  # a washer is never quiet: every window of 12 s is kept
    starts = [int(f.stem.split("_")[1]) for f in files]
    assert starts == list(range(0, 7 * 24000, 24000))
