"""The watch: notice when a machine has been running a long time without its beep.

A watch opens when the daemon starts listening, and again when sound resumes after at least
``idle`` seconds of quiet (a new cycle). A beep alert closes it. A watch open for ``timeout``
seconds without a beep yields one "no beep yet" message, with what was heard meanwhile, and
closes: a quiet, idle machine never produces a stream of messages.

Every ``now`` is ``time.monotonic()``: durations must not jump when NTP sets the wall clock
(a Pi without a real-time clock boots hours or years off). Wall time is only read to print
when the last sound was.
"""

from __future__ import annotations

import time

from .timefmt import minutes_text


def _minutes(seconds: float) -> str:
    return minutes_text(int(round(seconds / 60)))


class Watch:
    def __init__(self, timeout_s: float, idle_s: float, gate_dbfs: float):
        self.timeout = timeout_s
        self.idle = idle_s
        self.gate_dbfs = gate_dbfs
        self.opened_at: float | None = None
        self.last_sound: float | None = None
        self.active_s = 0.0
        self.loudest: tuple[float, float] | None = None  # (dBFS, when)
        self._last_beat: float | None = None

    def open(self, now: float) -> None:
        self.opened_at, self.active_s, self.loudest = now, 0.0, None

    def running_for(self, now: float) -> float | None:
        """Seconds since this cycle's sound began, if a watch is open."""
        return None if self.opened_at is None else now - self.opened_at

    def heard(self, now: float, level_dbfs: float) -> None:
        """Feed a heartbeat: the loudest short frame since the previous one."""
        span = 0.0 if self._last_beat is None else min(now - self._last_beat, 5.0)
        self._last_beat = now
        if level_dbfs < self.gate_dbfs:
            return
        quiet_for = None if self.last_sound is None else now - self.last_sound
        self.last_sound = now
        if self.opened_at is None and quiet_for is not None and quiet_for >= self.idle:
            self.open(now)
        if self.opened_at is not None:
            self.active_s += span
            if self.loudest is None or level_dbfs >= self.loudest[0]:
                self.loudest = (level_dbfs, now)

    def beeped(self) -> None:
        self.opened_at = None

    def check(self, now: float, wall_now: float | None = None) -> str | None:
        """The "no beep yet" text when the open watch has timed out (then it closes).
        ``wall_now`` is the wall clock at ``now`` (default: read it)."""
        if self.opened_at is None or now - self.opened_at < self.timeout:
            return None
        text = (f"No beep yet: listening for {_minutes(now - self.opened_at)} without hearing "
                f"the end-of-cycle beep. Sound for {_minutes(self.active_s)} of that")
        if self.last_sound is not None:
            wall = (time.time() if wall_now is None else wall_now) - (now - self.last_sound)
            text += f"; last sound at {time.strftime('%H:%M', time.localtime(wall))}"
        if self.loudest is not None:
            text += f", loudest {self.loudest[0]:.0f} dBFS"
        self.opened_at = None
        return text + "."
