"""The supervisor (main process): starts the recorder and classifier, relays chunks between
them, hands detections to the notifier, and shuts everything down cleanly.

Chunks are relayed rather than shared on one queue so that (a) the backlog is bounded here,
dropping the oldest when the classifier falls behind, and (b) a classifier killed mid-``get``
cannot leave a shared queue's lock held: each classifier gets fresh queues, and the chunks it
had in flight are sent again to its successor.

SIGHUP reloads the config file (as nginx and sshd do; systemd's ``ExecReload``). Only the
detector changes live: a new classifier loads the new settings beside the one in use, which
keeps scoring meanwhile; once the new one is ready, the old one finishes its chunks in flight
and stops, and the new one takes over. A new detector that fails to load is reported and the
old one simply goes on: a reload never leaves the daemon deaf.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
from multiprocessing import resource_tracker
import os
import queue
import re
import signal
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, replace

from ..audio import SAMPLE_RATE
from ..fsutil import remove_quietly
from ..config import Config, ConfigError, DetectorConfig, secrets
from ..messages import (BeepStarted, Chunk, Detection, DetectorFailed, DetectorReady, Heartbeat,
                        ListenClip, ListenRequest, Scored, SetHop, SourceEnded, SourceFailed,
                        Started)
from ..model.preflight import in_use_path
from ..notify.report import start_text
from .cycleflow import CycleClock, CycleFlow, open_history
from .outlets import Outlets
from .lastsound import LastSound
from .child import EXIT_DETECTOR, EXIT_DETECTOR_RETRY, run_classifier, run_recorder
from .reload import changed_keys, describe_model, model_identity, restart_only_sections
from .retention import prune
from .sdnotify import SystemdNotifier
from .status import StatusPublisher, status_path

log = logging.getLogger(__name__)

IN_FLIGHT = 2
"""Chunks handed to the classifier at once: enough to keep it busy, few to resend on a crash."""
STOP_GRACE = 5.0
"""Seconds a stopping daemon gives the classifier to finish what is queued."""
AUDIO_STALL_SECONDS = 10.0
"""No heartbeat from a recorder that is not reopening a lost microphone: stalled."""
PRUNE_EVERY_SECONDS = 3600.0
CLASSIFIER_STALL_SECONDS = 30.0
"""A chunk handed to the classifier and not scored in this time: the classifier is stuck."""
DETECTOR_LOAD_SECONDS = 300.0
"""Loading the detector (importing PyTorch takes tens of seconds on a Pi) is start-up, not a
stall; loading for longer than this is a fault: the watchdog stops getting its ping."""
EXTEND_EVERY_SECONDS = 10.0
EXTEND_BY_SECONDS = 60.0
"""While the detector loads before READY, systemd's start timeout is pushed out this far,
this often."""
TELL_AFTER_LOAD_FAILURES = 3
"""Failed loads in a row that may pass (out of memory ...) before the owner is told: one
retry that works is not news."""
DENSE_HOP_SECONDS = 0.5
"""Window spacing while a beep pattern is open (the configured one, 1.5 s, otherwise)."""
LISTEN_TIMEOUT_SECONDS = 5.0
"""A recorder that has not written the `/listen` clip by then is not getting audio."""
CLOCK_STEP_SECONDS = 60.0
"""A jump of the wall clock against the monotonic one larger than this is logged."""
_CHUNK_NAME = re.compile(r"^(\d{8}-\d{6})_(\d{10})\.wav$")


@dataclass
class Stats:
    chunks_scored: int = 0
    chunks_dropped: int = 0
    chunks_failed: int = 0
    detections: int = 0
    samples: int = 0
    overflows: int = 0


class _Child:
    """One child process slot, restarted with backoff when it dies unexpectedly."""

    def __init__(self, name: str):
        self.name = name
        self.proc: mp.process.BaseProcess | None = None
        self.started_at = 0.0
        self.failures = 0
        self.restart_at: float | None = None
        self.stop = None
        """The multiprocessing.Event this process obeys: its own, so that stopping one
        classifier (a reload's old or dropped one) never stops another."""

    def alive(self) -> bool:
        return self.proc is not None and self.proc.is_alive()

    def died(self) -> bool:
        return self.proc is not None and not self.proc.is_alive()

    def schedule_restart(self) -> float:
        """Plan the next start; returns the delay."""
        # A child that ran a while before dying starts over at a short delay; a crash loop
        # backs off to a minute so it neither spins the CPU nor floods the log.
        if time.monotonic() - self.started_at > 60:
            self.failures = 0
        self.failures += 1
        delay = min(0.5 * 2 ** (self.failures - 1), 60.0)
        self.restart_at = time.monotonic() + delay
        return delay


def detector_fatal_text(reason: str) -> str:
    """The owner's message when the detector cannot load and beepnet stops (exit 78)."""
    return (f"beepnet stopped: cannot load the detector: {reason}. Fix the model file or "
            "detector.* in the config, then start beepnet again.")


def _start_resource_tracker() -> None:
    """Start multiprocessing's resource tracker (the helper process that cleans up after the
    queues) ignoring SIGHUP, which it keeps across exec: a closed terminal's hangup reaches
    the whole process group, and the supervisor takes it as a reload. (The children ignore
    it themselves, in `child.init`.)"""
    try:
        old = signal.signal(signal.SIGHUP, signal.SIG_IGN)
    except ValueError:  # not the main thread: no signals to set up
        resource_tracker.ensure_running()
        return
    try:
        resource_tracker.ensure_running()
    finally:
        signal.signal(signal.SIGHUP, old)


def _span(seconds: float) -> str:
    if seconds >= 2 * 86400:
        return f"{seconds / 86400:.1f} days"
    return f"{seconds / 3600:.1f} h" if seconds >= 3600 else f"{seconds / 60:.0f} min"


class Supervisor:
    def __init__(self, cfg: Config, notifier, source: str = "mic", speed: float = 1.0,
                 reload: Callable[[], Config] | None = None):
        """``reload``: reads the config again (as at start) for SIGHUP; raises ConfigError
        when it no longer loads. None: SIGHUP only says that it cannot reload."""
        self.cfg = cfg
        self.notifier = notifier
        self.source = source
        self.speed = speed
        self.ctx = mp.get_context("spawn")
        _start_resource_tracker()  # before the first Event or Queue starts it
        self.chunk_dir = cfg.storage.chunk_dir
        self.alert_dir = cfg.storage.alert_dir
        self.secrets = secrets(cfg)
        self.stats = Stats()
        self.pending: deque[Chunk] = deque()
        self.in_flight: deque[Chunk] = deque()
        self.recorder = _Child("recorder")
        self.classifier = _Child("classifier")
        self.rec_stop = self.ctx.Event()
        self.rec_q = self.work_q = self.results_q = self.rec_requests = None
        self.exit_status = 0
        self._signal: int | None = None
        self._source_done = False
        self._detector: DetectorReady | None = None
        self._clf_ready = False
        """The current classifier has loaded its detector: only then is it handed chunks."""
        self._load_failure: DetectorFailed | None = None
        self._load_failures = 0
        """Failed loads in a row that may pass; the owner is told once (_load_trouble)."""
        self._load_trouble = False
        self._load_hung_said = False
        self._next_extend = 0.0
        self._clock_offset = time.time() - time.monotonic()
        self._started: Started | None = None
        self._announced = False
        self._mic_lost = False
        self._last_drop_log = 0.0
        self.last_heartbeat: float | None = None
        # What the daemon hears becomes the machine's cycle, and what the owner is told.
        self.flow = CycleFlow(cfg.cycle, notifier,
                              history=open_history(cfg.storage.history_path),
                              clock=CycleClock(replay=source != "mic"),
                              chunk_seconds=cfg.audio.chunk_seconds,
                              hop_seconds=cfg.audio.hop_seconds,
                              last_sound=LastSound(cfg.storage.recent_dir,
                                                   self.chunk_dir.parent / "last-sound")
                              if cfg.storage.recent_minutes > 0 else None)
        # Home Assistant, the heartbeat URL, the digest: told what the daemon knows.
        self.outlets = Outlets(cfg, notifier, emptied=self.emptied,
                               history=self.flow.history)
        self.systemd = SystemdNotifier()
        self._handed_at: dict[str, float] = {}  # chunk path -> when the classifier got it
        self._write_errors = self._chunks_written = 0
        self._next_prune = 0.0
        self._disk_trouble = False
        # Live state for `beepnet monitor` (a throttled JSON file in the runtime dir).
        self.status = StatusPublisher(status_path(cfg), cfg, source)
        self._reload = reload
        self._reload_asked = False
        self._model_id = model_identity(cfg.detector)
        # A classifier loading reloaded detector settings beside the one in use.
        self.candidate = _Child("classifier")
        self._cand_q = self._cand_results_q = None
        self._cand_det: DetectorConfig | None = None
        self._cand_id: tuple | None = None
        self._cand_failure: DetectorFailed | None = None
        self._listens: queue.Queue = queue.Queue()
        """`/listen` requests from the notifier's thread: (callback, when asked)."""
        self._listening: dict[str, tuple[Callable, float]] = {}
        """Clip path -> (callback, deadline) of requests the recorder has."""
        self._listen_seq = 0
        self._beep: BeepStarted | None = None
        """The beep event the classifier in use has open: its Detection is still to come."""
        self._last_hit: tuple[int, int] | None = None
        """Stream span (samples) of the last chunk scored as a beep, while the chunks after
        it are too: the beep event its classifier has open."""
    # -- lifecycle -----------------------------------------------------------------------

    def run(self) -> int:
        """Run until a signal, the end of a replay, or a fatal error; returns the exit status."""
        for d in (self.chunk_dir, self.alert_dir):
            d.mkdir(parents=True, exist_ok=True)
        self._requeue_leftovers()
        old = {s: signal.signal(s, self._on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
        if signal.getsignal(signal.SIGHUP) is signal.SIG_IGN:
            # Started under nohup: its owner asked for hangups to be ignored, reloads with them.
            log.info("SIGHUP is ignored (nohup): restart beepnet to use a changed config")
        else:
            old[signal.SIGHUP] = signal.signal(signal.SIGHUP, self._on_hup)
        try:
            self.outlets.start()
            self._start_classifier()
            self._start_recorder()
            while self._signal is None and not self._finished():
                self._step(timeout=0.1)
            self._shutdown()
        finally:
            for s, h in old.items():
                signal.signal(s, h)
        return self.exit_status

    def _on_signal(self, signum: int, _frame) -> None:
        if self._signal is None:
            log.info("received %s, stopping", signal.Signals(signum).name)
        self._signal = signum

    def _on_hup(self, _signum: int, _frame) -> None:
        # Only a flag: the reload runs in the loop, never inside a signal handler.
        self._reload_asked = True

    def _finished(self) -> bool:
        if self.exit_status:
            return True
        # A replay is done when the recorder said so and every chunk has been classified.
        return self._source_done and not self.pending and not self.in_flight

    def _spawn(self, proc: mp.process.BaseProcess) -> None:
        # The child inherits "ignore SIGINT" across exec, so a Ctrl-C during its start-up
        # (before it installs its own handlers) cannot kill it with a traceback.
        handler = signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            proc.start()
        finally:
            signal.signal(signal.SIGINT, handler)

    def _start_recorder(self) -> None:
        c = self.recorder
        # Fresh queue: a recorder that died mid-put may have left the old one's lock held.
        self.rec_q = self.ctx.Queue()
        self.rec_requests = self.ctx.Queue()
        c.proc = self.ctx.Process(
            target=run_recorder, name="recorder", daemon=True,
            args=(self.cfg.audio, self.source, self.speed, str(self.chunk_dir), self.rec_q,
                  self.rec_stop, self.cfg.log.level, self.secrets, self.rec_requests,
                  str(self.cfg.storage.recent_dir), self.cfg.storage.recent_minutes * 60))
        self._spawn(c.proc)
        c.started_at, c.restart_at = time.monotonic(), None

    def _launch_classifier(self, c: _Child, det: DetectorConfig):
        """Start ``c`` with detector settings ``det``; returns its (work, results) queues."""
        # Fresh queues: a killed classifier may have died holding the old ones' locks.
        work, results = self.ctx.Queue(), self.ctx.Queue()
        c.stop = self.ctx.Event()
        c.proc = self.ctx.Process(
            target=run_classifier, name="classifier", daemon=True,
            args=(det, str(self.alert_dir), work, results, c.stop,
                  self.cfg.log.level, self.secrets))
        self._spawn(c.proc)
        c.started_at, c.restart_at = time.monotonic(), None
        return work, results

    def _start_classifier(self) -> None:
        self.work_q, self.results_q = self._launch_classifier(self.classifier,
                                                              self.cfg.detector)
        self._clf_ready, self._load_failure, self._load_hung_said = False, None, False
        self._resend_in_flight()

    def _resend_in_flight(self) -> None:
        # Whatever the dead one had taken is still on disk: send it again, oldest first.
        self.pending.extendleft(reversed(self.in_flight))
        self.in_flight.clear()
        self._handed_at.clear()

    # -- the loop --------------------------------------------------------------------------

    def _step(self, timeout: float) -> None:
        self._drain_recorder(timeout)
        if self._reload_asked:
            self._reload_asked = False
            self.reload()
        self._check_candidate()
        self._serve_listens()
        self._drain_results()
        self._feed()
        self._check_children()
        self._check_clock()
        self.flow.tick(self._oldest_unscored())
        self._check_loading()
        self.systemd.watchdog(self.healthy())
        if time.monotonic() >= self._next_prune:
            self.prune()
        self.outlets.step(self.flow.snapshot, self.unhealthy(), self.cfg.storage.path)
        self.status.cycle = self.flow.snapshot
        self.status.outlets = self.outlets.status()
        self.status.publish(self.status_stats())

    def _oldest_unscored(self) -> Chunk | None:
        """The oldest chunk not scored yet: the cycle hears time pass only up to there."""
        for chunks in (self.in_flight, self.pending):  # each oldest first
            if chunks:
                return chunks[0]
        return None

    def status_stats(self) -> dict:
        """The counters `beepnet monitor` shows."""
        s = self.stats
        return {"pending": len(self.pending), "in_flight": len(self.in_flight),
                "dropped": s.chunks_dropped, "scored": s.chunks_scored,
                "failed": s.chunks_failed, "detections": s.detections,
                "samples": s.samples, "overflows": s.overflows,
                "mic_lost": self._mic_lost, "healthy": self.healthy()}

    def prune(self) -> None:
        """Keep the alert clips within storage.keep_days and storage.keep_mb."""
        self._next_prune = time.monotonic() + PRUNE_EVERY_SECONDS
        try:
            prune(self.alert_dir, self.cfg.storage.keep_days, self.cfg.storage.keep_mb)
        except OSError as e:
            log.warning("cannot prune %s: %s", self.alert_dir, e.strerror or e)
        self.flow.prune(self.cfg.storage.keep_days)

    def healthy(self) -> bool:
        """Audio is flowing (or a lost microphone is being reopened) and the classifier keeps
        up. Only then does systemd's watchdog get its ping."""
        now = time.monotonic()
        return self._recorder_ok(now) and self._classifier_ok(now)

    def unhealthy(self) -> str | None:
        """Why beeps would be missed now, or None: the heartbeat URL is called only then.
        Stricter than ``healthy`` (systemd's watchdog): a lost microphone or a full disk
        needs no restart, but nothing is being heard."""
        now = time.monotonic()
        if not self._announced:
            return "not listening yet"
        if self._mic_lost:
            return "the microphone is lost"
        if not self._recorder_ok(now):
            return "no audio from the recorder"
        if not self._classifier_ok(now):
            return "the detector is not keeping up"
        if self._disk_trouble:
            return "audio chunks cannot be written (disk full?)"
        return None

    def _recorder_ok(self, now: float) -> bool:
        if not self.recorder.alive():
            return False
        # A recorder that has just been started is still opening its input: not a stall.
        last = max(self.last_heartbeat or 0.0, self.recorder.started_at)
        return self._mic_lost or now - last < AUDIO_STALL_SECONDS

    def _classifier_ok(self, now: float) -> bool:
        if self._loading_too_long(now):
            return False
        # Only chunks handed to a classifier with its detector loaded are timed (see _feed):
        # loading it, at start or after a restart, is not a stall.
        oldest = min(self._handed_at.values(), default=now)
        return now - oldest < CLASSIFIER_STALL_SECONDS

    def _loading_too_long(self, now: float) -> bool:
        c = self.classifier
        return c.alive() and not self._clf_ready and now - c.started_at > DETECTOR_LOAD_SECONDS

    def _check_loading(self) -> None:
        """Before READY, keep systemd's start timeout away while the detector loads (or a
        failed load is retried); say once when a load takes so long it must be hung."""
        now = time.monotonic()
        if self._loading_too_long(now):
            if not self._load_hung_said:
                self._load_hung_said = True
                log.error("the detector has been loading for more than %.0f min: counting "
                          "the classifier as hung", DETECTOR_LOAD_SECONDS / 60)
            return
        if self._announced or now < self._next_extend:
            return
        c = self.classifier
        if c.alive() and not self._clf_ready:
            status = "loading the detector"
        elif c.restart_at is not None and self._load_failure is not None:
            status = f"the detector did not load ({self._load_failure.reason}); trying again"
        else:
            return
        self._next_extend = now + EXTEND_EVERY_SECONDS
        self.systemd.still_starting(status, EXTEND_BY_SECONDS)

    def _check_clock(self) -> None:
        """Log a step of the wall clock (NTP setting a Pi's clock after boot). Nothing else
        needs doing: chunk and alert times are read off the wall clock as they happen, and
        durations, timeouts and cooldowns run on the monotonic clock."""
        offset = time.time() - time.monotonic()
        step, self._clock_offset = offset - self._clock_offset, offset
        if abs(step) > CLOCK_STEP_SECONDS:
            log.warning("the wall clock was set %s by %s; alert times follow it",
                        "forward" if step > 0 else "back", _span(abs(step)))

    def _drain_recorder(self, timeout: float) -> None:
        try:
            msg = self.rec_q.get(timeout=timeout)
        except queue.Empty:
            return
        while True:
            self._on_recorder(msg)
            try:
                msg = self.rec_q.get_nowait()
            except queue.Empty:
                return

    def _on_recorder(self, msg: object) -> None:
        if isinstance(msg, Chunk):
            self.pending.append(msg)
            self._bound_backlog()
        elif isinstance(msg, Heartbeat):
            self.last_heartbeat = time.monotonic()
            self.flow.level(msg.samples, self.last_heartbeat, msg.level_dbfs)
            self.outlets.level(msg.level_dbfs)
            self.status.on_heartbeat(msg.level_dbfs)
            self.stats.samples = msg.samples
            self._check_disk(msg)
            if msg.overflows > self.stats.overflows:
                log.warning("the input device lost audio %d time(s) (overflow)",
                            msg.overflows - self.stats.overflows)
                self.stats.overflows = msg.overflows
        elif isinstance(msg, Started):
            self.last_heartbeat = time.monotonic()
            log.info("capturing from %s", msg.device)
            self.status.on_started(msg.device)
            if self._mic_lost:
                self._mic_lost = False
                self.notifier.message("mic", f"microphone back: {msg.device}")
                self.outlets.note("microphone back")
            if self._started is None:
                if not self._detector:
                    self.systemd.status(f"capturing from {msg.device}; loading the detector")
            self._started = msg
            self._announce()
        elif isinstance(msg, SourceFailed):
            self._on_source_failed(msg)
        elif isinstance(msg, ListenClip):
            callback, _ = self._listening.pop(msg.path, (None, 0.0))
            if callback is None:
                remove_quietly(msg.path)  # asked for long ago: the owner had an answer
            else:
                callback(msg.path if msg.seconds else None, msg.seconds,
                         "" if msg.seconds else "nothing heard yet")
        elif isinstance(msg, SourceEnded):
            log.info("replay finished after %.1f s of audio", msg.samples / SAMPLE_RATE)
            self._source_done = True

    def _check_disk(self, beat: Heartbeat) -> None:
        """Say once that chunks cannot be written (disk full), and once that they can again."""
        if beat.write_errors > self._write_errors and not self._disk_trouble:
            self._disk_trouble = True
            self.notifier.message("disk", f"cannot write audio chunks under {self.chunk_dir} "
                                  "(disk full?); still listening, but beeps are missed until "
                                  "there is space")
        elif beat.chunks_written > self._chunks_written and self._disk_trouble:
            self._disk_trouble = False
            self.notifier.message("disk", "writing audio chunks works again")
        self._write_errors, self._chunks_written = beat.write_errors, beat.chunks_written

    def _on_source_failed(self, msg: SourceFailed) -> None:
        if self.source != "mic":
            log.error("%s", msg.reason)
            self.exit_status = 1
            return
        if self._started is None:
            # No microphone at boot: a service that is waiting, not hung. Without this,
            # systemd's start timeout would restart it in a loop until the mic is plugged in.
            self.systemd.still_starting(f"waiting for the microphone: {msg.reason}")
        if not self._mic_lost:
            self._mic_lost = True
            what = "microphone lost" if self._started else "cannot open the microphone"
            self.notifier.message("mic", f"{what}: {msg.reason}; retrying")
            self.outlets.note(what)
        else:
            log.debug("input still unavailable: %s", msg.reason)

    def _announce(self) -> None:
        """Say "listening" once, when audio is flowing and the detector is loaded: only now
        is the service ready (systemd's READY=1)."""
        if self._announced or not (self._started and self._detector):
            return
        self._announced = True
        self.systemd.ready(f"listening on {self._started.device}")
        # The phone gets what a person needs; the technical line goes to the log (and /status).
        log.info("listening on %s; detector %s, threshold %.2f", self._started.device,
                 self._detector.description, self._detector.threshold)
        self.notifier.message("start", start_text(self.cfg.notify.name, self._started.device))

    def _bound_backlog(self) -> None:
        limit = self.cfg.storage.max_backlog_chunks
        dropped = 0
        while len(self.pending) > limit:
            old = self.pending.popleft()
            remove_quietly(old.path)
            dropped += 1
        if dropped:
            self.stats.chunks_dropped += dropped
            now = time.monotonic()
            if now - self._last_drop_log > 30:
                self._last_drop_log = now
                log.warning("classifier is behind: dropped the oldest chunk(s), %d so far "
                            "(backlog limit %d)", self.stats.chunks_dropped, limit)

    def _feed(self) -> None:
        # A classifier still loading its detector waits for nothing: the chunks wait here,
        # where the backlog is bounded and its stall timer has not started.
        if not (self.classifier.alive() and self._clf_ready):
            return
        while self.pending and len(self.in_flight) < IN_FLIGHT:
            chunk = self.pending.popleft()
            self.in_flight.append(chunk)
            self._handed_at[chunk.path] = time.monotonic()
            self.work_q.put(chunk)

    def _drain_results(self) -> None:
        while True:
            try:
                msg = self.results_q.get_nowait()
            except (queue.Empty, OSError, ValueError):
                return
            if isinstance(msg, Scored):
                self._on_scored(msg)
            elif isinstance(msg, BeepStarted):
                # A classifier that took over mid-beep (a reload, a restart) starts with no
                # open event: its predecessor already alerted this beep.
                self._beep = None if self._continues_event(msg.chunk) else msg
                if self._beep is None:
                    log.info("beep at %s continues the one already detected",
                             time.strftime("%H:%M:%S", time.localtime(msg.time)))
                else:
                    self._dense(True)
                    self.flow.beep_started(msg)
            elif isinstance(msg, Detection):
                if self._beep is not None and self._beep.chunk == msg.chunk:
                    self._beep = None
                    self._dense(False)
                    self._on_detection(msg)
            elif isinstance(msg, DetectorReady):
                self._on_detector_ready(msg)
            elif isinstance(msg, DetectorFailed):
                self._load_failure = msg

    def _on_detection(self, msg: Detection) -> None:
        """A beep pattern has ended: what happens when the machine finishes."""
        self.stats.detections += 1
        alerted = self.flow.alert(msg)
        self.outlets.beep(msg, alerted)
        self.status.on_detection(msg.time, msg.score, alerted, msg.clip_path,
                                 self.notifier.delivery_of(msg) if alerted else None)
        self._next_prune = 0.0  # a new clip: check the limits now

    def _beep_unfinished(self, why: str) -> None:
        """The classifier that heard a beep start died before the pattern ended: alert the
        beep all the same, without its clip (nothing lost)."""
        b, self._beep = self._beep, None
        if b is None:
            return
        self._dense(False)
        log.warning("the beep at %s is alerted without its clip: %s",
                    time.strftime("%H:%M:%S", time.localtime(b.time)), why)
        self._on_detection(Detection(b.chunk, b.score, b.time, b.offset, "",
                                     self._detector.description if self._detector else "",
                                     b.mono))

    def _dense(self, on: bool) -> None:
        """While a beep pattern is open, windows every DENSE_HOP_SECONDS: the window that
        shows its end comes sooner (the alert waits for it), and costs a few ms to score."""
        if self.rec_requests is not None and self.recorder.alive():
            self.rec_requests.put(SetHop(DENSE_HOP_SECONDS if on else None))

    def _on_detector_ready(self, msg: DetectorReady) -> None:
        self._detector, self._clf_ready, self._load_failures = msg, True, 0
        path = in_use_path(self.cfg.detector)
        self.status.on_detector(msg.description, msg.threshold, str(path) if path else "")
        if self._load_trouble:
            self._load_trouble = False
            self.notifier.message("detector", f"the detector loaded after all: "
                                  f"{msg.description}")
        self._announce()

    def _continues_event(self, chunk: Chunk) -> bool:
        """Whether ``chunk`` overlaps the last beep chunk, with no chunk below the threshold
        between: the same event, by the rule of `beepnet.events.EventTracker`."""
        if self._last_hit is None:
            return False
        start, end = self._last_hit
        return start <= chunk.start_sample <= end

    def _track_event(self, msg: Scored) -> None:
        c = msg.chunk
        if self._detector is not None and msg.score >= self._detector.threshold:
            self._last_hit = (c.start_sample,
                              c.start_sample + int(round(c.duration * SAMPLE_RATE)))
        else:
            self._last_hit = None

    def _on_scored(self, msg: Scored) -> None:
        self._handed_at.pop(msg.chunk.path, None)
        try:
            self.in_flight.remove(msg.chunk)
        except ValueError:
            pass
        if msg.error:
            self.stats.chunks_failed += 1
            log.debug("chunk %s not scored: %s", msg.chunk.path, msg.error)
        else:
            self.stats.chunks_scored += 1
            self._track_event(msg)
            self.flow.scored(msg)
            self.status.on_scored(msg.score, msg.labels, msg.chunk.start_time)
            log.debug("%s score %.3f", os.path.basename(msg.chunk.path), msg.score)

    def _check_children(self) -> None:
        now = time.monotonic()
        for c, start in ((self.classifier, self._start_classifier),
                         (self.recorder, self._start_recorder)):
            if c.restart_at is not None:
                if now >= c.restart_at:
                    log.info("restarting the %s", c.name)
                    start()
                continue
            if not c.died():
                continue
            code = c.proc.exitcode
            if c is self.recorder and (self._source_done or self.exit_status):
                continue  # a replay that ended, or a file that failed: not a crash
            # The dead one's queues go with it; take what it managed to send first.
            if c is self.classifier:
                self._drain_results()
                self._beep_unfinished(f"the classifier died (exit status {code})")
            else:
                self._drain_recorder(0.0)
            if c is self.classifier and code in (EXIT_DETECTOR, EXIT_DETECTOR_RETRY):
                self._on_load_failed(code)
                if self.exit_status:
                    return
                continue
            delay = c.schedule_restart()
            text = f"{c.name} process died (exit status {code}); restarting in {delay:.1f} s"
            if c.failures == 1:
                self.notifier.message(c.name, text)
            else:
                log.error("%s (failure %d in a row)", text, c.failures)

    def _on_load_failed(self, code: int) -> None:
        """The classifier could not load its detector: stop for good (and say why) when that
        cannot change by itself, else try again, backing off, and say so once."""
        failed = self._load_failure or DetectorFailed(
            f"the classifier exited with status {code}", code == EXIT_DETECTOR)
        if code == EXIT_DETECTOR:
            # The classifier has logged the error; this is the owner's (and the log's) word
            # on what follows.
            self.notifier.message("detector", detector_fatal_text(failed.reason))
            self.exit_status = EXIT_DETECTOR
            return
        delay = self.classifier.schedule_restart()
        self._load_failures += 1
        log.info("loading the detector again in %.1f s", delay)
        if self._load_failures >= TELL_AFTER_LOAD_FAILURES and not self._load_trouble:
            self._load_trouble = True
            self.notifier.message(
                "detector", f"cannot load the detector ({failed.reason}), "
                f"{self._load_failures} times in a row; trying again, less and less often "
                "(at least once a minute). No beep is heard until it loads.")

    # -- the owner's requests (from the notifier's thread) ------------------------------------

    def listen(self, callback: Callable[[str | None, float, str], None]) -> None:
        """`/listen`: ask the recorder for the last seconds it heard. Any thread may call
        this; ``callback(path, seconds, why_not)`` is called later in the supervisor's
        loop, with a WAV the caller then owns, or None and one line on why not."""
        self._listens.put((callback, time.monotonic()))

    def emptied(self, by: str, key: str | None) -> str:
        """🧺 Emptied or /emptied (any thread): the reply; the cycle learns it in the loop."""
        return self.flow.emptied(by, key)

    def answered(self, alert: str, label: str) -> None:
        """The owner's ✅/❌ on an alert (any thread): the history keeps it with its cycle."""
        self.flow.answered(alert, label)
        self.outlets.answered()

    def save_recent(self, dest) -> int:
        """`/missed`: copy the last minutes of non-silent chunks into ``dest``; how many
        (any thread: only files are touched)."""
        from .recent import save_recent

        return save_recent(self.cfg.storage.recent_dir, dest)

    def _serve_listens(self) -> None:
        now = time.monotonic()
        while True:
            try:
                callback, _ = self._listens.get_nowait()
            except queue.Empty:
                break
            if not self.recorder.alive() or self._mic_lost:
                callback(None, 0.0, "no audio: the microphone is not delivering any")
                continue
            self._listen_seq += 1
            path = str(self.chunk_dir.parent / f"listen-{os.getpid()}-{self._listen_seq}.wav")
            self._listening[path] = (callback, now + LISTEN_TIMEOUT_SECONDS)
            self.rec_requests.put(ListenRequest(path))
        for path, (callback, deadline) in list(self._listening.items()):
            if now > deadline:
                del self._listening[path]
                callback(None, 0.0, "no audio: the recorder did not answer")

    # -- reload (SIGHUP) --------------------------------------------------------------------

    def reload(self) -> None:
        """Read the config again; load a changed detector beside the one in use."""
        where = self.cfg.origin.path or "the config (no file: built-in defaults)"
        if self._reload is None:
            log.warning("SIGHUP: this daemon cannot reload its config; restart it instead")
            return
        log.info("SIGHUP: reloading %s", where)
        try:
            new = self._reload()
        except Exception as e:  # noqa: BLE001 - a bad reload must never stop a listening daemon
            reason = str(e) if isinstance(e, ConfigError) else f"{type(e).__name__}: {e}"
            # What other faults do: the log line, and the owner on Telegram.
            self.notifier.message("config", f"reload refused, still running with the previous "
                                  f"settings: {reason}")
            return
        other = changed_keys(self.cfg, new, restart_only_sections(self.cfg))
        if other:
            log.warning("reload: %s changed: restart beepnet to use %s (only detector.* "
                        "changes while it runs)", ", ".join(other),
                        "it" if len(other) == 1 else "them")
        det, ident = new.detector, model_identity(new.detector)
        if self.candidate.alive():
            if (det, ident) == (self._cand_det, self._cand_id):
                log.info("reload: the new detector is already loading")
                return
            log.info("reload: the detector settings changed again: dropping the one loading")
            self._stop_candidate()
        if (det, ident) == (self.cfg.detector, self._model_id):
            log.info("reload: nothing changed for the detector (%s)",
                     describe_model(self.cfg.detector))
            return
        changed = changed_keys(self.cfg, new, ("detector",)) or ["the model file itself"]
        if self._detector is None:
            # No detector has loaded yet, so there is none to keep listening with: load the
            # new one instead, as at start (a model that cannot load stops beepnet, exit 78).
            log.info("reload: %s changed; loading the detector with the new settings",
                     ", ".join(changed))
            self._kill(self.classifier)
            self.cfg, self._model_id = replace(self.cfg, detector=det), ident
            self._start_classifier()
            return
        log.info("reload: %s changed; loading %s beside the detector in use",
                 ", ".join(changed), describe_model(det))
        self._cand_det, self._cand_id, self._cand_failure = det, ident, None
        self._cand_q, self._cand_results_q = self._launch_classifier(self.candidate, det)

    def _check_candidate(self) -> None:
        c = self.candidate
        if c.proc is None:
            return
        while True:
            try:
                msg = self._cand_results_q.get_nowait()
            except (queue.Empty, OSError, ValueError):
                break
            if isinstance(msg, DetectorReady):
                self._adopt(msg)
                return
            if isinstance(msg, DetectorFailed):
                self._cand_failure = msg
        if c.died():
            reason = (self._cand_failure.reason if self._cand_failure
                      else f"the classifier exited with status {c.proc.exitcode}")
            self._candidate_failed(reason)
        elif time.monotonic() - c.started_at > DETECTOR_LOAD_SECONDS:
            self._candidate_failed(f"still loading after {DETECTOR_LOAD_SECONDS / 60:.0f} min")

    def _candidate_failed(self, reason: str) -> None:
        self._stop_candidate()
        in_use = self._detector.description if self._detector else "the previous settings"
        self.notifier.message(
            "detector", f"the reloaded detector did not load ({reason}); still listening "
            f"with {in_use}. Fix the model file or detector.* in the config, then reload "
            "again.")

    def _stop_candidate(self) -> None:
        c = self.candidate
        self._kill(c)
        c.proc = None
        self._cand_q = self._cand_results_q = None
        self._cand_det = self._cand_id = None

    def _adopt(self, ready: DetectorReady) -> None:
        """The new classifier is ready: the old one scores what it holds and stops, then the
        new one takes over (with the chunks it could not finish, if any)."""
        self._retire_classifier()
        old_id = self._detector.description if self._detector else ""
        self.classifier, self.candidate = self.candidate, _Child("classifier")
        self.work_q, self.results_q = self._cand_q, self._cand_results_q
        self.cfg, self._model_id = replace(self.cfg, detector=self._cand_det), self._cand_id
        self._cand_q = self._cand_results_q = self._cand_det = self._cand_id = None
        self._load_failure, self._load_hung_said = None, False
        self._resend_in_flight()
        log.info("reload: now using %s, model file %s (was: %s)", ready.description,
                 describe_model(self.cfg.detector), old_id or "none loaded")
        self._on_detector_ready(ready)

    def _retire_classifier(self) -> None:
        c = self.classifier
        if not c.alive():
            self._drain_results()  # what a dead one sent before dying; the rest is resent
            self._beep_unfinished("the classifier died")
            return
        if not self._clf_ready:
            self._kill(c)  # still loading (after a crash): it holds no chunk
            return
        deadline = time.monotonic() + STOP_GRACE
        while self.in_flight and c.alive() and time.monotonic() < deadline:
            self._drain_results()
            time.sleep(0.02)
        self.work_q.put(None)
        self._join(c, self._drain_results, 3.0)
        self._drain_results()
        self._beep_unfinished("the detector in use stopped before the beep pattern ended")

    @staticmethod
    def _kill(c: _Child) -> None:
        """End a classifier that holds no chunk (loading, or loaded and never fed) at once:
        SIGTERM would only be obeyed once its detector has loaded. Its queues go with it."""
        if c.alive():
            c.proc.kill()
            c.proc.join(2.0)

    # -- shutdown --------------------------------------------------------------------------

    def _shutdown(self) -> None:
        """Recorder first, then let the classifier finish what is queued, then clean up."""
        self.systemd.stopping()
        self.rec_stop.set()
        self._join(self.recorder, lambda: self._drain_recorder(0.05), 3.0)
        grace = STOP_GRACE if self._signal is not None else 60.0
        deadline = time.monotonic() + grace
        while ((self.pending or self.in_flight) and self.classifier.alive()
               and time.monotonic() < deadline):
            self._drain_results()
            self._feed()
            time.sleep(0.02)
        if self.classifier.alive():
            self.work_q.put(None)
        if self.classifier.stop is not None:
            self.classifier.stop.set()
        self._stop_candidate()
        self._join(self.classifier, self._drain_results, 3.0)
        self._drain_results()
        self._beep_unfinished("beepnet stopped before the beep pattern ended")
        # Everything heard is in: the cycle's clock runs to the end (a replay's last quiet).
        self.flow.tick(None, final=True)
        self.flow.close()
        left = list(self.pending) + list(self.in_flight)
        for chunk in left:
            remove_quietly(chunk.path)
        if left:
            log.warning("stopped with %d chunk(s) unclassified; deleted", len(left))
        self._remove_stray_temp_files()
        if self._signal is not None:
            self.notifier.message("stop", "stopped listening")
        self.status.publish(self.status_stats(), state="stopped", force=True)
        self.outlets.step(self.flow.snapshot, "stopped", self.cfg.storage.path)
        self.outlets.close()

    def _join(self, c: _Child, drain, timeout: float) -> None:
        if c.proc is None:
            return
        # Keep draining while waiting: a child blocked flushing its queue never exits.
        deadline = time.monotonic() + timeout
        while c.proc.is_alive() and time.monotonic() < deadline:
            drain()
            c.proc.join(0.05)
        if c.proc.is_alive():
            log.warning("%s did not stop in %.0f s; terminating it", c.name, timeout)
            c.proc.terminate()
            c.proc.join(2.0)
            if c.proc.is_alive():
                c.proc.kill()
                c.proc.join(1.0)

    def _remove_stray_temp_files(self) -> None:
        for p in self.chunk_dir.glob(".*.tmp"):
            remove_quietly(str(p))
        for path in self._listening:  # /listen clips the recorder wrote too late
            remove_quietly(path)

    def _requeue_leftovers(self) -> None:
        """Chunks left on disk by a crash are classified first, not silently lost."""
        for p in sorted(self.chunk_dir.glob("*.wav")):
            m = _CHUNK_NAME.match(p.name)
            if not m:
                continue
            t0 = time.mktime(time.strptime(m.group(1), "%Y%m%d-%H%M%S"))
            start = int(m.group(2))
            wall = t0 + start / SAMPLE_RATE
            mono = time.monotonic() - (time.time() - wall)
            self.pending.append(Chunk(str(p), start, wall, self.cfg.audio.chunk_seconds, 0.0,
                                      start_mono=mono))
        if self.pending:
            log.info("classifying %d chunk(s) left from a previous run", len(self.pending))
        self._bound_backlog()

