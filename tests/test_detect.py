"""`beepnet detect` as users run it: a real process over real files."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from signals import SR, convert, washer_with_beeps

# Beeps straddling window edges on purpose: windows are 3 s long and start every 1.5 s, so
# 2.8-3.3 crosses the first window's end and 13.4-13.7 crosses a hop boundary.
BEEPS = [(2.8, 0.5, 2900.0), (8.0, 0.25, 4100.0), (13.4, 0.3, 1500.0), (21.0, 1.0, 3300.0)]
LENGTH = 27.0


def detect(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "beepnet", "detect", *args],
                          capture_output=True, text=True, timeout=120)


def _events(stdout: str) -> list[dict]:
    return [json.loads(line) for line in stdout.splitlines() if line.strip()]


@pytest.fixture(scope="module")
def recording(tmp_path_factory):
    return washer_with_beeps(BEEPS, LENGTH, seed=7)


def _assert_matches(events, beeps, tol=0.08):
    assert len(events) == len(beeps), events
    for ev, (at, length, _) in zip(events, beeps):
        assert abs(ev["start"] - at) < tol, (ev, at)
        assert abs(ev["end"] - (at + length)) < tol, (ev, at + length)
        assert 0.5 <= ev["score"] <= 1.0


@pytest.mark.parametrize("name, rate, channels", [
    ("a.wav", 16000, 1), ("b.wav", 44100, 2), ("c.flac", 48000, 1), ("d.ogg", 22050, 2),
    ("e.mp3", 44100, 1), ("f.wav", 8000, 1)])
def test_finds_every_beep_at_its_time_in_any_format(tmp_path, recording, name, rate, channels):
    beeps = [b for b in BEEPS if b[2] < 0.45 * rate]  # 4.1 kHz does not exist at 8 kHz
    if beeps != BEEPS:
        recording = washer_with_beeps(beeps, LENGTH, seed=7)
    path = convert(recording, tmp_path / name, rate, channels)
    r = detect("--json", str(path))
    assert r.returncode == 0, r.stderr
    events = _events(r.stdout)
    assert all(e["file"] == str(path) for e in events)
    # Lossy codecs and resampling smear edges a little more.
    _assert_matches(events, beeps, tol=0.08 if name.endswith(".wav") else 0.12)


def test_no_beep_in_a_washer_without_one(tmp_path):
    path = convert(washer_with_beeps([], 30.0, seed=3), tmp_path / "quiet.wav")
    r = detect("--json", str(path))
    assert r.returncode == 0 and r.stdout == ""
    r = detect(str(path))
    assert r.returncode == 0 and "no beep" in r.stdout


def test_bad_files_are_named_and_the_good_one_still_reported(tmp_path, recording):
    good = convert(recording, tmp_path / "good.wav")
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    text = tmp_path / "notes.wav"
    text.write_text("this is not audio\n" * 20)
    data = good.read_bytes()
    truncated = tmp_path / "cut.wav"
    truncated.write_bytes(data[: len(data) // 2])
    header_only = tmp_path / "header.wav"
    header_only.write_bytes(data[:30])
    flac = convert(recording, tmp_path / "x.flac")
    cut_flac = tmp_path / "cut.flac"
    cut_flac.write_bytes(flac.read_bytes()[:4000])
    missing = tmp_path / "missing.wav"
    bad = [missing, empty, text, truncated, header_only, cut_flac, tmp_path]
    r = detect("--json", *map(str, bad[:3]), str(good), *map(str, bad[3:]))
    assert r.returncode == 1
    lines = r.stderr.strip().splitlines()
    assert len(lines) == len(bad), r.stderr
    assert "Traceback" not in r.stderr
    for path, line in zip(bad, lines):
        assert str(path) in line
    assert "no such file" in lines[0] and "empty" in lines[1] and "not an audio file" in lines[2]
    assert "truncated" in lines[3]
    _assert_matches(_events(r.stdout), BEEPS)


def test_gate_and_threshold_settings_apply(tmp_path, recording):
    path = convert(recording, tmp_path / "r.wav")
    r = detect("--json", "--set", "audio.gate_dbfs=-1", str(path))
    assert r.returncode == 0 and r.stdout == ""  # nothing is that loud: every window skipped
    # The threshold decides which events count: raising it just above the weakest event's
    # score removes that event and keeps the others.
    r = detect("--json", str(path))
    assert r.returncode == 0, r.stderr
    events = _events(r.stdout)
    scores = sorted(e["score"] for e in events)
    assert len(scores) >= 2, events
    above = (scores[0] + scores[1]) / 2
    r = detect("--json", "--set", f"detector.threshold={above}", str(path))
    assert r.returncode == 0, r.stderr
    kept = _events(r.stdout)
    assert 0 < len(kept) < len(events), (events, kept)
    assert all(e["score"] >= above for e in kept), kept


def _peak_rss_kb_of_detect(path) -> int:
    r = subprocess.run([sys.executable, "-c", (
        "import resource, sys; from beepnet.cli import main; rc = main(['detect', sys.argv[1]]);"
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)"), str(path)],
        capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    return int(r.stdout.strip().splitlines()[-1])


def test_long_recording_streams(tmp_path):
    # detect must stream a file, not load it: 10 minutes need no more memory than 10 s.
    # (Loaded whole, the 10-minute file would take 38 MB as float32 at 16 kHz, plus the
    # decoder's copy.) Compared with a short file, so the detector's own size (torch for
    # BeepNet) does not count.
    rng = np.random.default_rng(0)
    x = (rng.standard_normal(SR * 600) * 0.01).astype(np.float32)
    long_kb = _peak_rss_kb_of_detect(convert(x, tmp_path / "long.wav", subtype="PCM_16"))
    short_kb = _peak_rss_kb_of_detect(convert(x[:SR * 10], tmp_path / "short.wav",
                                              subtype="PCM_16"))
    assert long_kb - short_kb < 20_000, (f"peak RSS {long_kb} kB for a 10-minute file, "
                                         f"{short_kb} kB for 10 s")
