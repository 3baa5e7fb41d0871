"""Complete clips: an alert waits for the beep pattern to end and carries all of it
(issue 15, item 1). In-process with the classifier as the daemon runs it, then through
`beepnet run` on a replayed recording."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from signals import SR, convert, washer_with_beeps

from beepnet.audio.wav import write_wav_atomic
from beepnet.config import DetectorConfig
from beepnet.daemon.classifier import Classifier
from beepnet.daemon.pattern import (CLIP_MAX_SECONDS, PATTERN_GAP_SECONDS, POST_ROLL_SECONDS,
                                    PRE_ROLL_SECONDS)
from beepnet.messages import BeepStarted, Chunk, Detection

WINDOW, HOP = 3.0, 1.5


def pattern(at: float, on: float, off: float, n: int, freq: float
            ) -> list[tuple[float, float, float]]:
    """``n`` beeps of ``on`` s, ``off`` s apart, from ``at``: (start, length, Hz) each."""
    return [(at + k * (on + off), on, freq) for k in range(n)]


def span(beeps: list[tuple[float, float, float]]) -> tuple[float, float]:
    return beeps[0][0], beeps[-1][0] + beeps[-1][1]


def chunks_of(x: np.ndarray, folder: Path, t0: float = 1000.0) -> list[Chunk]:
    """The recorder's windows of ``x`` (3 s every 1.5 s) as chunk files."""
    out = []
    for k in range(int((len(x) / SR - WINDOW) / HOP) + 1):
        s = int(k * HOP * SR)
        path = folder / f"c{k:04d}.wav"
        write_wav_atomic(path, x[s: s + int(WINDOW * SR)], SR)
        out.append(Chunk(str(path), s, t0 + s / SR, WINDOW, -20.0, start_mono=t0 + s / SR))
    return out


def run_classifier(x: np.ndarray, folder: Path) -> list[tuple[Chunk, object]]:
    """Every message the tone detector's classifier sends, with the chunk it answered."""
    clf = Classifier(DetectorConfig(kind="tone"), folder / "alerts")
    return [(c, m) for c in chunks_of(x, folder) for m in clf.handle(c)]


def beep_cover(clip: np.ndarray, clip_start: float, beeps, freq: float) -> float:
    """Share of the beeps' samples inside the clip where it also sounds at ``freq``."""
    inside = total = 0
    for at, length, _ in beeps:
        a0, b0 = int(round((at - clip_start) * SR)), int(round((at + length - clip_start) * SR))
        a, b = max(a0, 0), min(b0, len(clip))
        total += b0 - a0
        if b - a < SR // 20:
            continue
        seg = clip[a:b]
        t = np.arange(len(seg)) / SR
        tone = abs(np.dot(seg, np.exp(-2j * np.pi * freq * t))) * 2 / len(seg)
        if tone > 0.3 * np.sqrt(2) * np.std(seg):
            inside += b - a
    return inside / total


@pytest.mark.parametrize("on, off, n", [(0.4, 0.5, 3), (0.25, 0.25, 8), (0.6, 0.3, 5)])
def test_a_pattern_alerts_once_after_its_last_beep_with_all_of_it(tmp_path, on, off, n):
    beeps = pattern(6.0, on, off, n, 2800.0)
    first, last = span(beeps)
    x = washer_with_beeps(beeps, 20.0, seed=3, snr_db=8.0)
    sent = run_classifier(x, tmp_path)
    started = [(c, m) for c, m in sent if isinstance(m, BeepStarted)]
    detections = [(c, m) for c, m in sent if isinstance(m, Detection)]
    assert len(started) == 1 and len(detections) == 1, [type(m).__name__ for _, m in sent]
    (c_start, s), (c_end, det) = started[0], detections[0]
    assert det.chunk == s.chunk and abs(det.offset - first) < 0.15
    # Sent with the first window that shows a second without a beep after the last one.
    heard_at = c_end.start_sample / SR + c_end.duration
    assert last + PATTERN_GAP_SECONDS - 0.1 <= heard_at <= last + PATTERN_GAP_SECONDS + HOP + 0.1
    assert abs(det.length - (last - first)) < 0.2
    clip, rate = sf.read(det.clip_path, dtype="float32")
    assert rate == SR
    clip_start = det.offset - det.clip_offset
    assert abs(det.clip_offset - PRE_ROLL_SECONDS) < 0.01
    # After the last beep: what had been heard when the pattern ended, up to POST_ROLL.
    after = len(clip) / SR - det.length - PRE_ROLL_SECONDS
    assert PATTERN_GAP_SECONDS - 0.05 <= after <= POST_ROLL_SECONDS + 0.05, after
    # The clip is the recording itself there, sample for sample (16-bit), and holds every beep.
    lo = int(round(clip_start * SR))
    assert np.max(np.abs(clip - x[lo: lo + len(clip)])) < 2e-4
    assert beep_cover(clip, clip_start, beeps, 2800.0) == 1.0


def test_a_machine_beeping_on_and_on_gets_the_first_20_seconds(tmp_path):
    beeps = pattern(4.0, 1.0, 0.5, 24, 3200.0)  # 36 s of beeping
    x = washer_with_beeps(beeps, 45.0, seed=4, snr_db=8.0)
    sent = run_classifier(x, tmp_path)
    detections = [(c, m) for c, m in sent if isinstance(m, Detection)]
    assert len(detections) == 1
    c_end, det = detections[0]
    clip, _ = sf.read(det.clip_path, dtype="float32")
    assert abs(len(clip) / SR - CLIP_MAX_SECONDS) < 0.05
    # Sent as soon as 20 s of clip were heard, not after the last beep.
    assert c_end.start_sample / SR + c_end.duration - (det.offset - det.clip_offset) < 21.6
    assert beep_cover(clip, det.offset - det.clip_offset,
                      [b for b in beeps if b[0] + b[1] < det.offset + 17.5], 3200.0) == 1.0


def test_a_pattern_whose_end_the_gate_left_out_is_sent_when_overdue(tmp_path):
    beeps = pattern(6.0, 0.4, 0.4, 3, 2500.0)
    x = washer_with_beeps(beeps, 20.0, seed=5, snr_db=8.0)
    clf = Classifier(DetectorConfig(kind="tone"), tmp_path / "alerts")
    chunks = chunks_of(x, tmp_path)
    first_beep = next(k for k, c in enumerate(chunks)
                      if c.start_sample / SR + WINDOW > beeps[0][0] + 0.3)
    msgs = [m for c in chunks[: first_beep + 1] for m in clf.handle(c)]
    assert any(isinstance(m, BeepStarted) for m in msgs)
    assert not any(isinstance(m, Detection) for m in msgs)
    last = chunks[first_beep]
    # Nothing more comes (the gate skipped the quiet after it): not yet at the next
    # window's due time, then sent.
    assert clf.idle(last.start_mono + WINDOW + HOP) == []
    (det,) = clf.idle(last.start_mono + 2 * WINDOW + 1.5)
    assert isinstance(det, Detection) and Path(det.clip_path).exists()
    assert clf.pattern is None and clf.idle(1e12) == []


def test_stopping_mid_pattern_sends_what_was_heard(tmp_path):
    beeps = pattern(6.0, 0.4, 0.4, 3, 2500.0)
    x = washer_with_beeps(beeps, 20.0, seed=5, snr_db=8.0)
    clf = Classifier(DetectorConfig(kind="tone"), tmp_path / "alerts")
    msgs = [m for c in chunks_of(x, tmp_path)[:4] for m in clf.handle(c)]  # up to 7.5 s
    assert any(isinstance(m, BeepStarted) for m in msgs)
    assert not any(isinstance(m, Detection) for m in msgs)
    (det,) = clf.flush("stop")
    assert isinstance(det, Detection) and det.clip_offset > 0


def test_replay_alerts_each_pattern_with_a_clip_that_holds_it(tmp_path):
    """`beepnet run` on a recording: three patterns, three alerts, each clip holds its
    pattern (the shipped BeepNet model, the default)."""
    patterns = [pattern(4.0, 0.4, 0.5, 3, 2800.0), pattern(16.0, 0.3, 0.3, 6, 3400.0),
                pattern(30.0, 0.8, 0.6, 4, 2200.0)]
    x = washer_with_beeps([b for p in patterns for b in p], 42.0, seed=11, snr_db=8.0)
    rec = convert(x, tmp_path / "cycle.flac", 44100, 2)
    p = subprocess.run(
        [sys.executable, "-m", "beepnet", "run", "--source", str(rec), "--speed", "15",
         "--set", f"storage.dir={tmp_path / 'state'}", "--set", "notify.cooldown_minutes=0"],
        capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert "3 beep alert(s)" in p.stdout, p.stdout + p.stderr
    records = [json.loads(r.read_text())
               for r in sorted((tmp_path / "state" / "alerts").glob("*.json"))]
    for r, beeps in zip(records, patterns):
        first, _ = span(beeps)
        assert abs(r["offset"] - first) < 0.3, (r["offset"], first)
        clip, _ = sf.read(r["clip"], dtype="float32")
        # Where the clip sits in the recording: by cross-correlation with it.
        lo = max(0, int((first - 4) * SR))
        ref = x[lo: lo + len(clip) + 4 * SR]
        corr = np.fft.irfft(np.fft.rfft(ref, 2 * len(ref)) *
                            np.conj(np.fft.rfft(clip, 2 * len(ref))))[: len(ref) - len(clip)]
        clip_start = (lo + int(np.argmax(corr))) / SR
        assert beep_cover(clip, clip_start, beeps, beeps[0][2]) == 1.0, (clip_start, first)


class _Alerts:
    def __init__(self):
        self.alerted = []
        self.texts = []

    def alert(self, det, caption=None, emptied=None) -> bool:
        self.alerted.append(det)
        return True

    def delivery_of(self, det):
        return None

    def message(self, kind, text, emptied=None):
        self.texts.append(text)


def test_a_classifier_dying_mid_pattern_still_alerts_the_beep(tmp_path):
    """Nothing lost: the beep start was reported, the pattern's end never came."""
    import multiprocessing as mp
    import queue

    from beepnet.config import Config, StorageConfig
    from beepnet.daemon.supervisor import Supervisor
    from beepnet.messages import DetectorReady, Scored

    alerts = _Alerts()
    sup = Supervisor(Config(storage=StorageConfig(dir=str(tmp_path))), alerts, source="x.wav")
    sup._detector = DetectorReady("test detector", 0.5)
    sup.results_q = queue.Queue()
    chunk = Chunk(str(tmp_path / "c.wav"), 24000, 1000.0, 3.0, -20.0, start_mono=50.0)
    sup.results_q.put(BeepStarted(chunk, 0.9, 1000.4, 1.9, 50.4))
    sup.results_q.put(Scored(chunk, 0.9))
    sup._drain_results()
    assert alerts.alerted == []
    dead = mp.get_context("spawn").Process(target=int)
    dead.start()
    dead.join()
    sup.classifier.proc = dead
    sup._check_children()
    (det,) = alerts.alerted
    assert (det.time, det.offset, det.clip_path, det.detector) == (1000.4, 1.9, "",
                                                                   "test detector")
    assert sup.stats.detections == 1 and sup.classifier.restart_at is not None
