"""The classifier: chunk paths in, scores and detections out.

It loads its detector once, scores each chunk, keeps an alert clip when a beep event starts
(the detected chunk with the audio heard before it), and deletes every chunk it has read.
"""

from __future__ import annotations

import logging
import queue
import time
from collections import deque
from pathlib import Path

import numpy as np

from ..audio import SAMPLE_RATE, AudioFileError
from ..audio.wav import read_wav, write_wav_atomic
from ..fsutil import remove_quietly
from ..config import DetectorConfig
from ..detectors import load_detector
from ..events import EventTracker
from ..messages import Chunk, Detection, DetectorFailed, DetectorReady, Scored
from . import child

log = logging.getLogger(__name__)

CLIP_CONTEXT_SECONDS = 6.0
"""Audio before the detected chunk that goes into the alert clip (chunk + context <= 10 s)."""


def build_clip(history: deque, chunk: Chunk, audio: np.ndarray,
               context: float = CLIP_CONTEXT_SECONDS) -> np.ndarray:
    """The detected chunk with up to ``context`` seconds of earlier chunks before it.

    Earlier chunks overlap and may have gaps (the gate skipped quiet audio): each is placed at
    its own stream position, and gaps stay silent, as they were.
    """
    begin = chunk.start_sample - int(context * SAMPLE_RATE)
    parts = [(c, a) for c, a in history if begin <= c.start_sample < chunk.start_sample]
    first = min([c.start_sample for c, _ in parts], default=chunk.start_sample)
    length = chunk.start_sample - first + int(round(chunk.duration * SAMPLE_RATE))
    clip = np.zeros(length, dtype=np.float32)
    for c, a in parts + [(chunk, audio)]:
        at = c.start_sample - first
        seg = a[: max(0, min(len(a), int(round(c.duration * SAMPLE_RATE)), length - at))]
        clip[at: at + len(seg)] = seg
    return clip


class Classifier:
    """Scores chunks one at a time; usable in-process (tests) or as the child's loop."""

    def __init__(self, cfg: DetectorConfig, alert_dir: Path):
        self.detector = load_detector(cfg)
        self.tracker = EventTracker(self.detector.threshold)
        self.alert_dir = Path(alert_dir)
        self.history: deque = deque(maxlen=int(CLIP_CONTEXT_SECONDS) + 2)

    def handle(self, chunk: Chunk) -> list[object]:
        """Score one chunk; returns the messages to send (a Detection first, if any)."""
        try:
            audio = read_wav(chunk.path, SAMPLE_RATE)
        except AudioFileError as e:
            # Dropped by the backlog limit, or removed by hand: nothing to score.
            return [Scored(chunk, 0.0, error=str(e))]
        finally:
            remove_quietly(chunk.path)
        result = self.detector.score(audio)
        out: list[object] = []
        # Events are tracked on the stream's own clock, which a fast replay compresses.
        t0 = chunk.start_sample / SAMPLE_RATE
        opened, _ = self.tracker.update(t0, t0 + chunk.duration, result)
        if opened is not None:
            # The chunk's own clock readings, not the stream's start: see Chunk.start_time.
            into = (opened.start - t0) * chunk.time_scale
            out.append(self._detection(chunk, audio, result.score, opened.start,
                                       chunk.start_time + into, chunk.start_mono + into))
        if self.history and self.history[-1][0].start_sample >= chunk.start_sample:
            self.history.clear()  # the recorder restarted its stream: old audio is unrelated
        self.history.append((chunk, audio))
        out.append(Scored(chunk, result.score, dict(result.labels)))
        return out

    def _detection(self, chunk: Chunk, audio: np.ndarray, score: float, offset: float,
                   beep_time: float, beep_mono: float) -> Detection:
        clip = build_clip(self.history, chunk, audio)
        stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(beep_time))
        path = self.alert_dir / f"{stamp}-{int(chunk.start_sample):010d}-beep.wav"
        clip_path = str(path)
        try:
            self.alert_dir.mkdir(parents=True, exist_ok=True)
            write_wav_atomic(path, clip, SAMPLE_RATE)
        except OSError as e:
            # The alert matters more than its clip: send it without one.
            log.error("cannot keep the alert clip %s: %s", path, e.strerror or e)
            clip_path = ""
        log.info("beep detected at %s (score %.2f)",
                 time.strftime("%H:%M:%S", time.localtime(beep_time)), score)
        return Detection(chunk, score, beep_time, offset, clip_path, self.detector.describe(),
                         beep_mono)


def load_failure(e: Exception) -> DetectorFailed:
    """What a failed load means: a bad model file or setting stays bad (permanent); running
    out of memory, a library caught mid-upgrade or a passing I/O error may not."""
    permanent = isinstance(e, (ValueError, FileNotFoundError, PermissionError,
                               IsADirectoryError, NotADirectoryError))
    lines = str(e).strip().splitlines()
    text = lines[0] if lines else ("out of memory" if isinstance(e, MemoryError) else "")
    # ModelFileError and ConfigError are already written for a person; others need a name.
    if not isinstance(e, ValueError) or not text:
        text = f"{type(e).__name__}: {text}" if text else type(e).__name__
    return DetectorFailed(text, permanent)


def classifier_main(cfg: DetectorConfig, alert_dir: str, work, results, stop,
                    log_level: str, secrets: tuple[str, ...] = ()) -> None:
    """Entry point of the classifier child process. ``None`` on ``work`` means finish."""
    child.init("classifier", log_level, secrets, stop)
    try:
        clf = Classifier(cfg, Path(alert_dir))
    except Exception as e:  # noqa: BLE001 - a model that will not load is reported, not traced
        failed = load_failure(e)
        log.error("cannot load the %s detector: %s", cfg.kind, failed.reason)
        # The supervisor tells the owner, and decides whether to try again.
        results.put(failed)
        raise SystemExit(child.EXIT_DETECTOR if failed.permanent
                         else child.EXIT_DETECTOR_RETRY) from None
    results.put(DetectorReady(clf.detector.describe(), clf.detector.threshold))
    while True:
        try:
            chunk = work.get(timeout=0.5)
        except queue.Empty:
            if stop.is_set():
                return
            continue
        if chunk is None:
            return
        for msg in clf.handle(chunk):
            results.put(msg)
