"""Offline detection: the live pipeline's windowing, gate, detector and threshold over files.

Recordings are streamed block by block (any length, any rate, any channel count) through the
same resampler, chunker, gate and event merging as the daemon, so a file and a microphone
playing the same sound give the same events.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Iterator

from .audio.chunker import StreamWindower, Window
from .audio.files import AudioFile
from .audio.gate import Gate
from .config import AudioConfig
from .detectors.base import Detector
from .events import Event, EventTracker

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FileResult:
    duration: float
    windows: int
    windows_scored: int
    events: list[Event]


def windows_of(f: AudioFile, audio: AudioConfig) -> Iterator[Window]:
    """Every window of a recording at 16 kHz, cut exactly as the recorder cuts live audio."""
    stream = StreamWindower(f.rate, audio.chunk_seconds, audio.hop_seconds, audio.sample_rate)
    for block in f.blocks(max(f.rate, 1)):
        yield from stream.push(block)[1]
    yield from stream.finish()


def detect_file(path: str, detector: Detector, audio: AudioConfig,
                threshold: float | None = None) -> FileResult:
    """All beep events in one recording. Raises AudioFileError for an unusable file."""
    rate = audio.sample_rate
    gate = Gate(audio.gate_dbfs, audio.gate_frame_ms, rate)
    tracker = EventTracker(detector.threshold if threshold is None else threshold)
    events: list[Event] = []
    n = scored = 0
    with AudioFile(path) as f:
        for w in windows_of(f, audio):
            n += 1
            # Like the daemon: a window below the gate is never scored (nor written).
            if not gate.opens(w.audio[: w.valid]):
                continue
            scored += 1
            # Only the real audio, as the recorder writes it: the last window's zero
            # padding is not sound (a model would hear the sudden silence as an event).
            _, closed = tracker.update(w.start / rate, (w.start + w.valid) / rate,
                                       detector.score(w.audio[: w.valid]))
            if closed:
                events.append(closed)
        duration = f.duration
    last = tracker.finish()
    if last:
        events.append(last)
    return FileResult(duration, n, scored, events)
