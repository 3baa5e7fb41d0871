"""The real PyAudio capturing from a PulseAudio virtual microphone, in real beepnet processes.

Slow by nature (real time): about two minutes together.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import soundfile as sf

from beepnet.training import synth
from procs import LogReader, wait_for

pytestmark = pytest.mark.mic
SR = 16000


def beepnet(args: list[str], env: dict) -> tuple[subprocess.Popen, LogReader]:
    p = subprocess.Popen([sys.executable, "-m", "beepnet", *args], env=env, text=True,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    return p, LogReader(p)


def stop(p: subprocess.Popen, reader: LogReader) -> str:
    p.send_signal(signal.SIGTERM)
    out, _ = p.communicate(timeout=15)
    reader._t.join(5)
    assert p.returncode == 0, reader.text
    assert "Traceback" not in reader.text
    return out


def _onsets(x: np.ndarray, freq: float, min_gap: float = 1.0) -> list[float]:
    """Times where a tone at ``freq`` starts, to about a millisecond."""
    n = 64
    t = np.arange(n) / SR
    probe = np.exp(-2j * np.pi * freq * t) * np.hanning(n)
    frames = np.lib.stride_tricks.sliding_window_view(x, n)[::8]
    mag = np.abs(frames @ probe)
    on = mag > 0.5 * mag.max()
    times, last = [], -1e9
    for i in np.flatnonzero(on[1:] & ~on[:-1]) + 1:
        if i * 8 / SR - last > min_gap:
            times.append(i * 8 / SR)
            last = times[-1]
    return times


def test_twenty_seconds_of_capture_lose_no_sample(vmic, tmp_path):
    """Chunks from `beepnet record` line up with what was played, sample for sample.

    20 s is 13 consecutive windows and 4 markers; longer runs (60 s) found nothing more and
    cost the suite's time budget."""
    rng = np.random.default_rng(5)
    marks = np.cumsum(rng.uniform(3.0, 5.0, size=4)) + 1.0      # ~5.6 s .. ~17.8 s
    signal_ = (rng.standard_normal(20 * SR) * 0.003).astype(np.float32)
    for m in marks:
        signal_ = synth.mix(signal_, synth.beep(3000, 0.1, level=0.5), m, 30.0)
    out = tmp_path / "chunks"
    p, reader = beepnet(["record", "--out", str(out), "--set", "audio.gate_dbfs=-120"],
                        vmic.env)
    assert wait_for(lambda: out.exists() and any(out.glob("*.wav")), 20), reader.text
    vmic.play(signal_, rate=SR)
    time.sleep(3.5)  # let the last window after the signal close
    stop(p, reader)

    chunks = sorted(out.glob("*.wav"))
    starts = [int(c.stem.split("_")[1]) for c in chunks]
    # Gate open: every window was written, one every 1.5 s with none missing.
    assert starts == list(range(0, 24000 * len(starts), 24000))
    stream = np.zeros(starts[-1] + 48000, np.float32)
    prev = None
    for c, s in zip(chunks, starts):
        a, rate = sf.read(c, dtype="float32")
        assert rate == SR and len(a) == 48000
        if prev is not None:  # the overlapping halves hold the very same samples
            assert np.array_equal(prev[24000:], a[:24000])
        stream[s: s + 48000] = a
        prev = a
    assert len(stream) / SR >= 22
    found = _onsets(stream, 3000.0)
    assert len(found) == len(marks), (found, marks)
    # Distances between markers as played vs as recorded: a lost block would shorten one.
    played = np.asarray(marks) - marks[0]
    heard = np.asarray(found) - found[0]
    assert np.max(np.abs(heard - played)) < 0.003, heard - played


def test_live_run_alerts_on_every_beep_including_across_chunk_edges(vmic, tmp_path):
    storage = tmp_path / "state"
    p, reader = beepnet(["run", "--set", f"storage.dir={storage}",
                         "--set", "notify.cooldown_minutes=0"], vmic.env)
    assert reader.wait_for("[start] listening", 30), reader.text
    alerts = storage / "alerts"

    def records() -> list[dict]:
        return [json.loads(f.read_text()) for f in sorted(alerts.glob("*.json"))]

    rng = np.random.default_rng(8)
    # A first beep tells us where the recorder's windows start in wall-clock time.
    first = synth.mix(synth.washer(rng, 6.0), synth.beep(2500, 0.5), 2.0, 10.0)
    vmic.play(first, rate=SR)
    assert wait_for(lambda: len(records()) == 1, 10), reader.text
    rec = records()[0]
    stream_zero = rec["epoch"] - rec["offset"]   # wall time of stream sample 0

    # Then beeps centred on window edges (multiples of 1.5 s of stream time) and one in the
    # middle of a window, over a running washer. The background is made first: placing the
    # beeps must not wait on it, or they would land late.
    bg = synth.washer(rng, 26.0, phase="wash")
    now = time.time() + 0.2             # when playback starts
    lead = now - stream_zero            # stream time at the signal's first sample
    first_edge = np.ceil((lead + 2.0) / 1.5)
    edges = [(first_edge + k) * 1.5 for k in (0, 5, 10)]
    planned = [(e - 0.2, 0.4, f) for e, f in zip(edges, (3100, 1800, 4200))]
    planned.append((edges[-1] + 6.75, 0.6, 2700))
    for at, length, freq in planned:
        bg = synth.mix(bg, synth.beep(freq, length), at - lead, 8.0)
    bg = bg[: int((planned[-1][0] - lead + 3.0) * SR)]
    time.sleep(max(0.0, now - time.time()))
    vmic.play(bg, rate=SR)
    assert wait_for(lambda: len(records()) == 1 + len(planned), 10), reader.text
    stop(p, reader)

    got = records()[1:]
    for r, (at, length, freq) in zip(got, planned):
        # Timing through PulseAudio and paplay start-up jitter by some tens of ms.
        assert abs(r["offset"] - at) < 0.25, (r, at)
        assert 0.0 < r["score"] <= 1.0
    straddling = [r for r, (at, length, _) in zip(got, planned)
                  if np.floor(r["offset"] / 1.5) != np.floor((r["offset"] + length) / 1.5)]
    assert len(straddling) >= 2, got
    assert list((storage / "chunks").iterdir()) == []


def test_microphone_lost_and_back(vmic, tmp_path):
    p, reader = beepnet(["run", "--set", f"storage.dir={tmp_path}"], vmic.env)
    assert reader.wait_for("[start] listening", 30), reader.text
    vmic.stop()
    assert reader.wait_for("[mic] microphone lost", 10), reader.text
    time.sleep(3)  # a few failed reopen attempts, which must not each say so
    vmic.restart()
    assert reader.wait_for("[mic] microphone back", 40), reader.text
    # Listening again for real: a beep after the comeback is caught.
    vmic.play(synth.mix(synth.washer(np.random.default_rng(1), 5.0), synth.beep(3000, 0.5),
                        2.0, 10.0), rate=SR)
    assert wait_for(lambda: any((tmp_path / "alerts").glob("*.json")), 10), reader.text
    stop(p, reader)
    assert reader.text.count("microphone lost") == 1
    assert reader.text.count("[mic]") == 2
