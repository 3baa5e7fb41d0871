"""The daemon's live-status channel: a small JSON file the supervisor rewrites a few times a
second, and the monitor reads.

Why a file and not a socket: the supervisor never blocks on a slow or absent reader, there is
nothing to accept or clean up, several monitors can watch at once, and a reader can tell a
stopped daemon from a live one by the time stamp inside. The file is written atomically
(temp file + rename, :func:`beepnet.fsutil.write_atomic`), so a reader never sees half of
it, and ``mkstemp`` creates it 0600: only the daemon's user (and root) can read it. It lives
in the runtime directory (the parent of ``storage.chunk_dir``: ``/run/beepnet`` under
systemd, RAM-backed), so the 5 writes a second never touch an SD card.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path

from ..fsutil import write_atomic

log = logging.getLogger(__name__)

STATUS_NAME = "status.json"
PUBLISH_EVERY = 0.2
"""Seconds between two writes: at most 5 a second, whatever the supervisor's loop does."""
STALE_SECONDS = 3.0
"""A status older than this comes from a daemon that stopped (or hangs)."""
TIMELINE_SECONDS = 300
"""How much history (one bin per second) the status carries, for the monitor's timeline."""
RECENT_DETECTIONS = 10
SILENCE_DBFS = -120.0


def status_path(cfg) -> Path:
    """Where the daemon configured by ``cfg`` publishes its status."""
    return cfg.storage.chunk_dir.parent / STATUS_NAME


class StatusPublisher:
    """Collects what the supervisor sees and writes it to the status file, throttled.

    The supervisor calls the ``on_*`` methods from its loop (each is a few dict and deque
    operations) and :meth:`publish` every loop turn; only one call in ``PUBLISH_EVERY``
    seconds actually serialises and writes.
    """

    def __init__(self, path: Path, cfg, source: str):
        self.path = Path(path)
        self.started = time.time()
        self.static = {
            "pid": os.getpid(), "started": self.started, "source": source,
            "gate_dbfs": cfg.audio.gate_dbfs, "outbox_dir": str(cfg.storage.outbox_dir),
            "telegram": bool(cfg.telegram.enabled),
            # Which daemon this is: `beepnet enroll` signals it (SIGHUP) after changing
            # this config file.
            "config": str(Path(cfg.origin.path).absolute()) if cfg.origin.path else None,
        }
        self.device = ""
        self.detector = ""
        self.threshold = None
        self.model = ""
        self.level = SILENCE_DBFS
        self.level_time = 0.0
        self.scored: dict | None = None
        self.detections: deque[dict] = deque(maxlen=RECENT_DETECTIONS)
        # Beside each detection: where its alert's delivery stands, asked at each write.
        self._delivery: deque[Callable[[], str] | None] = deque(maxlen=RECENT_DETECTIONS)
        # One bin per whole second: [second, loudest level, highest score or None].
        self.timeline: deque[list] = deque(maxlen=TIMELINE_SECONDS)
        self.cycle: dict = {}
        """Where the machine's cycle is (`beepnet.daemon.cycleflow.CycleFlow.snapshot`)."""
        self.outlets: dict = {}
        """Home Assistant's connection and the heartbeat (`beepnet.daemon.outlets`)."""
        self._next = 0.0
        self._failed = False

    # -- what the supervisor reports -------------------------------------------------------

    def on_started(self, device: str) -> None:
        self.device = device

    def on_detector(self, description: str, threshold: float, model: str = "") -> None:
        """``model``: the path of the model file in use (after a reload too); "" for none."""
        self.detector, self.threshold, self.model = description, threshold, model

    def on_heartbeat(self, level_dbfs: float) -> None:
        now = time.time()
        self.level, self.level_time = level_dbfs, now
        b = self._bin(now)
        b[1] = max(b[1], level_dbfs)

    def on_scored(self, score: float, labels: dict, chunk_time: float) -> None:
        now = time.time()
        self.scored = {"time": now, "chunk_time": chunk_time, "score": round(score, 4),
                       "labels": {k: round(float(v), 4) for k, v in labels.items()}}
        b = self._bin(now)
        b[2] = score if b[2] is None else max(b[2], score)

    def on_detection(self, t: float, score: float, alerted: bool, clip: str,
                     delivery: Callable[[], str] | None = None) -> None:
        """``delivery``: the notifier's live delivery state of the alert (queued, sent ...)."""
        self.detections.append({"time": t, "seen": time.time(), "score": round(score, 4),
                                "alerted": alerted, "clip": clip})
        self._delivery.append(delivery)

    def _detections(self) -> list[dict]:
        return [d if state is None else dict(d, delivery=state())
                for d, state in zip(self.detections, self._delivery)]

    def _bin(self, now: float) -> list:
        sec = int(now)
        if not self.timeline or self.timeline[-1][0] != sec:
            self.timeline.append([sec, SILENCE_DBFS, None])
        return self.timeline[-1]

    # -- writing -----------------------------------------------------------------------------

    def publish(self, stats: dict, state: str = "running", force: bool = False) -> None:
        """Write the status if ``PUBLISH_EVERY`` has passed (or ``force``); never raises."""
        now = time.monotonic()
        if not force and now < self._next:
            return
        self._next = now + PUBLISH_EVERY
        doc = dict(self.static, time=time.time(), state=state, device=self.device,
                   detector=self.detector, threshold=self.threshold, model=self.model,
                   level_dbfs=round(self.level, 1), level_time=self.level_time,
                   scored=self.scored, detections=self._detections(),
                   timeline=[[s, round(lv, 1), None if sc is None else round(sc, 3)]
                             for s, lv, sc in self.timeline],
                   stats=stats, cycle=self.cycle, outlets=self.outlets)
        try:
            write_atomic(self.path, json.dumps(doc, separators=(",", ":")).encode())
            self._failed = False
        except OSError as e:
            if not self._failed:  # once, not five times a second
                log.warning("cannot write the status file %s: %s", self.path, e.strerror or e)
            self._failed = True


def read_status(path: Path) -> dict | None:
    """The last published status, or None when there is none (or it cannot be read)."""
    try:
        return json.loads(Path(path).read_bytes())
    except (OSError, ValueError):
        return None


def is_live(status: dict | None, now: float | None = None) -> bool:
    """Whether ``status`` comes from a daemon that is running right now."""
    if not status or status.get("state") != "running":
        return False
    now = time.time() if now is None else now
    if now - float(status.get("time", 0)) > STALE_SECONDS:
        return False
    try:
        os.kill(int(status["pid"]), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, KeyError, ValueError, TypeError):
        pass  # another user's daemon (root monitoring the service): the time stamp decides
    return True
