"""What the daemon tells the world besides its messages: Home Assistant over MQTT, the
heartbeat URL, and the digest.

The supervisor hands this what it already knows, once per turn of its loop and as things
happen (a beep alerted, a level heard, the cycle's snapshot replaced, whether the pipeline
is healthy); nothing here reaches back into the daemon except the two commands Home
Assistant may send (the "emptied" button, the "mute" switch), which go where the Telegram
ones go. Each outlet is off unless configured, and none can stop the daemon: a broker or a
heartbeat service that is down is logged and retried in its own thread.
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Callable

from ..config import Config
from ..messages import Detection

log = logging.getLogger(__name__)

MUTE_SWITCH_HOURS = 24.0
"""Home Assistant's "mute" switch mutes for this long at most, like a /mute nobody ended:
a mute forgotten on must not silence the laundry for good."""
STALE_LOOP_SECONDS = 60.0
"""The daemon's loop has not turned for this long: it is stuck, whatever it last said."""


class Outlets:
    def __init__(self, cfg: Config, notifier, *,
                 emptied: Callable[[str, str | None], str], history=None,
                 started: float | None = None):
        """``emptied``: what the owner's "Emptied" does (the supervisor's); ``history``:
        the cycle history the digest counts cycles in (None: no history)."""
        self.cfg = cfg
        self.notifier = notifier
        self.history = history
        self._started = started if started is not None else time.time()
        self._health: tuple[float, str | None] = (time.monotonic(), "starting")
        self.mqtt = None
        if cfg.mqtt.enabled:
            from ..mqtt.link import MqttLink

            self.mqtt = MqttLink.from_config(
                cfg, on_emptied=lambda: emptied("Home Assistant", None),
                on_mute=self._on_mute)
        self.heartbeat = None
        if cfg.notify.heartbeat_url:
            from ..notify.heartbeat import Heartbeat

            self.heartbeat = Heartbeat(cfg.notify.heartbeat_url, cfg.notify.heartbeat_minutes,
                                       self.unhealthy, name=cfg.notify.name)
        self._digest = None
        if cfg.notify.digest:
            from ..notify.digest import LevelRange, parse_schedule

            self._digest = _Digest(parse_schedule(cfg.notify.digest), LevelRange(),
                                   self._started)
        self._snapshot: dict | None = None

    def start(self) -> None:
        if self.mqtt is not None:
            self.mqtt.start()
        if self.heartbeat is not None:
            self.heartbeat.start()

    # -- from the supervisor ------------------------------------------------------------------

    def beep(self, det: Detection, alerted: bool) -> None:
        """A beep pattern ended (``alerted``: False when the cooldown held its alert)."""
        if self._digest is not None:
            self._digest.beeps += 1
            self._digest.alerts += int(alerted)
        if self.mqtt is not None:
            self.mqtt.beep(det.time, det.score, det.clip_path)

    def level(self, dbfs: float) -> None:
        """The loudest frame of the last heartbeat's audio."""
        if self.mqtt is not None:
            self.mqtt.level(dbfs)
        if self._digest is not None:
            self._digest.levels.add(dbfs)

    def answered(self) -> None:
        """The owner answered ✅/❌ under an alert (any thread)."""
        if self._digest is not None:
            self._digest.corrections += 1

    def note(self, text: str) -> None:
        """Something the digest should mention ("microphone lost at 02:10")."""
        if self._digest is not None:
            self._digest.notes.append(f"{time.strftime('%H:%M')} {text}")

    def step(self, snapshot: dict, unhealthy: str | None, free_dir) -> None:
        """A turn of the daemon's loop: the cycle's snapshot, what is wrong (None: all is
        well), and the folder whose free space the digest tells."""
        self._health = (time.monotonic(), unhealthy)
        if self.mqtt is not None:
            if snapshot is not self._snapshot:  # replaced whenever it changes
                self.mqtt.cycle(snapshot)
            self._tell_mute()
        self._snapshot = snapshot
        if self._digest is not None and time.time() >= self._digest.due:
            self._send_digest(free_dir)

    def status(self) -> dict:
        """What /status and the monitor show of the outlets (only those configured)."""
        doc: dict = {}
        if self.mqtt is not None:
            doc["mqtt"] = {"where": self.mqtt.where, "connected": self.mqtt.connected,
                           "device_id": self.mqtt.device_id}
        if self.heartbeat is not None:
            ok = self.heartbeat.last_ok  # on the monotonic clock
            doc["heartbeat"] = {
                "where": self.heartbeat.where,
                "last_ok": time.time() - (time.monotonic() - ok) if ok is not None else None,
                "error": self.heartbeat.last_error, "held": self.unhealthy()}
        return doc

    def unhealthy(self) -> str | None:
        """For the heartbeat (its own thread): None while the pipeline works."""
        at, reason = self._health
        stale = time.monotonic() - at
        if stale > STALE_LOOP_SECONDS:
            return f"the daemon's loop has not run for {stale:.0f} s"
        return reason

    def close(self) -> None:
        if self.heartbeat is not None:
            self.heartbeat.stop()
        if self.mqtt is not None:
            self.mqtt.close()

    # -- Home Assistant's switch ----------------------------------------------------------------

    def _on_mute(self, on: bool) -> None:
        """The "mute" switch, on paho's thread: the same mute as /mute."""
        mute = self.notifier.mute
        if mute is None:
            return
        if on:
            until = mute.set(MUTE_SWITCH_HOURS * 3600)
            log.info("muted from Home Assistant until %s",
                     time.strftime("%Y-%m-%d %H:%M", time.localtime(until)))
        elif mute.end() is not None:
            log.info("unmuted from Home Assistant")
        self._tell_mute()

    def _tell_mute(self) -> None:
        # Each turn: /mute and /unmute in Telegram change the same mute; the link publishes
        # the switch's state only when it changed.
        mute = self.notifier.mute
        self.mqtt.muted(mute.until() if mute is not None else None)

    # -- the digest --------------------------------------------------------------------------

    def _send_digest(self, free_dir) -> None:
        from ..notify.digest import DigestStats, digest_text, next_time

        d, now = self._digest, time.time()
        cycles = self._cycles_between(d.since, now)
        try:
            free = shutil.disk_usage(free_dir).free / 1e6
        except OSError:
            free = None
        low, high = d.levels.take()
        stats = DigestStats(
            since=d.since, now=now, uptime_seconds=now - self._started,
            cycles=len(cycles), finished=sum(c.outcome == "beeped" for c in cycles),
            stopped_without_beep=sum(c.outcome == "stopped" for c in cycles),
            beeps=d.beeps, alerts_sent=d.alerts, corrections=d.corrections,
            outbox_waiting=sum(self.notifier.undelivered()), disk_free_mb=free,
            level_min_dbfs=low, level_max_dbfs=high, notes=list(d.notes))
        self.notifier.message("digest", digest_text(stats, self.cfg.notify.name))
        d.since, d.due = now, next_time(d.schedule, now)
        d.beeps = d.alerts = d.corrections = 0
        d.notes.clear()

    def _cycles_between(self, since: float, now: float) -> list:
        if self.history is None:
            return []
        try:
            return [c for c in self.history.recent(500)
                    if c.ended is not None and since <= c.ended <= now]
        except Exception as e:  # noqa: BLE001 - the digest goes out without the cycles
            log.warning("the digest cannot read the cycle history: %s", e)
            return []


class _Digest:
    """What the digest counts between two of them."""

    def __init__(self, schedule, levels, since: float):
        from ..notify.digest import next_time

        self.schedule = schedule
        self.levels = levels
        self.since = since
        self.due = next_time(schedule, time.time())
        self.beeps = self.alerts = self.corrections = 0
        self.notes: list[str] = []
