"""The recorder: audio in, non-silent 3-s WAV chunks out, their paths onto a queue.

It never imports torch: on a Pi it stays small, and a classifier crash cannot take it down.
The same :class:`Recorder` loop serves the daemon (a child process) and `beepnet record`
(in-process), so collected training data is cut exactly as the daemon cuts live audio.
"""

from __future__ import annotations

import errno
import logging
import queue
import time
from pathlib import Path
from typing import Callable

from ..audio.chunker import StreamWindower, Window
from ..audio.ring import AudioRing
from ..audio.wav import write_wav_atomic
from ..audio.gate import Gate
from ..audio.sources import FileSource, MicSource, Source, SourceError
from ..config import AudioConfig
from ..messages import (Chunk, Heartbeat, ListenClip, ListenRequest, SetHop, SourceEnded,
                        SourceFailed, Started)
from . import child
from .recent import RecentChunks

log = logging.getLogger(__name__)

HEARTBEAT_SECONDS = 0.2
"""Often enough for `beepnet monitor`'s level meter to move smoothly."""
LISTEN_SECONDS = 10.0
"""What `/listen` sends: the last seconds heard, whatever the gate made of them."""


def make_source(audio: AudioConfig, source: str, speed: float) -> Source:
    """``source`` is "mic" or the path of a recording to replay."""
    if source == "mic":
        return MicSource(audio.device, audio.block_ms)
    return FileSource(source, audio.block_ms, speed)


class _Now:
    """Both clocks, read as the newest of ``samples`` stream samples came in.

    A window's times are taken from these, seconds after its first sample, rather than
    counted from the stream's start: a sample count anchored for weeks drifts with the
    device's clock and with lost input, and never sees NTP set the wall clock."""

    def __init__(self, samples: int):
        self.samples = samples
        self.wall = time.time()
        self.mono = time.monotonic()


class Recorder:
    """Cuts one source's stream into gated chunks and hands each to ``emit``."""

    def __init__(self, audio: AudioConfig, chunk_dir: Path, emit: Callable[[object], None],
                 should_stop: Callable[[], bool] = lambda: False,
                 requests: Callable[[], object | None] | None = None,
                 recent: RecentChunks | None = None):
        """``requests``: returns the supervisor's next ListenRequest or SetHop, or None (the
        daemon's; `beepnet record` has none). ``recent``: keeps the chunks of the last
        minutes (`/missed`)."""
        self.audio = audio
        self.chunk_dir = Path(chunk_dir)
        self.emit = emit
        self.should_stop = should_stop
        self.rate = audio.sample_rate
        self.gate = Gate(audio.gate_dbfs, audio.gate_frame_ms, self.rate)
        self.written = self.skipped = self.write_errors = 0
        self.delivered = False
        """Whether the last run() got any audio (a source that worked, then failed)."""
        self._last_write_error: str | None = None
        self.requests = requests
        self.recent = recent
        self.ring = AudioRing(LISTEN_SECONDS, self.rate) if requests else None
        self._stream: StreamWindower | None = None

    def run(self, source: Source, time_scale: float = 1.0) -> bool:
        """Record until the source ends (True), fails (raises SourceError) or we are stopped.

        ``time_scale`` maps stream seconds to wall seconds (1/speed for a fast replay), so chunk
        times stay meaningful. The chunk directory must exist.
        """
        self.delivered = False
        source.open()
        try:
            return self._loop(source, time_scale)
        finally:
            source.close()

    def _loop(self, source: Source, time_scale: float) -> bool:
        stream = self._stream = StreamWindower(source.rate, self.audio.chunk_seconds,
                                               self.audio.hop_seconds, self.rate)
        session = time.strftime("%Y%m%d-%H%M%S")
        next_beat = 0.0
        level = -120.0
        for block in source.blocks():
            if not self.delivered:
                self.delivered = True
                self.emit(Started(source.description, source.rate))
            out, windows = stream.push(block)
            if len(out):
                level = max(level, self.gate.peak_dbfs(out))
                if self.ring is not None:
                    self.ring.push(out)
                    self._serve_requests()
            if windows:
                clocks = _Now(stream.samples)
                for window in windows:
                    self._handle(window, session, clocks, time_scale)
            now = time.monotonic()
            if now >= next_beat:
                self._beat(stream.samples, level, source)
                level, next_beat = -120.0, now + HEARTBEAT_SECONDS
            if self.should_stop():
                return False
        # The replay ended: cut the tail windows too.
        tail = stream.finish()
        clocks = _Now(stream.samples)
        for window in tail:
            self._handle(window, session, clocks, time_scale)
        self._beat(stream.samples, level, source)
        self.emit(SourceEnded(stream.samples))
        return True

    def _beat(self, samples: int, level: float, source: Source) -> None:
        self.emit(Heartbeat(samples, level, self.written, self.skipped, self.write_errors,
                            getattr(source, "overflows", 0)))

    def _handle(self, window: Window, session: str, now: "_Now", time_scale: float) -> None:
        audio = window.audio[: window.valid] if window.valid < len(window.audio) else window.audio
        if not self.gate.opens(audio):
            self.skipped += 1
            return
        path = self.chunk_dir / f"{session}_{window.start:010d}.wav"
        try:
            write_wav_atomic(path, window.audio, self.rate)
        except OSError as e:
            self._write_failed(path, e)
            return
        if self._last_write_error:
            log.warning("writing chunks works again (%d lost)", self.write_errors)
            self._last_write_error = None
        self.written += 1
        if self.recent is not None:
            self.recent.add(path, session, window.start, window.start + window.valid)
        ago = (now.samples - window.start) / self.rate * time_scale
        self.emit(Chunk(str(path), window.start, now.wall - ago, window.valid / self.rate,
                        self.gate.peak_dbfs(audio), time_scale, now.mono - ago))

    def _serve_requests(self) -> None:
        while (req := self.requests()) is not None:
            if isinstance(req, SetHop):
                hop = req.seconds or self.audio.hop_seconds
                self._stream.chunker.set_hop(int(round(min(hop, self.audio.chunk_seconds)
                                                       * self.rate)))
                continue
            if not isinstance(req, ListenRequest):
                continue
            seconds = self.ring.seconds
            try:
                if seconds:
                    write_wav_atomic(Path(req.path), self.ring.last(), self.rate)
            except OSError as e:
                log.error("cannot write the /listen clip %s: %s", req.path, e.strerror or e)
                seconds = 0.0
            self.emit(ListenClip(req.path, seconds))

    def _write_failed(self, path: Path, e: OSError) -> None:
        self.write_errors += 1
        reason = "disk full" if e.errno == errno.ENOSPC else (e.strerror or str(e))
        # Say it once per kind of failure, not once per chunk.
        if reason != self._last_write_error:
            log.error("cannot write chunk to %s: %s; dropping chunks until it works",
                      path.parent, reason)
            self._last_write_error = reason


def _poller(q) -> Callable[[], object | None]:
    def poll():
        try:
            return q.get_nowait()
        except (queue.Empty, OSError, ValueError):
            return None
    return poll


def recorder_main(audio: AudioConfig, source: str, speed: float, chunk_dir: str,
                  out, stop, log_level: str, secrets: tuple[str, ...] = (),
                  requests=None, recent_dir: str = "", recent_seconds: float = 0.0) -> None:
    """Entry point of the recorder child process. ``requests``: the supervisor's queue of
    ListenRequests and SetHops;
    ``recent_dir``: where the chunks of the last ``recent_seconds`` are kept for /missed."""
    child.init("recorder", log_level, secrets, stop)
    recent = None
    if recent_dir and recent_seconds > 0:
        try:
            recent = RecentChunks(Path(recent_dir), recent_seconds)
        except OSError as e:
            log.warning("cannot keep recent audio in %s (%s): /missed will have none",
                        recent_dir, e.strerror or e)
    rec = Recorder(audio, Path(chunk_dir), out.put, stop.is_set,
                   _poller(requests) if requests is not None else None, recent)
    is_mic = source == "mic"
    backoff = 1.0
    while not stop.is_set():
        src = make_source(audio, source, speed)
        try:
            if rec.run(src, time_scale=1.0 if is_mic else 1.0 / speed):
                return  # replay finished
            backoff = 1.0
        except SourceError as e:
            out.put(SourceFailed(str(e)))
            if not is_mic:
                return
            if rec.delivered:
                backoff = 1.0  # it worked until now: try again soon
            # A microphone may come back (USB replug, PulseAudio restart): retry, backing off.
            log.debug("reopening the input in %.0f s", backoff)
            stop.wait(backoff)
            backoff = min(backoff * 2, 30.0)
