"""The classifier: chunk paths in, scores and detections out.

It loads its detector once, scores each chunk and deletes every chunk it has read. When a
beep event starts it says so at once (BeepStarted), keeps the audio until the beep pattern
has ended (`beepnet.daemon.pattern`), and then sends the Detection with the clip of the
whole pattern.
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
from ..events import Event, EventTracker
from ..messages import BeepStarted, Chunk, Detection, DetectorFailed, DetectorReady, Scored
from . import child
from .pattern import PRE_ROLL_SECONDS, EndedPattern, Pattern

log = logging.getLogger(__name__)

IDLE_CHECK_SECONDS = 0.25
"""How often a classifier with no chunk to score checks for a pattern whose end went
unheard (see Pattern.overdue)."""
HISTORY_SECONDS = PRE_ROLL_SECONDS + 3.0
"""Audio kept from before a beep event opens, for the clip's pre-roll: the event's first
window starts up to a window before its beep."""


class Classifier:
    """Scores chunks one at a time; usable in-process (tests) or as the child's loop."""

    def __init__(self, cfg: DetectorConfig, alert_dir: Path):
        self.detector = load_detector(cfg)
        self.tracker = EventTracker(self.detector.threshold)
        self.alert_dir = Path(alert_dir)
        self.history: deque = deque()
        """(chunk, audio) heard lately, oldest first; float16 halves what a 20-s pattern
        holds (about 1.5 MB), and is finer than the 16-bit files on quiet audio."""
        self.pattern: Pattern | None = None
        self._opened: tuple[Chunk, float, float, float] | None = None
        """The pattern's first chunk, its score, and the beep's wall and monotonic times."""

    def handle(self, chunk: Chunk) -> list[object]:
        """Score one chunk; returns the messages to send (BeepStarted or Detection first)."""
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
        restarted = bool(self.history) and self.history[-1][0].start_sample >= chunk.start_sample
        if restarted:
            # The recorder restarted its stream: old audio is unrelated, and so is an open
            # pattern (whose clip ends here).
            out += self.flush("stop")
            self.history.clear()
        opened, closed = self.tracker.update(t0, t0 + chunk.duration, result)
        kept = audio.astype(np.float16)
        if self.pattern is not None:
            # The chunk's audio goes in either way: after the last beep it is the clip's tail.
            event = None if closed is not None else self.tracker.current
            self.pattern.add(chunk, kept, event.end if event is not None else None)
            why = ("quiet" if event is None else
                   self.pattern.ended(chunk, result.score >= self.detector.threshold))
            if why:
                out += self.flush(why, closed)
        if opened is not None:
            out.append(self._open(chunk, kept, opened.start, opened.end, result.score))
        self._remember(chunk, kept)
        out.append(Scored(chunk, result.score, dict(result.labels)))
        return out

    def _open(self, chunk: Chunk, audio: np.ndarray, start: float, end: float,
              score: float) -> BeepStarted:
        self.pattern = Pattern(start, list(self.history))
        self.pattern.add(chunk, audio, end)
        # The chunk's own clock readings, not the stream's start: see Chunk.start_time.
        into = (start - chunk.start_sample / SAMPLE_RATE) * chunk.time_scale
        beep_time, beep_mono = chunk.start_time + into, chunk.start_mono + into
        self._opened = (chunk, score, beep_time, beep_mono)
        log.info("beep at %s (score %.2f): waiting for its pattern to end",
                 time.strftime("%H:%M:%S", time.localtime(beep_time)), score)
        return BeepStarted(chunk, score, beep_time, start, beep_mono)

    def _remember(self, chunk: Chunk, audio: np.ndarray) -> None:
        self.history.append((chunk, audio))
        while (len(self.history) > 1 and chunk.start_sample - self.history[0][0].start_sample
               > HISTORY_SECONDS * SAMPLE_RATE):
            self.history.popleft()

    def idle(self, now_mono: float) -> list[object]:
        """Called when no chunk has come for a while: ends a pattern whose next window is
        overdue (the gate left out the quiet after it)."""
        if self.pattern is not None and self.pattern.overdue(now_mono):
            return self.flush("overdue")
        return []

    def flush(self, why: str, event: Event | None = None) -> list[object]:
        """End the open pattern, if any (``why``: see EndedPattern.why): its Detection.
        ``event``: the pattern's beep event when it has just closed (else the open one)."""
        if self.pattern is None:
            return []
        ended, self.pattern = self.pattern.finish(why), None
        chunk, score, beep_time, beep_mono = self._opened
        self._opened = None
        event = event or self.tracker.current
        score = max(score, event.score if event is not None else 0.0)
        return [self._detection(chunk, score, ended, beep_time, beep_mono)]

    def _detection(self, chunk: Chunk, score: float, ended: EndedPattern, beep_time: float,
                   beep_mono: float) -> Detection:
        stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(beep_time))
        path = self.alert_dir / f"{stamp}-{int(chunk.start_sample):010d}-beep.wav"
        clip_path = str(path)
        try:
            self.alert_dir.mkdir(parents=True, exist_ok=True)
            write_wav_atomic(path, ended.clip, SAMPLE_RATE)
        except OSError as e:
            # The alert matters more than its clip: send it without one.
            log.error("cannot keep the alert clip %s: %s", path, e.strerror or e)
            clip_path = ""
        length = ended.end - ended.start
        log.info("beep pattern from %s over %.1f s (score %.2f; ended: %s)",
                 time.strftime("%H:%M:%S", time.localtime(beep_time)), length, score,
                 ended.why)
        return Detection(chunk, score, beep_time, ended.start, clip_path,
                         self.detector.describe(), beep_mono, length=length,
                         clip_offset=ended.start - ended.clip_start)


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


def _flush(clf: Classifier, results) -> None:
    """Stopping (or handing over to a reloaded detector): a pattern still open is alerted
    with the audio heard so far, never dropped."""
    for msg in clf.flush("stop"):
        results.put(msg)


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
            chunk = work.get(timeout=IDLE_CHECK_SECONDS)
        except queue.Empty:
            for msg in clf.idle(time.monotonic()):
                results.put(msg)
            if stop.is_set():
                _flush(clf, results)
                return
            continue
        if chunk is None:
            _flush(clf, results)
            return
        for msg in clf.handle(chunk):
            results.put(msg)
