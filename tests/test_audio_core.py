"""Resampler, chunker, gate and event merging: the pieces live and offline paths share."""

from __future__ import annotations

import numpy as np
import pytest

from beepnet.audio.chunker import Chunker, StreamWindower
from beepnet.audio.gate import Gate, frame_levels
from beepnet.audio.resample import Resampler, resample
from beepnet.detectors.base import WindowScore
from beepnet.events import EventTracker


def _tone(freq, seconds, rate, amp=0.5):
    t = np.arange(int(seconds * rate)) / rate
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


@pytest.mark.parametrize("rate", [8000, 16000, 22050, 44100, 48000, 96000])
def test_resampler_keeps_a_tone_and_the_length(rate):
    x = _tone(1000, 2.0, rate)
    y = resample(x, rate)
    assert abs(len(y) - 32000) <= 1
    mid = y[4000:28000]
    # Same frequency: the zero crossings of a 1 kHz tone come every 8 samples at 16 kHz.
    spec = np.abs(np.fft.rfft(mid * np.hanning(len(mid))))
    assert abs(np.argmax(spec) * 16000 / len(mid) - 1000) < 2
    # Same level (the filter's passband is flat at 1 kHz).
    assert abs(np.sqrt(np.mean(mid ** 2)) - 0.5 / np.sqrt(2)) < 0.01


def test_resampler_removes_what_16k_cannot_hold():
    y = resample(_tone(10000, 1.0, 48000), 48000)  # 10 kHz would alias to 6 kHz
    assert np.sqrt(np.mean(y[2000:-2000] ** 2)) < 0.005


@pytest.mark.parametrize("rate", [44100, 48000])
def test_resampling_in_blocks_equals_resampling_whole(rate):
    rng = np.random.default_rng(1)
    x = rng.standard_normal(rate * 2).astype(np.float32) * 0.1
    whole = resample(x, rate)
    rs = Resampler(rate)
    parts, i = [], 0
    while i < len(x):
        n = int(rng.integers(1, 5000))
        parts.append(rs.process(x[i:i + n]))
        i += n
    parts.append(rs.flush())
    assert np.allclose(np.concatenate(parts), whole, atol=1e-6)
    # 16 kHz out: a third of 48 kHz; 160/441 of 44.1 kHz.
    assert len(whole) == (len(x) // 3 if rate == 48000 else round(len(x) * 160 / 441))


def test_resampler_adds_no_delay():
    # A click at 1.000 s in must come out at 1.000 s (sample 16000), not a filter delay later.
    x = np.zeros(48000 * 2, np.float32)
    x[48000] = 1.0
    y = resample(x, 48000)
    assert abs(int(np.argmax(y)) - 16000) <= 1


def test_chunker_is_gapless_and_block_size_independent():
    rng = np.random.default_rng(2)
    x = rng.standard_normal(16000 * 10).astype(np.float32)
    ch = Chunker(48000, 24000)
    wins = []
    i = 0
    while i < len(x):
        n = int(rng.integers(1, 7000))
        wins.extend(ch.push(x[i:i + n]))
        i += n
    wins.extend(ch.flush())
    starts = [w.start for w in wins]
    assert starts == list(range(0, 24000 * len(wins), 24000))
    for w in wins:
        assert np.array_equal(w.audio[: w.valid], x[w.start: w.start + w.valid])
    covered = np.zeros(len(x), bool)
    for w in wins:
        covered[w.start: w.start + w.valid] = True
    assert covered.all()
    assert ch.samples_in == len(x)


def test_flush_adds_no_window_when_the_tail_is_already_covered():
    ch = Chunker(48000, 24000)
    wins = list(ch.push(np.zeros(48000, np.float32))) + list(ch.flush())
    # [0, 3 s) is covered by the first window; the flush must not add a padded duplicate.
    assert [w.start for w in wins] == [0]
    ch = Chunker(48000, 24000)
    wins = list(ch.push(np.zeros(50000, np.float32))) + list(ch.flush())
    assert [(w.start, w.valid) for w in wins] == [(0, 48000), (24000, 26000)]


def test_stream_windower_matches_detect_and_live_cutting():
    x = _tone(2000, 7.0, 44100, 0.1)
    sw = StreamWindower(44100, 3.0, 1.5)
    wins = []
    for i in range(0, len(x), 4410):
        wins += sw.push(x[i:i + 4410])[1]
    wins += sw.finish()
    assert sw.samples == 7 * 16000
    assert [w.start for w in wins] == [0, 24000, 48000, 72000]


def test_gate_frames_catch_a_short_beep_in_quiet():
    quiet = np.random.default_rng(3).standard_normal(48000).astype(np.float32) * 1e-4
    gate = Gate(-50, 20)
    assert not gate.opens(quiet)
    loud = quiet.copy()
    loud[20000:21600] += _tone(3000, 0.1, 16000, 0.05)  # 100 ms at -29 dBFS
    assert gate.opens(loud)
    assert -30 < gate.peak_dbfs(loud) < -28
    assert Gate(-120, 20).opens(np.zeros(48000, np.float32))
    assert frame_levels(_tone(1000, 1, 16000, 1.0), 320).mean() == pytest.approx(-3.01, abs=0.05)


def _ws(score, start=None, end=None):
    return WindowScore(score, {"beep": score}, start, end)


def test_events_merge_overlapping_positive_windows():
    tr = EventTracker(0.5)
    opened, closed = tr.update(0.0, 3.0, _ws(0.9, 2.0, 3.0))
    assert opened and opened.start == 2.0 and closed is None
    assert tr.update(1.5, 4.5, _ws(0.95, 0.5, 1.2)) == (None, None)
    opened, closed = tr.update(3.0, 6.0, _ws(0.1))
    assert opened is None
    assert (closed.start, closed.end, closed.score) == (2.0, 2.7, 0.95)


def test_events_split_at_a_gap_and_at_a_stream_restart():
    tr = EventTracker(0.5)
    tr.update(0.0, 3.0, _ws(0.9))
    opened, closed = tr.update(6.0, 9.0, _ws(0.9))  # windows 1.5 and 4.5 were gated out
    assert opened and closed and closed.end == 3.0
    opened, closed = tr.update(0.0, 3.0, _ws(0.9))  # stream clock went back to zero
    assert opened and closed


def test_chunker_hop_can_change_mid_stream_and_loses_nothing():
    """Denser windows while a beep pattern is open (the supervisor's SetHop), then back."""
    from beepnet.audio.chunker import Chunker

    x = np.arange(20 * 16000, dtype=np.float32)
    c = Chunker(48000, 24000)
    starts = []
    for k in range(0, len(x), 1600):
        if k == 4 * 16000:
            c.set_hop(8000)       # 0.5 s: the next window starts 0.5 s after the last one
        if k == 8 * 16000:
            c.set_hop(24000)      # and back to 1.5 s
        for w in c.push(x[k: k + 1600]):
            assert np.array_equal(w.audio, x[w.start: w.start + 48000])
            starts.append(w.start / 16000)
    starts += [w.start / 16000 for w in c.flush()]
    # At 4 s only the window at 0 had ended; the next one starts 0.5 s after it, and its
    # audio (to 3.5 s) is there already: given out at once.
    assert starts[:2] == [0.0, 0.5]
    gaps = np.diff(starts)
    assert set(np.round(gaps, 3)) <= {0.5, 1.0, 1.5}
    assert (gaps == 0.5).sum() >= 7
    # Every usual window is there (the dense ones only come between): the grid is kept.
    assert set(np.arange(0, 17.5, 1.5)) <= set(starts)
    assert all(s % 0.5 == 0 for s in starts)
    assert starts[-1] + 3.0 >= 20.0  # the tail is covered
